"""What a reader sees in the built book (_build/html): the rendered text of every page, and what every page weighs.

* no Markdown table reaches a page as raw pipe text (a report's Markdown string printed, or displayed as
  ``text/markdown``, which myst-nb renders as CommonMark: no tables);
* no Markdown line of a chapter starts with ``%`` (MyST reads it as a comment and drops it);
* the pages speak of their experiments only: no words about how the book was written, no placeholders;
* no page, with everything it loads from the site itself, weighs more than 4 MB (unless listed, with a reason);
* the landing page states the scope: SVHN (Table 2) is not reproduced, the 3D transformer (A.3) is, on smaller volumes;
* chapters hide their plumbing: parameter cells, imports and CI asserts are removed from the HTML.
* chapters glue numbers, names and verdict words into their Markdown, never whole sentences: every value a
  report's ``key_numbers`` glues is short, and every key a chapter glues is one of them.

The book is built as tests/test_book.py builds it, but only when _build/html is missing or older than the
chapters, the book's configuration or the report modules (an up-to-date build is reused, e.g. the one
test_book.py's session fixture just made).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from chapters import ROOT, chapter_notebooks, toc_files

HTML_DIR = ROOT / "_build" / "html"
SKIP_DIRS = {"_static", "_sources", "_images", "screenshots", "reports", ".doctrees"}  # not pages a reader opens
BOOK_INPUTS = ["_config.yml", "_toc.yml", "book/*.ipynb", "book/*.md", "stnlib/reports/*.py"]

MARKDOWN_TABLE = [re.compile(r"^\s*\|.*\|\s*$"), re.compile(r"\|\s*:?-{3,}")]
# Words about how the book was written, and placeholders: the book speaks of its experiments only.
FORBIDDEN = [r"PAPER\.md", r"\.\./shared", r"\bissues?\b", r"\bsessions?\b", r"wrote this book", r"<this repository>", r"<hash>", r"\bTODO\b",
             r"placeholder", r"was not lent", r"no GPU was", r"low confidence"]
MAX_PAGE_BYTES = 4_000_000
HEAVY_PAGES = {  # page: why it may load more than MAX_PAGE_BYTES
    "book/distorted_mnist.html": "the Table 1 chapter: 36 cells, the rectification analysis and the transformer over "
                                 "training (15 figures and an animation), with MathJax for its formulas",
    "book/live.html": "it runs trained networks in the page: onnxruntime-web's WebAssembly binary (14 MB) and the "
                      "ONNX models, fetched by its script after the page has appeared (the page says so)",
}
# Files a page's own scripts fetch (not named by <script src>, <link href> or <img src>), counted in its weight.
SCRIPT_LOADS = {
    "book/live.html": ["_static/stn/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm",
                       "_static/stn/vendor/onnxruntime-web/ort-wasm-simd-threaded.mjs",
                       "_static/stn/live/r-st-cnn-affine.onnx", "_static/stn/live/digits.json"],
}
NOT_LOADED = {"next", "prev", "index", "search", "canonical", "alternate", "author", "help", "license", "glossary",
              "copyright", "top", "up", "first", "last", "contents"}  # <link rel> values that are not fetched


def book_inputs_mtime() -> float:
    return max(p.stat().st_mtime for pattern in BOOK_INPUTS for p in ROOT.glob(pattern))


@pytest.fixture(scope="session")
def html_dir() -> Path:
    """_build/html, built (as tests/test_book.py builds it) only when missing or older than the book's inputs."""
    pages = list(HTML_DIR.glob("**/*.html")) if HTML_DIR.is_dir() else []
    if not pages or max(p.stat().st_mtime for p in pages) < book_inputs_mtime():
        jb = Path(sys.executable).parent / "jupyter-book"
        proc = subprocess.run([str(jb), "build", str(ROOT), "--builder", "html", "-W", "-n", "--keep-going"],
                              cwd=ROOT, capture_output=True, text=True, timeout=1800)
        # a failed chapter is test_book's to report; the pages that were written are still checked here
        assert (HTML_DIR / "index.html").exists(), f"no book was built:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return HTML_DIR


def pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(html_dir).parts[:-1]))


class _Page(HTMLParser):
    """The visible text of a page (no script, style or template; block elements end a line) and the same-site
    resources it loads."""

    BLOCK = {"p", "div", "br", "tr", "li", "ul", "ol", "pre", "table", "section", "article", "h1", "h2", "h3", "h4",
             "h5", "h6", "blockquote", "dt", "dd", "figure", "figcaption", "caption", "hr", "details", "summary"}
    HIDDEN = {"script", "style", "template", "noscript", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hidden = 0
        self.loads: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        elif tag == "link" and a.get("href") and not set((a.get("rel") or "").lower().split()) & NOT_LOADED:
            self.loads.append(a["href"])
        elif tag in ("img", "source", "iframe", "embed") and a.get("src"):
            self.loads.append(a["src"])
        if tag in self.HIDDEN:
            self.hidden += 1
        if tag in self.BLOCK:
            self.text.append("\n")
        elif tag in ("td", "th"):
            self.text.append("\t")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        if tag in self.BLOCK:
            self.text.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.text.append(data)


def parse(page: Path) -> _Page:
    p = _Page()
    p.feed(page.read_text(errors="replace"))
    p.close()
    return p


def visible_text(page: Path) -> str:
    return "".join(parse(page).text)


def page_weight(page: Path, html_dir: Path) -> tuple[int, dict[str, int]]:
    """(bytes of the page and of every same-site file it loads by <script src>, <link href> or <img src>, uncompressed;
    those files with their sizes). Files fetched later by the scripts themselves (fonts, MathJax's own extensions)
    are not counted."""
    files = {}
    for url in parse(page).loads:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path:  # another site, or a data: URI (already in the page)
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if target.is_file() and html_dir.resolve() in target.parents:
            files[target.relative_to(html_dir.resolve()).as_posix()] = target.stat().st_size
    return page.stat().st_size + sum(files.values()), files


def markdown_lines(path: Path) -> list[tuple[str, str]]:
    """(where, line) for every line of the Markdown a chapter renders, outside code fences."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        sources = [(f"cell {i} ({c.get('id')})", "".join(c["source"])) for i, c in enumerate(cells)
                   if c["cell_type"] == "markdown"]
    else:
        sources = [("", path.read_text())]
    out = []
    for where, src in sources:
        fence = None
        for n, line in enumerate(src.splitlines(), 1):
            m = re.match(r"^\s*(`{3,}|~{3,}|:{3,})", line)
            if m:
                mark = m.group(1)
                if fence is None:
                    fence = mark
                elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[len(mark):].strip():
                    fence = None
                continue
            if fence is None:
                out.append((f"{where} line {n}".strip(), line))
    return out


# ---- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_markdown_table_is_printed_as_text(html_dir):
    bad = []
    for page in pages(html_dir):
        for line in visible_text(page).splitlines():
            if any(rx.search(line) for rx in MARKDOWN_TABLE):
                bad.append(f"{page.relative_to(html_dir)}: {line.strip()[:120]!r}")
    assert not bad, "Markdown tables rendered as raw text (display them as HTML):\n" + "\n".join(bad)


def test_no_markdown_line_starts_with_a_percent_sign():
    """MyST reads a line starting with % as a comment: the text vanishes from the page."""
    bad = [f"{path.relative_to(ROOT)} {where}: {line[:100]!r}"
           for path in toc_files() for where, line in markdown_lines(path) if line.lstrip().startswith("%")]
    assert not bad, "Markdown lines starting with % (MyST comments, dropped from the page):\n" + "\n".join(bad)


def test_percent_line_detection(tmp_path):
    """The check above sees a % line in a Markdown cell, and not one inside a code fence."""
    sample = tmp_path / "sample.md"
    sample.write_text("Some text\n% test error, dropped\n```bash\n% not markdown\n```\n")
    assert [line for _, line in markdown_lines(sample) if line.startswith("%")] == ["% test error, dropped"]


def test_markdown_table_detection(tmp_path):
    """The check above sees a pipe table that reached the page as a paragraph, not a real HTML table."""
    page = tmp_path / "page.html"
    page.write_text("<html><head><script>var a = '| x |';</script></head><body><p>| model | paper % |\n|---|---|\n"
                    "| CNN | 1.2 |</p><table><tr><th>model</th><td>1.2</td></tr></table></body></html>")
    lines = [ln for ln in visible_text(page).splitlines() if any(rx.search(ln) for rx in MARKDOWN_TABLE)]
    assert lines == ["| model | paper % |", "|---|---|", "| CNN | 1.2 |"]


@pytest.mark.slow
def test_pages_speak_of_their_experiments_only(html_dir):
    bad = []
    for page in pages(html_dir):
        text = visible_text(page)
        for pattern in FORBIDDEN:
            for m in re.finditer(pattern, text, re.I):
                context = " ".join(text[max(0, m.start() - 60):m.end() + 60].split())
                bad.append(f"{page.relative_to(html_dir)}: {m.group(0)!r} in ...{context}...")
    assert not bad, "words about how the book was written, or placeholders, on the pages:\n" + "\n".join(bad)


@pytest.mark.slow
def test_no_page_holds_widgets_that_need_a_kernel(html_dir):
    """Widgets (ipywidgets) in a static page render and never redraw: the chapters leave them out of the built book
    (stnbook.widgets.static_build) and show the in-page explorers instead."""
    bad = [p.relative_to(html_dir).as_posix() for p in pages(html_dir)
           if "application/vnd.jupyter.widget-view+json" in p.read_text(encoding="utf-8")]
    assert not bad, f"pages with ipywidgets views: {bad}"


@pytest.mark.slow
def test_page_weight(html_dir):
    weights = {}
    heavy = []
    for page in pages(html_dir):
        name = page.relative_to(html_dir).as_posix()
        total, files = page_weight(page, html_dir)
        for late in SCRIPT_LOADS.get(name, []):
            assert (html_dir / late).is_file(), f"{name} fetches {late}, which the build lacks"
            files[late] = (html_dir / late).stat().st_size
            total += files[late]
        weights[name] = total
        if total > MAX_PAGE_BYTES and name not in HEAVY_PAGES:
            top = sorted(files.items(), key=lambda kv: -kv[1])[:5]
            heavy.append(f"{name}: {total / 1e6:.2f} MB (page {page.stat().st_size / 1e6:.2f} MB; largest loads: "
                         + ", ".join(f"{f} {s / 1e6:.2f} MB" for f, s in top) + ")")
    print("\n".join(f"{w / 1e6:6.2f} MB  {n}" for n, w in sorted(weights.items())))
    assert weights, "no pages found"
    stale = set(HEAVY_PAGES) - {n for n, w in weights.items() if w > MAX_PAGE_BYTES}
    assert not stale, f"listed as heavy but not any more (drop them from HEAVY_PAGES): {sorted(stale)}"
    assert not heavy, f"pages over {MAX_PAGE_BYTES / 1e6:.0f} MB with what they load:\n" + "\n".join(heavy)


@pytest.mark.slow
def test_landing_page_states_the_scope(html_dir):
    text = " ".join(visible_text(html_dir / "book" / "intro.html").split())
    assert "SVHN (Table 2) is not reproduced" in text
    assert re.search(r"3D spatial transformer \(appendix A\.3, on 40x40x40 volumes", text), "the 3D chapter's scope is not stated"


def test_chapters_hide_their_plumbing():
    """Parameter cells, imports and CI asserts are removed from the HTML (the ``parameters`` tag stays for
    papermill); a cell that imports and does nothing else is plumbing."""
    bad = []
    for nb in chapter_notebooks():
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            if c["cell_type"] != "code":
                continue
            tags = set(c.get("metadata", {}).get("tags", []))
            src = "".join(c["source"])
            lines = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            plumbing = ("parameters" in tags or (lines and lines[0].startswith("%matplotlib"))
                        or all(re.match(r"\s*(import |from \S+ import |%matplotlib|assert |if profile\b)", ln)
                               for ln in lines))
            if plumbing and "remove-cell" not in tags:
                bad.append(f"{nb.name} cell {i} ({c.get('id')}): {lines[0][:80] if lines else ''!r}")
    assert not bad, "plumbing cells shown in the HTML (tag them remove-cell):\n" + "\n".join(bad)


GLUED_REPORTS = ("clutter", "depth", "volume3d")  # chapters that glue every value of their report's key_numbers()
MAX_GLUED_CHARS = 60  # a number, a model's name, a verdict word or a short budget; a sentence is longer


@pytest.mark.parametrize("experiment", GLUED_REPORTS)
def test_chapters_glue_short_values_not_sentences(experiment):
    """The sentences of a chapter live in its Markdown; what it glues in (``{glue:text}``) are numbers, names and
    verdict words, computed by the report from the committed results. A glued value longer than
    :data:`MAX_GLUED_CHARS` is a sentence built in Python."""
    import importlib

    report = importlib.import_module(f"stnbook.{experiment}.report")
    results, _ = report.chapter_results("artifacts")  # the committed full run (nothing is trained)
    numbers = report.key_numbers(results)
    too_long = {k: v for k, v in numbers.items() if not isinstance(v, str) or len(v) > MAX_GLUED_CHARS}
    assert not too_long, f"glued values longer than {MAX_GLUED_CHARS} characters (write the sentence in Markdown):\n" + \
        "\n".join(f"{k}: {v!r}" for k, v in too_long.items())
    assert not hasattr(report, "findings"), "a report builds whole sentences for its chapter"
    cells = json.loads((ROOT / "book" / f"{experiment}.ipynb").read_text())["cells"]
    glued = {k for c in cells if c["cell_type"] == "markdown"
             for k in re.findall(r"\{glue:text\}`([^`]+)`", "".join(c["source"]))}
    assert glued and glued <= set(numbers), f"glued but not in key_numbers(): {sorted(glued - set(numbers))}"


@pytest.mark.slow
def test_mathjax_loads_only_where_there_is_math(html_dir):
    """MathJax (1.2 MB and its fonts) is left out of pages with no formula (stnbook.web), and kept where there is one."""
    with_math, without = [], []
    for page in pages(html_dir):
        text = page.read_text(errors="replace")
        loads_it = any("mathjax" in url.lower() for url in parse(page).loads)
        has_math = 'class="math' in text
        assert loads_it == has_math, f"{page.relative_to(html_dir)}: math {has_math}, MathJax loaded {loads_it}"
        (with_math if has_math else without).append(page.name)
    assert "anatomy.html" in with_math and without  # the sampler's equations; and some page with none
