"""Experiments as named cells in named profiles, run by one command and saved as artifacts the book loads.

    python -m stnlib.experiments list
    python -m stnlib.experiments run table1 --profile full            # every cell, resumable
    python -m stnlib.experiments run table1 --profile smoke --cells RTS-cnn RTS-st-cnn-affine

An artifact is a folder ``results/<experiment>/<profile>/<cell>/`` with ``metrics.json`` (test error,
training curves, model and training configs, parameter count, wall time, hardware, the command),
``model.pt`` (float16 state dict) and ``analysis.pt`` (the model's theta and predictions on the first
test images, for the chapter's figures). Checkpoints of unfinished runs live under
``results/runs/`` (not committed); a rerun resumes from them.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data import load_mnist
from ..data.distortions import DISTORTIONS, DistortedMNIST, fixed_test_set
from ..io import atomic_torch_save, atomic_write_text, safe_torch_load
from ..models import ModelConfig, STClassifier, build_model, default_budget
from ..paths import results_dir
from ..train import Trainer, TrainConfig, count_parameters, evaluate, hardware_info, resolve_device


@dataclass(frozen=True)
class Profile:
    """How much compute a run gets. ``steps`` at ``batch_size``; evaluation on ``test_size`` fixed test images."""

    name: str
    steps: int
    batch_size: int
    lr: float = 1e-3
    train_size: int | None = None  # first N training images (None: all 60k)
    test_size: int | None = None  # first N test images (None: all 10k)
    eval_every: int = 0
    description: str = ""


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=150, batch_size=64, lr=2e-3, train_size=10_000, test_size=1_000,
                     description="CI: a few hundred steps on a subset; proves every cell trains"),
    "full": Profile("full", steps=3_000, batch_size=128, lr=1e-3, eval_every=500,
                    description="CPU reproduction budget: 3,000 Adam steps at batch 128 (6.4 epochs), cosine decay"),
}

ANALYSIS_SIZE = 1000  # test images whose theta and predictions are saved for the chapter's figures


@dataclass(frozen=True)
class Cell:
    """One trained model of an experiment: distortion x model."""

    experiment: str
    distortion: str
    model: ModelConfig = field(compare=False)

    @property
    def id(self) -> str:
        m = self.model
        name = m.arch if m.transform is None else f"st-{m.arch}-{m.transform}"
        return f"{self.distortion}-{name}"


def table1_cells() -> list[Cell]:
    """Table 1 (R, RTS, P, E x FCN, CNN, ST-FCN/ST-CNN x affine, projective, TPS) and the TC row."""
    cells = []
    for dist in ("R", "RTS", "P", "E", "TC"):
        size = (DISTORTIONS[dist].canvas,) * 2
        pool = 2 if dist in ("RTS", "TC") else 1
        budget = default_budget(size, width=32)  # the plain CNN's count sets the column's budget
        transforms = ("affine",) if dist == "TC" else ("affine", "projective", "tps")
        for arch in ("fcn", "cnn"):
            cells.append(Cell("table1", dist, ModelConfig(arch, None, size, param_budget=budget)))
            for tf in transforms:
                cells.append(Cell("table1", dist, ModelConfig(arch, tf, size, st_pool=pool, param_budget=budget)))
    return cells


EXPERIMENTS = {"table1": table1_cells}


def get_cells(experiment: str, ids: list[str] | None = None) -> list[Cell]:
    """Cells of ``experiment``, optionally only those whose id is in ``ids`` (unknown ids raise)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; available: {', '.join(EXPERIMENTS)}")
    cells = EXPERIMENTS[experiment]()
    if ids is None:
        return cells
    known = {c.id: c for c in cells}
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"unknown cells {missing} for {experiment}; known: {', '.join(known)}")
    return [known[i] for i in ids]


def artifact_dir(cell: Cell, profile: str, root: Path | None = None) -> Path:
    return (root or results_dir()) / cell.experiment / profile / cell.id


def train_config(profile: Profile, seed: int, device: str, threads: int | None, progress: bool) -> TrainConfig:
    return TrainConfig(steps=profile.steps, batch_size=profile.batch_size, lr=profile.lr, schedule="cosine",
                       eval_every=profile.eval_every, checkpoint_every=250, log_every=25, seed=seed, device=device,
                       num_threads=threads, progress=progress)


def _mnist(split: str, size: int | None):
    x, y = load_mnist(split)
    return (x, y) if size is None else (x[:size], y[:size])


def run_cell(cell: Cell, profile: str | Profile = "smoke", seed: int = 0, device: str = "auto",
             threads: int | None = None, progress: bool = True, root: Path | None = None,
             command: str | None = None) -> dict:
    """Train one cell and write its artifact (see module docstring); returns the metrics dict.

    A finished artifact with the same seed is loaded, not retrained. An interrupted run resumes from
    ``results/runs/<experiment>/<profile>/<cell>/checkpoint.pt``.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = artifact_dir(cell, prof.name, root)
    done = out / "metrics.json"
    if done.exists():
        metrics = json.loads(done.read_text())
        if metrics.get("seed") == seed:
            return metrics
    dev = resolve_device(device)
    train_x, train_y = _mnist("train", prof.train_size)
    test_x, test_y = _mnist("test", prof.test_size)
    test = fixed_test_set(cell.distortion, test_x, test_y)
    data = DistortedMNIST(cell.distortion, train_x, train_y, prof.batch_size, seed=seed, device=dev)
    torch.manual_seed(seed)
    model = build_model(cell.model)
    cfg = train_config(prof, seed, device, threads, progress)
    run_dir = (root or results_dir()) / "runs" / cell.experiment / prof.name / cell.id
    if progress:
        print(f"[{cell.experiment} / {prof.name}] {cell.id}: {cell.model.name}, {count_parameters(model):,} parameters, "
              f"{prof.steps} steps at batch {prof.batch_size} on {dev}")
    result = Trainer(model, cfg, run_dir=run_dir).fit(data, eval_data=(test["x"], test["y"]))
    analysis = analyse(model, test, ANALYSIS_SIZE)
    metrics = {
        "experiment": cell.experiment, "cell": cell.id, "distortion": cell.distortion, "model": cell.model.name,
        "profile": prof.name, "profile_description": prof.description, "seed": seed,
        "test_error": result["final_eval"]["error"], "test_loss": result["final_eval"]["loss"],
        "test_size": int(test["y"].shape[0]), "params": count_parameters(model), "width": model.width,
        "steps": result["steps"], "batch_size": prof.batch_size, "epochs": result["steps"] * prof.batch_size / len(train_y),
        "wall_time_s": result["wall_time_s"], "hardware": result["hardware"],
        "history": result["history"], "eval_history": result["eval_history"],
        "model_config": cell.model.to_dict(), "train_config": cfg.to_dict(),
        "command": command or f"python -m stnlib.experiments run {cell.experiment} --profile {prof.name} "
                              f"--cells {cell.id} --seed {seed}",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_torch_save({k: v.detach().cpu().half() for k, v in model.state_dict().items()}, out / "model.pt")
    atomic_torch_save(analysis, out / "analysis.pt")
    atomic_write_text(done, json.dumps(metrics, indent=1))
    return metrics


@torch.no_grad()
def analyse(model: STClassifier, test: dict, n: int, batch_size: int = 1000) -> dict:
    """Predicted class of every test image (uint8) and theta of the first ``n`` (CPU tensors)."""
    model.eval()
    dev = next(model.parameters()).device
    preds = [model(test["x"][i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(test["y"]), batch_size)]
    out = {"pred": torch.cat(preds).to(torch.uint8)}
    _, theta = model.transform_input(test["x"][:n].to(dev))
    if theta is not None:
        out["theta"] = theta.float().cpu()
    model.train()
    return out


def load_cell(cell: Cell, profile: str = "full", root: Path | None = None) -> tuple[dict, STClassifier, dict]:
    """(metrics, model in eval mode on the CPU, analysis) of a finished artifact."""
    out = artifact_dir(cell, profile, root)
    if not (out / "metrics.json").exists():
        raise FileNotFoundError(f"no artifact for {cell.id} in profile {profile!r} at {out}; run "
                                f"`python -m stnlib.experiments run {cell.experiment} --profile {profile} --cells {cell.id}`")
    metrics = json.loads((out / "metrics.json").read_text())
    model = build_model(replace(ModelConfig.from_dict(metrics["model_config"]), width=metrics["width"]))
    state = safe_torch_load(out / "model.pt")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return metrics, model.eval(), safe_torch_load(out / "analysis.pt")


def load_results(experiment: str, profile: str = "full", root: Path | None = None) -> dict[str, dict]:
    """Metrics of every finished cell of ``experiment`` in ``profile``, by cell id (missing cells left out)."""
    found = {}
    for cell in get_cells(experiment):
        p = artifact_dir(cell, profile, root) / "metrics.json"
        if p.exists():
            found[cell.id] = json.loads(p.read_text())
    return found


def run(experiment: str, profile: str = "smoke", cells: list[str] | None = None, seed: int = 0, device: str = "auto",
        threads: int | None = None, progress: bool = True, root: Path | None = None) -> dict[str, dict]:
    """Run (or load, when finished) every requested cell; returns metrics by cell id."""
    command = "python -m stnlib.experiments " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if Path(sys.argv[0]).name == "__main__.py" else None
    return {c.id: run_cell(c, profile, seed, device, threads, progress, root, command)
            for c in get_cells(experiment, cells)}


__all__ = ["PROFILES", "Profile", "Cell", "EXPERIMENTS", "get_cells", "run_cell", "run", "load_cell", "load_results",
           "artifact_dir", "table1_cells", "analyse", "evaluate", "hardware_info"]
