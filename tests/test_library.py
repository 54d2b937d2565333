"""stnlib stands alone: it never imports the book side (stnbook) or notebook tooling, and names no book paths."""

import ast
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "stnlib"
BOOK_ONLY = ("stnbook", "matplotlib", "IPython", "ipywidgets", "myst_nb", "nbformat", "papermill")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_file_imports_the_book_side():
    offenders = {str(p.relative_to(LIB)): sorted(m for m in imported_modules(p) if m.split(".")[0] in BOOK_ONLY)
                 for p in LIB.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_library_file_names_book_paths():
    for p in LIB.rglob("*.py"):
        text = p.read_text()
        for word in ("_config.yml", "results/", "results_dir", "project_root"):
            assert word not in text, f"{p.relative_to(LIB)} names {word!r}"


def test_importing_the_library_loads_nothing_of_the_book():
    code = ("import sys, stnlib, stnlib.train, stnlib.models, stnlib.data, stnlib.analysis, stnlib.geometry, "
            "stnlib.io; bad = sorted(m for m in sys.modules if m.split('.')[0] in %r); print(bad); "
            "sys.exit(1 if bad else 0)" % (BOOK_ONLY,))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
