"""Execute chapters in their default profile and store the outputs nbval compares.

Only cells tagged ``nbval-check-output`` keep their outputs (the reference nbval checks against);
all other outputs are stripped so the repository stays small and the book always renders fresh.

    .venv/bin/python tools/refresh_notebooks.py [book/anatomy.ipynb ...]   (default: every chapter)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "nbval-check-output" not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print("refreshed", path.relative_to(ROOT))


if __name__ == "__main__":
    from chapters import chapter_notebooks

    targets = [Path(a).resolve() for a in sys.argv[1:]] or chapter_notebooks()
    for p in targets:
        refresh(p)
