"""Where the project's folders are, so chapters (run from book/) and scripts (run from anywhere) agree.

The project root is ``$STNBOOK_ROOT`` if set, else the nearest folder above the working directory
that holds both ``_config.yml`` and ``stnbook/``, else the folder above this package (an editable
install). Relative data and results paths are resolved against it.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The STN Book checkout this code runs in (see module docstring)."""
    env = os.environ.get("STNBOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "stnbook").is_dir():
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


def data_dir() -> Path:
    """The checkout's data folder, ``<root>/data`` (MNIST under ``data/mnist``, CUB-200-2011 under
    ``data/CUB_200_2011`` when someone put it there)."""
    return project_root() / "data"


CUB_ROOT_ENV = "STNBOOK_CUB_ROOT"


def cub_root() -> Path:
    """Where CUB-200-2011 is looked for: ``$STNBOOK_CUB_ROOT`` if set (resolved like :func:`resolve`), else
    ``<root>/data/CUB_200_2011``. Either the unpacked ``CUB_200_2011`` folder or the folder holding it will do
    (:func:`stnlib.data.cub.find_root`)."""
    env = os.environ.get(CUB_ROOT_ENV)
    return resolve(env) if env else data_dir() / "CUB_200_2011"


def load_mnist(split: str):
    """:func:`stnlib.data.load_mnist` from the checkout's data folder, wherever the caller runs (chapters run from
    ``book/``)."""
    from stnlib.data import load_mnist as load

    return load(split, data_dir())
