"""Where the project's folders are, so chapters (run from book/) and scripts (run from anywhere) agree.

The project root is ``$STNLIB_ROOT`` if set, else the nearest folder above the working directory
that holds both ``_config.yml`` and ``stnlib/``, else the folder above this package (an editable
install). Relative data and results paths are resolved against it.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The STN Book checkout this code runs in (see module docstring)."""
    env = os.environ.get("STNLIB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "stnlib").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` as given if absolute or present under the working directory, else under the project root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return project_root() / p


def results_dir() -> Path:
    """The committed artifacts folder, ``<root>/results``."""
    return project_root() / "results"
