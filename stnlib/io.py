"""Atomic file writes and checked loads, so an interrupted run never leaves a half-written file.

Every file stnlib writes (datasets, checkpoints, results) goes through :func:`atomic_open`: the data
is written to a temporary file in the destination's directory, flushed and fsynced, then moved over
the destination with ``os.replace``. A reader therefore sees either the old file or the complete new
one, never a prefix, and the temporary file is removed on any failure (including KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

# mkstemp creates files with mode 0o600; published files should get the usual umask-derived mode
# instead. The umask can only be read by setting it, so do that once, at import time, rather than
# on every write where it could race with other threads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears under ``path`` only if the block succeeds.

    Parent directories are created. If the ``with`` block raises, the temporary file is deleted and
    an existing file at ``path`` is left untouched, so a caller can validate what it wrote (a
    checksum, say) and raise inside the block to discard it.

    Args:
        path: Destination file.

    Yields:
        A binary file object positioned at the start of an empty temporary file.

    Examples:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "sub" / "x.bin"
        >>> with atomic_open(target) as f:
        ...     _ = f.write(b"abc")
        >>> target.read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a completed rename durable across a power loss (POSIX only; best effort)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (UTF-8 by default).

    Newlines are written as given (no platform translation), so files are byte-identical across
    operating systems.
    """
    atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a failed save leaves any old file intact.

    To stay loadable with :func:`safe_torch_load`, ``obj`` should contain only tensors, plain
    containers (dict, list, tuple) and Python scalars/strings.
    """
    with atomic_open(path) as f:
        torch.save(obj, f)


def safe_torch_load(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`atomic_torch_save`, refusing to execute arbitrary pickles.

    Uses ``torch.load(..., weights_only=True)``, which only reconstructs tensors and plain Python
    containers, so loading a file from elsewhere cannot run code.

    Args:
        path: File to load.
        map_location: Passed to ``torch.load``; tensors are loaded onto the CPU by default.

    Returns:
        The saved object.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        RuntimeError: The file exists but cannot be loaded (truncated, corrupt, not a torch file,
            or holding types that ``weights_only`` does not allow). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: '{path}'.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"Could not load '{path}': the file is corrupt or incompatible with this version of "
            f"stnlib/torch ({type(e).__name__}: {e}). It is safe to delete it and regenerate it."
        ) from e


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the lowercase hex SHA-256 of the file at ``path``, read in ``chunk_size`` chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
