"""The GPU path: transforms, sampler, spatial transformers, the trainer and a Table 1 model on CUDA.

Every test here needs a CUDA device and is skipped, with that reason, where there is none (as in CI).
Run them on a GPU machine with ``python -m pytest tests/test_cuda.py`` (the README's "GPU" section).
CUDA's ``grid_sample`` backward accumulates with atomic adds, so GPU results are compared with
tolerances, never bit for bit.
"""

import pytest
import torch
from torch import nn

from stnlib import SpatialTransformer, available_transforms, bilinear_sample, get_transform, trilinear_sample
from stnlib.models import ModelConfig, build_model
from stnlib.train import TrainConfig, Trainer, autocast, resolve_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

FAMILIES = available_transforms()


def random_theta(name: str, batch: int, gen: torch.Generator) -> torch.Tensor:
    t = get_transform(name)
    return t.identity().repeat(batch, 1) + 0.1 * torch.randn(batch, t.num_params, generator=gen)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_and_sampler_on_cuda_equal_the_cpu(name, align_corners):
    gen = torch.Generator().manual_seed(0)
    t = get_transform(name)
    theta = random_theta(name, 4, gen)
    size = (7, 9, 11) if t.ndim == 3 else (23, 31)
    x = torch.rand(4, 2, *size, generator=gen)
    sample = trilinear_sample if t.ndim == 3 else bilinear_sample
    grid_cpu = t.grid(theta, size, align_corners)
    grid_gpu = t.grid(theta.cuda(), size, align_corners)
    torch.testing.assert_close(grid_gpu.cpu(), grid_cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample(x.cuda(), grid_gpu, align_corners).cpu(),
                               sample(x, grid_cpu, align_corners), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["affine", "projective", "tps"])
def test_theta_gradients_on_cuda_equal_the_cpu(name):
    gen = torch.Generator().manual_seed(1)
    t = get_transform(name)
    x = torch.rand(3, 1, 28, 28, generator=gen)
    grads = []
    for dev in ("cpu", "cuda"):
        theta = random_theta(name, 3, torch.Generator().manual_seed(2)).to(dev).requires_grad_()
        out = bilinear_sample(x.to(dev), t.grid(theta, (28, 28)))
        (out ** 2).sum().backward()
        grads.append(theta.grad.cpu())
    # sample points on pixel edges make the sub-gradients differ slightly between implementations
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-2, atol=1e-3)


def test_auto_device_is_cuda():
    assert resolve_device("auto").type == "cuda"


class DigitLikeData:
    """A bright square at a random place on a 28x28 canvas; the class is its quadrant (step-indexed)."""

    def batch(self, step: int):
        g = torch.Generator().manual_seed(step)
        xy = torch.randint(2, 22, (64, 2), generator=g)
        x = torch.zeros(64, 1, 28, 28)
        for i, (cx, cy) in enumerate(xy.tolist()):
            x[i, 0, cy:cy + 5, cx:cx + 5] = 1.0
        y = (xy[:, 0] >= 12).long() + 2 * (xy[:, 1] >= 12).long()
        return x, y


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_st_cnn_trains_20_steps_on_cuda(precision, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", "affine", (28, 28), num_classes=4, width=16))
    cfg = TrainConfig(steps=20, lr=3e-3, device="cuda", progress=False, log_every=5, precision=precision,
                      channels_last=True)
    result = Trainer(model, cfg, run_dir=tmp_path).fit(DigitLikeData(), eval_data=DigitLikeData().batch(999))
    assert next(model.parameters()).device.type == "cuda"
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0], losses
    with autocast("cuda", precision):
        _, theta = model.transform_input(DigitLikeData().batch(5)[0].cuda())
    assert theta.dtype == torch.float32  # the geometry stays in fp32 under autocast
    assert result["hardware"]["cuda_device"]


def test_spatial_transformer_alone_trains_on_cuda():
    torch.manual_seed(0)
    st = SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU()), "affine").cuda()
    target = torch.zeros(8, 1, 28, 28, device="cuda")
    target[:, :, 10:18, 10:18] = 1
    x = torch.roll(target, shifts=(3, -2), dims=(2, 3))
    opt = torch.optim.Adam(st.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        out, _ = st(x)
        loss = ((out - target) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_checkpoint_resume_on_cuda(tmp_path):
    def fresh():
        torch.manual_seed(0)
        return build_model(ModelConfig("cnn", "affine", (28, 28), num_classes=4, width=8))

    cfg = TrainConfig(steps=12, lr=1e-3, device="cuda", progress=False, checkpoint_every=6, log_every=3)

    full = Trainer(fresh(), cfg, run_dir=tmp_path / "a").fit(DigitLikeData())
    # interrupted at step 6 (a callback asks to stop), then resumed by a second fit in the same run_dir
    from stnlib.train import Callback

    class Stop(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 6:
                trainer.request_stop()

    part = Trainer(fresh(), cfg, callbacks=[Stop()], run_dir=tmp_path / "b").fit(DigitLikeData())
    assert not part["finished"] and part["steps"] == 6
    model = fresh()
    resumed = Trainer(model, cfg, run_dir=tmp_path / "b").fit(DigitLikeData())
    assert resumed["finished"] and resumed["steps"] == 12
    for a, b in zip(full["history"], resumed["history"]):
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3, abs=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP with NCCL needs two GPUs")
def test_ddp_nccl_two_gpus(tmp_path):
    import socket

    import ddp_worker
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rank0.pt"
    mp.spawn(ddp_worker.nccl_worker, args=(2, port, str(tmp_path / "run"), str(out)), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)
    assert saved["seen"] == [8] * 8  # each rank trains on its half of every global batch of 16
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in saved["history"])
