#!/usr/bin/env bash
# The whole test suite: unit tests and doctests, every chapter executed in its smoke profile
# (papermill) and checked with nbval, and the book built offline with warnings as errors.
#   bash scripts/test.sh            (after scripts/setup.sh)
#   bash scripts/test.sh -k anatomy (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test.sh: no .venv; run 'bash scripts/setup.sh --no-build' first" >&2; exit 1; }
exec .venv/bin/python -m pytest "$@"
