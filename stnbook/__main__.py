"""The experiment command: ``python -m stnbook {list,run,status} ...`` (see :mod:`stnbook.experiments`)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from stnbook.experiments import (
    ArtifactConflict,
    ArtifactError,
    CellBusy,
    cell_status,
    get_cells,
    get_profile,
    load_all,
    run,
    unfinished_runs,
)
from stnbook.paths import results_dir
from stnlib.train import init_distributed_from_env, is_main_process

EXPERIMENTS = load_all()


def _print_status(experiment: str, profile: str, cells: list[str] | None, seed: int) -> dict[str, dict]:
    rows = {c.id: cell_status(c, profile, seed=seed) for c in get_cells(experiment, cells)}
    width = max(len(k) for k in rows)
    for cid, st in rows.items():
        if st["state"] == "finished":
            err = "n/a" if st.get("test_error") is None else f"{st['test_error']:.2f}%"
            extra = f"test error {err}, {st['wall_time_s'] / 60:.1f} min on {st.get('device')}"
        elif st["state"] == "running":
            extra = f"step {st['step']:,} of {st['of']:,} ({st['wall_time_s'] / 60:.1f} min so far)"
        else:
            extra = f"0 of {st['of']:,} steps"
        print(f"{cid:{width}s}  {st['state']:11s}  {extra}")
    counts = {s: sum(r["state"] == s for r in rows.values()) for s in ("finished", "running", "not started")}
    print(f"{experiment} / {profile} / seed {seed}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return rows


def _run_jobs(args: argparse.Namespace, argv: list[str]) -> int:
    """``--jobs N``: N single-thread processes, one shard each, one log each, a progress line per job."""
    n = args.jobs
    logs = results_dir() / "runs" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = [a for a in argv if a != "--jobs" and not a.startswith("--jobs=")]
    if "--jobs" in argv:  # drop the value that followed --jobs
        i = argv.index("--jobs")
        base = argv[:i] + argv[i + 2:]
    procs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i in range(n):
        log = logs / f"{args.experiment}-{args.profile}-seed{args.seed}-job{i}of{n}.log"
        cmd = [sys.executable, "-m", "stnbook", *base, "--shard", f"{i}/{n}", "--threads", "1", "--quiet"]
        procs.append((subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env), log))
        print(f"job {i}: {' '.join(cmd[1:])}  (log: {log})")
    todo = get_cells(args.experiment, args.cells)
    shards = [[c.id for c in todo[i::n]] for i in range(n)]
    while any(p.poll() is None for p, _ in procs):
        time.sleep(args.poll)
        for i, ((p, _), ids) in enumerate(zip(procs, shards)):
            states = [cell_status(c, args.profile, seed=args.seed) for c in get_cells(args.experiment, ids)]
            running = [f"{cid} step {s['step']:,}/{s['of']:,}" for cid, s in zip(ids, states) if s["state"] == "running"]
            done = sum(s["state"] == "finished" for s in states)
            state = "running" if p.poll() is None else f"exited {p.returncode}"
            print(f"[{time.strftime('%H:%M:%S')}] job {i} ({state}): {done}/{len(ids)} cells finished"
                  + (f"; {', '.join(running)}" if running else ""), flush=True)
    failed = [(i, log) for i, (p, log) in enumerate(procs) if p.returncode != 0]
    for i, log in failed:
        print(f"job {i} failed (exit {procs[i][0].returncode}); see {log}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m stnbook",
                                     description="Run the book's experiments and write their artifacts under results/.")
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list experiments, their cells and the profiles")
    ls.add_argument("experiment", nargs="?", choices=sorted(EXPERIMENTS))
    st = sub.add_parser("status", help="each cell: finished, step k of n (checkpointed), or not started")
    st.add_argument("experiment", nargs="?", choices=sorted(EXPERIMENTS),
                    help="without one: every unfinished run of every experiment, with the command that resumes it")
    st.add_argument("--profile", default="full")
    st.add_argument("--cells", nargs="+", metavar="CELL")
    st.add_argument("--seed", type=int, default=0)
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
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="N single-thread processes, one shard each (one log each under results/runs/logs/)")
    r.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes, checkpointed; the same command continues where it stopped")
    r.add_argument("--force", action="store_true",
                   help="replace finished artifacts that were made with other settings (refused otherwise)")
    r.add_argument("--poll", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.action == "list":
        for name in [args.experiment] if args.experiment else sorted(EXPERIMENTS):
            print(f"{name}: " + " ".join(c.id for c in get_cells(name)))
            for p in EXPERIMENTS[name].profiles.values():
                print(f"  profile {p.name}: {p.description}")
        return 0
    try:
        if args.action == "status":
            if args.experiment is None:
                runs = unfinished_runs()
                for r in runs:
                    print(f"{r['experiment']} / {r['profile']} / {r['cell']} / seed {r['seed']}: step {r['step']:,} of "
                          f"{r['of']:,}; resume: {r['command']}")
                print(f"{len(runs)} unfinished run{'' if len(runs) == 1 else 's'} with a checkpoint")
                return 0
            get_profile(args.experiment, args.profile)
            try:
                _print_status(args.experiment, args.profile, args.cells, args.seed)
            except BrokenPipeError:  # `status ... | head`: the reader stopped reading; nothing is wrong
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0
        get_profile(args.experiment, args.profile)
        get_cells(args.experiment, args.cells)
    except ValueError as e:  # unknown cell or profile: say so without a traceback
        parser.error(str(e))
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > 1:
        if args.shard != "0/1":
            parser.error("--jobs makes its own shards; leave out --shard")
        return _run_jobs(args, argv)
    init_distributed_from_env()  # data-parallel under torchrun; a no-op otherwise
    try:
        i, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        parser.error(f"--shard must look like 0/4, got {args.shard!r}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        parser.error(f"--max-minutes must be > 0, got {args.max_minutes}")
    try:
        results = run(args.experiment, args.profile, args.cells, args.seed, args.device, args.threads,
                      not args.quiet, shard=(i, n),
                      stop_after_s=None if args.max_minutes is None else 60 * args.max_minutes, force=args.force)
    except (ValueError, ArtifactConflict, ArtifactError, CellBusy) as e:  # a bad shard, a conflicting artifact: no traceback
        parser.error(str(e))
    if not results:
        print("no cells in this shard")
        return 0
    if not is_main_process():
        return 0
    width = max(len(k) for k in results)
    for cell, m in results.items():
        if not m.get("finished", True):
            print(f"{cell:{width}s}  stopped at step {m['steps']:,} of {m['of']:,} (run the command again to continue)")
            continue
        err = "n/a" if m.get("test_error") is None else f"{m['test_error']:6.2f}%"
        print(f"{cell:{width}s}  test error {err}  ({m['params']:,} params, {m['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
