#!/usr/bin/env bash
# One command from a clean clone: virtual environment, pinned packages, MNIST, web assets, and the book as HTML.
#   bash scripts/setup.sh              set up, then build the book (open _build/html/index.html)
#   bash scripts/setup.sh --serve      ... and serve it on http://127.0.0.1:8000
#   bash scripts/setup.sh --no-build   set up only (what CI does before the tests)
#   bash scripts/setup.sh --no-browser skip installing Chromium (the browser test is then skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
serve=0
browser=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --serve) serve=1 ;;
    --no-browser) browser=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed"' \
  || { echo "setup.sh: Python 3.10 or newer is needed (set PYTHON=/path/to/python3.x)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python

# Reinstall only when the pins or the package metadata changed: a second run takes seconds.
stamp=.venv/.stnbook-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing pinned packages (requirements.txt; torch is large, a first install takes a few minutes)"
  # A first install puts about 6 GB in .venv (torch's CUDA build): say so when the disk is short.
  free_gb=$("$VPY" -c 'import shutil; print(shutil.disk_usage(".venv").free // 2**30)')
  if [ "$free_gb" -lt 8 ]; then
    echo "==> warning: $free_gb GB free beside .venv; a first install needs about 7 GB" >&2
  fi
  # (grep drops the notices some pip configurations print for every package missing from a local index)
  "$VPY" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | { grep -v "^WARNING: Location" || true; } \
    || { echo "setup.sh: pip install -r requirements.txt failed ($free_gb GB was free beside .venv before it; a first install needs about 7 GB)" >&2; exit 1; }
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" > "$stamp"
else
  echo "==> packages already installed (requirements.txt unchanged)"
fi

# The book's own package (stnbook) is used from this checkout, not installed: put the checkout on the path.
"$VPY" -c 'import pathlib, site, sys; pathlib.Path(site.getsitepackages()[0], "stnbook-checkout.pth").write_text(sys.argv[1] + "\n")' "$(pwd)"

echo "==> MNIST"
"$VPY" -m stnlib.data fetch mnist --root data

# The book serves RequireJS, the ipywidgets embed manager and MathJax itself (no CDN): `npm ci` from
# package.json + package-lock.json (pins and integrity), then the files the pages need are copied into the
# git-ignored book/_static/stn/vendor. A second run with the same lockfile returns at once.
echo "==> web assets (npm)"
"$VPY" -m stnbook.web vendor --quiet

# Headless Chromium for tests/test_browser.py (Debian's package; Playwright from requirements.txt drives it via
# executable_path and never downloads a browser: no `playwright install`). Without apt (or root/sudo) the test is
# skipped, and the reason is left in .venv/.stnbook-no-chromium for it to report.
no_browser=.venv/.stnbook-no-chromium
rm -f "$no_browser"
if [ "$browser" = 0 ]; then
  echo "Chromium not installed: setup.sh --no-browser" > "$no_browser"
elif [ -n "${STNBOOK_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  :
else
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  if command -v apt-get >/dev/null 2>&1 && [ "$sudo" != none ]; then
    echo "==> Chromium (apt-get install chromium, for the browser test; log in .venv/apt-chromium.log)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
      > .venv/apt-chromium.log 2>&1 \
      || { echo "setup.sh: apt-get install chromium failed, see .venv/apt-chromium.log" >&2; exit 1; }
  else
    msg="Chromium is not installed and apt-get (as root or with sudo) is unavailable: install chromium to run the browser test"
    echo "$msg" > "$no_browser"
    echo "==> $msg"
  fi
fi

if [ "$build" = 1 ]; then
  echo "==> building the book"
  .venv/bin/jupyter-book build . --builder html
  echo "==> the book is at file://$PWD/_build/html/index.html"
  if [ "$serve" = 1 ]; then
    echo "==> serving on http://127.0.0.1:8000 (Ctrl-C to stop)"
    exec "$VPY" -m http.server 8000 --bind 127.0.0.1 --directory _build/html
  fi
fi
