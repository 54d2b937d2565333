"""Data for the paper's multi-image experiments: two-digit addition (A.1) and co-localisation (A.2).

Both build on the generators of :mod:`stnlib.data.distortions` (whose conventions apply: (x, y)
points, normalised coordinates with ``align_corners=False``, boxes in pixels with pixel centres at
integers), and like them draw every random number from a CPU generator of a named stream
(:mod:`stnlib.data.streams`), so training batches are indexed by step and
evaluation sets are fixed by :data:`~stnlib.data.distortions.SPLIT_SEEDS`.

What the paper leaves open, and what we assume
----------------------------------------------
* Addition: an epoch pairs every training image once as the first digit (channel 0) with every
  training image once as the second (channel 1), in two independent permutations, so a pair is a
  fresh draw each epoch and the two digits of a pair are usually different images. The target is
  the sum of the labels (19 classes, 0..18). The fixed test set pairs test image k with another test
  image drawn uniformly among the other 9,999.
* Co-localisation: the 100 images of a class are the first 100 of that class in the MNIST *test*
  split, which the embedding CNN (trained on the training split) never saw. Each digit, unscaled and
  unrotated, is placed at an integer position uniform over the 84 x 84 canvas; the cluttered variant
  adds 16 random 6 x 6 crops of MNIST *training* digits of every class (the paper: "crops sampled from
  the original MNIST training dataset"), not of the 100 images themselves.
* The "randomly sampled patch" of the co-localisation triplet loss is a square crop of the digit's
  size (28 / 84 of the canvas side) at a location uniform over the positions where it lies inside the
  canvas; a new patch is drawn for every image at every step.
"""

from __future__ import annotations

import torch

from .distortions import (DIGIT_SIZE, SPLIT_SEEDS, _check_ramp, apply_distortion, as_image_batch, digit_box,
                          init_step_source, make_addition_batch, ramp_strength, sample_distortion)
from .streams import StepSource, stream_generator

ADDITION_CANVAS = 42
"""Side of each channel of an addition input (paper A.1: two 42 x 42 channels)."""
ADDITION_CLASSES = 19
"""Sums 0..18."""
COLOCALISATION_CANVAS = 84
COLOCALISATION_SIZE = 100
"""Images per co-localisation problem (paper A.2)."""
COLOCALISATION_CLUTTER = {"T": 0, "TC": 16}
"""Clutter patches per image of the two co-localisation variants (paper A.2)."""

_TEST_CHUNK = 1024  # fixed: part of what makes the addition test set identical for every n


class AdditionMNIST(StepSource):
    """Two-digit addition training batches (paper A.1), distorted on the fly and indexed by step.

    Batch ``t`` of epoch ``e = t // steps_per_epoch`` takes its first digits from a permutation of the
    training set drawn from the stream ``"addition.first"`` and its second digits from one drawn from
    ``"addition.second"`` (both keyed by ``e``); the two RTS distortions come from ``"addition.distortion"``
    keyed by ``t`` (:mod:`stnlib.data.streams`). A batch therefore does not
    depend on the batches before it, and a resumed run sees exactly the same data.

    Args:
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float training digits.
        labels: (N,) int64 labels 0..9.
        batch_size: pairs per step (an epoch's last batch holds the remainder).
        seed: the run's data seed.
        device: where the images are kept and warped.
        ramp: optional distortion curriculum ``(start, end)`` in steps, as for
            :class:`~stnlib.data.distortions.DistortedMNIST`: both digits upright, unscaled and centred
            before ``start``, their RTS distortions growing linearly to full strength at ``end``.

    ``batch(step)`` returns ``(x, y)``: x (B, 2, 42, 42) float in [0, 1] (channel 0 holds the first
    digit, channel 1 the second), y (B,) int64, the sum of the two labels.

    Examples:
        >>> data = AdditionMNIST(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), 4, seed=0)
        >>> x, y = data.batch(0)
        >>> tuple(x.shape), bool((y <= 18).all())
        ((4, 2, 42, 42), True)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 device: str | torch.device = "cpu", ramp: tuple[int, int] | None = None):
        self.ramp = _check_ramp(ramp)
        init_step_source(self, images, labels, batch_size, seed, device)

    def indices(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,), (B,) CPU int64 training indices of the first and second digits of batch ``step``."""
        return self.epoch_indices(step, "addition.first"), self.epoch_indices(step, "addition.second")

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ia, ib = (i.to(self.device) for i in self.indices(step))
        g = self.step_generator(step, "addition.distortion")
        x, _, _ = make_addition_batch(as_image_batch(self.images[ia]), as_image_batch(self.images[ib]), g,
                                      strength=ramp_strength(step, self.ramp))
        return x, self.labels[ia] + self.labels[ib]

    def __repr__(self) -> str:
        ramp = "" if self.ramp is None else f", ramp={self.ramp}"
        return (f"AdditionMNIST(num_examples={self.num_examples}, batch_size={self.batch_size}, "
                f"steps_per_epoch={self.steps_per_epoch}, seed={self.seed}, device={str(self.device)!r}{ramp})")


def addition_test_set(images: torch.Tensor, labels: torch.Tensor, n: int | None = None,
                      seed: int = SPLIT_SEEDS["addition_test"]) -> dict:
    """The fixed two-digit addition test set: the same seed gives bit-identical tensors on every call.

    Pair k puts test image k in channel 0 and a partner, uniform among the other images, in channel
    1; both are RTS-distorted independently, as :func:`~stnlib.data.distortions.make_addition_batch`
    does. Parameters are drawn per chunk of 1024 pairs (the first digits' then the second digits'),
    each chunk from its own generator and always for the whole chunk, so the first ``n`` pairs are
    the same whatever ``n`` is.

    Args:
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float test digits.
        labels: (N,) labels.
        n: keep only the first ``n`` pairs (default all N).
        seed: default :data:`SPLIT_SEEDS` ``["addition_test"]``.

    Returns:
        dict with "x" (n, 2, 42, 42) float32, "y" (n,) sums, "labels" (n, 2) the two digits,
        "index" (n, 2) their positions in ``images``, "params" (a list of the two digits' RTS
        parameter dicts), "box" (n, 2, 4) float64 each digit's frame box (x0, y0, x1, y1) in pixels of
        its channel (:func:`~stnlib.data.distortions.digit_box`), and "seed".

    Examples:
        >>> imgs, labs = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8), torch.arange(6)
        >>> a, b = addition_test_set(imgs, labs), addition_test_set(imgs, labs, n=3)
        >>> torch.equal(a["x"][:3], b["x"]), torch.equal(a["box"][:3], b["box"]), tuple(a["box"].shape)
        (True, True, (6, 2, 4))
    """
    x_all = as_image_batch(images).cpu()
    total = x_all.shape[0]
    if labels.shape != (total,):
        raise ValueError(f"labels must have shape ({total},), got {tuple(labels.shape)}")
    if total < 2:
        raise ValueError("the addition test set needs at least two images")
    count = total if n is None else min(int(n), total)
    skip = torch.randint(0, total - 1, (total,), generator=stream_generator(seed, "addition.partner"))
    partner = ((torch.arange(total) + 1 + skip) % total)[:count]
    xs, pa, pb = [], [], []
    for k, start in enumerate(range(0, count, _TEST_CHUNK)):
        stop = min(start + _TEST_CHUNK, count)
        full = min(start + _TEST_CHUNK, total) - start  # draw for the whole chunk, so n does not change the draws
        g = stream_generator(seed, "addition.test", k)
        # a's parameters first, then b's, as make_addition_batch draws them
        a, b = (_head(sample_distortion("RTS", full, g), stop - start) for _ in range(2))
        both = {key: torch.cat([a[key], b[key]]) for key in a}
        x = apply_distortion("RTS", torch.cat([x_all[start:stop], x_all[partner[start:stop]]]), both)
        xs.append(torch.cat([x[:stop - start], x[stop - start:]], 1)), pa.append(a), pb.append(b)
    params = [{key: torch.cat([p[key] for p in ps]) for key in ps[0]} for ps in (pa, pb)] if xs else []
    index = torch.stack([torch.arange(count), partner], 1)
    lab = labels.cpu()[index]
    box = (torch.stack([digit_box("RTS", params[0]), digit_box("RTS", params[1])], 1) if xs
           else torch.zeros(0, 2, 4, dtype=torch.float64))
    x = torch.cat(xs) if xs else torch.zeros(0, 2, ADDITION_CANVAS, ADDITION_CANVAS)
    return {"x": x, "y": lab.sum(1), "labels": lab, "index": index, "params": params, "box": box, "seed": int(seed)}


def _head(params: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    return {k: v[:n] for k, v in params.items()}


def colocalisation_set(images: torch.Tensor, labels: torch.Tensor, digit: int, clutter: int = 0,
                       clutter_pool: torch.Tensor | None = None, n: int = COLOCALISATION_SIZE,
                       canvas: int = COLOCALISATION_CANVAS, seed: int = SPLIT_SEEDS["colocalisation"]) -> dict:
    """One co-localisation problem (paper A.2): ``n`` images of class ``digit``, each at a random place
    on a ``canvas`` square, optionally with ``clutter`` random 6 x 6 crops of other digits.

    The placement and clutter are drawn from a generator seeded by ``(seed, digit, clutter)``, so each
    problem is fixed forever and the T and TC problems of a class place their digits independently.

    Args:
        images, labels: the digits to choose from (MNIST test split in the experiment); the first
            ``n`` images with label ``digit`` are used.
        digit: the class.
        clutter: number of 6 x 6 clutter patches per image (T: 0, TC: 16).
        clutter_pool: (P, 28, 28) uint8 or (P, 1, 28, 28) digits the clutter is cut from (the
            experiment: the MNIST training split); default the selected images themselves, each
            image's own clutter never cut from itself.
        n: images in the problem.
        canvas: side of the canvas in pixels.

    Returns:
        dict with "x" (n, 1, canvas, canvas) float32 in [0, 1], "box" (n, 4) float64 the digit frame's
        box (x0, y0, x1, y1) in canvas pixels, "index" (n,) the images' positions in ``images``,
        "params" (from :func:`~stnlib.data.distortions.sample_distortion`), "digit", "clutter", "seed".

    Examples:
        >>> imgs, labs = torch.zeros(20, 28, 28, dtype=torch.uint8), torch.arange(20) % 2
        >>> s = colocalisation_set(imgs, labs, digit=1, clutter=16, n=5)
        >>> tuple(s["x"].shape), s["index"].tolist()
        ((5, 1, 84, 84), [1, 3, 5, 7, 9])
    """
    index = torch.nonzero(labels.cpu() == int(digit)).flatten()[:n]
    if len(index) < n:
        raise ValueError(f"only {len(index)} images of class {digit} are available, {n} asked for")
    x = as_image_batch(images[index]).cpu()
    g = stream_generator(seed, "colocalisation.images", int(digit), int(clutter))
    if clutter_pool is None:
        params = sample_distortion("TC", n, g, canvas=canvas, clutter=clutter)
        pool = x
    else:
        pool = clutter_pool[:, None] if clutter_pool.dim() == 3 else clutter_pool
        params = sample_distortion("TC", n, g, canvas=canvas, clutter=clutter, pool_size=pool.shape[0])
    out = apply_distortion("TC", x, params, clutter_images=pool)
    return {"x": out, "box": digit_box("TC", params), "index": index, "params": params, "digit": int(digit),
            "clutter": int(clutter), "seed": int(seed)}


def random_crops(n: int, generator: torch.Generator, scale: float = DIGIT_SIZE / COLOCALISATION_CANVAS
                 ) -> torch.Tensor:
    """(n, 3) attention parameters (s, t_x, t_y) of square crops of side ``scale`` (a fraction of the
    image) at locations uniform over the positions where the crop lies inside the image."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    t = (1 - scale) * (2 * torch.rand(n, 2, generator=generator) - 1)
    return torch.cat([torch.full((n, 1), float(scale)), t], 1)


class CoLocalisationBatches:
    """The training "batches" of one co-localisation problem: every step sees all of its images.

    ``batch(step)`` returns ``(x, crops)``: x (N, 1, S, S), the problem's images, and crops (N, 3),
    the attention parameters of a random patch per image (:func:`random_crops`), drawn from a
    generator seeded by ``(seed, step)``.

    Examples:
        >>> data = CoLocalisationBatches(torch.zeros(4, 1, 84, 84), seed=0)
        >>> x, crops = data.batch(3)
        >>> tuple(crops.shape), torch.equal(crops, data.batch(3)[1])
        ((4, 3), True)
    """

    def __init__(self, images: torch.Tensor, seed: int, crop_scale: float = DIGIT_SIZE / COLOCALISATION_CANVAS,
                 device: str | torch.device = "cpu"):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.num_examples = int(images.shape[0])
        self.seed = int(seed)
        self.crop_scale = float(crop_scale)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = stream_generator(self.seed, "colocalisation.crops", int(step))
        return self.images, random_crops(self.num_examples, g, self.crop_scale).to(self.device)


__all__ = ["ADDITION_CANVAS", "ADDITION_CLASSES", "COLOCALISATION_CANVAS", "COLOCALISATION_CLUTTER",
           "COLOCALISATION_SIZE", "AdditionMNIST", "CoLocalisationBatches", "addition_test_set",
           "colocalisation_set", "random_crops"]
