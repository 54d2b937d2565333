"""The built book in a real browser: headless Chromium (Debian's package) driven over its DevTools protocol.

For every page in _toc.yml, served from _build/html on 127.0.0.1: no failed network request (so
nothing is fetched from a CDN: the book ships every script), no console error or uncaught
exception, every formula typeset by MathJax, every image loaded, every ipywidgets view rendered
by the embed manager, every in-page explorer mounted and drawing, a working .ipynb download link
and a Colab launch link on notebook pages. On the anatomy page the rotation slider is dragged
with the mouse and set with the keyboard, and the output canvas must show what stnlib computes:
the digit itself at the identity and ``torch.rot90`` of it at 90 degrees. On the conventions page
the projective corners and TPS control points are dragged and the canvas must match stnlib's warp
for the theta the page reports. Screenshots go to _build/screenshots/ (:data:`SCREENSHOTS`), outside
_build/html: that folder is what gets published.

The DevTools protocol runs over ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3 and 4),
so no websocket client is needed.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from chapters import ROOT, toc_files

from stnbook import web
from stnlib.analysis import warp

PAGES = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in toc_files()]
NO_CHROMIUM_MARKER = ROOT / ".venv" / ".stnbook-no-chromium"  # written by scripts/setup.sh when apt is unavailable
VIEWPORT = (1280, 900)
HTML_DIR = ROOT / "_build" / "html"  # the built book, published as it is
SCREENSHOTS = ROOT / "_build" / "screenshots"  # for a person to look at; never inside HTML_DIR


def screenshot_dir() -> Path:
    """The folder the screenshots go to, created; removes a screenshots/ folder that older runs left in the
    published HTML_DIR."""
    shutil.rmtree(HTML_DIR / "screenshots", ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def find_chromium() -> str | None:
    for name in (os.environ.get("STNBOOK_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """A headless Chromium and a minimal DevTools-protocol client over the debugging pipe."""

    def __init__(self, exe: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        high = [os.dup(fd) for fd in (to_browser_r, from_browser_w)]  # > 4, so the dup2s below cannot collide
        while min(high) <= 4:
            high = [os.dup(fd) for fd in high]

        def child_fds():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
                "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=child_fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for fd in (to_browser_r, from_browser_w, *high):
            os.close(fd)
        self._next = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        with self._lock:
            self._next += 1
            mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or getattr(self, "_closed", False):
                    raise TimeoutError(f"no reply to {method} within {timeout} s (browser closed: "
                                       f"{getattr(self, '_closed', False)})")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = 60, since: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method and ev.get("sessionId") == session:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} within {timeout} s")
                self._cond.wait(left)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_browser)


class Page:
    """One tab: navigation, evaluation, input events, and the problems the page reported."""

    def __init__(self, dt: DevTools, url: str):
        self.dt = dt
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.target = target
        self.session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT[0], "height": VIEWPORT[1],
                                                         "deviceScaleFactor": 1, "mobile": False})
        self.start = len(dt.events)
        self.send("Page.navigate", {"url": url})
        dt.wait_event("Page.loadEventFired", self.session, timeout=60, since=self.start)

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        return self.dt.send(method, params, self.session, timeout)

    def eval(self, expression: str, timeout: float = 60):
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                        timeout)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            time.sleep(0.1)

    def problems(self) -> dict[str, list[str]]:
        """Failed requests, HTTP errors, console errors and uncaught exceptions seen since navigation."""
        failed, errors = [], []
        urls = {}
        for ev in self.dt.events[self.start:]:
            if ev.get("sessionId") != self.session:
                continue
            m, p = ev["method"], ev.get("params", {})
            if m == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                failed.append(f"{urls.get(p['requestId'], p['requestId'])}: {p.get('errorText')}")
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                failed.append(f"{p['response']['url']}: HTTP {p['response']['status']}")
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                errors.append(f"uncaught: {d.get('exception', {}).get('description', d.get('text'))}")
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        return {"failed requests": failed, "console errors": errors}

    def box(self, selector: str) -> dict:
        rect = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                         "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                         "return {x: r.left, y: r.top, w: r.width, h: r.height}; })()")
        assert rect and rect["w"] > 0, f"{selector} is not on screen"
        return rect

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                               "buttons": 0 if kind == "mouseReleased" else 1, "clickCount": 1})

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": start[0], "y": start[1]})
        self.mouse("mousePressed", *start)
        for k in range(1, steps + 1):
            t = k / steps
            self.mouse("mouseMoved", start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        self.mouse("mouseReleased", *end)

    def key(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                 "windowsVirtualKeyCode": code})

    def screenshot(self, path: Path, selector: str | None = None) -> None:
        """A PNG of the whole page (up to 16000 px tall), or of one element."""
        if selector is None:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": VIEWPORT[0], "height": min(size["height"], 16000), "scale": 1}
        else:  # the theme's sticky header would cover the element: hide it for the shot
            r = self.eval(f"(() => {{ const s = document.createElement('style'); s.id = 'stn-shot';"
                          "s.textContent = '.bd-header, .skip-link, .bd-header-article {visibility: hidden !important}';"
                          f"document.head.appendChild(s); const e = document.querySelector({json.dumps(selector)});"
                          "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                          "return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; })()")
            clip = {"x": r["x"] - 4, "y": r["y"] - 4, "width": r["w"] + 8, "height": r["h"] + 8, "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        self.eval("document.getElementById('stn-shot') && document.getElementById('stn-shot').remove(), true")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.dt.send("Target.closeTarget", {"targetId": self.target})


BUILD_INPUTS = ("book", "_config.yml", "_toc.yml", "stnlib", "results")


def newest_mtime(paths) -> float:
    newest = 0.0
    for path in paths:
        path = ROOT / path
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        newest = max([newest, *(f.stat().st_mtime for f in files)])
    return newest


@pytest.fixture(scope="session")
def book_html() -> Path:
    """_build/html as tests/test_book.py's session fixture built it (it runs first in a full run), rebuilt
    here only when it is missing or older than the book's inputs (e.g. when this file runs alone, or when
    only a static file changed, which an incremental Sphinx build does not copy).

    A fixture imported from test_book would be a second, separate session fixture and build the book twice.
    """
    html = ROOT / "_build" / "html"
    pages = list(html.rglob("*.html")) if html.is_dir() else []
    if not pages or max(p.stat().st_mtime for p in pages) < newest_mtime(BUILD_INPUTS):
        # --all: Sphinx copies static files (the explorer, the vendored scripts) only when it writes pages
        jb = Path(sys.executable).parent / "jupyter-book"
        proc = subprocess.run([str(jb), "build", str(ROOT), "--builder", "html", "--all", "-W", "-n", "--keep-going"],
                              cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return html


@pytest.fixture(scope="module")
def site(book_html):
    """(DevTools, base URL, build folder): Chromium plus a local HTTP server over the built book."""
    built_book = book_html
    exe = find_chromium()
    if exe is None:
        if NO_CHROMIUM_MARKER.is_file():
            pytest.skip(NO_CHROMIUM_MARKER.read_text().strip())
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/setup.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (bash scripts/setup.sh, or apt-get install chromium)")
    missing = web.check_vendored()
    assert not missing, f"web assets missing ({missing}): run `python -m stnbook.web vendor`, then rebuild the book"
    handler = functools.partial(QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = Path(tempfile.mkdtemp(prefix="stnbook-chromium-"))
    dt = DevTools(exe, profile)
    try:
        dt.send("Browser.getVersion", timeout=60)
        yield dt, f"http://127.0.0.1:{server.server_address[1]}/", built_book
    finally:
        dt.close()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def open_page(site, page: str) -> Page:
    dt, base, _ = site
    p = Page(dt, base + page)
    # MathJax typesets after load; the embed manager renders widgets on load
    p.eval("(async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise) "
           "await MathJax.startup.promise; return true; })()")
    p.wait_for("document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length === 0"
               " || document.querySelectorAll('.jupyter-widgets').length > 0", timeout=30)
    return p


PAGE_REPORT = """(() => {
  const maths = [...document.querySelectorAll('main .math, article .math')];
  const imgs = [...document.querySelectorAll('article img')];
  const ex = [...document.querySelectorAll('.stn-explorer')];
  const blank = ex.filter(e => { const c = e.querySelector('canvas.stn-output'); if (!c) return true;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return false; return true; }).length;
  return {
    math: maths.length,
    typeset: maths.filter(m => m.querySelector('mjx-container')).length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    rawTex: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetsRendered: document.querySelectorAll('.jupyter-widgets').length,
    explorers: ex.length,
    mounted: document.querySelectorAll('.stn-explorer[data-stn-mounted]').length,
    explorerErrors: ex.map(e => e.getAttribute('data-stn-error')).filter(Boolean),
    blankExplorers: blank,
    download: [...document.querySelectorAll('a[href$=".ipynb"]')].map(a => a.getAttribute('href'))
      .filter(h => !h.includes('://')),
    colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
  };
})()"""


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline_with_math_figures_and_widgets(site, page):
    _, base, _ = site
    p = open_page(site, page)
    try:
        report = p.eval(PAGE_REPORT)
        p.screenshot(screenshot_dir() / (Path(page).stem + ".png"))
        problems = p.problems()
    finally:
        p.close()
    assert problems == {"failed requests": [], "console errors": []}, problems
    assert report["typeset"] == report["math"], f"formulas not typeset by MathJax: {report['rawTex'][:5]}"
    assert report["mathErrors"] == 0
    assert not report["broken"], f"images that did not load: {report['broken']}"
    source = ROOT / Path(page).with_suffix("")
    notebook = source.with_suffix(".ipynb").exists()
    if notebook:
        assert report["math"] > 0 or "conventions" not in page
        assert report["images"] >= 2, f"{page} shows {report['images']} figures"
        assert report["download"], "no .ipynb download link"
        url = base + str(Path(page).parent / report["download"][0])
        with urllib.request.urlopen(url, timeout=30) as r:  # the link serves the chapter's notebook
            assert json.loads(r.read())["nbformat"] == 4
        assert any(f"/blob/main/{source.relative_to(ROOT).as_posix()}.ipynb" in u for u in report["colab"]), \
            f"no Colab launch link for {page}: {report['colab']}"
    else:
        assert report["images"] >= 1, f"{page} shows no figure"
    if report["widgetViews"]:
        assert report["widgetsRendered"] > 0, "ipywidgets views were not rendered (embed manager not loaded?)"
    assert report["mounted"] == report["explorers"] and not report["explorerErrors"], report["explorerErrors"]
    assert report["blankExplorers"] == 0, "an explorer draws a blank output"


# ------------------------------------------------------------------------------ explorers, against stnlib

def explorer_state(p: Page, index: int) -> dict:
    """The explorer's config, the theta it reports, and its output canvas read back at the pixel centres."""
    return p.eval(f"""(() => {{
      const e = document.querySelectorAll('.stn-explorer')[{index}], ex = e.stnExplorer;
      const c = e.querySelector('canvas.stn-output'), z = c.width / ex.outW, d = c.getContext('2d');
      const px = [];
      for (let i = 0; i < ex.outH; i++) for (let j = 0; j < ex.outW; j++)
        px.push(d.getImageData(Math.floor((j + 0.5) * z), Math.floor((i + 0.5) * z), 1, 1).data[0]);
      return {{config: JSON.parse(JSON.stringify(ex.cfg)), theta: JSON.parse(e.getAttribute('data-stn-theta')),
               family: ex.family, pixels: px, h: ex.outH, w: ex.outW, renders: Number(e.getAttribute('data-stn-renders'))}};
    }})()""")


def config_image(cfg: dict) -> torch.Tensor:
    data = np.frombuffer(base64.b64decode(cfg["image"]), dtype="<f4").copy()
    return torch.from_numpy(data).reshape(cfg["channels"], cfg["height"], cfg["width"])


def as_canvas(image: torch.Tensor) -> np.ndarray:
    return np.rint(255 * image[0].clamp(0, 1).numpy()).astype(int)


def assert_canvas_is(state: dict, expected: torch.Tensor, what: str) -> None:
    got = np.array(state["pixels"]).reshape(state["h"], state["w"])
    diff = np.abs(got - as_canvas(expected))
    assert diff.max() <= 1, f"{what}: canvas differs from stnlib by {diff.max()} grey levels at {diff.argmax()}"


def library_output(state: dict) -> torch.Tensor:
    cfg = state["config"]
    image = config_image(cfg)
    tf_kwargs = {"grid_size": cfg["tps_grid_size"]} if state["family"] == "tps" else {}
    from stnlib.transforms import get_transform

    tf = get_transform(state["family"], **tf_kwargs)
    theta = torch.tensor(state["theta"], dtype=torch.float32)[None]
    return warp(image[None], theta, tf, (state["h"], state["w"]))[0]


@pytest.mark.slow
def test_anatomy_rotation_slider_turns_the_digit_like_stnlib(site):
    if "book/anatomy.html" not in PAGES:
        pytest.skip("no anatomy chapter in _toc.yml")
    p = open_page(site, "book/anatomy.html")
    shots = screenshot_dir()
    try:
        assert p.eval("document.querySelectorAll('.stn-explorer').length") >= 1, "no in-page explorer on the page"
        start = explorer_state(p, 0)
        digit = config_image(start["config"])
        from stnlib.data import load_mnist

        images, _ = load_mnist("test")
        assert torch.equal(digit, images[0].float().div(255)[None]), "the explorer shows MNIST test digit 0"
        assert start["family"] == "affine" and start["theta"] == [1, 0, 0, 0, 1, 0]
        assert_canvas_is(start, digit, "identity")
        p.screenshot(shots / "anatomy-explorer-identity.png", ".stn-explorer")

        # drag the rotation slider's thumb from the middle (0 degrees) three quarters of the way ...
        r = p.box('.stn-explorer input[data-stn-param="rotation_deg"]')
        y = r["y"] + r["h"] / 2
        p.drag((r["x"] + r["w"] / 2, y), (r["x"] + r["w"] * 0.75, y))
        dragged = p.eval("Number(document.querySelector('.stn-explorer input[data-stn-param=\"rotation_deg\"]').value)")
        assert 60 <= dragged <= 120, f"dragging the slider moved it to {dragged} degrees"
        mid = explorer_state(p, 0)
        assert mid["renders"] > start["renders"], "moving the slider did not redraw"
        assert_canvas_is(mid, library_output(mid), f"rotation {dragged} deg")
        # ... then the arrow keys to exactly 90 degrees, as a keyboard user would
        for _ in range(abs(int(dragged) - 90)):
            p.key("ArrowRight" if dragged < 90 else "ArrowLeft", 39 if dragged < 90 else 37)
        rot = explorer_state(p, 0)
        assert rot["theta"] == pytest.approx([0, -1, 0, 1, 0, 0], abs=1e-6), rot["theta"]
        assert_canvas_is(rot, torch.rot90(digit, 1, dims=(1, 2)), "rotation 90 deg vs torch.rot90")
        assert np.abs(np.array(rot["pixels"]) - as_canvas(digit).ravel()).max() > 100  # the digit did move
        p.screenshot(shots / "anatomy-explorer-rot90.png", ".stn-explorer")
        problems = p.problems()
    finally:
        p.close()
    assert problems == {"failed requests": [], "console errors": []}, problems


@pytest.mark.slow
def test_conventions_projective_corners_and_tps_points_drag_like_stnlib(site):
    if "book/conventions.html" not in PAGES:
        pytest.skip("no conventions page in _toc.yml")
    p = open_page(site, "book/conventions.html")
    try:
        families = p.eval("[...document.querySelectorAll('.stn-explorer')].map(e => e.stnExplorer.family)")
        assert families == ["projective", "tps"], families
        for index, (name, handle) in enumerate([("projective", 0), ("tps", 5)]):
            before = explorer_state(p, index)
            assert_canvas_is(before, config_image(before["config"]), f"{name} identity")
            # where the handle is drawn on the input canvas, in page coordinates
            pos = p.eval(f"""(() => {{
              const e = document.querySelectorAll('.stn-explorer')[{index}], ex = e.stnExplorer;
              e.scrollIntoView({{block: 'center'}});
              const h = ex.handles()[{handle}], v = ex.toView(h[0], h[1]), r = ex.inCanvas.getBoundingClientRect();
              return [r.left + v[0] * r.width / ex.inCanvas.width, r.top + v[1] * r.height / ex.inCanvas.height];
            }})()""")
            p.drag(tuple(pos), (pos[0] + 25, pos[1] + 18))
            after = explorer_state(p, index)
            assert after["theta"] != before["theta"], f"dragging a {name} handle did not change theta"
            assert_canvas_is(after, library_output(after), f"{name} after a drag")
            assert np.abs(np.array(after["pixels"]) - np.array(before["pixels"])).max() > 50, f"{name} output unchanged"
            element = p.eval(f"document.querySelectorAll('.stn-explorer')[{index}].id")
            p.screenshot(screenshot_dir() / f"conventions-{name}-dragged.png", f"#{element}")
        problems = p.problems()
    finally:
        p.close()
    assert problems == {"failed requests": [], "console errors": []}, problems


@pytest.mark.slow
def test_explorer_output_works_on_its_own_like_in_jupyter(site):
    """The HTML a cell returns carries its data and script: in an empty page (as in a Jupyter or Colab output,
    with no book around it) a gallery of precomputed thetas mounts, and stepping through it with the keyboard
    redraws what stnlib computes for each item."""
    from stnlib.data import load_mnist
    from stnlib.transforms import affine_from_params

    images, labels = load_mnist("test")
    digits = images[:3].float().div(255)[:, None]
    thetas = torch.stack([affine_from_params(), affine_from_params(45, 0.8, 0.8), affine_from_params(-30, 0.6, 0.6, 0, 0.2)])
    notes = [f"label {int(y)}" for y in labels[:3]]
    html = web.static_prediction_explorer(digits, thetas, "affine", notes, out_size=(20, 20), title="gallery").html()
    dt = site[0]
    p = Page(dt, "about:blank")
    try:
        frame = p.send("Page.getFrameTree")["frameTree"]["frame"]["id"]
        p.send("Page.setDocumentContent", {"frameId": frame, "html": f"<!DOCTYPE html><html><head></head><body>{html}</body></html>"})
        p.wait_for("!!document.querySelector('.stn-explorer[data-stn-mounted]')", timeout=10)
        p.eval("document.querySelector('.stn-explorer input[data-stn-param=\"index\"]').focus(), true")
        for k in range(3):
            state = explorer_state(p, 0)
            assert state["theta"] == pytest.approx(thetas[k].tolist(), abs=1e-6)
            expected = warp(digits[k][None], thetas[k][None], "affine", (20, 20))[0]
            assert_canvas_is(state, expected, f"gallery item {k}")
            assert p.eval("document.querySelector('.stn-info').textContent") == notes[k]
            if k == 1:
                p.screenshot(screenshot_dir() / "standalone-gallery.png", ".stn-explorer")
            p.key("ArrowRight", 39)
        problems = p.problems()
    finally:
        p.close()
    assert problems == {"failed requests": [], "console errors": []}, problems
