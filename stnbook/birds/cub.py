"""The birds experiment on the real CUB-200-2011 (paper Table 3), for machines that have it: "birds-cub".

The same models as the proxy's cells (:class:`~stnbook.birds.model.BirdClassifier`: the plain CNN on the
downsampled image, and N parallel attention transformers with a fixed scale and regressed locations, a shared
localisation net at a lower learning rate, crops laid out on a grid at the start), trained with class labels only
on CUB's official split (5,994 training and 5,794 test images, 200 classes) as read by :mod:`stnlib.data.cub`.

Sizes. Images are resized (aspect not kept) to 240 px; the plain CNN and the localisation net see the whole image
block-averaged to 80 px and each transformer samples a 40 px crop at the input's native resolution: the proxy's
proportions exactly (in_size / 3, in_size / 6, so s = 1/6), chosen over the paper's s = 0.5 (448 px in, 224 px
crops) because a crop a sixth of the image wide rarely holds both the head and the body centre, so "which part
does each transformer hold" (the analysis) has an answer, and 240 px keeps a whole cached split near 1 GB.
Deviations from the paper: the small backbone trained from scratch, not an ImageNet-pretrained Inception-BN (no
weights are downloaded here), so accuracies are far below Table 3's; what the cells show is where the crops go.

The data set is never downloaded: it is read from ``data/CUB_200_2011`` or ``$STNBOOK_CUB_ROOT``
(:func:`stnbook.paths.cub_root`); without it every cell stops at once with :class:`CUBNotFound`, which says where
to get it and where to put it. Head and body centres are the means of the visible head and body parts of CUB's
15 annotated parts (:meth:`~stnlib.data.cub.CUBMetadata.head_body_centres`); they are used only to measure, never
to train.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stnbook.birds.data import crop_contains
from stnbook.birds.model import (
    BirdClassifier,
    BirdsConfig,
    birds_loss,
    build_birds_model,
    part_hit_rates,
    predict,
    tiling_init,
)
from stnbook.experiments import Cell, Experiment, Profile, cell_model, register
from stnbook.paths import CUB_ROOT_ENV, cub_root, data_dir
from stnlib.data.cub import CUBBatches, CUBDataError, CUBImages, CUBMetadata, find_root, load_cub

CUB_PAGE = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
NUM_CLASSES = 200
IN_SIZE, LOW_RES, CROP = 240, 80, 40
WIDTH = 32  # the proxy's 16 gives 64 features per crop; 200 classes get twice that
TRANSFORMERS = {"cnn": 0, "2xst": 2, "4xst": 4}
# The proxy's choice (stnbook.birds.experiment), not tuned on CUB: localisation nets at 0.3x the base rate.
_TRAIN = {"loc_lr_mult": 0.3}
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=3, batch_size=4, lr=2e-3, test_size=16, train_overrides=_TRAIN,
                     model_overrides={"*": dict(in_size=48, low_res=16, crop=8, width=4, loc_width=4)},
                     description="CI: 3 steps at batch 4 on 48 px images (16 px view, 8 px crops), 16 test images; "
                                 "proves the cells train and the analysis runs on any CUB tree"),
    "full": Profile("full", steps=7500, batch_size=32, lr=2e-3, eval_every=1500, train_overrides=_TRAIN,
                    description="7,500 Adam steps at batch 32 (40 epochs of the 5,994 training images, mirrored "
                                "at random), cosine decay, localisation nets at 0.3x the rate; all 5,794 test "
                                "images. Estimated: minutes a cell on one GPU (decoding the 11,788 JPEGs once "
                                "dominates), 2-7 h a cell on 2 CPU cores (1-3 s a step); 2 GB of cached images"),
}


class CUBNotFound(CUBDataError):
    """CUB-200-2011 is not where the birds-cub cells look for it (the message says where to get and put it)."""


def find_cub(root: str | Path | None = None) -> Path:
    """The unpacked ``CUB_200_2011`` folder: under ``root``, else :func:`~stnbook.paths.cub_root`.

    Raises:
        CUBNotFound: no ``images.txt`` there; the message names the folder looked in, Caltech's page and
            where to unpack the archive.
    """
    where = Path(root) if root is not None else cub_root()
    try:
        return find_root(where)
    except CUBDataError:
        raise CUBNotFound(
            f"CUB-200-2011 is not at '{where}' (no images.txt there or in a CUB_200_2011 folder inside it). "
            f"The birds-cub cells train on the real data set, which is never downloaded for you: get "
            f"CUB_200_2011.tgz from Caltech's CUB-200-2011 page ({CUB_PAGE}) and unpack it into "
            f"'{data_dir()}', so that '{data_dir() / 'CUB_200_2011' / 'images.txt'}' exists, or set "
            f"{CUB_ROOT_ENV} to the unpacked CUB_200_2011 folder. The proxy's cells (experiment 'birds') "
            "need no data.") from None


def model_config(num_transformers: int) -> BirdsConfig:
    """A cell's model: 240 px input, 80 px low-resolution view, 40 px native-resolution crops (s = 1/6), 200 classes."""
    return BirdsConfig(num_transformers=num_transformers, in_size=IN_SIZE, low_res=LOW_RES, crop=CROP,
                       num_classes=NUM_CLASSES, width=WIDTH)


def cub_cells() -> list[Cell]:
    return [Cell("birds-cub", cid, "cub", model_config(n)) for cid, n in TRANSFORMERS.items()]


def scored_rows(num_test: int, n: int | None) -> torch.Tensor:
    """Which of the ``num_test`` test images a run scores: all of them, or ``n`` spread evenly over the split
    (the split is ordered by image id, so by class: the first ``n`` would hold a few classes only).

    Examples:
        >>> scored_rows(10, 4).tolist(), scored_rows(3, None).tolist()
        ([0, 3, 6, 9], [0, 1, 2])
    """
    if n is None or n >= num_test:
        return torch.arange(num_test)
    return torch.linspace(0, num_test - 1, n).round().long()


def cub_test_set(meta: CUBMetadata, size: int, n: int | None = None) -> dict[str, torch.Tensor]:
    """The test images at ``size`` px (:func:`scored_rows`): "x" (T, 3, S, S) uint8, "y" (T,) int64, "parts" (T, 2, 2)
    normalised (x, y) head and body centres (NaN where not visible), "rows" (T,) rows of the test split."""
    images = CUBImages(meta, "test", size)
    rows = scored_rows(len(images), n)
    items = [images[int(i)] for i in rows]
    return {"x": torch.stack([it[0] for it in items]), "y": torch.tensor([it[1] for it in items]),
            "parts": torch.stack([it[2] for it in items]), "rows": rows}


def make_data(cell: Cell, profile: Profile, seed: int, device: torch.device, root=None):
    """(training batches of the official train split, mirrored at random; the test set) at the cell's input size."""
    meta = load_cub(find_cub())
    cfg = cell_model(cell, profile)
    if int(meta.labels.max()) >= cfg.num_classes:
        raise CUBDataError(f"'{meta.root}' has class ids up to {int(meta.labels.max()) + 1}, more than the "
                           f"{cfg.num_classes} outputs of {cfg.name}")
    train = CUBBatches(CUBImages(meta, "train", cfg.in_size, cache=True), profile.batch_size, seed, flip=True)
    return train, cub_test_set(meta, cfg.in_size, profile.test_size)


def rebuild(metrics: dict) -> BirdClassifier:
    return BirdClassifier(BirdsConfig.from_dict(metrics["model_config"]))


def hit_table(theta: torch.Tensor, parts: torch.Tensor, scale: float) -> list[dict[str, float]]:
    """Per transformer: % of the test images with a visible head (body) whose crop contains its centre, and % of
    the images with both visible whose crop contains neither.

    Args:
        theta: (T, N, 2) crop centres.
        parts: (T, 2, 2) head and body centres, NaN where not visible.
        scale: the fixed attention scale.
    """
    hits = part_hit_rates(theta, parts, scale) * 100  # (N, 2)
    both = ~parts.isnan().any(-1).any(-1)  # (T,)
    inside = crop_contains(theta[both], parts[both], scale).any(-1)  # (T', N)
    neither = 100 * (~inside).float().mean(0) if both.any() else torch.zeros(theta.shape[1])
    return [{"head": h[0].item(), "body": h[1].item(), "neither": no.item()} for h, no in zip(hits, neither)]


@torch.no_grad()
def analyse(model: BirdClassifier, test: dict, cell: Cell, batch_size: int = 250) -> dict:
    """Predictions, theta and where each crop looks on the test set.

    Returns a dict with "pred" (T,) uint8, "parts" (T, 2, 2), "rows" (T,) and, for ST models, "theta" (T, N, 2);
    "metrics": "accuracy" (%), "visible" (test images with a visible head, body), and for ST models "hits"
    (per transformer, see :func:`hit_table`), "hits_at_start" (the same for the crops where they start, the
    grid of :func:`~stnbook.birds.model.tiling_init`: what training moved them from) and "attention_scale".
    """
    model.eval()
    pred, theta = predict(model, test["x"], batch_size)
    model.train()
    parts = test["parts"]
    visible = ~parts.isnan().any(-1)
    metrics = {"accuracy": 100 * (pred == test["y"]).float().mean().item(),
               "visible": {"head": int(visible[:, 0].sum()), "body": int(visible[:, 1].sum())}}
    out = {"pred": pred.to(torch.uint8), "parts": parts, "rows": test["rows"]}
    if theta is not None:
        out["theta"] = theta
        metrics["hits"] = hit_table(theta, parts, model.scale)
        start = tiling_init(theta.shape[1], model.scale).expand_as(theta)
        metrics["hits_at_start"] = hit_table(start, parts, model.scale)
        metrics["attention_scale"] = model.scale
    out["metrics"] = metrics
    return out


BIRDS_CUB = register(Experiment("birds-cub", cub_cells, PROFILES, make_data, build_birds_model, rebuild, analyse,
                                loss=birds_loss))
