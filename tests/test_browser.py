"""The built book in a real browser: headless Chromium (Debian's package) driven by Playwright.

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

Playwright (pinned in requirements.txt) launches the system's Chromium (``executable_path``); it never
downloads a browser of its own, so ``playwright install`` is not needed. Its locators and ``expect`` wait
for the page (attached, visible, stable, mounted) instead of sleeping.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from chapters import ROOT, toc_files
from playwright.sync_api import Browser, Locator, expect, sync_playwright
from playwright.sync_api import Page as PlaywrightPage

from stnbook import web
from stnbook.artifacts import SMOKE_ROOT
from stnlib.analysis import warp

PAGES = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in toc_files()]
NO_CHROMIUM_MARKER = ROOT / ".venv" / ".stnbook-no-chromium"  # written by scripts/setup.sh when apt is unavailable
VIEWPORT = (1280, 900)
HTML_DIR = ROOT / "_build" / "html"  # the built book, published as it is
SCREENSHOTS = ROOT / "_build" / "screenshots"  # for a person to look at; never inside HTML_DIR
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
                 "--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
                 "--force-device-scale-factor=1"]  # Playwright adds --headless and its own --user-data-dir
TIMEOUT_MS = 60_000  # for navigation, actions and waits: generous, the machine may be busy training
SHOT_CSS = ".bd-header, .skip-link, .bd-header-article {visibility: hidden !important}"  # sticky header off shots
ROTATION = 'input[data-stn-param="rotation_deg"]'  # the anatomy explorer's rotation slider

expect.set_options(timeout=TIMEOUT_MS)


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


@dataclass
class Tab:
    """One page in its own browser context, with the problems it reported since it opened."""

    page: PlaywrightPage
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser) -> Tab:
        context = browser.new_context(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]}, device_scale_factor=1)
        context.set_default_timeout(TIMEOUT_MS)
        tab = cls(context.new_page())
        tab.page.on("requestfailed", tab._request_failed)
        tab.page.on("response", tab._response)
        tab.page.on("console", tab._console)
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc.stack or exc.message}"))
        return tab

    def _request_failed(self, request) -> None:
        if request.failure != "net::ERR_ABORTED":  # a canceled request (the old client skipped those too)
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def _console(self, msg) -> None:
        # console.error/assert, and the browser's own error log entries (Playwright reports those as console errors)
        if msg.type in ("error", "assert"):
            url = msg.location.get("url", "") if msg.location else ""
            self.errors.append(f"console.{msg.type}: {msg.text} {url}".rstrip())

    def problems(self) -> dict[str, list[str]]:
        """Failed requests, HTTP errors, console errors and uncaught exceptions seen since the tab opened."""
        return {"failed requests": list(self.failed), "console errors": list(self.errors)}

    def screenshot(self, path: Path, target: Locator | None = None) -> None:
        """A PNG of the whole page (up to 16000 px tall), or of one element with a 4 px margin."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if target is None:
            height = self.page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": VIEWPORT[0], "height": min(height, 16000)}
            self.page.screenshot(path=path, full_page=True, clip=clip)
            return
        target.scroll_into_view_if_needed()
        box = target.bounding_box()
        sx, sy = self.page.evaluate("[scrollX, scrollY]")  # full-page clips are in document coordinates
        clip = {"x": box["x"] + sx - 4, "y": box["y"] + sy - 4, "width": box["width"] + 8, "height": box["height"] + 8}
        self.page.screenshot(path=path, full_page=True, clip=clip, style=SHOT_CSS)

    def close(self) -> None:
        self.page.context.close()


BUILD_INPUTS = ("book", "_config.yml", "_toc.yml", "stnlib", "results")
NOT_INPUTS = ROOT / "results" / SMOKE_ROOT  # runs in progress and the chapters' smoke runs, written while tests run


def newest_mtime(paths) -> float:
    newest = 0.0
    for path in paths:
        path = ROOT / path
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                                               and not p.is_relative_to(NOT_INPUTS))
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


@dataclass
class Site:
    """The browser and the base URL of the local HTTP server over the built book."""

    browser: Browser
    base: str
    html: Path


@pytest.fixture(scope="module")
def site(book_html):
    """Chromium (under Playwright) plus a local HTTP server over the built book."""
    exe = find_chromium()
    if exe is None:
        if NO_CHROMIUM_MARKER.is_file():
            pytest.skip(NO_CHROMIUM_MARKER.read_text().strip())
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/setup.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (bash scripts/setup.sh, or apt-get install chromium)")
    missing = web.check_vendored()
    assert not missing, f"web assets missing ({missing}): run `python -m stnbook.web vendor`, then rebuild the book"
    handler = functools.partial(QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS)
            try:
                yield Site(browser, f"http://127.0.0.1:{server.server_address[1]}/", book_html)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def open_page(site: Site, page: str) -> Tab:
    tab = Tab.open(site.browser)
    try:
        tab.page.goto(site.base + page, wait_until="load")
        # MathJax typesets after load (its startup promise settles when it has); fonts shift the layout as they come
        tab.page.evaluate("async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise) "
                          "await MathJax.startup.promise; await document.fonts.ready; }")
        # the embed manager renders widgets on load
        tab.page.wait_for_function(
            "() => document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length === 0"
            " || document.querySelectorAll('.jupyter-widgets').length > 0", timeout=30_000)
    except BaseException:
        tab.close()
        raise
    return tab


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
    tab = open_page(site, page)
    try:
        report = tab.page.evaluate(PAGE_REPORT)
        tab.screenshot(screenshot_dir() / (Path(page).stem + ".png"))
        problems = tab.problems()
    finally:
        tab.close()
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
        url = site.base + str(Path(page).parent / report["download"][0])
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

def explorer_state(page: PlaywrightPage, index: int) -> dict:
    """The explorer's config, the theta it reports, and its output canvas read back at the pixel centres."""
    return page.evaluate("""(index) => {
      const e = document.querySelectorAll('.stn-explorer')[index], ex = e.stnExplorer;
      const c = e.querySelector('canvas.stn-output'), z = c.width / ex.outW, d = c.getContext('2d');
      const px = [];
      for (let i = 0; i < ex.outH; i++) for (let j = 0; j < ex.outW; j++)
        px.push(d.getImageData(Math.floor((j + 0.5) * z), Math.floor((i + 0.5) * z), 1, 1).data[0]);
      return {config: JSON.parse(JSON.stringify(ex.cfg)), theta: JSON.parse(e.getAttribute('data-stn-theta')),
              family: ex.family, pixels: px, h: ex.outH, w: ex.outW, renders: Number(e.getAttribute('data-stn-renders'))};
    }""", index)


def ready_explorer(page: PlaywrightPage, index: int) -> Locator:
    """The index-th explorer once it is mounted, without error, and its output canvas is visible."""
    explorer = page.locator(".stn-explorer").nth(index)
    expect(explorer).to_have_attribute("data-stn-mounted", "1")
    assert explorer.get_attribute("data-stn-error") is None, explorer.get_attribute("data-stn-error")
    expect(explorer.locator("canvas.stn-output")).to_be_visible()
    return explorer


def wait_redrawn(page: PlaywrightPage, index: int, renders: int) -> None:
    """Until the index-th explorer has drawn more than ``renders`` times."""
    page.wait_for_function("([index, renders]) => Number(document.querySelectorAll('.stn-explorer')[index]"
                           ".getAttribute('data-stn-renders')) > renders", arg=[index, renders])


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


def drag_slider_to(page: PlaywrightPage, slider: Locator, value: float) -> None:
    """Drag a range input's thumb with the mouse to ``value``, starting from the middle of the range.

    ``hover`` waits until the slider is visible, stable and not covered, scrolls it into view and puts the
    pointer on its centre, where the thumb of a slider at its midpoint is. Press there, move to ``value`` in
    steps and, before releasing, nudge the pointer by what is still missing (the thumb's own width shortens
    the track by a few pixels, which the first estimate ignores).
    """
    lo, hi = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    now = float(slider.input_value())
    assert now == (lo + hi) / 2, f"the slider starts at {now}, not at the middle of [{lo}, {hi}]"
    slider.hover()
    box = slider.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    per_unit = box["width"] / (hi - lo)
    page.mouse.down()
    x += (value - now) * per_unit
    page.mouse.move(x, y, steps=8)
    for _ in range(8):  # each nudge is a mouse move that is still part of the same drag
        got = float(slider.input_value())
        if got == value:
            break
        x += (value - got) * per_unit
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


@pytest.mark.slow
def test_anatomy_rotation_slider_turns_the_digit_like_stnlib(site):
    if "book/anatomy.html" not in PAGES:
        pytest.skip("no anatomy chapter in _toc.yml")
    tab = open_page(site, "book/anatomy.html")
    page, shots = tab.page, screenshot_dir()
    try:
        assert page.locator(".stn-explorer").count() >= 1, "no in-page explorer on the page"
        explorer = ready_explorer(page, 0)
        slider = explorer.locator(ROTATION)
        shown = explorer.locator(f"label:has({ROTATION}) output")  # the angle the page displays next to it
        expect(slider).to_be_visible()
        expect(shown).to_have_text("0.00")
        start = explorer_state(page, 0)
        digit = config_image(start["config"])
        from stnlib.data import load_mnist

        images, _ = load_mnist("test")
        assert torch.equal(digit, images[0].float().div(255)[None]), "the explorer shows MNIST test digit 0"
        assert start["family"] == "affine" and start["theta"] == [1, 0, 0, 0, 1, 0]
        assert_canvas_is(start, digit, "identity")
        tab.screenshot(shots / "anatomy-explorer-identity.png", explorer)

        # drag the rotation slider's thumb with the mouse from the middle (0 degrees) to 90 degrees ...
        drag_slider_to(page, slider, 90)
        dragged = float(slider.input_value())
        assert 60 <= dragged <= 120, f"dragging the slider moved it to {dragged} degrees"
        wait_redrawn(page, 0, start["renders"])
        expect(shown).to_have_text(f"{dragged:.2f}")
        mid = explorer_state(page, 0)
        assert_canvas_is(mid, library_output(mid), f"rotation {dragged} deg")
        # ... then with the arrow keys, as a keyboard user would: to exactly 90 degrees if the drag fell short,
        # and one degree past it and back in any case
        keys = ["ArrowRight" if dragged < 90 else "ArrowLeft"] * int(abs(dragged - 90)) + ["ArrowRight", "ArrowLeft"]
        for key in keys:
            before = explorer_state(page, 0)["renders"]
            slider.press(key)
            wait_redrawn(page, 0, before)
            if key == "ArrowRight" and float(slider.input_value()) == 91:
                expect(shown).to_have_text("91.00")
                past = explorer_state(page, 0)
                assert_canvas_is(past, library_output(past), "rotation 91 deg (keyboard)")
        expect(shown).to_have_text("90.00")
        rot = explorer_state(page, 0)
        assert rot["theta"] == pytest.approx([0, -1, 0, 1, 0, 0], abs=1e-6), rot["theta"]
        assert_canvas_is(rot, torch.rot90(digit, 1, dims=(1, 2)), "rotation 90 deg vs torch.rot90")
        assert np.abs(np.array(rot["pixels"]) - as_canvas(digit).ravel()).max() > 100  # the digit did move
        tab.screenshot(shots / "anatomy-explorer-rot90.png", explorer)
        problems = tab.problems()
    finally:
        tab.close()
    assert problems == {"failed requests": [], "console errors": []}, problems


@pytest.mark.slow
def test_conventions_projective_corners_and_tps_points_drag_like_stnlib(site):
    if "book/conventions.html" not in PAGES:
        pytest.skip("no conventions page in _toc.yml")
    tab = open_page(site, "book/conventions.html")
    page = tab.page
    try:
        families = page.evaluate("[...document.querySelectorAll('.stn-explorer')].map(e => e.stnExplorer.family)")
        assert families == ["projective", "tps"], families
        for index, (name, handle) in enumerate([("projective", 0), ("tps", 5)]):
            explorer = ready_explorer(page, index)
            source = explorer.locator("canvas.stn-input")
            expect(source).to_be_visible()
            before = explorer_state(page, index)
            assert_canvas_is(before, config_image(before["config"]), f"{name} identity")
            # where the handle is drawn on the input canvas, in the canvas's own CSS pixels
            at = page.evaluate("""([index, handle]) => {
              const ex = document.querySelectorAll('.stn-explorer')[index].stnExplorer;
              const h = ex.handles()[handle], v = ex.toView(h[0], h[1]), r = ex.inCanvas.getBoundingClientRect();
              return {x: v[0] * r.width / ex.inCanvas.width, y: v[1] * r.height / ex.inCanvas.height};
            }""", [index, handle])
            source.hover(position=at)  # scrolled into view, stable, not covered: the pointer is on the handle
            box = source.bounding_box()
            x, y = box["x"] + at["x"], box["y"] + at["y"]
            page.mouse.down()
            page.mouse.move(x + 25, y + 18, steps=8)
            page.mouse.up()
            wait_redrawn(page, index, before["renders"])
            after = explorer_state(page, index)
            assert after["theta"] != before["theta"], f"dragging a {name} handle did not change theta"
            assert_canvas_is(after, library_output(after), f"{name} after a drag")
            assert np.abs(np.array(after["pixels"]) - np.array(before["pixels"])).max() > 50, f"{name} output unchanged"
            tab.screenshot(screenshot_dir() / f"conventions-{name}-dragged.png", explorer)
        problems = tab.problems()
    finally:
        tab.close()
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
    tab = Tab.open(site.browser)
    page = tab.page
    try:
        page.set_content(f"<!DOCTYPE html><html><head></head><body>{html}</body></html>")
        explorer = ready_explorer(page, 0)
        index = explorer.locator('input[data-stn-param="index"]')
        index.focus()
        for k in range(3):
            expect(explorer.locator(".stn-info")).to_have_text(notes[k])
            state = explorer_state(page, 0)
            assert state["theta"] == pytest.approx(thetas[k].tolist(), abs=1e-6)
            expected = warp(digits[k][None], thetas[k][None], "affine", (20, 20))[0]
            assert_canvas_is(state, expected, f"gallery item {k}")
            assert page.evaluate("document.querySelector('.stn-info').textContent") == notes[k]
            if k == 1:
                tab.screenshot(screenshot_dir() / "standalone-gallery.png", explorer)
            if k < 2:
                index.press("ArrowRight")
                wait_redrawn(page, 0, state["renders"])
        problems = tab.problems()
    finally:
        tab.close()
    assert problems == {"failed requests": [], "console errors": []}, problems


# ------------------------------------------------------------------------------ the live page, against PyTorch

LIVE = "book/live.html"
LIVE_SETTINGS = [  # (what the test sets through the page's API, then checks against PyTorch)
    {"model": "r-st-cnn-affine", "digit": 4, "rotation": 60, "size": 0.9, "dx": 0.1, "dy": -0.05},
    {"model": "r-st-fcn-affine", "digit": 17, "rotation": -120, "size": 1.2, "dx": -0.15, "dy": 0.2},
    {"model": "r-st-cnn-affine", "digit": 29, "rotation": 0, "size": 1, "dx": 0, "dy": 0},
]


def assert_live_matches_pytorch(result: dict, digits: dict) -> None:
    """The page's input is stnlib's warp of the digit with the distortion theta the sliders define, and its
    logits, theta and transformer output are what the PyTorch model computes on that input."""
    from stnbook import live
    from stnlib.export import ExportWrapper
    from stnlib.transforms import affine_from_params

    p = result["params"]
    a = affine_from_params(p["rotation"], 1 / p["size"], 1 / p["size"])
    expected_theta = a.clone()
    expected_theta[2] = -(a[0] * p["dx"] + a[1] * p["dy"])
    expected_theta[5] = -(a[3] * p["dx"] + a[4] * p["dy"])
    assert result["distortion"] == pytest.approx(expected_theta.tolist(), abs=1e-6), "slider -> distortion theta"
    if isinstance(result["digit"], int):
        raw = base64.b64decode(digits["images"][result["digit"]])
        source = torch.frombuffer(bytearray(raw), dtype=torch.uint8).float().div(255).reshape(1, 1, 28, 28)
        expected_input = warp(source, expected_theta[None], "affine")
        got_input = torch.tensor(result["input"]).reshape(1, 1, 28, 28)
        assert (got_input - expected_input).abs().max() < 1e-5, "the page's warp differs from stnlib's"
    x = torch.tensor(result["input"], dtype=torch.float32).reshape(1, 1, 28, 28)
    _, model = live.live_model(result["model"])
    with torch.no_grad():
        logits, theta, output = ExportWrapper(model)(x)
    what = f"{result['model']} at {p}"
    assert (torch.tensor(result["logits"]) - logits[0]).abs().max() < 1e-3, f"{what}: logits"
    assert (torch.tensor(result["theta"]) - theta[0]).abs().max() < 1e-4, f"{what}: theta"
    assert (torch.tensor(result["output"]) - output[0].flatten()).abs().max() < 1e-4, f"{what}: output"
    assert int(np.argmax(result["probs"])) == int(logits.argmax()), f"{what}: top prediction"


@pytest.mark.slow
def test_live_page_runs_the_exported_models_like_pytorch(site):
    """onnxruntime-web in the page computes, for digits the test turns, resizes and moves through the page's own
    controls, the logits, theta and transformer output PyTorch computes; a digit drawn with the mouse is read."""
    if LIVE not in PAGES:
        pytest.skip("no live page in _toc.yml")
    digits = json.loads((site.html / "_static/stn/live/digits.json").read_text())
    tab = open_page(site, LIVE)
    page, shots = tab.page, screenshot_dir()
    try:
        demo = page.locator(".stn-live")
        expect(demo).to_have_attribute("data-stn-mounted", "1")
        assert demo.get_attribute("data-stn-error") is None, demo.get_attribute("data-stn-error")
        first = page.evaluate("() => document.querySelector('.stn-live').stnLive.last")
        assert first["params"]["rotation"] == 40
        assert_live_matches_pytorch(first, digits)
        tab.screenshot(shots / "live-demo.png", demo)
        results = [page.evaluate("(p) => document.querySelector('.stn-live').stnLive.set(p)", s) for s in LIVE_SETTINGS]
        for result in results:
            assert_live_matches_pytorch(result, digits)
        # a slider dragged with the mouse reruns the network
        runs = int(demo.get_attribute("data-stn-runs"))
        drag_slider_to(page, demo.locator('input[data-stn-live-param="rotation"]'), 45)
        page.wait_for_function("(n) => Number(document.querySelector('.stn-live').getAttribute('data-stn-runs')) > n",
                               arg=runs)
        dragged = page.evaluate("() => document.querySelector('.stn-live').stnLive.busy || "
                                "document.querySelector('.stn-live').stnLive.last")
        assert 30 <= dragged["params"]["rotation"] <= 60
        assert_live_matches_pytorch(dragged, digits)
        # drawing: a vertical stroke down the middle, drawn with the mouse, is a digit the network reads
        page.evaluate("() => document.querySelector('.stn-live').stnLive.set({rotation: 0, size: 1, dx: 0, dy: 0})")
        demo.get_by_role("button", name="draw a digit").click()
        canvas = demo.locator("canvas.stn-live-input")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8, steps=20)
        page.mouse.up()
        drawn = page.evaluate("async () => { const l = document.querySelector('.stn-live').stnLive; "
                              "await (l.busy || l.last); return l.busy ? await l.busy : l.last; }")
        assert drawn["digit"] == "drawn" and sum(drawn["input"]) > 20, "the stroke did not reach the input"
        assert_live_matches_pytorch(drawn, digits)
        tab.screenshot(shots / "live-demo-drawn.png", demo)
        problems = tab.problems()
    finally:
        tab.close()
    assert problems == {"failed requests": [], "console errors": []}, problems


@pytest.mark.slow
def test_live_page_says_why_it_cannot_run_from_a_file_address(site):
    if LIVE not in PAGES:
        pytest.skip("no live page in _toc.yml")
    tab = Tab.open(site.browser)
    try:
        tab.page.goto((site.html / LIVE).as_uri(), wait_until="load")
        demo = tab.page.locator(".stn-live")
        expect(demo).to_have_attribute("data-stn-error", re.compile("file://"))
        expect(demo.locator(".stn-live-status")).to_contain_text("http.server")
    finally:
        tab.close()
