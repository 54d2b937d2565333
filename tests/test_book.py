"""The book builds offline with warnings as errors, and its pages carry the chapter figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chapters import ROOT, chapter_notebooks


@pytest.fixture(scope="session")
def built_book() -> Path:
    jb = Path(sys.executable).parent / "jupyter-book"
    shutil.rmtree(ROOT / "_build" / ".jupyter_cache", ignore_errors=True)
    proc = subprocess.run([str(jb), "build", str(ROOT), "--builder", "html", "-W", "-n", "--keep-going"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    reports = sorted((ROOT / "_build" / "html" / "reports").rglob("*.err.log")) if proc.returncode else []
    detail = "\n".join(p.read_text()[-3000:] for p in reports)
    assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}\n{detail}"
    return ROOT / "_build" / "html"


@pytest.mark.slow
def test_book_builds_and_every_chapter_has_figures(built_book):
    assert (built_book / "index.html").exists()
    for nb in chapter_notebooks():
        page = built_book / nb.relative_to(ROOT).with_suffix(".html")
        html = page.read_text()
        assert "Traceback" not in html, f"{page} shows a traceback"
        figures = re.findall(r'<img[^>]+src="[^"]+\.png"', html)
        assert len(figures) >= 2, f"{page} has {len(figures)} figures"


def test_pins_agree_everywhere():
    req = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    env = dict(re.findall(r"^\s+- ([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "environment.yml").read_text(), re.M))
    assert req == env, f"requirements.txt and environment.yml differ: {set(req.items()) ^ set(env.items())}"
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"
    assert req["jupyter-book"].startswith("1."), "the book is a Jupyter Book 1.x (_config.yml); 2.x needs the network"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/setup.sh" in ci and "scripts/test.sh" in ci
