"""Analyses the chapters compute from committed artifacts, kept beside them so a chapter computes each only once.

Some chapter numbers take a minute or more to compute from the committed models (a loss landscape over a grid of
window offsets, every co-localisation model classifying its crops), and every execution of the chapter (the book
build, the output check, a reader's run) would pay for them again. :func:`remember` keeps such a result in
``results/memo/<name>.pt`` with a key: the sha256 of the files it is computed from (whole folders of artifacts), of
the source of the packages that compute it (:mod:`stnlib` always, and the ones named), and of its arguments. A kept
result is used only when its key matches and it loads with ``weights_only=True``; otherwise the result is computed
again and replaces the kept one, which is derived data (the artifacts it comes from are never touched). Results of
the smoke profile, whose artifacts every run remakes, are not kept (``keep=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch

from stnbook.paths import results_dir
from stnlib.io import atomic_torch_save, safe_torch_load

T = TypeVar("T")
_DIGESTS: dict[tuple, str] = {}  # folder digests by (folder, every file's name, size and mtime)


def memo_dir() -> Path:
    """Where kept results live: ``<root>/results/memo``."""
    return results_dir() / "memo"


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*")
                  if p.is_file() and not {"__pycache__", "smoke"} & set(p.relative_to(path).parts))


def digest(paths: Sequence[str | os.PathLike[str]]) -> str:
    """sha256 over the relative names and contents of every file under ``paths`` (files or folders; one that does
    not exist counts as an empty folder), leaving out ``smoke`` folders (remade by every smoke run) and ``__pycache__``.
    Folder digests are reused within a process while no file's size or mtime changes.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / "a.txt").write_text("1")
        1
        >>> before = digest([d]); (d / "a.txt").write_text("2")
        1
        >>> before != digest([d]), digest([d / "missing"]) == digest([d / "absent"])
        (True, True)
    """
    h = hashlib.sha256()
    for path in map(Path, paths):
        files = _files(path)
        stamp = (str(path.resolve()), tuple((str(p), s.st_size, s.st_mtime_ns) for p in files if (s := p.stat())))
        if stamp not in _DIGESTS:
            inner = hashlib.sha256()
            for p in files:
                inner.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + b"\0")
                inner.update(hashlib.sha256(p.read_bytes()).digest())
            _DIGESTS[stamp] = inner.hexdigest()
        h.update(_DIGESTS[stamp].encode())
    return h.hexdigest()


def _source_folder(module: ModuleType) -> Path:
    file = Path(module.__file__)
    return file.parent if file.name == "__init__.py" else file


def key(inputs: Sequence[str | os.PathLike[str]], code: Sequence[ModuleType] = (), args: Any = None) -> str:
    """The key of a result computed from the files under ``inputs`` by the packages ``code`` (and :mod:`stnlib`)
    with ``args`` (anything :func:`json.dumps` can write, tuples as lists)."""
    import stnlib

    sources = [_source_folder(m) for m in (stnlib, *code)]
    text = json.dumps(args, sort_keys=True, default=repr)
    return hashlib.sha256(f"{digest(inputs)} {digest(sources)} {text}".encode()).hexdigest()


def _check_plain(value: Any, where: str = "the result") -> None:
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"a kept result holds only plain data; {where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"a kept result holds only plain data (tensors, lists, dicts, numbers, strings, None); "
                    f"{where} is a {type(value).__name__}")


def _checked(value: T) -> T:
    _check_plain(value)
    return value


def remember(name: str, compute: Callable[[], T], *, inputs: Sequence[str | os.PathLike[str]],
             code: Sequence[ModuleType] = (), args: Any = None, keep: bool = True) -> T:
    """``compute()``, or the result kept under ``name`` when its key (:func:`key` of ``inputs``, ``code`` and
    ``args``) matches. With ``keep`` the computed result is kept (atomically) for the next run; the result must
    hold only tensors, plain containers, numbers, strings and None (``weights_only=True`` loads it).

    Examples:
        >>> import tempfile
        >>> os.environ["STNBOOK_ROOT"] = tempfile.mkdtemp()
        >>> calls = []
        >>> def work():
        ...     calls.append(1)
        ...     return {"loss": 0.5}
        >>> [remember("demo", work, inputs=[], args={"n": 3}) for _ in range(2)], len(calls)
        ([{'loss': 0.5}, {'loss': 0.5}], 1)
        >>> remember("demo", work, inputs=[], args={"n": 4}), len(calls)  # other arguments: computed again
        ({'loss': 0.5}, 2)
        >>> del os.environ["STNBOOK_ROOT"]
    """
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"a kept result's name is a relative path such as 'colocalisation/landscape', got {name!r}")
    path = memo_dir() / f"{name}.pt"
    if not keep and not path.is_file():  # nothing to reuse or keep: no key to compute
        return _checked(compute())
    want = key(inputs, code, args)
    if path.is_file():
        try:
            kept = safe_torch_load(path)
        except Exception as err:  # an unreadable file is computed again and replaced
            print(f"memo: {path} does not load ({err}); computing it again", file=sys.stderr)
        else:
            if isinstance(kept, dict) and kept.get("key") == want:
                return kept["value"]
    value = _checked(compute())
    if keep:
        atomic_torch_save({"key": want, "name": name, "value": value}, path)
    return value


def remember_analysis(experiment: str, name: str, compute: Callable[[], T], args: Any = None,
                      keep: bool = True) -> T:
    """:func:`remember` for a chapter's analysis of ``experiment``'s artifacts, kept as ``<experiment>/<name>``:
    keyed by every artifact under ``results/<experiment>``, the code of ``stnbook.<experiment>``,
    :mod:`stnbook.experiments` (which loads the artifacts) and :mod:`stnlib`, and ``args``."""
    import importlib

    import stnbook.experiments

    return remember(f"{experiment}/{name}", compute, inputs=[results_dir() / experiment],
                    code=[importlib.import_module(f"stnbook.{experiment}"), stnbook.experiments], args=args, keep=keep)
