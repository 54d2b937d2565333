"""First paint and transfer of every page of the built book, over an emulated 10 Mbit/s link.

Serves ``_build/html`` on 127.0.0.1, opens each page of ``_toc.yml`` in headless Chromium (the system's, through
Playwright) with the network throttled to 10 Mbit/s down, 5 Mbit/s up and 20 ms latency (Chrome DevTools'
``Network.emulateNetworkConditions``), and prints per page: first contentful paint, the load event, and the bytes
transferred until the network is idle (scripts' own later fetches included, e.g. the WebAssembly runtime).

    .venv/bin/python tools/page_timing.py [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chapters import toc_files  # noqa: E402
from test_browser import CHROMIUM_ARGS, QuietHandler, find_chromium  # noqa: E402

MBIT = 1_000_000 / 8  # bytes per second


def measure(html_dir: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    pages = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in toc_files()]
    handler = functools.partial(QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    out = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
            for page_name in pages:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                received = []
                cdp = context.new_cdp_session(page)
                cdp.on("Network.loadingFinished", lambda e: received.append(e["encodedDataLength"]))
                cdp.send("Network.enable")
                cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 20,
                                                              "downloadThroughput": 10 * MBIT,
                                                              "uploadThroughput": 5 * MBIT})
                page.goto(base + page_name, wait_until="load", timeout=180_000)
                timing = page.evaluate("""() => {
                  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                  const nav = performance.getEntriesByType('navigation')[0];
                  return {fcp_ms: fcp ? fcp.startTime : null, load_ms: nav ? nav.loadEventEnd : null};
                }""")
                page.wait_for_load_state("networkidle", timeout=180_000)
                out.append({"page": page_name, **timing, "bytes": sum(received)})
                print(f"{page_name:32s} first paint {timing['fcp_ms'] / 1000:5.2f} s, load {timing['load_ms'] / 1000:5.2f} s,"
                      f" {sum(received) / 1e6:6.2f} MB", flush=True)
                context.close()
            browser.close()
    finally:
        server.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    html_dir = ROOT / "_build" / "html"
    if not (html_dir / "index.html").is_file():
        print("build the book first: bash scripts/setup.sh", file=sys.stderr)
        return 1
    rows = measure(html_dir)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
