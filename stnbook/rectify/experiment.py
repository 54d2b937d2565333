"""When does a spatial transformer rectify? Rotated MNIST, measured by how much of each rotation theta undoes.

The paper's Table 1 figure shows R test digits coming out of the affine ST-CNN upright. Whether a trained
transformer does that is measured here, not assumed: :func:`~stnlib.analysis.rectification` fits the
rotation implied by theta (:func:`~stnlib.analysis.rotation_deg`) against the applied angle on the fixed test
set; |slope| near 1 with |r| near 1 means the rotation is undone, a slope near 0 means the transformer leaves
it to the classifier. :class:`RectificationProbe` takes the measure at every evaluation, so each artifact's
``eval_history`` shows how it grows with training.

Cells: the affine ST-FCN and ST-CNN on R (rotations in [-90, 90] degrees, the paper's) and on R180 (the
whole circle, not in the paper): with every pose possible, which pose does the transformer settle on for
each class? Models use the Table 1 R column's budget (a width-32 CNN, about 42k parameters): a smaller
classifier leaves more of the work to the transformer.
"""

from __future__ import annotations

import torch

from stnbook.experiments import Cell, Experiment, Profile, register
from stnbook.table1.experiment import PAPER_BUDGET, make_data, rebuild
from stnlib.analysis import rectification, rotation_deg
from stnlib.models import ModelConfig, build_model, default_budget
from stnlib.train import Callback

PROBE_SIZE = 1000  # test images the probe measures at every evaluation

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=100, batch_size=64, lr=2e-3, train_size=5_000, test_size=500, eval_every=50,
                     description="CI: 100 steps on a 5k-image subset; proves the cells train and the probe runs"),
    "full": Profile("full", steps=60_000, batch_size=128, lr=1e-3, eval_every=5_000,
                    description="60,000 Adam steps at batch 128 (128 epochs), cosine decay, lr 1e-3"),
}
# does a faster-learning localisation net rectify sooner? The full profile with the transformer's parameters at
# 3x / 10x the classifier's rate (the rectification slope of the full profile grows while the rate is high and
# stops as the cosine decay ends)
for _mult in (3, 10):
    PROFILES[f"loclr{_mult}"] = Profile(
        f"loclr{_mult}", steps=60_000, batch_size=128, lr=1e-3, eval_every=5_000,
        train_overrides={"loc_lr_mult": float(_mult)},
        description=f"the full profile with the localisation net at {_mult}x the learning rate")
# does a classifier with less capacity to absorb the rotation itself push the transformer to undo it?
PROFILES["narrow"] = Profile(
    "narrow", steps=60_000, batch_size=128, lr=1e-3, eval_every=5_000, model_overrides={"*-st-cnn-*": {"width": 12}},
    description="the full profile with the ST-CNN's classifier at width 12 (instead of the budget's 27)")
# does a classifier that first learns upright digits make the transformer undo the rotations? A distortion
# curriculum: upright digits for the first 5% of the steps, then rotations growing linearly to the full range
# at 40% (the test set is the same fixed, fully rotated one)
PROFILES["ramp"] = Profile(
    "ramp", steps=60_000, batch_size=128, lr=1e-3, eval_every=5_000, distortion_ramp=(0.05, 0.4),
    description="the full profile with a distortion curriculum: upright digits for the first 5% of the steps, "
                "then rotations growing linearly to their full range at 40%")
# the curriculum at the Table 1 adam profile's model size (150k parameters per model): does a wider classifier,
# which absorbs more of the rotation by itself, still leave the transformer to undo it, and at what error?
PROFILES["ramp-150k"] = Profile(
    "ramp-150k", steps=60_000, batch_size=128, lr=1e-3, eval_every=5_000, distortion_ramp=(0.05, 0.4),
    param_budget=PAPER_BUDGET, train_overrides={"checkpoint_every": 1_000, "log_every": 100},
    description="the ramp profile at 150k parameters per model (the Table 1 adam profile's size)")


def rectify_cells() -> list[Cell]:
    """Affine ST-FCN and ST-CNN on R (+-90 degrees) and R180 (+-180 degrees), at the R column's budget."""
    budget = default_budget((28, 28), width=32)
    return [Cell("rectify", f"{kind}-st-{arch}-affine", kind,
                 ModelConfig(arch, "affine", (28, 28), param_budget=budget))
            for kind in ("R", "R180") for arch in ("fcn", "cnn")]


@torch.no_grad()
def predict_theta(model, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, theta) of ``model`` on ``x``, in eval mode, on the model's device; CPU tensors."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    preds, thetas = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev)
        warped, theta = model.transform_input(xb)
        preds.append(model.classify(warped).argmax(1).cpu())
        thetas.append(theta.float().cpu())
    model.train(was_training)
    return torch.cat(preds), torch.cat(thetas)


class RectificationProbe(Callback):
    """At every evaluation: the rectification fit on the first :data:`PROBE_SIZE` test images, added to the
    eval history as ``rect_slope`` and ``rect_r``."""

    def __init__(self, test: dict):
        self.x = test["x"][:PROBE_SIZE]
        self.angle = test["params"]["angle_deg"][:PROBE_SIZE]

    def on_eval(self, trainer, step: int, eval_metrics: dict) -> None:
        _, theta = predict_theta(trainer.model, self.x)
        fit = rectification(self.angle, rotation_deg(theta))
        trainer.eval_history[-1].update({"rect_slope": fit["slope"], "rect_r": fit["r"]})


SNAPSHOT_SIZE = 12  # test images whose transformer output is recorded along the way
SNAPSHOT_STEPS = (0, 100, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 30_000, 60_000)


class ThetaSnapshots(Callback):
    """The transformer over training: theta of the first :data:`SNAPSHOT_SIZE` test images at each of
    ``steps`` (those within the run), kept in ``trainer.records["snapshots"]`` as ``{"step", "theta"}`` (so a
    resumed run keeps the earlier ones) and saved with the artifact's analysis; the outputs are the test
    images warped with these thetas."""

    def __init__(self, test: dict, steps=SNAPSHOT_STEPS):
        self.x = test["x"][:SNAPSHOT_SIZE]
        self.steps = set(int(s) for s in steps)

    def _take(self, trainer, step: int) -> None:
        snaps = trainer.records.setdefault("snapshots", [])
        if step in self.steps and all(s["step"] != step for s in snaps):
            _, theta = predict_theta(trainer.model, self.x)
            snaps.append({"step": step, "theta": theta})

    def on_train_start(self, trainer) -> None:
        self._take(trainer, trainer.step)

    def on_step_end(self, trainer, step: int, metrics: dict) -> None:
        self._take(trainer, step)


def analyse(model, test: dict, cell: Cell) -> dict:
    """Predicted class and theta of every test image, and the rectification fit on all of them."""
    pred, theta = predict_theta(model, test["x"])
    fit = rectification(test["params"]["angle_deg"], rotation_deg(theta))
    return {"pred": pred.to(torch.uint8), "theta": theta,
            "metrics": {"rectification": fit}}


RECTIFY = register(Experiment("rectify", rectify_cells, PROFILES, make_data, build_model, rebuild, analyse,
                              callbacks=lambda cell, test: [RectificationProbe(test), ThetaSnapshots(test)]))
