"""Where a run executes: device choice, the fastest accurate precision for it, seeding, and hardware facts."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from typing import Any

import torch
from torch import nn

from .config import PRECISIONS


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; any other name -> ``torch.device(name)``.

    Raises:
        RuntimeError: A CUDA device was asked for but CUDA is not available.
    """
    if isinstance(name, str) and name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # under torchrun, each process drives the GPU of its local rank
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(name)!r} was requested but CUDA is not available here; "
                           "use device='auto' or 'cpu'")
    return device


def autocast(device: str | torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """The mixed-precision context of a run: ``torch.autocast`` to bfloat16 for ``"bf16"``, else a no-op.

    Examples:
        >>> with autocast("cpu", "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # not Linux
        pass
    return set()


def fast_settings(device: str | torch.device = "auto", model: nn.Module | None = None) -> dict[str, Any]:
    """The fastest accurate ``precision`` / ``channels_last`` for training ``model`` on ``device``, as measured
    by ``python -m stnbook.cost.bench step``: bf16 autocast and channels-last for convolutional models on CPUs with
    bf16 instructions (AMX or AVX-512 BF16), where they make a step 2.6-3.9x faster; fp32 for fully connected
    models (bf16 makes their 1-7 ms steps slower), for models with 3D convolutions, and on other CPUs. On a GPU the
    book's small models are bound by kernel launches, not arithmetic, so fp32 costs nothing there.

    Examples:
        >>> fast_settings("cpu", nn.Linear(4, 2))
        {'precision': 'fp32', 'channels_last': False}
    """
    device = resolve_device(device)
    convolutional = model is None or any(isinstance(m, nn.Conv2d) for m in model.modules())
    # channels-last is a 4-D format (5-D weights refuse it), and bf16 made the 3D ST-CNN's step no faster
    volumetric = model is not None and any(isinstance(m, nn.Conv3d) for m in model.modules())
    if device.type == "cpu" and convolutional and not volumetric and _cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        return {"precision": "bf16", "channels_last": True}
    return {"precision": "fp32", "channels_last": False}


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator (if installed) and torch (CPU and all GPUs).

    On the CPU this, together with step-indexed data, makes training bit-reproducible. It does not
    switch on ``torch.use_deterministic_algorithms``: that flag is global, and on CUDA it turns
    ``grid_sample``'s backward (atomic adds, non-deterministic) into an error rather than a slower path.
    """
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for stnlib
        pass
    else:
        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def hardware_info(device: str | torch.device = "auto") -> dict[str, Any]:
    """What a timing was measured on: device, CPU model and count, torch threads and version, GPU name.

    Args:
        device: The device the run uses (``"auto"`` resolves as in :func:`resolve_device`).
    """
    device = resolve_device(device)
    info: dict[str, Any] = {
        "device": str(device),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
    }
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = str(torch.version.cuda)
    return info
