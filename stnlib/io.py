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
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

# mkstemp creates files with mode 0o600; published files should get the usual umask-derived mode
# instead. The umask can only be read by setting it, so do that once, at import time, rather than
# on every write where it could race with other threads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# atomic_open's temporary files are named ".<name>.<random>.tmp"; mkstemp's random part is 8
# characters from [a-z0-9_]. remove_stale_temporaries matches exactly this form.
_TMP_SUFFIX = ".tmp"
_TMP_RANDOM = r"[a-z0-9_]{8}"


def _temp_prefix(name: str) -> str:
    return f".{name}."


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
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=_TMP_SUFFIX, dir=path.parent)
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


def remove_stale_temporaries(directory: str | os.PathLike[str], names: Iterable[str],
                             min_age_s: float = 600.0) -> list[Path]:
    """Delete the temporary files :func:`atomic_open` left behind for ``names`` when a process was killed.

    A killed process (SIGKILL, power loss) cannot run atomic_open's cleanup, so its hidden
    ``.<name>.<random>.tmp`` file stays. Only regular files of exactly that form, for the given
    destination names, and untouched for ``min_age_s`` seconds are removed: the age guard spares
    the temporary file of a write still in progress in another process, which keeps updating it.

    Args:
        directory: Folder holding the destination files.
        names: Destination file names (e.g. the four MNIST files) whose leftovers to remove.
        min_age_s: Minimum time since the last modification for a file to count as stale.

    Returns:
        The paths removed.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "x.bin").write_bytes(b"data")
        >>> _ = (d / ".x.bin.abcd1234.tmp").write_bytes(b"half")
        >>> [p.name for p in remove_stale_temporaries(d, ["x.bin"], min_age_s=0)]
        ['.x.bin.abcd1234.tmp']
        >>> sorted(p.name for p in d.iterdir())
        ['x.bin']
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    patterns = [re.compile(re.escape(_temp_prefix(n)) + _TMP_RANDOM + re.escape(_TMP_SUFFIX)) for n in names]
    now = time.time()
    removed = []
    for entry in directory.iterdir():
        if not any(p.fullmatch(entry.name) for p in patterns):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to delete: leave it
            st = entry.lstat()
            if entry.is_symlink() or not entry.is_file() or now - st.st_mtime < min_age_s:
                continue
            entry.unlink()
            removed.append(entry)
    return removed


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
