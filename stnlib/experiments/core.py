"""The experiment machinery shared by every chapter: cells, profiles, the registry, running and loading artifacts.

An :class:`Experiment` says how to make a cell's data and model; :func:`run_cell` does the rest with the one
library :class:`~stnlib.train.Trainer` and writes the artifact ``results/<experiment>/<profile>/<cell>/``:
``metrics.json`` (test metrics, training curves, configs, parameter count, wall time, hardware, the
command), ``model.pt`` (float16 state dict) and ``analysis.pt`` (what the chapter's figures need).
Checkpoints of unfinished runs live under ``results/runs/<experiment>/<profile>/<cell>/`` and are committed
(except the smoke profile's), so a run stopped on one machine resumes on another; a finished artifact
replaces its checkpoint. ``python -m stnlib.experiments status <experiment> --profile <p>`` lists every cell
as finished, step k of n, or not started.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shutil
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_torch_save, atomic_write_text, safe_torch_load
from ..paths import results_dir
from ..train import (StopAfter, Trainer, TrainConfig, classification_loss, count_parameters, fast_settings,
                     is_main_process, resolve_device)


@dataclass(frozen=True)
class Profile:
    """How much compute a run gets: ``steps`` at ``batch_size``; data subsets for quick profiles.

    ``param_budget`` (when set) replaces every cell's parameter budget (the classifier width is chosen to
    match it); ``train_overrides`` sets further :class:`~stnlib.train.TrainConfig` fields (e.g. ``loc_lr_mult``);
    ``cell_overrides`` maps cell-id patterns (:mod:`fnmatch`, e.g. ``"*-fcn*"``) to fields that apply to
    the matching cells only, on top (every matching pattern, in order), e.g. ``{"mnist-cnn": {"steps": 150}}``.

    Examples:
        >>> p = Profile("full", steps=600, batch_size=100, cell_overrides={"enc*": {"steps": 150}})
        >>> p.steps_for("encoder"), p.steps_for("T-3")
        (150, 600)
    """

    name: str
    steps: int
    batch_size: int
    lr: float = 1e-3
    train_size: int | None = None
    test_size: int | None = None
    eval_every: int = 0
    description: str = ""
    param_budget: int | None = None
    train_overrides: dict = field(default_factory=dict)
    cell_overrides: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        for fields in [self.train_overrides, *self.cell_overrides.values()]:
            if "batch_size" in fields:  # the data sources are made with the profile's batch size
                raise ValueError(f"profile {self.name!r}: set batch_size on the profile, not in its overrides")

    def overrides_for(self, cell_id: str) -> dict:
        """The :class:`~stnlib.train.TrainConfig` fields this profile sets for ``cell_id``."""
        out = dict(self.train_overrides)
        for pattern, fields in self.cell_overrides.items():
            if fnmatch.fnmatchcase(cell_id, pattern):
                out.update(fields)
        return out

    def steps_for(self, cell_id: str) -> int:
        """Training steps of ``cell_id`` in this profile."""
        return int(self.overrides_for(cell_id).get("steps", self.steps))


@dataclass(frozen=True)
class Cell:
    """One trained model of an experiment. ``model`` is a config with ``to_dict()`` (and ``name``)."""

    experiment: str
    id: str
    task: str
    model: Any = field(compare=False)


@dataclass(frozen=True)
class Experiment:
    """How to run the cells of one experiment.

    Attributes:
        name: registry key, e.g. "table1".
        cells: () -> every cell, in run order.
        profiles: name -> :class:`Profile` ("smoke" and "full" at least).
        make_data: (cell, profile, seed, device, root) -> (train data with ``batch(step)``, test dict with "x",
            "y", ...); ``root`` is the results root of the run (None: the project's ``results/``), where an
            experiment that needs another cell's artifact (co-localisation: its encoder) finds or makes it.
        build: (model config) -> nn.Module (seeded by the caller).
        rebuild: (metrics dict) -> nn.Module of the saved architecture (weights loaded by the caller).
        analyse: (model, test dict, cell) -> dict of CPU tensors/numbers saved as analysis.pt;
            numbers under the key "metrics" are merged into metrics.json.
        loss: the training loss (default cross-entropy on (x, y)).
        callbacks: optional (cell, test dict) -> list of :class:`~stnlib.train.Callback` for the cell's run
            (e.g. a measurement taken at every evaluation and stored in the eval history).
    """

    name: str
    cells: Callable[[], list[Cell]]
    profiles: dict[str, Profile]
    make_data: Callable[[Cell, Profile, int, torch.device], tuple[Any, dict]]
    build: Callable[[Any], nn.Module]
    rebuild: Callable[[dict], nn.Module]
    analyse: Callable[[nn.Module, dict, Cell], dict]
    loss: Callable = classification_loss
    callbacks: Callable[[Cell, dict], list] | None = None


EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    """Add an experiment to the registry (each experiment module calls this once)."""
    EXPERIMENTS[exp.name] = exp
    return exp


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


def get_cells(experiment: str, ids: list[str] | None = None) -> list[Cell]:
    """Cells of ``experiment``, optionally only those whose id is in ``ids`` (unknown ids raise)."""
    cells = get_experiment(experiment).cells()
    if ids is None:
        return cells
    known = {c.id: c for c in cells}
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"unknown cells {missing} for {experiment}; known: {', '.join(known)}")
    return [known[i] for i in ids]


def get_profile(experiment: str, profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    profiles = get_experiment(experiment).profiles
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r} for {experiment}; available: {', '.join(profiles)}")
    return profiles[profile]


def artifact_dir(cell: Cell, profile: str, root: Path | None = None, seed: int = 0) -> Path:
    """``<root>/<experiment>/<profile>/<cell>`` for seed 0, ``.../<cell>/seed<k>`` for seed k > 0 (a second
    seed never replaces the first)."""
    base = (root or results_dir()) / cell.experiment / profile / cell.id
    return base if seed == 0 else base / f"seed{seed}"


def run_dir_of(cell: Cell, profile: str, root: Path | None = None, seed: int = 0) -> Path:
    """Where the checkpoint of an unfinished run lives (``<root>/runs/...``, keyed like the artifact)."""
    base = (root or results_dir()) / "runs" / cell.experiment / profile / cell.id
    return base if seed == 0 else base / f"seed{seed}"


def cell_model(cell: Cell, profile: Profile):
    """The cell's model config in ``profile`` (the profile's parameter budget, when it sets one)."""
    if profile.param_budget is not None and hasattr(cell.model, "param_budget"):
        return dataclasses.replace(cell.model, param_budget=profile.param_budget)
    return cell.model


def train_config(profile: Profile, seed: int, device: str, threads: int | None, progress: bool,
                 cell_id: str | None = None, model: nn.Module | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a profile (for one cell): Adam, cosine decay, the profile's steps, rate
    and overrides (those of ``cell_id`` included), with the fastest accurate precision and memory format
    for the device and model (:func:`~stnlib.train.fast_settings`) unless the profile sets them."""
    base = dict(steps=profile.steps, batch_size=profile.batch_size, lr=profile.lr, schedule="cosine",
                eval_every=profile.eval_every, checkpoint_every=250, log_every=25, seed=seed, device=device,
                num_threads=threads, progress=progress, **fast_settings(device, model))
    base.update(profile.overrides_for(cell_id) if cell_id is not None else profile.train_overrides)
    return TrainConfig(**base)


# How a run is executed, not what it computes: an artifact made with other values is still the same run.
# (precision and memory format are chosen per machine: a run may resume on another device)
_VOLATILE = {"progress", "num_threads", "device", "precision", "channels_last", "checkpoint_every", "log_every"}


def _same_run(metrics: dict, model_config, cfg: TrainConfig) -> bool:
    """Whether a finished artifact was made by this model config and this training config."""
    saved = {k: v for k, v in metrics.get("train_config", {}).items() if k not in _VOLATILE}
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in _VOLATILE}
    model = metrics.get("model_config", {})
    # a None field of the cell's config is one the experiment fills in while running (e.g. a path)
    same_model = all(model.get(k) == v for k, v in model_config.to_dict().items() if v is not None)
    return saved == wanted and same_model


def run_cell(cell: Cell, profile: str | Profile = "smoke", seed: int = 0, device: str = "auto",
             threads: int | None = None, progress: bool = True, root: Path | None = None,
             command: str | None = None, stop_after_s: float | None = None) -> dict:
    """Train one cell and write its artifact; returns the metrics dict.

    A finished artifact of the same model and training config (seed included) is loaded, not retrained;
    one made with other settings is retrained and replaced. An interrupted run resumes from
    ``<root>/runs/<experiment>/<profile>/<cell>/checkpoint.pt``. With ``stop_after_s`` the run stops
    after that many seconds of training, keeps its checkpoint and returns
    ``{"cell", "finished": False, "steps", "of"}`` (run the same command again to continue).
    """
    exp = get_experiment(cell.experiment)
    prof = get_profile(cell.experiment, profile)
    out = artifact_dir(cell, prof.name, root, seed)
    done = out / "metrics.json"
    cfg = train_config(prof, seed, device, threads, progress and is_main_process(), cell.id)
    model_config = cell_model(cell, prof)
    run_dir = run_dir_of(cell, prof.name, root, seed)
    if done.exists():
        metrics = json.loads(done.read_text())
        if _same_run(metrics, model_config, cfg):
            return metrics
        # made with other settings: its finished checkpoint must not be resumed into the new run
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    train_data, test = exp.make_data(cell, prof, seed, dev, root)
    torch.manual_seed(seed)
    model = exp.build(model_config)
    cfg = train_config(prof, seed, device, threads, progress and is_main_process(), cell.id, model)
    name = getattr(cell.model, "name", cell.id)
    if progress and is_main_process():
        print(f"[{cell.experiment} / {prof.name}] {cell.id}: {name}, {count_parameters(model):,} parameters, "
              f"{cfg.steps} steps at batch {cfg.batch_size} on {dev}")
    eval_data = (test["x"], test["y"]) if "x" in test and "y" in test else None
    callbacks = [] if exp.callbacks is None else list(exp.callbacks(cell, test))
    if stop_after_s is not None:
        callbacks.append(StopAfter(stop_after_s))
    result = Trainer(model, cfg, loss=exp.loss, callbacks=callbacks, run_dir=run_dir).fit(train_data, eval_data=eval_data)
    if not result["finished"]:
        if progress and is_main_process():
            print(f"[{cell.experiment} / {prof.name}] {cell.id}: stopped at step {result['steps']} of {cfg.steps} "
                  f"(checkpoint in {run_dir}); run the same command again to continue")
        return {"cell": cell.id, "finished": False, "steps": result["steps"], "of": cfg.steps,
                "wall_time_s": result["wall_time_s"]}
    analysis = exp.analyse(model, test, cell)
    final = result["final_eval"] or {}
    metrics = {
        "experiment": cell.experiment, "cell": cell.id, "task": cell.task, "model": name,
        "profile": prof.name, "profile_description": prof.description, "seed": seed,
        "test_error": final.get("error"), "test_loss": final.get("loss"),
        "test_size": int(len(test["y"])) if "y" in test else None,
        "params": count_parameters(model), "width": getattr(model, "width", None),
        "steps": result["steps"], "batch_size": cfg.batch_size,
        "wall_time_s": result["wall_time_s"], "hardware": result["hardware"],
        "segments": result["segments"],
        "history": result["history"], "eval_history": result["eval_history"],
        "model_config": model_config.to_dict(), "train_config": cfg.to_dict(),
        "command": command or f"python -m stnlib.experiments run {cell.experiment} --profile {prof.name} "
                              f"--cells {cell.id} --seed {seed}",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    metrics.update(analysis.pop("metrics", {}))
    if prof.train_size is None and hasattr(train_data, "num_examples"):
        metrics["epochs"] = result["steps"] * cfg.batch_size / train_data.num_examples
    if is_main_process():  # under torchrun, rank 0 alone writes the artifact
        atomic_torch_save({k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                           for k, v in model.state_dict().items()}, out / "model.pt")
        atomic_torch_save(analysis, out / "analysis.pt")
        atomic_write_text(done, json.dumps(metrics, indent=1))
        # the artifact now holds the run; its checkpoint is no longer needed (and is not committed)
        shutil.rmtree(run_dir, ignore_errors=True)
    return metrics


def load_cell(cell: Cell, profile: str = "full", root: Path | None = None,
              seed: int = 0) -> tuple[dict, nn.Module, dict]:
    """(metrics, model in eval mode on the CPU, analysis) of a finished artifact."""
    out = artifact_dir(cell, profile, root, seed)
    if not (out / "metrics.json").exists():
        raise FileNotFoundError(f"no artifact for {cell.id} in profile {profile!r} at {out}; run "
                                f"`python -m stnlib.experiments run {cell.experiment} --profile {profile} --cells {cell.id}`")
    metrics = json.loads((out / "metrics.json").read_text())
    model = get_experiment(cell.experiment).rebuild(metrics)
    state = safe_torch_load(out / "model.pt")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return metrics, model.eval(), safe_torch_load(out / "analysis.pt")


def load_results(experiment: str, profile: str = "full", root: Path | None = None, seed: int = 0) -> dict[str, dict]:
    """Metrics of every finished cell of ``experiment`` in ``profile``, by cell id (missing cells left out)."""
    found = {}
    for cell in get_cells(experiment):
        p = artifact_dir(cell, profile, root, seed) / "metrics.json"
        if p.exists():
            found[cell.id] = json.loads(p.read_text())
    return found


def run(experiment: str, profile: str = "smoke", cells: list[str] | None = None, seed: int = 0, device: str = "auto",
        threads: int | None = None, progress: bool = True, root: Path | None = None,
        shard: tuple[int, int] = (0, 1), stop_after_s: float | None = None) -> dict[str, dict]:
    """Run (or load, when finished) every requested cell; returns metrics by cell id.

    ``shard=(i, n)`` runs only cells i, i + n, i + 2n, ... of the list, so n processes (one per GPU or
    machine, sharing the results folder) cover a whole table between them. ``stop_after_s`` is a wall-time
    budget for the whole call: cells stop (checkpointed) when it is spent, and later cells are not started.
    """
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    command = "python -m stnlib.experiments " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if Path(sys.argv[0]).name == "__main__.py" else None
    todo = get_cells(experiment, cells)[i::n]
    start = time.perf_counter()
    out = {}
    for c in todo:
        left = None if stop_after_s is None else stop_after_s - (time.perf_counter() - start)
        if left is not None and left <= 0:
            st = cell_status(c, get_profile(experiment, profile).name, root, seed)
            if st["state"] != "finished":
                out[c.id] = {"cell": c.id, "finished": False, "steps": st["step"], "of": st["of"]}
                continue
        out[c.id] = run_cell(c, profile, seed, device, threads, progress, root, command,
                             None if left is None else max(left, 1e-3))
    return out


def cell_status(cell: Cell, profile: str, root: Path | None = None, seed: int = 0) -> dict:
    """Where one cell stands: ``{"state": "finished" | "running" | "not started", "step", "of", ...}``.

    "running" means a checkpoint exists (the run was stopped or is going on now); its step is read from
    the checkpoint. A finished cell also reports its test error and wall time.
    """
    prof = get_profile(cell.experiment, profile)
    steps = prof.steps_for(cell.id)
    done = artifact_dir(cell, prof.name, root, seed) / "metrics.json"
    if done.exists():
        m = json.loads(done.read_text())
        return {"state": "finished", "step": m.get("steps"), "of": steps, "test_error": m.get("test_error"),
                "wall_time_s": m.get("wall_time_s"), "device": m.get("hardware", {}).get("device")}
    ckpt = run_dir_of(cell, prof.name, root, seed) / "checkpoint.pt"
    if ckpt.exists():
        state = safe_torch_load(ckpt, map_location="cpu")
        return {"state": "running", "step": int(state["step"]), "of": steps,
                "wall_time_s": float(state.get("wall_time_s", 0.0))}
    return {"state": "not started", "step": 0, "of": steps}
