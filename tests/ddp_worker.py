"""Worker of tests/test_ddp.py: one rank of a 2-process gloo run (imported by spawned processes)."""

from __future__ import annotations

import torch

from stnlib.models import ModelConfig, build_model
from stnlib.train import Callback, TrainConfig, Trainer, classification_loss

SEEN: list[int] = []  # batch sizes the loss saw in this process


def counting_loss(model, batch):
    SEEN.append(int(batch[0].shape[0]))
    return classification_loss(model, batch)


class Data:
    """A deterministic global batch per step: 12x12 images whose label is the side of a bright square."""

    def batch(self, step):
        g = torch.Generator().manual_seed(step)
        x = torch.rand(16, 1, 12, 12, generator=g) * 0.1
        y = torch.randint(0, 2, (16,), generator=g)
        for i in range(16):
            c = 2 if y[i] == 0 else 7
            x[i, 0, 4:8, c:c + 3] = 1.0
        return x, y


class Interrupt(Exception):
    pass


class StopAt(Callback):
    def __init__(self, step):
        self.stop = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.stop:
            raise Interrupt


def config() -> TrainConfig:
    return TrainConfig(steps=24, optimizer="sgd", lr=0.05, schedule="constant", checkpoint_every=8, log_every=4,
                       device="cpu", progress=False)


def model():
    torch.manual_seed(0)
    return build_model(ModelConfig("fcn", "affine", (12, 12), num_classes=2, width=16))


def train(run_dir, interrupt_at=None):
    """Fit (optionally interrupted at a step, then resumed by a fresh Trainer); returns (state, history)."""
    if interrupt_at is not None:
        try:
            Trainer(model(), config(), counting_loss, [StopAt(interrupt_at)], run_dir).fit(Data())
        except Interrupt:
            pass
    trainer = Trainer(model(), config(), counting_loss, run_dir=run_dir)
    result = trainer.fit(Data())
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, result["history"]


def worker(rank: int, world_size: int, port: int, run_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)
    try:
        state, history = train(run_dir, interrupt_at=13)
        if rank == 0:
            torch.save({"state": state, "history": history, "seen": SEEN}, out)
    finally:
        torch.distributed.destroy_process_group()


def nccl_worker(rank: int, world_size: int, port: int, run_dir: str, out: str) -> None:
    """One rank of a 2-GPU NCCL run of the same loop (tests/test_cuda.py)."""
    torch.cuda.set_device(rank)
    torch.distributed.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)
    try:
        cfg = TrainConfig(steps=8, optimizer="sgd", lr=0.05, schedule="constant", checkpoint_every=4, log_every=4,
                          device=f"cuda:{rank}", progress=False)
        result = Trainer(model(), cfg, counting_loss, run_dir=run_dir).fit(Data())
        if rank == 0:
            torch.save({"history": result["history"], "seen": SEEN}, out)
    finally:
        torch.distributed.destroy_process_group()
