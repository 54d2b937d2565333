"""The training loop: :class:`Trainer` with callbacks, a NaN guard and exact resume; the loss and evaluation helpers."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..io import atomic_torch_save, atomic_write_text, safe_torch_load
from ..models import count_parameters  # noqa: F401  (re-exported by stnlib.train)
from .config import RESUMABLE_FIELDS, TrainConfig, lr_factor, with_defaults
from .distributed import is_main_process, shard_batch, world
from .env import autocast, hardware_info, resolve_device, seed_everything

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
# Bumped when the checkpoint layout changes, so an old file is reported instead of half-loaded.
CHECKPOINT_FORMAT = 1

class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the last checkpoint on disk is left untouched."""



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

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        """Before each optimiser step, before its batch is drawn (``step`` steps are complete): e.g. to set
        what the step's loss reads from the model, such as a curriculum, or to record the model as it is."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After each optimiser step, before that step's evaluation and checkpoint (so a checkpoint
        includes what callbacks did at its step); ``metrics`` are the step's loss metrics plus ``"lr"``."""

    def on_eval(self, trainer: Trainer, step: int, eval_metrics: dict[str, float]) -> None:
        """After each evaluation, including the final one."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the final evaluation and checkpoint."""


def _localisation_parameter_ids(model: nn.Module, loc_lr_mult: float) -> set[int]:
    """The parameters the model declares as its localisation nets' (``model.localisation_parameters()``, e.g.
    via :func:`stnlib.spatial_transformer.localisation_parameters`); the loop knows no module types."""
    declare = getattr(model, "localisation_parameters", None)
    if callable(declare):
        return {id(p) for p in declare()}
    if loc_lr_mult != 1.0:
        raise ValueError(f"loc_lr_mult={loc_lr_mult} needs the model to say which parameters are its localisation "
                         f"nets': give {type(model).__name__} a method localisation_parameters() (e.g. returning "
                         "stnlib.spatial_transformer.localisation_parameters(self))")
    return set()


def _config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    saved = with_defaults(saved)  # a field added to TrainConfig after the checkpoint counts at its default
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
    ``eval_history`` (``{"step", <eval metrics>}``) and ``records``, a dict in which callbacks keep what they
    measure (name -> list of entries; tensors, numbers, lists), saved in checkpoints, restored on resume and
    returned by :meth:`fit`.

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
        self.records: dict[str, list] = {}
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
        st_ids = _localisation_parameter_ids(self.model, cfg.loc_lr_mult)
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
            self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
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
            "records": self.records,
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
        self.records = dict(state.get("records", {}))
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
            ``{"config", "history", "eval_history", "records", "final_eval", "wall_time_s", "steps",
            "hardware", "finished"}``; the same, plus ``steps_per_s`` and less the histories and records,
            is written to ``run_dir/config.json``.
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
        self.records = {}
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
                for cb in self.callbacks:
                    cb.on_step_start(self, step)
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
                    "records": self.records, "final_eval": None, "wall_time_s": self._wall_time(), "steps": self.step,
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
            "records": self.records, "final_eval": final_eval, "wall_time_s": wall, "steps": self.step, "hardware": hardware,
            "finished": True, "segments": self._segments_now(),
        }
        if self.run_dir is not None and main:
            summary = {**result, "steps_per_s": self.step / wall if wall > 0 else None}
            del summary["history"], summary["eval_history"], summary["records"]  # kept in the checkpoint
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
