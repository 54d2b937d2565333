"""The 3D spatial transformer (paper A.3): MNIST digits extruded into volumes and posed in 3D, classified from a 2D
projection, with and without a 3D affine transformer in front.

Data (:mod:`stnlib.data.volumes`): each digit is an 8-pixel-thick slab in a 40^3 volume, rotated about x, y and z
by up to 45 degrees each, scaled by 0.7-1.2 and moved inside the volume. Models (:mod:`stnlib.models3d`): the
plain classifier sees the volume flattened along the depth; the 3D ST model first resamples the volume with a
3D affine transform predicted from it, then flattens. Both classifiers see a 20 x 20 image: the plain one the
40 x 40 projection average-pooled by 2, the transformer model the projection of its 20^3 output (a downsampling
transformer, the cheapest sampling of the model). The CNN column's budget is that of the plain CNN at width 48;
every model is brought to it, as in Table 1.

:func:`analyse` measures, on the test set, how much of the applied 3D rotation each transformer undoes
(:func:`~stnlib.analysis.volume_rectification`), and :class:`VolumeRotationProbe` takes the same measure at every
evaluation, so each artifact's ``eval_history`` shows it grow with training.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from stnbook.experiments import Cell, Experiment, Profile, register
from stnbook.paths import load_mnist
from stnlib.analysis import volume_rectification
from stnlib.data.volumes import VolumeMNIST, VolumeSpec, volume_test_set
from stnlib.models import count_parameters
from stnlib.models3d import VolumeModelConfig, VolumeSTClassifier, build_volume_model
from stnlib.train import Callback

EXPERIMENT = "volume3d"
SPEC = VolumeSpec()  # 40^3 volumes (the paper's 60^3: VolumeSpec(size=stnlib.data.volumes.PAPER_SIZE))
BUDGET_WIDTH = 48  # the plain CNN of this width sets every model's parameter budget
PROBE_SIZE = 500  # test volumes the probe measures at every evaluation

# Every cell in fp32: the same precision for the models compared (bf16 made no step faster here: rendering the
# volumes and the trilinear sampler, which stays in fp32, take most of the time), and channels-last is 4-D only.
_TRAIN = {"precision": "fp32", "channels_last": False}
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=60, batch_size=32, lr=2e-3, train_size=5_000, test_size=200, eval_every=30,
                     train_overrides=_TRAIN,
                     description="CI: 60 steps at batch 32 on a 5k-digit subset; proves every cell trains and the "
                                 "rotation measure runs"),
    "full": Profile("full", steps=15_000, batch_size=64, lr=1e-3, test_size=2_000, eval_every=1_500,
                    train_overrides=_TRAIN,
                    description="CPU budget: 15,000 Adam steps at batch 64 (16 epochs of freshly posed volumes), "
                                "cosine decay, fp32; 2,000 fixed test volumes. Measured on one thread (Intel Xeon, "
                                "two other runs sharing its two cores): 8.2 steps/s for the FCN, 6.6 for the CNN, "
                                "6.3 for the 3D ST-FCN, 3.7 for the 3D ST-CNN (CPU time; rendering a batch of "
                                "volumes takes 0.12 s of each step), so 0.5 to 1.2 CPU-hours a cell"),
}


def model_config(arch: str, transform: str | None, spec: VolumeSpec = SPEC) -> VolumeModelConfig:
    """The cell's model: both classifiers see a 20 x 20 image (see the module docstring)."""
    size = (spec.size,) * 3
    scale = spec.size / spec.thickness  # a digit facing the viewer then has ink near 1 in the projection
    if transform is None:
        return VolumeModelConfig(arch, None, size, pool=2, projection_scale=scale)
    return VolumeModelConfig(arch, transform, size, st_out_size=(spec.size // 2,) * 3, projection_scale=scale)


def budget(spec: VolumeSpec = SPEC) -> int:
    """Parameters of the plain CNN at :data:`BUDGET_WIDTH`: every model's budget."""
    cfg = model_config("cnn", None, spec)
    return count_parameters(VolumeSTClassifier(cfg, BUDGET_WIDTH))


CELLS = {"cnn": ("cnn", None), "st3d-cnn": ("cnn", "affine3d"), "fcn": ("fcn", None), "st3d-fcn": ("fcn", "affine3d")}


def volume_cells() -> list[Cell]:
    """The plain CNN and FCN on the flattened volume, and both behind a 3D affine transformer."""
    b = budget()
    return [Cell(EXPERIMENT, cid, "volume", replace(model_config(arch, tf), param_budget=b))
            for cid, (arch, tf) in CELLS.items()]


def make_data(cell: Cell, profile: Profile, seed: int, device: torch.device, root=None):
    x, y = load_mnist("train")
    tx, ty = load_mnist("test")
    if profile.train_size is not None:
        x, y = x[:profile.train_size], y[:profile.train_size]
    return (VolumeMNIST(x, y, profile.batch_size, seed, SPEC, device),
            volume_test_set(tx, ty, SPEC, n=profile.test_size or 2_000))


def rebuild(metrics: dict) -> VolumeSTClassifier:
    return build_volume_model(replace(VolumeModelConfig.from_dict(metrics["model_config"]), width=metrics["width"]))


@torch.no_grad()
def predict(model: VolumeSTClassifier, x: torch.Tensor, batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(predicted classes, theta or None) of ``model`` on volumes ``x``, in eval mode, on the model's device;
    CPU tensors."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    preds, thetas = [], []
    for i in range(0, len(x), batch_size):
        warped, theta = model.transform_input(x[i:i + batch_size].to(dev))
        preds.append(model.classify(warped).argmax(1).cpu())
        if theta is not None:
            thetas.append(theta.float().cpu())
    model.train(was_training)
    return torch.cat(preds), (torch.cat(thetas) if thetas else None)


class VolumeRotationProbe(Callback):
    """At every evaluation of a transformer model: :func:`~stnlib.analysis.volume_rectification` on the first
    :data:`PROBE_SIZE` test volumes, added to the eval history as ``undone``, ``residual_deg`` and
    ``residual_tilt_deg``."""

    def __init__(self, test: dict):
        self.x = test["x"][:PROBE_SIZE]
        self.rotation = test["rotation"][:PROBE_SIZE]
        self.angles = test["params"]["angles_deg"][:PROBE_SIZE]

    @torch.no_grad()
    def on_eval(self, trainer, step: int, eval_metrics: dict) -> None:
        model = trainer.model
        if getattr(model, "st", None) is None:
            return
        was_training = model.training
        model.eval()
        dev = next(model.parameters()).device
        theta = torch.cat([model.st.localise(self.x[i:i + 250].to(dev)).float().cpu()
                           for i in range(0, len(self.x), 250)])
        model.train(was_training)
        fit = volume_rectification(self.rotation, self.angles, theta)
        trainer.eval_history[-1].update({k: fit[k] for k in ("undone", "residual_deg", "residual_tilt_deg")})


def analyse(model: VolumeSTClassifier, test: dict, cell: Cell) -> dict:
    """Predicted class of every test volume (uint8), the test labels and applied poses (so the chapter's
    figures need not render the test set again), theta (transformer models) and the rotation measure."""
    pred, theta = predict(model, test["x"])
    out = {"pred": pred.to(torch.uint8), "y": test["y"].to(torch.uint8),
           "angles_deg": test["params"]["angles_deg"].float(), "scale": test["params"]["scale"].float(),
           "rotation": test["rotation"].float()}
    if theta is not None:
        out["theta"] = theta
        out["metrics"] = {"rectification": volume_rectification(test["rotation"], test["params"]["angles_deg"], theta)}
    return out


VOLUME3D = register(Experiment(EXPERIMENT, volume_cells, PROFILES, make_data, build_volume_model, rebuild, analyse,
                               callbacks=lambda cell, test: [VolumeRotationProbe(test)]))
