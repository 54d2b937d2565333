"""Two-digit MNIST addition (paper A.1, Table 4) as an experiment, and the measurement of how two parallel
spatial transformers split the work between the two digits.

Input: two 42 x 42 channels, one MNIST digit in each, each independently RTS-distorted
(:class:`~stnlib.data.pairs.AdditionMNIST`); target: the sum (19 classes). Cells, every one with about the
same number of parameters (:data:`PARAM_BUDGET`, matched by :func:`~stnlib.models.build_model`):

* ``fcn``, ``cnn``: the plain classifiers on the 2-channel input.
* ``st-fcn-<family>``: one spatial transformer that sees both channels and warps both (one theta).
* ``2st-fcn-<family>``: two transformers in parallel (:class:`~stnlib.spatial_transformer.ParallelSpatialTransformers`,
  one shared localisation net with 2 x num_params outputs, or one net each with ``st_shared_loc=False`` as in the
  separate profile); each sees both channels and warps both, and the
  two 2-channel outputs are concatenated (4 channels) for the FCN.

What the paper leaves open, and what we assume:

* The ST-FCN localisation net is the paper's (three FC layers of 32 units) on the whole 2 x 42 x 42 input.
  Every transformer's output is average-pooled by 2 before the classifier, as for RTS in Table 1 (the paper
  says nothing about it for A.1); without it a 4 x 42 x 42 input would leave the 2xST-FCN's classifier
  narrower than its 19 classes at this budget.
* The parameter budget is 200k: the smallest round number above what the ST-FCN localisation net alone
  needs (about 115k, most of it its first layer on 3,528 inputs), leaving its classifier tens of thousands of
  parameters. The paper's budget is not given.
* Both transformers start at the identity (the paper's rule for every regression layer); nothing breaks the
  symmetry between them but the classifier's random weights.

:func:`attention_split` measures the split: the IoU of each transformer's sampled region (the box of
:func:`~stnlib.geometry.sampling_outline`) with each digit's true box (:func:`~stnlib.data.distortions.digit_box`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from stnbook.experiments import Cell, Experiment, Profile, register
from stnbook.paths import load_mnist
from stnlib.data.pairs import ADDITION_CANVAS, ADDITION_CLASSES, AdditionMNIST, addition_test_set
from stnlib.geometry import box_iou, polygon_box, sampling_outline
from stnlib.models import ModelConfig, STClassifier, build_model

EXPERIMENT = "addition"
PARAM_BUDGET = 200_000
FAMILIES = ("affine", "projective", "tps")
ANALYSIS_SIZE = 1000  # test pairs whose theta is saved for the chapter's figures and the split measurement
IOU_THRESHOLD = 0.5

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=60, batch_size=64, lr=1e-3, train_size=10_000, test_size=500,
                     description="CI: 60 steps on a 10k-image subset, 500 test pairs; proves every cell trains"),
    "full": Profile("full", steps=3_000, batch_size=64, lr=1e-3, test_size=5_000,
                    description="CPU budget: 3,000 Adam steps at batch 64 (3.2 epochs of pairs), cosine decay; "
                                "scored on the first 5,000 fixed test pairs"),
    # run for the two-transformer rows only: --profile long --cells 2st-fcn-affine 2st-fcn-tps
    "long": Profile("long", steps=30_000, batch_size=256, lr=1e-3, test_size=5_000, eval_every=3_000,
                    description="40x the full profile's pairs: 30,000 Adam steps at batch 256 (128 epochs of "
                                "pairs), cosine decay; scored on the first 5,000 fixed test pairs"),
}


# The recipe of tensorpack's MNIST-addition example (the best published reimplementation, 8.8% error), read
# from its source: each transformer outputs a 28 x 28 crop of the 42 x 42 canvas at the canvas's resolution
# (starting as the centred crop), found by its own convolutional localisation net (RECIPE_MODEL keeps our one
# shared net; the recipe-separate comparison and the separate profile give each transformer its own); a wide FCN on
# the four channels (about 0.9M parameters); Adam at 5e-4 with epsilon 1e-3; the transformers' updates scaled
# down by 10; batch 128.
RECIPE_MODEL = {"st_out_size": (28, 28), "st_init_scale": 28 / ADDITION_CANVAS, "st_pool": 1, "loc_arch": "cnn"}
RECIPE_TRAIN = {"adam_eps": 1e-3, "loc_lr_mult": 0.1, "schedule": "constant"}
RECIPE_BUDGET = 900_000
ABLATION_STEPS = 8_000
# name: (what differs from the recipe, model-config fields, train-config fields, parameter budget)
ABLATIONS: dict[str, tuple[str, dict, dict, int]] = {
    "recipe": ("the recipe itself", {}, {}, RECIPE_BUDGET),
    "recipe-eps": ("Adam's default epsilon (1e-8)", {}, {"adam_eps": 1e-8}, RECIPE_BUDGET),
    "recipe-lr": ("learning rate 1e-3", {}, {"lr": 1e-3}, RECIPE_BUDGET),
    "recipe-loclr": ("transformers at the full learning rate", {}, {"loc_lr_mult": 1.0}, RECIPE_BUDGET),
    "recipe-fast": ("learning rate 1e-3, transformers at the full rate", {}, {"lr": 1e-3, "loc_lr_mult": 1.0},
                    RECIPE_BUDGET),
    "recipe-separate": ("learning rate 1e-3, transformers at the full rate, each with its own localisation net",
                        {"st_shared_loc": False}, {"lr": 1e-3, "loc_lr_mult": 1.0}, RECIPE_BUDGET),
    "recipe-wide": ("learning rate 1e-3, transformers at the full rate, one shared localisation net twice as wide",
                    {"loc_width": 40}, {"lr": 1e-3, "loc_lr_mult": 1.0}, RECIPE_BUDGET),
    "recipe-fullsize": ("full-size output (42 x 42 from the identity, pooled by 2)",
                        {"st_out_size": None, "st_init_scale": None, "st_pool": 2}, {}, RECIPE_BUDGET),
    "recipe-fcnloc": ("the ST-FCN's fully connected localisation net", {"loc_arch": "fcn"}, {}, RECIPE_BUDGET),
    "recipe-identity": ("transformers starting at the identity (the whole canvas in the 28 x 28 output)",
                        {"st_init_scale": None}, {}, RECIPE_BUDGET),
    "recipe-small": ("a 200k-parameter budget", {}, {}, PARAM_BUDGET),
}


def _ablation(name: str) -> Profile:
    what, model, train, budget = ABLATIONS[name]
    lr = train.get("lr", 5e-4)
    return Profile(name, steps=ABLATION_STEPS, batch_size=128, lr=lr, test_size=5_000, eval_every=2_000,
                   param_budget=budget,
                   description=f"recipe comparison, 2xST-FCN affine: {what}; {ABLATION_STEPS:,} Adam steps at "
                               "batch 128, constant rate; scored on the first 5,000 fixed test pairs",
                   train_overrides={**RECIPE_TRAIN, **{k: v for k, v in train.items() if k != "lr"}},
                   model_overrides={"*st-*": {**RECIPE_MODEL, **model}})


PROFILES.update({name: _ablation(name) for name in ABLATIONS})
# a distortion curriculum (the training task stays the sum of two RTS digits; the test pairs are never
# ramped): both digits upright, unscaled and centred for the first 10% of the steps, so the classifier
# first learns to add digits it can read, then the distortions grow to full strength at 50%
ADDITION_RAMP = (0.1, 0.5)
RAMP_WHAT = "a distortion curriculum (upright centred digits for the first 10% of the steps, full RTS from 50%)"
RECIPE_VARIANTS: dict[str, str] = {name: what for name, (what, *_) in ABLATIONS.items()}
"""Every recipe comparison's profile name and what differs from the recipe, in the chapter's order."""
for _base in ("recipe", "recipe-loclr"):
    _p = _ablation(_base)
    _what = RAMP_WHAT if _base == "recipe" else f"{ABLATIONS[_base][0]} and {RAMP_WHAT}"
    PROFILES[f"{_base}-ramp"] = replace(_p, name=f"{_base}-ramp", distortion_ramp=ADDITION_RAMP,
                                        description=_p.description.replace(ABLATIONS[_base][0], _what))
    RECIPE_VARIANTS[f"{_base}-ramp"] = _what
# run: --profile paper --cells 2st-fcn-affine (then the other rows)
PROFILES["paper"] = Profile(
    "paper", steps=60_000, batch_size=128, lr=5e-4, test_size=5_000, eval_every=5_000, param_budget=RECIPE_BUDGET,
    description="the recipe of the best published reimplementation (28 x 28 crops, convolutional localisation "
                "nets, Adam 5e-4 with epsilon 1e-3, transformers at a tenth of the rate, about 0.9M parameters): "
                "60,000 steps at batch 128 (128 epochs of pairs), the rate divided by 5 for the last 12,000; "
                "scored on the first 5,000 fixed test pairs",
    train_overrides={**RECIPE_TRAIN, "schedule": "step", "lr_decay_steps": (48_000,), "lr_decay_factor": 0.2},
    model_overrides={"*st-*": RECIPE_MODEL})

# The two changes that sped learning most in the recipe comparison (40.0% error at 8,000 steps against the recipe's
# 59.4%: learning rate 1e-3 and the transformers at the full rate), trained 2.5x the paper profile's steps.
# run: --profile fast --cells 2st-fcn-affine
FAST_STEPS = 150_000
PROFILES["fast"] = Profile(
    "fast", steps=FAST_STEPS, batch_size=128, lr=1e-3, test_size=5_000, eval_every=10_000, param_budget=RECIPE_BUDGET,
    description="the paper profile's recipe with learning rate 1e-3 and the transformers at the full rate: "
                f"{FAST_STEPS:,} Adam steps at batch 128 (320 epochs of pairs), the rate divided by 5 for the last "
                "20%; scored on the first 5,000 fixed test pairs",
    train_overrides={**RECIPE_TRAIN, "loc_lr_mult": 1.0, "schedule": "step",
                     "lr_decay_steps": (round(0.8 * FAST_STEPS),), "lr_decay_factor": 0.2},
    model_overrides={"*st-*": RECIPE_MODEL})

# The recipe comparison's largest single effect: each transformer with its own localisation net, as in
# tensorpack's example (11.0% error after 8,000 steps against 40.0% with one shared net, both otherwise the fast
# profile's recipe). Learning that much faster, it gets a shorter schedule than the fast profile, which lets the
# fully connected rows and a second seed of the two-transformer rows fit in the same compute.
# run: --profile separate --cells 2st-fcn-affine 2st-fcn-projective 2st-fcn-tps (then --seed 1; the other rows)
SEPARATE_STEPS = 40_000
PROFILES["separate"] = Profile(
    "separate", steps=SEPARATE_STEPS, batch_size=128, lr=1e-3, test_size=5_000, eval_every=4_000,
    param_budget=RECIPE_BUDGET,
    description="the fast profile's recipe (learning rate 1e-3, transformers at the full rate), each transformer "
                f"with its own localisation net: {SEPARATE_STEPS:,} Adam steps at batch 128 (85 epochs of pairs), "
                "the rate divided by 5 for the last 20%; scored on the first 5,000 fixed test pairs",
    train_overrides={**RECIPE_TRAIN, "loc_lr_mult": 1.0, "schedule": "step",
                     "lr_decay_steps": (round(0.8 * SEPARATE_STEPS),), "lr_decay_factor": 0.2},
    model_overrides={"*st-*": {**RECIPE_MODEL, "st_shared_loc": False}})


def model_config(arch: str, transform: str | None = None, num_transformers: int = 1) -> ModelConfig:
    """The :class:`~stnlib.models.ModelConfig` of one Table 4 row on the 2 x 42 x 42 input."""
    return ModelConfig(arch, transform, (ADDITION_CANVAS, ADDITION_CANVAS), in_channels=2,
                       num_classes=ADDITION_CLASSES, num_transformers=num_transformers,
                       st_pool=2 if transform is not None else 1, param_budget=PARAM_BUDGET)


def cell_id(arch: str, transform: str | None = None, num_transformers: int = 1) -> str:
    if transform is None:
        return arch
    return f"{'2' if num_transformers == 2 else ''}st-{arch}-{transform}"


def addition_cells() -> list[Cell]:
    """FCN, CNN, ST-FCN (affine, projective, TPS) and 2xST-FCN (affine, projective, TPS)."""
    rows = [("fcn", None, 1), ("cnn", None, 1)]
    rows += [("fcn", tf, 1) for tf in FAMILIES] + [("fcn", tf, 2) for tf in FAMILIES]
    return [Cell(EXPERIMENT, cell_id(*r), "addition", model_config(*r)) for r in rows]


def addition_test_pairs(n: int | None = None) -> dict:
    """The fixed addition test set (:func:`~stnlib.data.pairs.addition_test_set` on the MNIST test split)."""
    x, y = load_mnist("test")
    return addition_test_set(x, y, n=n)


def make_data(cell: Cell, profile: Profile, seed: int, device: torch.device, root=None):
    x, y = load_mnist("train")
    if profile.train_size is not None:
        x, y = x[:profile.train_size], y[:profile.train_size]
    return (AdditionMNIST(x, y, profile.batch_size, seed=seed, device=device, ramp=profile.ramp_steps(cell.id)),
            addition_test_pairs(profile.test_size))


def rebuild(metrics: dict) -> STClassifier:
    return build_model(replace(ModelConfig.from_dict(metrics["model_config"]), width=metrics["width"]))


def transformer_boxes(theta: torch.Tensor, transform: str, size: int = ADDITION_CANVAS) -> torch.Tensor:
    """(N, K, 4) pixel boxes (x0, y0, x1, y1) of the regions K transformers sample, from theta (N, P) or (N, K, P)."""
    if theta.dim() == 2:
        theta = theta[:, None]
    n, k, p = theta.shape
    return polygon_box(sampling_outline(theta.reshape(n * k, p).float(), transform, size)).reshape(n, k, 4)


def attention_split(theta: torch.Tensor, transform: str, digit_boxes: torch.Tensor,
                    threshold: float = IOU_THRESHOLD) -> dict:
    """How the transformers' sampled regions cover the two digits of each test pair.

    Args:
        theta: (N, P) for one transformer or (N, K, P) for K parallel ones.
        transform: their family.
        digit_boxes: (N, 2, 4) true boxes of the digit in channel 0 (a) and in channel 1 (b), pixels.

    Returns:
        dict with "iou" (N, K, 2): IoU of transformer k's box with digit a and digit b;
        "prefers_a" (K,): % of pairs where transformer k's IoU with a exceeds that with b;
        "covers" (K, 2): % of pairs with IoU > ``threshold`` per transformer and digit;
        "mean_iou" (K, 2); and, for two transformers, "split" (% of pairs where they prefer different
        digits) and "split_covered" (% where they prefer different digits and each has IoU > ``threshold``
        with the digit it prefers). Two transformers at the identity both sample the whole canvas, whose
        box often has IoU > 0.5 with both digits: "covers" alone does not show attention, "split" does.

    Examples:
        >>> boxes = torch.tensor([[[0.0, 0, 20, 20], [20.0, 20, 40, 40]]])
        >>> theta = torch.tensor([[[1.0, 0, 0], [1.0, 0, 0]]])  # two attention thetas at the identity
        >>> s = attention_split(theta, "attention", boxes)
        >>> s["split"], s["prefers_a"].tolist()
        (0.0, [0.0, 0.0])
    """
    boxes = transformer_boxes(theta, transform, ADDITION_CANVAS)
    db = digit_boxes.float()
    iou = torch.stack([box_iou(boxes, db[:, None, 0]), box_iou(boxes, db[:, None, 1])], dim=2)  # (N, K, 2)
    prefers_a = iou[..., 0] > iou[..., 1]
    covers = iou > threshold
    out = {"iou": iou, "prefers_a": 100 * prefers_a.float().mean(0), "covers": 100 * covers.float().mean(0),
           "mean_iou": iou.mean(0)}
    if iou.shape[1] == 2:
        differ = prefers_a[:, 0] != prefers_a[:, 1]
        best = iou.max(dim=2).values  # each transformer's IoU with the digit it prefers
        out["split"] = 100 * differ.float().mean().item()
        out["split_covered"] = 100 * (differ & (best > threshold).all(dim=1)).float().mean().item()
    return out


@torch.no_grad()
def analyse(model: STClassifier, test: dict, cell: Cell, batch_size: int = 1000) -> dict:
    """Predicted sum of every test pair (uint8); for ST models theta of the first ANALYSIS_SIZE pairs and the
    split measurement (:func:`attention_split`), whose summary numbers go into metrics.json."""
    model.eval()
    dev = next(model.parameters()).device
    preds = [model(test["x"][i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(test["y"]), batch_size)]
    out = {"pred": torch.cat(preds).to(torch.uint8)}
    n = min(ANALYSIS_SIZE, len(test["y"]))
    _, theta = model.transform_input(test["x"][:n].to(dev))
    if theta is not None:
        theta = theta.float().cpu()
        split = attention_split(theta, cell.model.transform, test["box"][:n])
        out.update(theta=theta, iou=split["iou"])
        summary = {"prefers_a": split["prefers_a"].tolist(), "covers": split["covers"].tolist(),
                   "mean_iou": split["mean_iou"].tolist(), "split_pairs": n}
        if "split" in split:
            summary.update(split=split["split"], split_covered=split["split_covered"])
        out["metrics"] = {"attention_split": summary}
    model.train()
    return out


ADDITION = register(Experiment(EXPERIMENT, addition_cells, PROFILES, make_data, build_model, rebuild, analyse))

__all__ = ["ADDITION", "FAMILIES", "PARAM_BUDGET", "addition_cells", "attention_split", "cell_id", "model_config",
           "addition_test_pairs", "transformer_boxes"]
