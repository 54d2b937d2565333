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

The package is split by concern: :mod:`.config` (what is trained how), :mod:`.env` (device, precision,
seeds, hardware), :mod:`.distributed` (torchrun) and :mod:`.loop` (the trainer). Everything public is
importable from ``stnlib.train``.
"""

from .config import PRECISIONS, RESUMABLE_FIELDS, TrainConfig, lr_factor, with_defaults
from .distributed import init_distributed_from_env, is_main_process, shard_batch, world
from .env import autocast, fast_settings, hardware_info, resolve_device, seed_everything
from .loop import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CONFIG_NAME,
    BatchSource,
    Callback,
    LossFn,
    StopAfter,
    Trainer,
    TrainingDiverged,
    classification_loss,
    count_parameters,
    evaluate,
)

__all__ = [
    "TrainConfig", "Trainer", "Callback", "TrainingDiverged", "BatchSource", "LossFn",
    "classification_loss", "evaluate", "lr_factor", "with_defaults", "resolve_device", "seed_everything", "hardware_info",
    "count_parameters", "is_main_process", "autocast", "fast_settings", "StopAfter", "PRECISIONS",
    "init_distributed_from_env", "shard_batch", "world", "RESUMABLE_FIELDS", "CHECKPOINT_FORMAT", "CHECKPOINT_NAME",
    "CONFIG_NAME",
]
