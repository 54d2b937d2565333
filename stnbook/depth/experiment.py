"""A transformer at any depth (paper Sec. 3.4): the Table 1 CNN with an affine spatial transformer at the input,
after its first block, after its second block, or at the input and after the first block, on RTS and TC.

Data: Table 1's (:func:`stnbook.table1.experiment.make_data`, the cell's task is the distortion). Models:
:mod:`stnlib.models_depth`; every model of a column has the parameter count of the column's plain CNN at width 32
(Table 1's budget, :func:`~stnlib.models.default_budget`), reached by choosing the CNN's width. :func:`analyse`
saves each model's predictions, the thetas of the first test images, and the cost of one training step of the
model against the plain CNN's, measured in the same process at the training batch size.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from stnbook.experiments import Cell, Experiment, Profile, register
from stnbook.table1.experiment import make_data as table1_data
from stnlib.analysis import scale_of
from stnlib.data.distortions import DISTORTIONS
from stnlib.models import default_budget
from stnlib.models_depth import DepthModelConfig, DepthSTClassifier, build_depth_model, step_times
from stnlib.train import fast_settings

EXPERIMENT = "depth"
TASKS = ("RTS", "TC")
MODELS: dict[str, tuple[str, ...]] = {  # cell name -> where the transformers sit
    "cnn": (), "st-input": ("input",), "st-block1": ("block1",), "st-block2": ("block2",),
    "st-multi": ("input", "block1"),
}
ANALYSIS_SIZE = 1000  # test images whose thetas are saved

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=120, batch_size=64, lr=2e-3, train_size=10_000, test_size=500,
                     description="CI: 120 steps at batch 64 on a 10k-image subset; proves every cell trains (the "
                                 "chapter trains the RTS column: a TC model was still near chance after 120 steps)"),
    "full": Profile("full", steps=12_000, batch_size=128, lr=1e-3, eval_every=2_000,
                    description="Table 1's long recipe: 12,000 Adam steps at batch 128 (25.6 epochs), cosine decay. "
                                "Timed with 60-step runs on one thread of an Intel Xeon whose two cores other "
                                "trainings shared: 0.08 to 0.2 s a step (data included) on RTS and TC alike, so "
                                "about 15 to 40 CPU-minutes a cell, 3 to 7 CPU-hours for all ten"),
}
BENCH = {"smoke": (1, 3), "full": (3, 15)}  # profile -> (warm-up rounds, timed rounds) of the step-cost benchmark
SMOKE_CELLS = [f"RTS-{name}" for name in MODELS]  # what the chapter trains in its smoke profile


def model_config(task: str, name: str) -> DepthModelConfig:
    """The model ``name`` of :data:`MODELS` on ``task``'s canvas, at the column's parameter budget."""
    size = (DISTORTIONS[task].canvas,) * 2
    return DepthModelConfig(sites=MODELS[name], in_size=size, param_budget=default_budget(size, width=32))


def depth_cells() -> list[Cell]:
    """Every model of :data:`MODELS` on RTS and TC."""
    return [Cell(EXPERIMENT, f"{task}-{name}", task, model_config(task, name)) for task in TASKS for name in MODELS]


def make_data(cell: Cell, profile: Profile, seed: int, device: torch.device, root=None):
    """Table 1's training stream and fixed test set of the cell's distortion, plus what the benchmark needs."""
    train, test = table1_data(cell, profile, seed, device, root)
    warmup, repeats = BENCH.get(profile.name, BENCH["full"])
    test["benchmark"] = {"batch_size": profile.batch_size, "warmup": warmup, "repeats": repeats}
    return train, test


def rebuild(metrics: dict) -> DepthSTClassifier:
    return build_depth_model(replace(DepthModelConfig.from_dict(metrics["model_config"]), width=metrics["width"]))


def step_cost(config: DepthModelConfig, batch_size: int, warmup: int, repeats: int, device) -> dict[str, float]:
    """Median seconds per training step of ``config``'s model and of the plain CNN of its column, timed in turn in
    this process on the same batch (:func:`~stnlib.models_depth.step_times`) with the precision and memory format
    the trainer picks for the device (:func:`~stnlib.train.fast_settings`), and their ratio."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, config.in_channels, *config.in_size, generator=gen).to(device)
    y = torch.randint(0, config.num_classes, (batch_size,), generator=gen).to(device)
    torch.manual_seed(0)
    models = {"model": build_depth_model(config).to(device),
              "cnn": build_depth_model(replace(config, sites=(), width=None)).to(device)}
    fast = fast_settings(device, models["model"])
    if fast["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    t = step_times(models, x, y, repeats=repeats, warmup=warmup,
                   autocast=torch.bfloat16 if fast["precision"] == "bf16" else None)
    return {"step_s": t["model"]["median_s"], "cnn_step_s": t["cnn"]["median_s"],
            "relative": t["model"]["median_s"] / t["cnn"]["median_s"], "batch_size": batch_size,
            "precision": fast["precision"], "threads": torch.get_num_threads()}


@torch.no_grad()
def analyse(model: DepthSTClassifier, test: dict, cell: Cell, batch_size: int = 500) -> dict:
    """Predicted class of every test image (uint8), each transformer's theta on the first :data:`ANALYSIS_SIZE`
    (by site) and, in the metrics, the step cost against the plain CNN (:func:`step_cost`)."""
    model.eval()
    dev = next(model.parameters()).device
    preds = [model(test["x"][i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(test["y"]), batch_size)]
    thetas = model.thetas(test["x"][:ANALYSIS_SIZE].to(dev))
    model.train()
    bench = test.get("benchmark", {"batch_size": 128, "warmup": 3, "repeats": 15})
    cost = step_cost(replace(model.config, width=model.width), bench["batch_size"], bench["warmup"], bench["repeats"], dev)
    thetas = {s: t.float().cpu() for s, t in thetas.items()}
    box = test["box"][:ANALYSIS_SIZE].float()
    sites = {s: site_measures(model.cpu(), thetas, s, box) for s in thetas}
    model.to(dev)
    return {"pred": torch.cat(preds).to(torch.uint8), "y": test["y"].to(torch.uint8), "thetas": thetas, "box": box,
            "metrics": {"step_cost": cost, "sites": sites}}


def site_measures(model: DepthSTClassifier, thetas: dict[str, torch.Tensor], site: str,
                  box: torch.Tensor) -> dict[str, float]:
    """What the transformer at ``site`` does on the analysed test images, in input pixels
    (:meth:`~stnlib.models_depth.DepthSTClassifier.input_outline`): ``scale``, the mean linear size of its sampled
    region relative to its map (``sqrt|det|`` of theta's 2x2 block; 1 at the identity); ``shift_px``, the mean
    distance of the region's centre from the map's centre; ``follow``, the correlation between the region's centre
    and the digit's centre (``box``: (N, 4) x0, y0, x1, y1), averaged over x and y (0 for a region that does not move
    with the digit, 1 for one whose centre tracks it linearly)."""
    outline = model.input_outline(thetas, site)[:, :-1]  # (N, 4, 2) without the repeated vertex
    centre = outline.mean(1)
    digit = torch.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], 1)
    frame = model.input_outline({s: model.st[s].transform.identity().expand(len(box), -1) for s in model.st},
                                site)[:, :-1].mean(1)
    follow = [float(torch.corrcoef(torch.stack([centre[:, k], digit[:, k]]))[0, 1].nan_to_num(0.0)) for k in (0, 1)]
    return {"scale": float(scale_of(thetas[site]).mean()), "shift_px": float((centre - frame).norm(dim=1).mean()),
            "follow": sum(follow) / 2}


DEPTH = register(Experiment(EXPERIMENT, depth_cells, PROFILES, make_data, build_depth_model, rebuild, analyse))
