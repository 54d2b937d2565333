"""Command line: ``python -m stnlib.experiments {list,run} ...`` (see the package docstring)."""

from __future__ import annotations

import argparse
import sys

from ..train import init_distributed_from_env, is_main_process
from . import EXPERIMENTS, get_cells, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stnlib.experiments",
                                     description="Run the book's experiments and write their artifacts under results/.")
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list experiments, their cells and the profiles")
    ls.add_argument("experiment", nargs="?", choices=sorted(EXPERIMENTS))
    r = sub.add_parser("run", help="train (or load, when finished) cells and write artifacts")
    r.add_argument("experiment", choices=sorted(EXPERIMENTS))
    r.add_argument("--profile", default="smoke", help="smoke (CI), full (the committed artifacts), or an experiment's own")
    r.add_argument("--cells", nargs="+", metavar="CELL", help="cell ids (default: all; see `list`)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ...")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--shard", default="0/1", metavar="I/N",
                   help="run every N-th cell starting at I (spread a table over N GPUs or machines)")
    args = parser.parse_args(argv)
    if args.action == "list":
        for name in [args.experiment] if args.experiment else sorted(EXPERIMENTS):
            print(f"{name}: " + " ".join(c.id for c in get_cells(name)))
            for p in EXPERIMENTS[name].profiles.values():
                print(f"  profile {p.name}: {p.description}")
        return 0
    init_distributed_from_env()  # data-parallel under torchrun; a no-op otherwise
    try:
        i, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        parser.error(f"--shard must look like 0/4, got {args.shard!r}")
    try:
        results = run(args.experiment, args.profile, args.cells, args.seed, args.device, args.threads,
                      not args.quiet, shard=(i, n))
    except ValueError as e:  # unknown cell, profile or shard: say so without a traceback
        parser.error(str(e))
    if not results:
        print("no cells in this shard")
        return 0
    if not is_main_process():
        return 0
    width = max(len(k) for k in results)
    for cell, m in results.items():
        err = "n/a" if m.get("test_error") is None else f"{m['test_error']:6.2f}%"
        print(f"{cell:{width}s}  test error {err}  ({m['params']:,} params, {m['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
