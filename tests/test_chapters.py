"""Chapters are tests: each notebook runs end to end in its smoke profile (papermill).

nbval (pytest --nbval-lax, configured in pyproject.toml) separately re-runs each chapter in its
default profile and compares the outputs of cells tagged ``nbval-check-output``.
"""

from __future__ import annotations

import json

import pytest
from chapters import ROOT, chapter_notebooks, toc_files

NOTEBOOKS = chapter_notebooks()


def test_every_chapter_is_in_the_toc_and_nothing_else_lies_around():
    listed = {p.resolve() for p in toc_files()}
    present = {p.resolve() for p in (ROOT / "book").glob("*") if p.suffix in (".ipynb", ".md")}
    assert present == listed, f"in book/ but not in _toc.yml (or the reverse): {present ^ listed}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_has_a_parameters_cell_and_no_stored_errors(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "the first code cell must be tagged 'parameters'"
    assert "profile" in "".join(code[0]["source"]), "the parameters cell must define `profile`"
    for c in code:
        src = "".join(c["source"])
        assert "!pip" not in src and "%pip" not in src, "chapters never install packages"
        assert all(o.get("output_type") != "error" for o in c.get("outputs", [])), "a stored output is an error"


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_runs_in_smoke_profile(nb, tmp_path):
    import papermill as pm

    out = tmp_path / nb.name
    pm.execute_notebook(str(nb), str(out), parameters={"profile": "smoke"}, kernel_name="python3",
                        cwd=str(nb.parent), execution_timeout=900, progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
