"""Data-parallel training: 2 gloo processes on the CPU match one process on the same global batch."""

from __future__ import annotations

import socket

import ddp_worker
import pytest
import torch
import torch.multiprocessing as mp

from stnlib.train import shard_batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_batch_splits_evenly_and_refuses_uneven():
    x, y = torch.arange(8.0), torch.arange(8)
    a, b = shard_batch((x, y), 0, 2), shard_batch((x, y), 1, 2)
    assert a[0].tolist() == [0, 1, 2, 3] and b[1].tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="divisible by 3"):
        shard_batch((x, y), 0, 3)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume(tmp_path):
    out = tmp_path / "ddp.pt"
    # interrupted at step 13 and resumed from the step-8 checkpoint, under DDP
    mp.spawn(ddp_worker.worker, args=(2, free_port(), str(tmp_path / "ddp_run"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    single_state, single_history = ddp_worker.train(tmp_path / "single_run")
    assert set(ddp["seen"]) == {8} and set(ddp_worker.SEEN) == {16}, "each rank trains on half the global batch"
    # Same global batch, gradients averaged over equal shards: equal up to float summation order.
    for k, v in single_state.items():
        torch.testing.assert_close(ddp["state"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert [h["step"] for h in ddp["history"]] == [h["step"] for h in single_history]
    for a, b in zip(ddp["history"], single_history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    assert single_history[-1]["error"] < single_history[0]["error"]  # it learned something
    # only rank 0 wrote files, and the run finished
    assert (tmp_path / "ddp_run" / "checkpoint.pt").exists() and (tmp_path / "ddp_run" / "config.json").exists()
