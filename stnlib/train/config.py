"""What decides how a model is trained: :class:`TrainConfig` (saved beside every result) and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

PRECISIONS = ("fp32", "bf16")
# Fields that change how a run is watched or where it runs, not what it computes (on the CPU): a run may
# be resumed with different values. log_every only regroups history entries after the resume point.
RESUMABLE_FIELDS = frozenset({"progress", "eval_every", "log_every", "checkpoint_every", "device", "num_threads",
                              "precision", "channels_last"})


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained (saved as ``config.json`` beside the results).

    Attributes:
        steps: Number of optimiser steps.
        batch_size: Informational: the data object produces the batches; recorded so results say it.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        lr: Base learning rate.
        momentum: SGD momentum (unused by Adam).
        adam_eps: Adam's epsilon (torch's default 1e-8); a large value (1e-3) damps the steps of parameters
            whose gradients are small, as in some reference implementations.
        weight_decay: L2 penalty passed to the optimiser, on every parameter.
        schedule: ``"constant"``, ``"cosine"`` (to 0 over the steps after warm-up) or ``"step"``.
        lr_decay_steps: For ``"step"``: after each of these many completed steps the rate is multiplied
            by ``lr_decay_factor``.
        lr_decay_factor: See ``lr_decay_steps``.
        warmup_steps: Linear warm-up from ``lr / warmup_steps`` to ``lr`` over the first steps.
        loc_lr_mult: Learning-rate multiplier for the parameters the model declares as its localisation
            nets' (``model.localisation_parameters()``: every spatial transformer's localisation net and
            regression layer in stnlib's models); the paper lowers it for the birds.
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
    adam_eps: float = 1e-8
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


def with_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict saved by :meth:`TrainConfig.to_dict` (a checkpoint's or an artifact's), completed with the
    fields added to :class:`TrainConfig` since it was written, at their defaults: such a run was made with them.

    Examples:
        >>> with_defaults({"steps": 5, "lr": 0.1})["adam_eps"]
        1e-08
    """
    defaults = {k: v for k, v in TrainConfig(steps=1).to_dict().items() if k != "steps"}
    return {**{k: v for k, v in defaults.items() if k not in saved}, **saved}


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
