"""The one training loop of stnlib: a step-indexed :class:`Trainer` with callbacks, a NaN guard and exact resume.

Every chapter and experiment trains through :meth:`Trainer.fit`; what differs between them lives in a
:class:`TrainConfig` (saved beside the results as ``config.json``), the model, the loss function and
callbacks. Training is counted in optimiser steps, not epochs: the data object hands out the batch for
step ``s`` (``train_data.batch(s)``), which makes a run, and a resumed run, reproducible bit for bit on
the CPU.

The paper (Jaderberg et al., 2015, Sec. 4.3 and A.3) trains the localisation net of the bird models at a
lower learning rate than the classifier; :attr:`TrainConfig.loc_lr_mult` is that knob.

Beyond one machine: under ``torchrun`` (call :func:`init_distributed_from_env` first, as the experiment
command does) the same loop runs data-parallel with ``DistributedDataParallel``: every rank draws the same
global batch for a step and trains on its equal slice (:func:`shard_batch`), gradients and logged metrics
are averaged over ranks, rank 0 alone writes checkpoints and results, and every rank resumes from them.
NCCL on GPUs, gloo on CPUs; no change in the chapters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .io import atomic_torch_save, atomic_write_text, safe_torch_load
from .spatial_transformer import ParallelSpatialTransformers, SpatialTransformer

__all__ = [
    "TrainConfig", "Trainer", "Callback", "TrainingDiverged", "BatchSource", "LossFn",
    "classification_loss", "evaluate", "lr_factor", "resolve_device", "seed_everything", "hardware_info",
    "count_parameters", "is_main_process", "autocast", "fast_settings", "StopAfter", "PRECISIONS",
]

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
# Bumped when the checkpoint layout changes, so an old file is reported instead of half-loaded.
CHECKPOINT_FORMAT = 1
PRECISIONS = ("fp32", "bf16")

# Fields that change how a run is watched or where it runs, not what it computes (on the CPU): a run may
# be resumed with different values. log_every only regroups history entries after the resume point.
RESUMABLE_FIELDS = frozenset({"progress", "eval_every", "log_every", "checkpoint_every", "device", "num_threads",
                              "precision", "channels_last"})


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the last checkpoint on disk is left untouched."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that decides how a model is trained (saved as ``config.json`` beside the results).

    Attributes:
        steps: Number of optimiser steps.
        batch_size: Informational: the data object produces the batches; recorded so results say it.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        lr: Base learning rate.
        momentum: SGD momentum (unused by Adam).
        weight_decay: L2 penalty passed to the optimiser, on every parameter.
        schedule: ``"constant"``, ``"cosine"`` (to 0 over the steps after warm-up) or ``"step"``.
        lr_decay_steps: For ``"step"``: after each of these many completed steps the rate is multiplied
            by ``lr_decay_factor``.
        lr_decay_factor: See ``lr_decay_steps``.
        warmup_steps: Linear warm-up from ``lr / warmup_steps`` to ``lr`` over the first steps.
        loc_lr_mult: Learning-rate multiplier for the parameters of every spatial transformer in the
            model (its localisation net and regression layer); the paper lowers it for the birds.
        grad_clip: Clip the global gradient norm to this value; ``None`` disables clipping.
        eval_every: Evaluate every this many steps; 0 evaluates only at the end.
        checkpoint_every: Write a checkpoint every this many steps (and always at the end); 0 only at the end.
        log_every: Append the mean training metrics of the last this many steps to the history.
        seed: Seed for the torch random streams the loop uses (dropout and the like).
        device: ``"auto"`` (CUDA when available, else CPU), or any ``torch.device`` string.
        num_threads: ``torch.set_num_threads`` value for the run; ``None`` leaves torch's setting.
        progress: Show a tqdm progress bar.
        precision: ``"fp32"``, or ``"bf16"``: forward and backward under ``torch.autocast`` with
            bfloat16 (convolutions and matrix products in bf16, everything else and the weights and
            optimiser in fp32). Spatial transformers keep their geometry (regression layer, grid,
            sampler) in fp32 under autocast.
        channels_last: Keep 4-D weights (and so activations) in the channels-last memory format, which
            oneDNN and cuDNN convolve faster.
    """

    steps: int
    batch_size: int = 128
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    lr_decay_steps: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1
    warmup_steps: int = 0
    loc_lr_mult: float = 1.0
    grad_clip: float | None = None
    eval_every: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    progress: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists back; keep the declared tuple so configs compare equal after a round trip.
        self.lr_decay_steps = tuple(int(s) for s in self.lr_decay_steps)
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "step"):
            problems.append(f"schedule must be 'constant', 'cosine' or 'step', got {self.schedule!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.loc_lr_mult < 0:
            problems.append(f"loc_lr_mult must be >= 0, got {self.loc_lr_mult}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if any(s < 1 for s in self.lr_decay_steps):
            problems.append(f"lr_decay_steps must be positive, got {self.lr_decay_steps}")
        if self.schedule == "step" and not self.lr_decay_steps:
            problems.append("schedule='step' needs lr_decay_steps, e.g. lr_decay_steps=(1000, 2000)")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            problems.append(f"log_every must be >= 1, got {self.log_every}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_threads is not None and self.num_threads < 1:
            problems.append(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists); :meth:`from_dict` inverts it."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. a loaded ``config.json``'s ``"config"``).

        Raises:
            ValueError: ``d`` has keys that are not fields (a typo would otherwise be silently dropped).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(names)}")
        return cls(**d)


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rate for the update made at 0-based ``step``.

    Linear warm-up over ``warmup_steps`` (``(step + 1) / warmup_steps``) times the schedule:
    ``"constant"`` is 1; ``"cosine"`` falls from 1 towards 0 over the steps after warm-up;
    ``"step"`` is ``lr_decay_factor ** (number of decay steps <= step)``, i.e. the rate drops once
    that many steps have been completed.

    Examples:
        >>> cfg = TrainConfig(steps=10, schedule="step", lr_decay_steps=(3,))
        >>> [round(lr_factor(cfg, s), 3) for s in (0, 2, 3, 9)]
        [1.0, 1.0, 0.1, 0.1]
        >>> lr_factor(TrainConfig(steps=10, warmup_steps=4, schedule="constant"), 0)
        0.25
    """
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.schedule == "cosine":
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, max(0.0, (step - config.warmup_steps) / span))
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif config.schedule == "step":
        decay = config.lr_decay_factor ** sum(step >= m for m in config.lr_decay_steps)
    else:
        decay = 1.0
    return warm * decay


# --------------------------------------------------------------------------------------------------
# Environment helpers
# --------------------------------------------------------------------------------------------------

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
    by ``python -m stnlib.bench step``: bf16 autocast and channels-last for convolutional models on CPUs with
    bf16 instructions (AMX or AVX-512 BF16), where they make a step 2.6-3.9x faster; fp32 for fully connected
    models (bf16 makes their 1-7 ms steps slower) and on other CPUs. On a GPU the book's small models are
    bound by kernel launches, not arithmetic, so fp32 costs nothing there.

    Examples:
        >>> fast_settings("cpu", nn.Linear(4, 2))
        {'precision': 'fp32', 'channels_last': False}
    """
    device = resolve_device(device)
    convolutional = model is None or any(isinstance(m, nn.Conv2d) for m in model.modules())
    if device.type == "cpu" and convolutional and _cpu_flags() & {"amx_bf16", "avx512_bf16"}:
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------------
# Loss and evaluation
# --------------------------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def classification_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``model(x)`` against integer labels ``y``.

    Args:
        model: Returns logits (B, K), or a tuple whose first element is the logits (a spatial
            transformer network may also return theta).
        batch: ``(x, y)`` with ``y`` of shape (B,) holding class indices.

    Returns:
        ``(loss, metrics)``: the mean loss (a scalar tensor to back-propagate) and
        ``{"loss": float, "error": float}`` with the error in percent of the batch.
    """
    x, y = batch[0], batch[1]
    logits = model(x)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    loss = F.cross_entropy(logits, y)
    wrong = (logits.detach().argmax(dim=1) != y).sum()
    # One device sync for both numbers.
    loss_value, wrong_count = torch.stack([loss.detach().double(), wrong.double()]).tolist()
    return loss, {"loss": loss_value, "error": 100.0 * wrong_count / y.shape[0]}


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _as_tensors(data: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(data, Mapping):
        if "x" not in data or "y" not in data:
            raise ValueError(f"evaluation data as a dict needs keys 'x' and 'y', got {sorted(data)}")
        data = (data["x"], data["y"])
    if not isinstance(data, (tuple, list)) or not data or not all(isinstance(t, torch.Tensor) for t in data):
        raise TypeError("evaluation data must be a tuple (x, y) of tensors or a dict with 'x' and 'y'")
    n = data[0].shape[0]
    if any(t.shape[0] != n for t in data):
        raise ValueError(f"evaluation tensors differ in length: {[t.shape[0] for t in data]}")
    return tuple(data)


def evaluate(model: nn.Module, data: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], batch_size: int = 1000,
             loss: LossFn = classification_loss, device: str | torch.device | None = None,
             precision: str = "fp32") -> dict[str, float]:
    """Mean metrics of ``loss`` over a whole data set, in eval mode without gradients.

    Args:
        model: The model; its train/eval mode is restored afterwards.
        data: ``(x, y)`` tensors with the examples along dim 0, or ``{"x": x, "y": y}``.
        batch_size: Examples per forward pass.
        loss: Loss function as for :class:`Trainer`; its metrics are averaged.
        device: Where to run; default: the device of the model's first parameter (CPU without any).
        precision: ``"fp32"`` or ``"bf16"`` (autocast, see :func:`autocast`).

    Returns:
        Each metric (``"loss"``, ``"error"`` in % for :func:`classification_loss`) averaged over the
        examples, i.e. per-batch means weighted by batch size.
    """
    tensors = _as_tensors(data)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    n = tensors[0].shape[0]
    if n == 0:
        raise ValueError("evaluation data is empty")
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        with torch.no_grad(), autocast(device, precision):
            for start in range(0, n, batch_size):
                chunk = tuple(t[start:start + batch_size].to(device, non_blocking=True) for t in tensors)
                _, metrics = loss(model, chunk)
                size = chunk[0].shape[0]
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * size
    finally:
        model.train(was_training)
    return {k: v / n for k, v in sums.items()}


# --------------------------------------------------------------------------------------------------
# Callbacks and the trainer
# --------------------------------------------------------------------------------------------------

class BatchSource(Protocol):
    """Training data: ``batch(step)`` returns the batch for 0-based ``step``, the same every time asked."""

    def batch(self, step: int) -> Sequence[torch.Tensor]: ...


class Callback:
    """Hooks into :meth:`Trainer.fit`; override the ones you need. The trainer is passed to each.

    ``step`` is the number of completed optimiser steps. Callbacks run in every process; guard file
    writes with :func:`is_main_process`.
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """After set-up (and after resuming, when ``trainer.step`` is the resumed step)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After each optimiser step, before that step's evaluation and checkpoint (so a checkpoint
        includes what callbacks did at its step); ``metrics`` are the step's loss metrics plus ``"lr"``."""

    def on_eval(self, trainer: Trainer, step: int, eval_metrics: dict[str, float]) -> None:
        """After each evaluation, including the final one."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the final evaluation and checkpoint."""


def _spatial_transformer_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, (SpatialTransformer, ParallelSpatialTransformers))
            for p in m.parameters()}


def _config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = (set(saved) | set(current)) - RESUMABLE_FIELDS
    return [f"{k}: checkpoint {saved.get(k, '<missing>')!r}, now {current.get(k, '<missing>')!r}"
            for k in sorted(keys) if saved.get(k) != current.get(k)]


class Trainer:
    """Trains ``model`` for ``config.steps`` optimiser steps; see :meth:`fit`.

    Args:
        model: Any ``nn.Module``; moved to the configured device by :meth:`fit`.
        config: The run's :class:`TrainConfig`.
        loss: ``loss(model, batch) -> (scalar loss tensor, {name: float})``; the metrics are averaged into
            ``history`` and by :func:`evaluate`.
        callbacks: :class:`Callback` objects, called in order.
        run_dir: Directory for ``checkpoint.pt`` and ``config.json``; ``None`` writes nothing and
            cannot resume.

    Attributes available to callbacks: ``model``, ``config``, ``device``, ``optimizer``, ``scheduler``,
    ``step`` (completed steps), ``history`` (``{"step", "lr", <metrics>}`` every ``log_every`` steps,
    averaged over the interval, ``lr`` of the first parameter group at the interval's last step) and
    ``eval_history`` (``{"step", <eval metrics>}``).

    Examples:
        >>> class Data:
        ...     def batch(self, step):
        ...         x = torch.randn(32, 2, generator=torch.Generator().manual_seed(step))
        ...         return x, (x[:, 0] > 0).long()
        >>> _ = torch.manual_seed(0)
        >>> trainer = Trainer(nn.Linear(2, 2), TrainConfig(steps=100, lr=0.1, device="cpu", progress=False))
        >>> result = trainer.fit(Data(), eval_data=Data().batch(10_000))
        >>> result["final_eval"]["error"] < 5
        True
    """

    def __init__(self, model: nn.Module, config: TrainConfig, loss: LossFn = classification_loss,
                 callbacks: Iterable[Callback] = (), run_dir: str | os.PathLike[str] | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.loss = loss
        self.callbacks = list(callbacks)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.device = resolve_device(config.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self._log_sums: dict[str, float] = {}
        self._log_count = 0
        self._last_finite_loss: float | None = None
        self._last_checkpoint_step: int | None = None
        self._wall_before = 0.0  # seconds spent in earlier, interrupted sessions of this run
        self._session_start = time.perf_counter()
        self.rank, self.world_size = 0, 1
        self._forward_model: nn.Module = model
        self.stop_requested = False
        self._segments_before: list[dict[str, Any]] = []
        self._session_from_step = 0
        self._hardware: dict[str, Any] | None = None

    def request_stop(self) -> None:
        """Stop after the current step: :meth:`fit` writes a checkpoint and returns ``finished=False``.

        A callback calls this (e.g. :class:`StopAfter`, a wall-clock budget); the same ``fit`` later
        resumes the run from that checkpoint.
        """
        self.stop_requested = True

    @property
    def checkpoint_path(self) -> Path | None:
        """``run_dir / "checkpoint.pt"``, or ``None`` without a run directory."""
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    # ---- set-up ------------------------------------------------------------------------------

    def _build_optimizer(self) -> None:
        cfg = self.config
        st_ids = _spatial_transformer_parameter_ids(self.model)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {"name": "main", "params": [p for p in trainable if id(p) not in st_ids], "lr": cfg.lr},
            {"name": "localisation", "params": [p for p in trainable if id(p) in st_ids],
             "lr": cfg.lr * cfg.loc_lr_mult},
        ]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError("the model has no trainable parameters")
        if cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        # A closure, not a lambda object with state: LambdaLR then saves no function state, and the
        # schedule is rebuilt from the (checked) config on resume.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(cfg, s))

    def _wall_time(self) -> float:
        return self._wall_before + (time.perf_counter() - self._session_start)

    # ---- checkpoints -------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "eval_history": self.eval_history,
            # The partly filled logging interval, so that a resume mid-interval logs the same means.
            "log_sums": dict(self._log_sums),
            "log_count": self._log_count,
            "last_finite_loss": self._last_finite_loss,
            "rng": rng,
            "wall_time_s": self._wall_time(),
            "segments": self._segments_now(),
        }

    def _segments_now(self) -> list[dict[str, Any]]:
        """Earlier sessions of this run plus the current one: steps, wall time and hardware of each, so a
        run resumed on another machine (a GPU run finished on a CPU, say) says where its compute went."""
        current = {"from_step": self._session_from_step, "to_step": self.step,
                   "wall_time_s": time.perf_counter() - self._session_start, "hardware": self._hardware}
        return [*self._segments_before, current]

    def save_checkpoint(self) -> None:
        """Atomically write ``run_dir/checkpoint.pt`` (main process only; no-op without ``run_dir``).

        Raises:
            TrainingDiverged: A parameter is NaN/inf (the last update overflowed); the file on disk
                is left as it was rather than replaced by a useless one.
        """
        if self.checkpoint_path is None:
            return
        if is_main_process():
            bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise self._diverged(f"parameters {bad[:5]} are NaN or infinite after the update", self.step)
            atomic_torch_save(self._checkpoint_state(), self.checkpoint_path)
        self._last_checkpoint_step = self.step
        if getattr(self, "world_size", 1) > 1:
            torch.distributed.barrier()  # the file is complete before any rank could resume from it

    def _load_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        try:
            state = safe_torch_load(path, map_location="cpu")
        except RuntimeError as e:
            raise RuntimeError(f"cannot resume the run in '{self.run_dir}': {e} Deleting the checkpoint restarts "
                               "the run from step 0.") from e
        needed = {"format", "step", "config", "model", "optimizer", "scheduler", "history", "eval_history", "rng"}
        if not isinstance(state, dict) or not needed <= set(state) or state["format"] != CHECKPOINT_FORMAT:
            raise RuntimeError(f"'{path}' is not a stnlib training checkpoint of format {CHECKPOINT_FORMAT}; "
                               "delete it to start the run afresh, or use a new run_dir")
        differences = _config_differences(state["config"], self.config.to_dict())
        if differences:
            raise ValueError(f"the checkpoint '{path}' was made with a different TrainConfig ("
                             + "; ".join(differences) + "). Use a new run_dir for the new settings, or delete "
                             "the checkpoint to restart this run from scratch.")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise RuntimeError(f"the checkpoint '{path}' does not fit this model (was the architecture "
                               f"changed?): {e}") from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and len(state["rng"].get("cuda", [])) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.eval_history = list(state["eval_history"])
        self._log_sums = dict(state.get("log_sums", {}))
        self._log_count = int(state.get("log_count", 0))
        self._last_finite_loss = state.get("last_finite_loss")
        self._wall_before = float(state.get("wall_time_s", 0.0))
        self._segments_before = list(state.get("segments", []))
        if not self._segments_before and self.step:  # a checkpoint written before segments were recorded
            self._segments_before = [{"from_step": 0, "to_step": self.step, "wall_time_s": self._wall_before,
                                      "hardware": None}]
        self._session_from_step = self.step
        self._last_checkpoint_step = self.step
        return True

    # ---- the loop ----------------------------------------------------------------------------

    def _diverged(self, what: str, step: int | None = None) -> TrainingDiverged:
        step = self.step + 1 if step is None else step
        lrs = ", ".join(f"{g.get('name', i)} {g['lr']:.3g}" for i, g in enumerate(self.optimizer.param_groups))
        last = ("none yet" if self._last_finite_loss is None else f"{self._last_finite_loss:.6g}")
        if self._last_checkpoint_step is not None:
            ckpt = f" The checkpoint '{self.checkpoint_path}' (step {self._last_checkpoint_step}) is untouched."
        else:
            ckpt = " No checkpoint was written for this run." if self.run_dir is not None else ""
        return TrainingDiverged(
            f"training diverged at step {step} of {self.config.steps}: {what}. Learning rate(s): {lrs}; "
            f"last finite training loss: {last}. Try a lower lr, a lower loc_lr_mult (the localisation net "
            f"is often the first to blow up), or grad_clip (e.g. 1.0).{ckpt}")

    def _train_step(self, step: int, batch: Any) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with autocast(self.device, self.config.precision):
                loss, metrics = self.loss(self._forward_model, shard_batch(batch, self.rank, self.world_size))
            loss.backward()
        except Exception as e:
            # A NaN parameter often surfaces as an error inside the model (e.g. the spatial transformer's
            # check of theta) rather than as a NaN loss; report it as the divergence it is.
            bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise self._diverged(f"parameters {bad[:5]} are NaN or infinite ({type(e).__name__}: {e})",
                                     step + 1) from e
            raise
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
        # One sync checks both the loss and every gradient (a NaN/inf anywhere makes the norm non-finite).
        checks = torch.stack([loss.detach().double(), grad_norm.double().to(loss.device)])
        if self.world_size > 1:
            # Every rank must take the same branch below; gradients are already averaged by DDP, the
            # losses (and the metrics) of equal shards average to the global batch's.
            checks[0] = self._all_mean(checks[:1])[0]
            metrics = dict(zip(metrics, self._all_mean(torch.tensor(list(metrics.values()), dtype=torch.float64,
                                                                    device=loss.device)).tolist()))
        loss_value, norm_value = checks.tolist()
        if not math.isfinite(loss_value):
            raise self._diverged(f"the loss is {loss_value}", step + 1)
        if not math.isfinite(norm_value):
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            raise self._diverged(f"the gradients of {bad[:5]} are NaN or infinite", step + 1)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(
                [p for p in self.model.parameters() if p.grad is not None], self.config.grad_clip, grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self._last_finite_loss = loss_value
        return {**metrics, "lr": lr}

    def _all_mean(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        torch.distributed.all_reduce(t)
        return t / self.world_size

    def _log(self, step: int, metrics: dict[str, float]) -> dict[str, float] | None:
        for k, v in metrics.items():
            if k != "lr":
                self._log_sums[k] = self._log_sums.get(k, 0.0) + float(v)
        self._log_count += 1
        if step % self.config.log_every and step != self.config.steps:
            return None
        entry = {"step": step, "lr": metrics["lr"], **{k: v / self._log_count for k, v in self._log_sums.items()}}
        self.history.append(entry)
        self._log_sums, self._log_count = {}, 0
        return entry

    def _evaluate(self, eval_data: Any) -> dict[str, float]:
        metrics = evaluate(self.model, eval_data, loss=self.loss, device=self.device, precision=self.config.precision)
        self.eval_history.append({"step": self.step, **metrics})
        for cb in self.callbacks:
            cb.on_eval(self, self.step, metrics)
        return metrics

    def fit(self, train_data: BatchSource, eval_data: Any = None) -> dict[str, Any]:
        """Train for ``config.steps`` steps, resuming from ``run_dir/checkpoint.pt`` when it exists.

        Each step: ``batch = train_data.batch(step)`` (moved to the device), ``loss(model, batch)``,
        backward, NaN/inf check of loss and gradients, optional gradient clipping, optimiser and
        schedule step. Checkpoints are written every ``checkpoint_every`` steps and at the end; an
        interrupted run resumes from the last one and, on the CPU, ends bit-identical to an
        uninterrupted run. Ctrl-C is not caught: a step cut short leaves no consistent state to save.

        Args:
            train_data: Object with ``batch(step) -> tuple of tensors`` (deterministic in ``step``).
            eval_data: Optional ``(x, y)`` or ``{"x", "y"}`` evaluated every ``eval_every`` steps and
                at the end (see :func:`evaluate`).

        Returns:
            ``{"config", "history", "eval_history", "final_eval", "wall_time_s", "steps", "hardware",
            "finished"}``; the same, plus ``steps_per_s``, is written to ``run_dir/config.json``.
            ``finished`` is False when a callback called :meth:`request_stop` before the last step (the
            checkpoint then holds the run; there is no final evaluation).

        Raises:
            TrainingDiverged: The loss or a gradient became NaN/inf.
            ValueError: ``run_dir`` holds a checkpoint of a different config (the message names the fields).
            RuntimeError: The checkpoint cannot be read (the message names the file).
        """
        if not callable(getattr(train_data, "batch", None)):
            raise TypeError(f"train_data must have a batch(step) method, got {type(train_data).__name__}")
        cfg = self.config
        main = is_main_process()
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        # Every fit() is a run of its own: from the checkpoint if there is one, else from step 0 with
        # the model's current weights and a fresh optimiser.
        self._session_start = time.perf_counter()
        self._wall_before = 0.0
        self.step, self.history, self.eval_history = 0, [], []
        self._log_sums, self._log_count = {}, 0
        self._last_finite_loss = self._last_checkpoint_step = None
        self.stop_requested = False
        self._segments_before, self._session_from_step = [], 0
        self._hardware = hardware_info(self.device)
        self.rank, self.world_size = world()
        # Same model seed everywhere (DDP also broadcasts rank 0's weights); the global RNG differs per
        # rank so that dropout-like randomness is not repeated across shards.
        seed_everything(cfg.seed)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self._forward_model = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._build_optimizer()
        if self._load_checkpoint() and main:
            print(f"Resumed from step {self.step} of {cfg.steps} ('{self.checkpoint_path}').")
        if self.world_size > 1:
            torch.manual_seed(cfg.seed + self.rank)
        for cb in self.callbacks:
            cb.on_train_start(self)

        bar = _progress_bar(total=cfg.steps, initial=self.step, disable=not (cfg.progress and main))
        try:
            for step in range(self.step, cfg.steps):
                batch = _to_device(train_data.batch(step), self.device)
                metrics = self._train_step(step, batch)
                self.step = step + 1
                entry = self._log(self.step, metrics)
                bar.update(1)
                if entry is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k != "step"}, refresh=False)
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step, metrics)
                if self.step < cfg.steps:  # the final evaluation and checkpoint follow the loop
                    if eval_data is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                        self._evaluate(eval_data)
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.stop_requested:
                        break
        finally:
            bar.close()

        if self.step < cfg.steps:  # stopped on request: keep the state, report where the run stands
            self.save_checkpoint()
            return {"config": cfg.to_dict(), "history": self.history, "eval_history": self.eval_history,
                    "final_eval": None, "wall_time_s": self._wall_time(), "steps": self.step,
                    "hardware": hardware_info(self.device), "finished": False, "segments": self._segments_now()}

        final_eval = None
        if eval_data is not None:
            if self.eval_history and self.eval_history[-1]["step"] == self.step:
                # Already evaluated at this step (a finished run opened again).
                final_eval = {k: v for k, v in self.eval_history[-1].items() if k != "step"}
            else:
                final_eval = self._evaluate(eval_data)
        self.save_checkpoint()
        wall = self._wall_time()
        hardware = hardware_info(self.device)
        result = {
            "config": cfg.to_dict(), "history": self.history, "eval_history": self.eval_history,
            "final_eval": final_eval, "wall_time_s": wall, "steps": self.step, "hardware": hardware,
            "finished": True, "segments": self._segments_now(),
        }
        if self.run_dir is not None and main:
            summary = {**result, "steps_per_s": self.step / wall if wall > 0 else None}
            del summary["history"], summary["eval_history"]  # kept in the checkpoint; config.json stays short
            atomic_write_text(self.run_dir / CONFIG_NAME, json.dumps(summary, indent=2) + "\n")
        for cb in self.callbacks:
            cb.on_train_end(self)
        return result


class StopAfter(Callback):
    """Stop a run after ``seconds`` of wall time in this process (checkpoint written; resume later).

    Examples:
        >>> StopAfter(60).seconds
        60.0
    """

    def __init__(self, seconds: float):
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.seconds = float(seconds)
        self._start = time.perf_counter()

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.world_size > 1:  # ranks would stop at different steps and wait for each other forever
            raise ValueError("StopAfter stops a single-process run; under torchrun, stop with the job's own limit")
        self._start = time.perf_counter()

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if time.perf_counter() - self._start > self.seconds:
            trainer.request_stop()


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, initial: int, disable: bool) -> Any:
    """A tqdm bar over steps, or a stand-in when disabled or tqdm is not installed (it is optional)."""
    if disable:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
