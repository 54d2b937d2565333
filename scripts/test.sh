#!/usr/bin/env bash
# The whole test suite: unit tests and doctests, every chapter executed in its smoke profile
# (papermill) and checked with nbval, and the book built offline with warnings as errors.
#   bash scripts/test.sh            (after scripts/setup.sh)
#   bash scripts/test.sh -k anatomy (extra arguments go to pytest)
# With two cores or more the tests run on that many pytest-xdist workers (at most 4; STN_TEST_WORKERS=1
# runs them in one process); tests/xdist_plan.py says which tests share a worker and what starts first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test.sh: no .venv; run 'bash scripts/setup.sh --no-build' first" >&2; exit 1; }
cores=$(nproc 2>/dev/null || echo 1)
workers=${STN_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "test.sh: STN_TEST_WORKERS must be a whole number >= 1, got '$workers'" >&2; exit 2; }
xdist=()
if [ "$workers" -gt 1 ]; then
  xdist=(-p tests.xdist_plan -n "$workers" --dist loadscope --no-loadscope-reorder)
  # Each worker, and every kernel and process it starts, gets its share of the cores: with torch's default (one
  # thread per core) in every busy worker there are more threads than cores, and two such processes trained 4.7x
  # and 34x slower than two single-thread ones in two runs of `python -m stnbook.cost.bench step --processes` on
  # two cores. An OMP_NUM_THREADS set by the caller is kept.
  share=$(( cores / workers ))
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( share > 0 ? share : 1 ))}
fi
exec .venv/bin/python -m pytest "${xdist[@]}" "$@"
