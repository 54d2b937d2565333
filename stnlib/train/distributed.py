"""Data-parallel training under ``torchrun``: process-group set-up, ranks, and sharding a global batch."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised ``torch.distributed`` group.

    Files, prints and progress bars are written by the main process only, so that data-parallel ranks
    running the same loop do not race on the same paths.
    """
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_rank() != 0)


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised ``torch.distributed`` group, or (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment (WORLD_SIZE > 1); no-op otherwise.

    Backend: NCCL when CUDA is available (each process on ``cuda:LOCAL_RANK``), else gloo on the CPU.
    Collectives time out after ``$STNLIB_DDP_TIMEOUT_S`` seconds (default 300) instead of torch's
    30 minutes, so a rank that died or stopped makes the others fail in minutes rather than hang.
    Returns True when this process is part of a multi-process group.

    Raises:
        ValueError: ``STNLIB_DDP_TIMEOUT_S`` is not a positive number.
    """
    import datetime  # local: this function is the only user

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not torch.distributed.is_initialized():
        raw = os.environ.get("STNLIB_DDP_TIMEOUT_S", "300")
        try:
            timeout_s = float(raw)
        except ValueError:
            timeout_s = math.nan
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"STNLIB_DDP_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """This rank's contiguous slice of a global batch (tensors split along dim 0 into equal parts).

    Equal shards make DistributedDataParallel's gradient average equal the full batch's mean gradient.
    """
    if world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0]
        if n % world_size:
            raise ValueError(f"a batch of {n} cannot be split evenly over {world_size} processes; "
                             f"use a batch size divisible by {world_size}")
        per = n // world_size
        return batch[rank * per:(rank + 1) * per]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(b, rank, world_size) for b in batch)
    if isinstance(batch, Mapping):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    return batch
