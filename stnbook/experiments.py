"""The experiment machinery shared by every chapter: cells, profiles, the registry, running and loading artifacts.

An :class:`Experiment` says how to make a cell's data and model; :func:`run_cell` does the rest with the one
library :class:`~stnlib.train.Trainer` and writes the artifact ``results/<experiment>/<profile>/<cell>/``:
``metrics.json`` (test metrics, training curves, configs, parameter count, wall time, hardware, the
command), ``model.pt`` (float16 state dict) and ``analysis.pt`` (what the chapter's figures need).
Checkpoints of unfinished runs live under ``results/runs/<experiment>/<profile>/<cell>/`` and are committed
(except the smoke profile's), so a run stopped on one machine resumes on another; a finished artifact
replaces its checkpoint. ``python -m stnbook status <experiment> --profile <p>`` lists every cell
as finished, step k of n, or not started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stnbook.paths import results_dir
from stnlib.io import atomic_torch_save, atomic_write_text, safe_torch_load, sha256_file
from stnlib.train import (
    StopAfter,
    TrainConfig,
    Trainer,
    classification_loss,
    count_parameters,
    fast_settings,
    is_main_process,
    resolve_device,
    with_defaults,
)


@dataclass(frozen=True)
class Profile:
    """How much compute a run gets: ``steps`` at ``batch_size``; data subsets for quick profiles.

    ``param_budget`` (when set) replaces every cell's parameter budget (the classifier width is chosen to
    match it); ``train_overrides`` sets further :class:`~stnlib.train.TrainConfig` fields (e.g. ``loc_lr_mult``);
    ``cell_overrides`` maps cell-id patterns (:mod:`fnmatch`, e.g. ``"*-fcn*"``) to fields that apply to
    the matching cells only, on top (every matching pattern, in order), e.g. ``{"mnist-cnn": {"steps": 150}}``;
    ``model_overrides`` maps cell-id patterns the same way to model-config fields (e.g. the transformers'
    output size), applied by :func:`cell_model`. ``distortion_ramp`` (start, end), as fractions of a cell's
    steps, makes the training distortions grow from none to full strength over that part of the run (a
    distortion curriculum, :class:`~stnlib.data.DistortedMNIST`'s ``ramp``; experiments whose data take
    it); the test set is never ramped. ``needs_profile`` names the profile whose artifacts of the cells a cell
    needs (:attr:`Cell.needs`) are used, trained there first if missing (None: this profile's own).

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
    model_overrides: dict[str, dict] = field(default_factory=dict)
    distortion_ramp: tuple[float, float] | None = None
    needs_profile: str | None = None

    def __post_init__(self):
        if self.distortion_ramp is not None:
            start, end = self.distortion_ramp
            if not 0.0 <= start < end <= 1.0:
                raise ValueError(f"profile {self.name!r}: distortion_ramp must be (start, end) fractions of the steps "
                                 f"with 0 <= start < end <= 1, got {self.distortion_ramp!r}")
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

    def ramp_steps(self, cell_id: str) -> tuple[int, int] | None:
        """``distortion_ramp`` in steps of ``cell_id`` (None without one).

        Examples:
            >>> Profile("p", steps=1000, batch_size=8, distortion_ramp=(0.05, 0.25)).ramp_steps("R-st-cnn-affine")
            (50, 250)
        """
        if self.distortion_ramp is None:
            return None
        steps = self.steps_for(cell_id)
        return round(self.distortion_ramp[0] * steps), max(round(self.distortion_ramp[1] * steps), 1)


@dataclass(frozen=True)
class Cell:
    """One trained model of an experiment. ``model`` is a config with ``to_dict()`` (and ``name``);
    ``needs`` names the cells of the same experiment whose finished artifacts this one uses (co-localisation:
    the encoder): :func:`run_cell` trains or loads them first, and the experiment's ``use_dependencies`` puts
    their folders into the model config."""

    experiment: str
    id: str
    task: str
    model: Any = field(compare=False)
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    """How to run the cells of one experiment.

    Attributes:
        name: registry key, e.g. "table1".
        cells: () -> every cell, in run order.
        profiles: name -> :class:`Profile` ("smoke" and "full" at least).
        make_data: (cell, profile, seed, device, root) -> (train data with ``batch(step)``, test dict with "x",
            "y", ...); ``root`` is the results root of the run (None: the project's ``results/``).
        build: (model config) -> nn.Module (seeded by the caller).
        rebuild: (metrics dict) -> nn.Module of the saved architecture (weights loaded by the caller).
        analyse: (model, test dict, cell) -> dict of CPU tensors/numbers saved as analysis.pt;
            numbers under the key "metrics" are merged into metrics.json.
        loss: the training loss (default cross-entropy on (x, y)).
        callbacks: optional (cell, test dict) -> list of :class:`~stnlib.train.Callback` for the cell's run
            (e.g. a measurement taken at every evaluation and stored in the eval history).
        use_dependencies: (model config, {needed cell id: its artifact folder}) -> the model config that uses
            those artifacts (a new object; the cell's own config is never edited); required when a cell
            declares ``needs``.
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
    use_dependencies: Callable[[Any, dict[str, Path]], Any] | None = None


EXPERIMENTS: dict[str, Experiment] = {}
# the experiment folders, in the book's order; each one's experiment.py registers itself on import
EXPERIMENT_PACKAGES = ("table1", "rectify", "clutter", "addition", "colocalisation", "birds", "volume3d", "depth")


def register(exp: Experiment) -> Experiment:
    """Add an experiment to the registry (each experiment module calls this once)."""
    EXPERIMENTS[exp.name] = exp
    return exp


def load_all() -> dict[str, Experiment]:
    """Import every experiment folder's ``experiment.py`` (registering it); the registry."""
    import importlib

    for name in EXPERIMENT_PACKAGES:
        importlib.import_module(f"stnbook.{name}.experiment")
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        load_all()
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


def dependencies(cell: Cell) -> list[Cell]:
    """The cells ``cell`` needs (its ``needs``), checked: they exist, the experiment can use them, no cycle."""
    if not cell.needs:
        return []
    exp = get_experiment(cell.experiment)
    if exp.use_dependencies is None:
        raise ValueError(f"cell {cell.id!r} needs {list(cell.needs)}, but experiment {exp.name!r} has no "
                         "use_dependencies to pass their artifacts on")
    if cell.id in cell.needs:
        raise ValueError(f"cell {cell.id!r} needs itself")
    deps = get_cells(cell.experiment, list(cell.needs))
    for d in deps:
        if d.needs:
            raise ValueError(f"cell {cell.id!r} needs {d.id!r}, which needs {list(d.needs)}: only one level of "
                             "dependencies is supported")
    return deps


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


def remove_run_dir(run_dir: Path) -> None:
    """Delete a finished run's checkpoint folder, but never the runs of other seeds kept inside it
    (``seed<k>/``, :func:`run_dir_of`): seed 0 finishing must not take seed 1's checkpoint with it."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.is_dir() and re.fullmatch(r"seed\d+", p.name):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: other seeds' runs remain
        run_dir.rmdir()


def cell_model(cell: Cell, profile: Profile):
    """The cell's model config in ``profile`` (the profile's parameter budget, when it sets one)."""
    model = cell.model
    if profile.param_budget is not None and hasattr(model, "param_budget"):
        model = dataclasses.replace(model, param_budget=profile.param_budget)
    for pattern, fields in profile.model_overrides.items():
        if fnmatch.fnmatchcase(cell.id, pattern):
            model = dataclasses.replace(model, **fields)
    return model


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


def _saved_train_config(metrics: dict) -> dict:
    """The artifact's training config, fields added to TrainConfig after it was made at their defaults."""
    saved = metrics.get("train_config", {})
    return {k: v for k, v in (with_defaults(saved) if saved else {}).items() if k not in _VOLATILE}


def _saved_model_config(metrics: dict, model_config) -> dict:
    """The artifact's model config, fields added to the config class after it was made at their defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(model_config) if f.default is not dataclasses.MISSING} \
        if dataclasses.is_dataclass(model_config) else {}
    return {**defaults, **metrics.get("model_config", {})}


def _differences(metrics: dict, model_config, cfg: TrainConfig, ramp: tuple[int, int] | None = None) -> str:
    saved = _saved_train_config(metrics)
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in _VOLATILE}
    model = _saved_model_config(metrics, model_config)
    diffs = [f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(set(saved) | set(wanted))
             if saved.get(k) != wanted.get(k)]
    diffs += [f"model {k}: {model.get(k)!r} -> {v!r}" for k, v in model_config.to_dict().items()
              if v is not None and model.get(k) != v]
    if not _same_ramp(metrics, ramp):
        diffs.append(f"distortion_ramp: {metrics.get('distortion_ramp')!r} -> {None if ramp is None else list(ramp)!r}")
    return "; ".join(diffs) or "unknown"


def _same_run(metrics: dict, model_config, cfg: TrainConfig) -> bool:
    """Whether a finished artifact was made by this model config and this training config."""
    saved = _saved_train_config(metrics)
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in _VOLATILE}
    model = _saved_model_config(metrics, model_config)
    # a None field of the cell's config is one the experiment fills in while running (e.g. a path)
    same_model = all(model.get(k) == v for k, v in model_config.to_dict().items() if v is not None)
    return saved == wanted and same_model


def _same_ramp(metrics: dict, ramp: tuple[int, int] | None) -> bool:
    """Whether a finished artifact was trained with this distortion ramp (in steps; None: none)."""
    saved = metrics.get("distortion_ramp")
    return (None if saved is None else tuple(saved)) == ramp


ARTIFACT_FILES = ("model.pt", "analysis.pt")


class ArtifactError(RuntimeError):
    """A finished artifact is broken (a file missing, corrupt or not the one its metrics name)."""


class ArtifactConflict(RuntimeError):
    """A finished artifact was made with other settings; replacing it needs ``force``."""


def read_metrics(path: Path) -> dict:
    """The metrics dict of an artifact; a corrupt file is named in the error."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"'{path}' cannot be read as an artifact's metrics ({type(e).__name__}: {e}); delete "
                            "its folder and run the cell again") from e
    if not isinstance(metrics, dict):
        raise ArtifactError(f"'{path}' holds {type(metrics).__name__}, not an artifact's metrics dict")
    return metrics


def verify_artifact(folder: Path, metrics: dict | None = None) -> dict:
    """Check a finished artifact: every file present, of the sha256 its metrics record (``files``), and
    loadable; returns its metrics. Raises :class:`ArtifactError` naming the broken file."""
    metrics = read_metrics(folder / "metrics.json") if metrics is None else metrics
    hashes = metrics.get("files", {})
    for name in ARTIFACT_FILES:
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"the artifact in '{folder}' has no {name}")
        if name in hashes and sha256_file(path) != hashes[name]:
            raise ArtifactError(f"'{path}' is not the file its metrics.json records (sha256 differs): it was "
                                "changed or damaged after the run")
        if name not in hashes:  # an artifact from before hashes were recorded: at least it must load
            try:
                safe_torch_load(path)
            except RuntimeError as e:
                raise ArtifactError(str(e)) from e
    return metrics


class CellBusy(RuntimeError):
    """Another live process is training this cell (its lock file names the process)."""


@contextlib.contextmanager
def _cell_lock(run_dir: Path):
    """Hold ``run_dir/lock`` while training, so two processes never train (and checkpoint) one cell at once.
    A lock left by a process that no longer runs (on this machine) is taken over."""
    import os
    import socket

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / "lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = lock.read_text().partition(" ")
            alive = host == socket.gethostname() and pid.isdigit() and _pid_alive(int(pid))
            if alive:
                raise CellBusy(f"process {pid} is training this cell now ('{lock}'); wait for it, or stop it")
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_cell(cell: Cell, profile: str | Profile = "smoke", seed: int = 0, device: str = "auto",
             threads: int | None = None, progress: bool = True, root: Path | None = None,
             command: str | None = None, stop_after_s: float | None = None, force: bool = False) -> dict:
    """Train one cell and write its artifact; returns the metrics dict.

    A finished artifact of the same model and training config (seed included) is verified
    (:func:`verify_artifact`) and loaded, not retrained; a broken one is retrained, with a message naming the
    broken file. One made with other settings raises :class:`ArtifactConflict` naming the differences,
    unless ``force``, which retrains and replaces it. An interrupted run resumes from
    ``<root>/runs/<experiment>/<profile>/<cell>/checkpoint.pt``. A cell other cells need, asked for under a
    profile with ``needs_profile``, is run (or loaded) under that profile. With ``stop_after_s`` the run stops
    after that many seconds of training, keeps its checkpoint and returns
    ``{"cell", "finished": False, "steps", "of"}`` (run the same command again to continue).
    """
    exp = get_experiment(cell.experiment)
    prof = get_profile(cell.experiment, profile)
    if prof.needs_profile and any(cell.id in c.needs for c in get_cells(cell.experiment)):
        # a cell the others need belongs to the profile they take it from: never trained twice under two names
        return run_cell(cell, get_profile(cell.experiment, prof.needs_profile), seed, device, threads, progress, root,
                        command, stop_after_s, force)
    out = artifact_dir(cell, prof.name, root, seed)
    done = out / "metrics.json"
    cfg = train_config(prof, seed, device, threads, progress and is_main_process(), cell.id)
    needs = dependencies(cell)
    model_config = cell_model(cell, prof)
    if needs:
        dep_profile = prof.needs_profile or prof.name
        model_config = exp.use_dependencies(model_config, {d.id: artifact_dir(d, dep_profile, root, seed) for d in needs})
    run_dir = run_dir_of(cell, prof.name, root, seed)
    ramp = prof.ramp_steps(cell.id)
    if done.exists():
        metrics = read_metrics(done)
        if _same_run(metrics, model_config, cfg) and _same_ramp(metrics, ramp):
            try:
                return verify_artifact(out, metrics)
            except ArtifactError as e:
                if is_main_process():
                    print(f"[{cell.experiment} / {prof.name}] {cell.id}: {e}; training it again")
        elif not force:
            raise ArtifactConflict(
                f"'{out}' holds a finished artifact made with other settings ({_differences(metrics, model_config, cfg, ramp)}); "
                "run with --force to replace it, or use another profile or seed")
        # made with other settings (or broken): its finished checkpoint must not be resumed into the new run
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    for dep in needs:  # trained here if missing, verified and loaded if finished
        if progress and is_main_process():
            print(f"[{cell.experiment} / {prof.name}] {cell.id} needs {dep.id}")
        started = time.perf_counter()
        got = run_cell(dep, get_profile(dep.experiment, prof.needs_profile) if prof.needs_profile else prof, seed,
                       device, threads, progress, root, command, stop_after_s, force)
        if not got.get("finished", True):
            return {"cell": cell.id, "finished": False, "steps": 0, "of": cfg.steps, "waiting_for": dep.id}
        if stop_after_s is not None:  # the budget covers the dependency's training too
            stop_after_s = max(stop_after_s - (time.perf_counter() - started), 1e-3)
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
    if is_main_process():
        with _cell_lock(run_dir):
            result = Trainer(model, cfg, loss=exp.loss, callbacks=callbacks, run_dir=run_dir).fit(train_data, eval_data=eval_data)
    else:
        result = Trainer(model, cfg, loss=exp.loss, callbacks=callbacks, run_dir=run_dir).fit(train_data, eval_data=eval_data)
    if not result["finished"]:
        if progress and is_main_process():
            print(f"[{cell.experiment} / {prof.name}] {cell.id}: stopped at step {result['steps']} of {cfg.steps} "
                  f"(checkpoint in {run_dir}); run the same command again to continue")
        return {"cell": cell.id, "finished": False, "steps": result["steps"], "of": cfg.steps,
                "wall_time_s": result["wall_time_s"]}
    analysis = exp.analyse(model, test, cell)
    if result.get("records"):  # what the experiment's callbacks measured along the way
        analysis["records"] = result["records"]
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
        "command": command or f"python -m stnbook run {cell.experiment} --profile {prof.name} "
                              f"--cells {cell.id} --seed {seed}",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if ramp is not None:
        metrics["distortion_ramp"] = list(ramp)
    metrics.update(analysis.pop("metrics", {}))
    if prof.train_size is None and hasattr(train_data, "num_examples"):
        metrics["epochs"] = result["steps"] * cfg.batch_size / train_data.num_examples
    if is_main_process():  # under torchrun, rank 0 alone writes the artifact
        atomic_torch_save({k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                           for k, v in model.state_dict().items()}, out / "model.pt")
        atomic_torch_save(analysis, out / "analysis.pt")
        metrics["files"] = {name: sha256_file(out / name) for name in ARTIFACT_FILES}
        atomic_write_text(done, json.dumps(metrics, indent=1))
        # the artifact now holds the run; its checkpoint is no longer needed (and is not committed)
        remove_run_dir(run_dir)
    return metrics


def load_cell(cell: Cell, profile: str = "full", root: Path | None = None,
              seed: int = 0) -> tuple[dict, nn.Module, dict]:
    """(metrics, model in eval mode on the CPU, analysis) of a finished artifact."""
    out = artifact_dir(cell, profile, root, seed)
    if not (out / "metrics.json").exists():
        raise FileNotFoundError(f"no artifact for {cell.id} in profile {profile!r} at {out}; run "
                                f"`python -m stnbook run {cell.experiment} --profile {profile} --cells {cell.id}`")
    metrics = verify_artifact(out)
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
            found[cell.id] = read_metrics(p)
    return found


def run(experiment: str, profile: str = "smoke", cells: list[str] | None = None, seed: int = 0, device: str = "auto",
        threads: int | None = None, progress: bool = True, root: Path | None = None,
        shard: tuple[int, int] = (0, 1), stop_after_s: float | None = None, force: bool = False) -> dict[str, dict]:
    """Run (or load, when finished) every requested cell; returns metrics by cell id.

    ``shard=(i, n)`` runs only cells i, i + n, i + 2n, ... of the list, so n processes (one per GPU or
    machine, sharing the results folder) cover a whole table between them. ``stop_after_s`` is a wall-time
    budget for the whole call: cells stop (checkpointed) when it is spent, and later cells are not started.
    """
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    command = "python -m stnbook " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
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
                             None if left is None else max(left, 1e-3), force)
    return out


def unfinished_runs(root: Path | None = None) -> list[dict]:
    """Every run that has a checkpoint and no artifact yet, across all experiments, profiles and seeds: ``{"experiment",
    "profile", "cell", "seed", "step", "of", "command"}``, the command being the one that resumes it."""
    base = (root or results_dir()) / "runs"
    out = []
    for name in sorted(load_all()):
        exp = get_experiment(name)
        for profile in sorted(p.name for p in (base / name).iterdir() if p.is_dir()) if (base / name).is_dir() else []:
            if profile not in exp.profiles:
                continue
            for cell in get_cells(name):
                folder = base / name / profile / cell.id
                seeds = [0] + sorted(int(p.name[4:]) for p in folder.glob("seed*") if re.fullmatch(r"seed\d+", p.name))
                for seed in seeds:
                    if not (run_dir_of(cell, profile, root, seed) / "checkpoint.pt").exists():
                        continue  # no run here: skip cell_status, which would read the finished artifact's metrics
                    st = cell_status(cell, profile, root, seed)
                    if st["state"] != "running":
                        continue
                    command = (f"python -m stnbook run {name} --profile {profile} --cells {cell.id}"
                               + (f" --seed {seed}" if seed else ""))
                    out.append({"experiment": name, "profile": profile, "cell": cell.id, "seed": seed,
                                "step": st["step"], "of": st["of"], "command": command})
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
        m = read_metrics(done)
        return {"state": "finished", "step": m.get("steps"), "of": steps, "test_error": m.get("test_error"),
                "wall_time_s": m.get("wall_time_s"), "device": m.get("hardware", {}).get("device")}
    ckpt = run_dir_of(cell, prof.name, root, seed) / "checkpoint.pt"
    if ckpt.exists():
        state = safe_torch_load(ckpt, map_location="cpu")
        return {"state": "running", "step": int(state["step"]), "of": steps,
                "wall_time_s": float(state.get("wall_time_s", 0.0))}
    return {"state": "not started", "step": 0, "of": steps}
