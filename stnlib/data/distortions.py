"""Distorted MNIST (paper A.4: R, RTS, P, E, TC), two-digit addition (A.1) and co-localisation (A.2) data.

Random parameters are sampled by :func:`sample_distortion` from a ``torch.Generator`` the caller
passes in; :func:`apply_distortion` then warps a batch of digits deterministically with those
parameters (one batched grid + :func:`~stnlib.sampler.bilinear_sample` call, clutter pasted batched),
so a test split is fixed forever by its seed (:data:`SPLIT_SEEDS`) and a figure can be regenerated
bit for bit. :class:`DistortedMNIST` serves step-indexed training batches, distorted on the fly;
:func:`fixed_test_set` builds the one test set every model of an experiment is scored on.

Conventions (those of :mod:`stnlib.coords`): points are (x, y), x along the width; normalised
coordinates in [-1, 1] with ``align_corners=False``; a grid maps OUTPUT (canvas) points to INPUT
(digit) points. :func:`distortion_matrix` is that map as a (N, 3, 3) homogeneous matrix from canvas
normalised coordinates to the normalised coordinates of the digit's 28 x 28 frame. Pixel
coordinates (translations, offsets, boxes) have pixel centres at integers, so an S-pixel canvas spans
[-0.5, S - 0.5] (:func:`~stnlib.coords.normalized_to_pixel`); +x is right, +y is down.

What the paper leaves open, and what we assume
----------------------------------------------
* Digits are the raw MNIST images scaled to [0, 1] with background exactly 0, so the sampler's zero
  padding is background (see :mod:`stnlib.sampler`); normalise *after* distorting.
* Angles are in degrees; a positive angle turns the digit counter-clockwise as displayed (y down),
  so +90 equals ``torch.rot90(x, 1, dims=(-2, -1))``. All rotations and scalings are about the
  digit frame's centre. "Uniform in [a, b]" is ``a + (b - a) * U[0, 1)``.
* R: 28 x 28 canvas (the paper gives no size; rotation about the centre needs no larger one).
  Corners of the digit frame leave the canvas; MNIST's ink lies (mostly) in the central 20 x 20 box
  and stays inside: on 3000 test digits at least 98% of every digit's ink stayed on the canvas.
* RTS: the digit is rotated and scaled, then its centre is placed uniformly (continuous, sub-pixel)
  so that the scaled but *unrotated* 28s x 28s frame lies inside the 42 x 42 canvas:
  translation (centre offset from the canvas centre, px) uniform in [-(42 - 28s)/2, (42 - 28s)/2]
  per axis. Rotated by at most 45 deg, MNIST's central 20 x 20 ink box reaches at most 10 sqrt(2) s
  = 14.1s px from the centre, so the digit is mostly inside: on 3000 test digits the median digit
  kept all its ink on the canvas, 99.9% kept at least 97% and the worst 93%.
* P: the digit is scaled by s about the centre, then each of the 4 corners of its (scaled) frame is
  moved by independent N(0, 5 px) noise in x and in y; the warp is the homography taking the 4
  frame corners to the moved corners (fitted by :func:`~stnlib.transforms.projective.homography_from_points`).
  28 x 28 canvas; parts may leave it. About 1.5% of such draws fold the quadrilateral (a corner
  crosses the diagonal of its neighbours), which sends part of the frame through the horizon and
  leaves an empty or shredded image no classifier could read, more than the paper's whole P error
  (0.8%); we assume the paper's data had no such images and redraw the offsets of those samples
  (so the noise is N(0, 5 px) conditioned on a convex quadrilateral). Convex but nearly triangular
  quads remain: in about 1% of P images the perspective squeezes the digit so much that less than
  10% of its ink is visible. That follows from N(0, 5 px) corners at this scale, so we keep them.
* E: the digit is scaled by s, then a thin plate spline over the 4 x 4 regular control points of the
  canvas (``get_transform("tps")``, spanning [-1, 1]) displaces the content near control point k by
  ``control_offset[k]`` ~ N(0, 1.5 px) per axis. stnlib's TPS is defined output -> input, so we set
  the point that control point c_k reads to ``(c_k - offset_k) / s``: exactly a translation by the
  offset when all offsets are equal (the same direction as P's corner offsets), the inverse of the
  forward displacement to first order otherwise. ``distortion_matrix`` gives the spline's affine
  part (its a_0 + a_1 x + a_2 y terms), and ``digit_box`` the box of the frame under that affine
  part, an approximation for E.
* TC: the digit, neither rotated nor scaled, at an integer pixel position uniform over all places
  where its whole 28 x 28 frame fits on the 60 x 60 canvas (so it is never blurred), plus 6 clutter
  patches: a 6 x 6 crop at a uniform integer position of a uniformly drawn *other* digit (never the
  digit itself), pasted at a uniform integer position where it fits on the canvas. Crops are not
  required to contain ink (as in the RAM paper's cluttered MNIST generator), patches may overlap
  each other and the digit, and everything is combined with max, so clutter never darkens the digit.
  Clutter is drawn from the batch being distorted unless a pool is given: the training set for
  :class:`DistortedMNIST`, the test images themselves for :func:`fixed_test_set`.
  Canvas, number and size of the pieces are parameters of :func:`sample_distortion`; the recurrent
  attention model's protocols (60 x 60 with four 8 x 8 pieces, 100 x 100 with eight) are named in
  :mod:`stnlib.data.cluttered`.
* Addition (A.1): each of the two 42 x 42 channels holds its own digit, independently RTS-distorted.
* Co-localisation (A.2): the TC generator on an 84 x 84 canvas with 0 or 16 clutter patches.
* Noise is independent per axis. Random numbers are drawn on the generator's device (use a CPU
  generator: the same seed then gives the same numbers on every machine), in a fixed, documented
  order per kind (see :func:`sample_distortion`); changing that order changes every test set.
* Training epochs use every training image exactly once (the last batch of an epoch is smaller
  when the batch size does not divide the set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .streams import StepSource, derive_seed, stream_generator

from ..coords import normalized_to_pixel
from ..sampler import bilinear_sample
from ..transforms import get_transform
from ..transforms.affine import affine_matrix
from ..transforms.base import apply_homogeneous
from ..transforms.projective import homography_from_points, projective_matrix

DIGIT_SIZE = 28
"""Side of an MNIST digit's frame in pixels; every distortion maps this frame onto its canvas."""


@dataclass(frozen=True)
class DistortionSpec:
    """The paper's numbers for one distortion kind (A.4); lengths in pixels, angles in degrees."""

    canvas: int = DIGIT_SIZE
    max_angle_deg: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    corner_std_px: float = 0.0
    control_std_px: float = 0.0
    clutter_count: int = 0
    clutter_size: int = 6


DISTORTIONS: dict[str, DistortionSpec] = {
    "none": DistortionSpec(),
    "R": DistortionSpec(max_angle_deg=90.0),
    "RTS": DistortionSpec(canvas=42, max_angle_deg=45.0, scale_range=(0.7, 1.2)),
    "P": DistortionSpec(scale_range=(0.75, 1.0), corner_std_px=5.0),
    "E": DistortionSpec(scale_range=(0.75, 1.0), control_std_px=1.5),
    "TC": DistortionSpec(canvas=60, clutter_count=6),
    # not in the paper: R with rotations from the whole circle, to ask which pose a transformer settles on
    "R180": DistortionSpec(max_angle_deg=180.0),
}
"""Distortion kinds by name. ``sample_distortion``'s ``canvas`` and ``clutter`` override two fields."""

KINDS: tuple[str, ...] = tuple(DISTORTIONS)

SPLIT_SEEDS: dict[str, int] = {"test": 1234, "addition_test": 2345, "colocalisation": 3456, "volume_test": 4567}
"""Seeds of the fixed evaluation sets, shared by every run of every model so all see the same images.

``fixed_test_set(kind, ...)`` derives its generator from ``(SPLIT_SEEDS["test"], kind)``, so each
kind has its own, independent test distortions. :func:`stnlib.data.pairs.addition_test_set` and
:func:`stnlib.data.pairs.colocalisation_set` derive theirs from ``SPLIT_SEEDS["addition_test"]`` and
``SPLIT_SEEDS["colocalisation"]``, and :func:`stnlib.data.volumes.volume_test_set` (3D) from
``SPLIT_SEEDS["volume_test"]``.
"""

_TEST_CHUNK = 1024  # fixed: the chunking is part of what makes a test set bit-identical across runs


def _spec(kind: str) -> DistortionSpec:
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion kind {kind!r}; available: {', '.join(KINDS)}")
    return DISTORTIONS[kind]


def as_image_batch(images: torch.Tensor) -> torch.Tensor:
    """MNIST images as a float batch (N, 1, 28, 28) in [0, 1]: uint8 is divided by 255, float kept.

    Accepts (N, 28, 28) or (N, 1, 28, 28), uint8 (as :func:`~stnlib.data.load_mnist` returns) or float.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or images.shape[1:] != (1, DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(f"images must have shape (N, 28, 28) or (N, 1, 28, 28), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    return images


# --------------------------------------------------------------------------------------------------
# Sampling (all randomness lives here)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, shape=()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, *shape, generator=g, device=g.device, dtype=torch.float64)


def sample_distortion(kind: str, n: int, generator: torch.Generator, *, canvas: int | None = None,
                      clutter: int | None = None, pool_size: int | None = None,
                      digit_index: torch.Tensor | None = None, clutter_size: int | None = None) -> dict[str, torch.Tensor]:
    """Draw the random parameters of ``n`` distortions of ``kind``; nothing is warped here.

    Every entry has leading dimension ``n`` (so a dict can be indexed per sample); float entries are
    float64. Drawn in this order (the order is part of what fixes a test set):

    * all kinds: ``canvas`` (n,) int64, the output side (no random number drawn).
    * "R": ``angle_deg`` (n,) uniform in [-90, 90]; "R180": uniform in [-180, 180].
    * "RTS": ``angle_deg`` in [-45, 45], ``scale`` in [0.7, 1.2], ``translation`` (n, 2) px: the
      digit centre's offset from the canvas centre, uniform in +-(canvas - 28 scale)/2 per axis.
    * "P": ``scale`` in [0.75, 1], ``corner_offset`` (n, 4, 2) px ~ N(0, 5): moves of the frame's
      corners top-left, top-right, bottom-right, bottom-left; the samples whose moved corners do not
      form a convex quadrilateral are redrawn (from the same generator, until none is left).
    * "E": ``scale`` in [0.75, 1], ``control_offset`` (n, 16, 2) px ~ N(0, 1.5), in the order of
      ``get_transform("tps").control`` (x fastest).
    * "TC": ``translation`` (n, 2) px (integer-valued: the frame's top-left corner uniform in
      0..canvas-28), ``clutter_index`` (n, K) int64 into the clutter pool, ``clutter_crop`` (n, K, 2)
      int64 top-left (x, y) of the crop in the source digit, ``clutter_pos`` (n, K, 2) int64 top-left
      (x, y) of the patch on the canvas, ``clutter_size`` (n,) int64, the patches' side (no random
      number drawn; the RAM protocols of :mod:`stnlib.data.cluttered` use 8).

    Args:
        kind: one of :data:`KINDS`.
        n: number of distortions.
        generator: the source of randomness; a CPU generator gives the same numbers on every machine.
        canvas: output side for "RTS" (default 42) and "TC" (default 60; co-localisation uses 84);
            the other kinds are 28 x 28.
        clutter: "TC" only: number K of clutter patches (default 6).
        clutter_size: "TC" only: side of each square clutter patch in pixels, 1 to 28 and at most the
            canvas (default 6, the paper's).
        pool_size: "TC" only: number of digits clutter is cut from (default ``n``: the batch itself).
        digit_index: "TC" only: (n,) position of each distorted digit in the pool, which its clutter
            must not come from. Default: ``arange(n)`` when the pool is the batch; no exclusion when
            a ``pool_size`` is given without it.

    Returns:
        dict of parameter tensors (on the generator's device), for :func:`apply_distortion`.

    Examples:
        >>> p = sample_distortion("RTS", 5, torch.Generator().manual_seed(0))
        >>> sorted(p), tuple(p["translation"].shape)
        (['angle_deg', 'canvas', 'scale', 'translation'], (5, 2))
    """
    spec = _spec(kind)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if canvas is not None and kind not in ("RTS", "TC") and int(canvas) != spec.canvas:
        raise ValueError(f"canvas can only be changed for 'RTS' and 'TC'; {kind!r} is {spec.canvas} x {spec.canvas}")
    size = spec.canvas if canvas is None else int(canvas)
    if size < DIGIT_SIZE:
        raise ValueError(f"canvas must be at least {DIGIT_SIZE}, got {size}")
    if kind != "TC" and (clutter is not None or pool_size is not None or digit_index is not None
                         or clutter_size is not None):
        raise ValueError("clutter, clutter_size, pool_size and digit_index apply to 'TC' only")
    g = generator
    params: dict[str, torch.Tensor] = {"canvas": torch.full((n,), size, dtype=torch.int64, device=g.device)}
    if kind in ("R", "R180", "RTS"):
        params["angle_deg"] = _uniform(n, -spec.max_angle_deg, spec.max_angle_deg, g)
    if kind in ("RTS", "P", "E"):
        params["scale"] = _uniform(n, *spec.scale_range, g)
    if kind == "RTS":
        half = ((size - DIGIT_SIZE * params["scale"]) / 2).clamp_min(0)[:, None]
        params["translation"] = _uniform(n, -1.0, 1.0, g, (2,)) * half
    elif kind == "P":
        params["corner_offset"] = _sample_corner_offsets(params["scale"], spec.corner_std_px, g)
    elif kind == "E":
        k = _tps().control.shape[0]
        params["control_offset"] = spec.control_std_px * torch.randn(n, k, 2, generator=g, device=g.device, dtype=torch.float64)
    elif kind == "TC":
        params.update(_sample_placement_and_clutter(n, size, spec, g, clutter, pool_size, digit_index, clutter_size))
    return params


RAMPABLE_KINDS: tuple[str, ...] = ("none", "R", "R180", "RTS")
"""Kinds whose distortion :func:`soften_distortion` can scale towards the identity (rotation, scale, translation)."""


def soften_distortion(kind: str, params: dict[str, torch.Tensor], strength: float) -> dict[str, torch.Tensor]:
    """The distortions of ``params`` moved towards the identity: strength 1 leaves them, 0 gives upright,
    unscaled, centred digits, and between, each angle and translation is multiplied by ``strength`` and each
    scale raised to its power (``scale ** strength``, the geometric path to 1). A new dict; ``params`` is
    not changed.

    Used by a distortion curriculum (:class:`DistortedMNIST`'s ``ramp``): the classifier first sees upright
    digits, then ever stronger distortions, which a transformer has to undo for it.

    Args:
        kind: one of :data:`RAMPABLE_KINDS`.
        params: from :func:`sample_distortion` for ``kind``.
        strength: in [0, 1].

    Examples:
        >>> p = {"canvas": torch.tensor([42]), "angle_deg": torch.tensor([40.0], dtype=torch.float64),
        ...      "scale": torch.tensor([0.64], dtype=torch.float64),
        ...      "translation": torch.tensor([[4.0, -2.0]], dtype=torch.float64)}
        >>> q = soften_distortion("RTS", p, 0.5)
        >>> q["angle_deg"].item(), round(q["scale"].item(), 3), q["translation"].tolist()
        (20.0, 0.8, [[2.0, -1.0]])
    """
    if kind not in RAMPABLE_KINDS:
        raise ValueError(f"a distortion ramp needs one of {', '.join(RAMPABLE_KINDS)} (rotation, scale and "
                         f"translation), got {kind!r}")
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    out = dict(params)
    for key in ("angle_deg", "translation"):
        if key in out:
            out[key] = out[key] * s
    if "scale" in out:
        out["scale"] = out["scale"] ** s
    return out


def ramp_strength(step: int, ramp: tuple[int, int] | None) -> float:
    """Distortion strength at ``step`` for a ramp ``(start, end)`` in steps: 0 before ``start``, rising
    linearly to 1 at ``end``, 1 after it (and always 1 without a ramp).

    Examples:
        >>> [ramp_strength(t, (100, 300)) for t in (0, 100, 200, 300, 1000)], ramp_strength(5, None)
        ([0.0, 0.0, 0.5, 1.0, 1.0], 1.0)
    """
    if ramp is None:
        return 1.0
    start, end = ramp
    if step >= end:
        return 1.0
    return 0.0 if step <= start else (step - start) / (end - start)


def _check_ramp(ramp) -> tuple[int, int] | None:
    if ramp is None:
        return None
    try:
        start, end = (int(v) for v in ramp)
    except (TypeError, ValueError):
        raise ValueError(f"ramp must be None or (start, end) steps, got {ramp!r}") from None
    if not 0 <= start < end:
        raise ValueError(f"ramp must be (start, end) steps with 0 <= start < end, got {ramp!r}")
    return start, end


def _sample_corner_offsets(scale: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    """(n, 4, 2) N(0, std) corner moves, redrawn (for the failing samples only) until the quad is convex.

    A folded or non-convex quadrilateral sends part of the frame through the horizon: the warped image
    is empty or shredded. Rejection keeps the draw deterministic given the generator.
    """
    n = scale.shape[0]
    offset = std * torch.randn(n, 4, 2, generator=g, device=g.device, dtype=torch.float64)
    todo = ~_is_convex(scale, offset)
    while bool(todo.any()):
        redo = std * torch.randn(int(todo.sum()), 4, 2, generator=g, device=g.device, dtype=torch.float64)
        offset[todo] = redo
        todo = ~_is_convex(scale, offset)
    return offset


def _is_convex(scale: torch.Tensor, corner_offset: torch.Tensor) -> torch.Tensor:
    """(n,) whether the moved corners (TL, TR, BR, BL) still form a convex quad of the frame's orientation."""
    corners = _frame_corners(device=scale.device) * (DIGIT_SIZE / 2) * scale[:, None, None] + corner_offset
    edge = corners.roll(-1, dims=1) - corners
    nxt = edge.roll(-1, dims=1)
    return ((edge[..., 0] * nxt[..., 1] - edge[..., 1] * nxt[..., 0]) > 0).all(dim=1)


def _sample_placement_and_clutter(n, size, spec, g, clutter, pool_size, digit_index, clutter_size=None):
    count = spec.clutter_count if clutter is None else int(clutter)
    patch = spec.clutter_size if clutter_size is None else int(clutter_size)
    if count < 0:
        raise ValueError(f"clutter must be non-negative, got {count}")
    if not 1 <= patch <= DIGIT_SIZE:
        raise ValueError(f"clutter_size must be 1 to {DIGIT_SIZE} (a crop of a digit), got {patch}")
    exclude = digit_index is not None or pool_size is None
    pool = n if pool_size is None else int(pool_size)
    if digit_index is None:
        digit_index = torch.arange(n, device=g.device)
    elif tuple(digit_index.shape) != (n,):
        raise ValueError(f"digit_index must have shape ({n},), got {tuple(digit_index.shape)}")
    if count and n and pool < (2 if exclude else 1):
        raise ValueError(f"clutter needs other digits to cut from: the pool has {pool} digit(s)")
    corner = torch.randint(0, size - DIGIT_SIZE + 1, (n, 2), generator=g, device=g.device)
    out = {"translation": corner.double() - (size - DIGIT_SIZE) / 2}
    if exclude:  # uniform over the pool without the digit itself
        skip = torch.randint(0, max(pool - 1, 1), (n, count), generator=g, device=g.device)
        out["clutter_index"] = (digit_index.to(g.device)[:, None] + 1 + skip) % pool
    else:
        out["clutter_index"] = torch.randint(0, pool, (n, count), generator=g, device=g.device)
    out["clutter_crop"] = torch.randint(0, DIGIT_SIZE - patch + 1, (n, count, 2), generator=g, device=g.device)
    out["clutter_pos"] = torch.randint(0, size - patch + 1, (n, count, 2), generator=g, device=g.device)
    out["clutter_size"] = torch.full((n,), patch, dtype=torch.int64, device=g.device)
    return out


# --------------------------------------------------------------------------------------------------
# Deterministic geometry


@lru_cache(maxsize=1)
def _tps():
    return get_transform("tps")


def _canvas_size(params: dict[str, torch.Tensor]) -> int:
    canvas = params.get("canvas")
    if canvas is None or canvas.dim() != 1:
        raise ValueError("params must hold a 'canvas' entry of shape (N,), as sample_distortion returns")
    if canvas.numel() == 0:
        return DIGIT_SIZE
    size = int(canvas[0])
    if bool((canvas != size).any()):
        raise ValueError("all distortions of one batch must share one canvas size")
    return size


def _clutter_size(params: dict[str, torch.Tensor]) -> int:
    """The clutter patches' side; params sampled before it was recorded hold the paper's 6 pixels."""
    patch = params.get("clutter_size")
    if patch is None or patch.numel() == 0:
        return DISTORTIONS["TC"].clutter_size
    size = int(patch[0])
    if bool((patch != size).any()):
        raise ValueError("all distortions of one batch must share one clutter_size")
    return size


def _similarity_matrix(angle_deg: torch.Tensor, scale: torch.Tensor, translation_px: torch.Tensor,
                       canvas: int) -> torch.Tensor:
    """(N, 3, 3) canvas -> digit matrix of a digit rotated, scaled and centred at ``translation_px``."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    k = canvas / (DIGIT_SIZE * scale)  # canvas normalised units per digit normalised unit, inverted
    # Forward (digit -> canvas) turns counter-clockwise as displayed with y down: [[c, s], [-s, c]];
    # the grid needs its inverse, the transpose, divided by the scale.
    lin = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2) * k[:, None, None]
    t = 2 * translation_px / canvas  # centre offset in canvas normalised units
    off = -(lin @ t[:, :, None])[:, :, 0]
    mat = torch.cat([lin, off[:, :, None]], dim=2)
    return affine_matrix(mat.reshape(-1, 6))


def _frame_corners(dtype=torch.float64, device=None) -> torch.Tensor:
    """The digit frame's corners in normalised coordinates: top-left, top-right, bottom-right, bottom-left."""
    return torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=dtype, device=device)


def _projective_theta(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 8) theta mapping canvas to digit: the moved corners (output) read the frame's corners."""
    corners = _frame_corners(device=params["scale"].device)
    moved = params["scale"][:, None, None] * corners + 2 * params["corner_offset"] / DIGIT_SIZE
    return homography_from_points(moved, corners.expand_as(moved))


def _tps_theta(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 32) TPS theta: control point c_k reads the digit at (c_k - offset_k) / s."""
    control = _tps().control.to(params["scale"].device, torch.float64)
    src = (control - 2 * params["control_offset"] / DIGIT_SIZE) / params["scale"][:, None, None]
    return src.reshape(src.shape[0], -1)


def distortion_matrix(kind: str, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ground-truth warp as (N, 3, 3) float64 matrices: canvas normalised -> digit-frame normalised.

    Output -> input, like every stnlib grid: ``M @ (x_t, y_t, 1)`` (divided by its last entry for "P")
    is the point of the 28 x 28 digit frame that canvas point (x_t, y_t) shows. Exact for "none", "R",
    "RTS", "TC" (similarities) and "P" (homography); for "E" the affine part of the thin plate spline.
    Composing it with a spatial transformer's matrix (:func:`stnlib.geometry.compose`) says where the
    transformer reads the undistorted digit.
    """
    _spec(kind)
    size = _canvas_size(params)
    n = params["canvas"].shape[0]
    dev = params["canvas"].device
    if kind == "none":
        return torch.eye(3, dtype=torch.float64, device=dev).expand(n, 3, 3).clone()
    if kind in ("R", "R180", "RTS", "TC"):
        zero = torch.zeros(n, dtype=torch.float64, device=dev)
        angle = params.get("angle_deg", zero)
        scale = params.get("scale", zero + 1)
        translation = params.get("translation", torch.zeros(n, 2, dtype=torch.float64, device=dev))
        return _similarity_matrix(angle.double(), scale.double(), translation.double(), size)
    if kind == "P":
        return projective_matrix(_projective_theta(params))
    # E: the spline's coefficients are W @ theta; rows K, K+1, K+2 are a_0, a_1 (x), a_2 (y).
    tps = _tps()
    k = tps.control.shape[0]
    coef = tps.weights.to(dev)[k:] @ _tps_theta(params).reshape(n, k, 2)  # (N, 3, 2)
    lin = torch.stack([coef[:, 1], coef[:, 2], coef[:, 0]], dim=2)  # (N, 2, 3): [a_1 a_2 a_0] per row
    return affine_matrix(lin.reshape(n, 6))


def digit_box(kind: str, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 4) float64 box (x0, y0, x1, y1) of the digit's 28 x 28 frame on the canvas, in canvas pixels.

    Pixel centres at integers (:func:`stnlib.coords.normalized_to_pixel`), so an undistorted digit at
    the top-left of a canvas has box (-0.5, -0.5, 27.5, 27.5). The axis-aligned box of the frame's 4
    mapped corners: the rotated square for "R"/"RTS" (not clipped to the canvas), the quadrilateral for
    "P", the frame under the affine part of the spline for "E" (an approximation). Compare it with
    :func:`stnlib.geometry.box_iou` against boxes from :func:`stnlib.geometry.sampling_outline`.
    """
    size = _canvas_size(params)
    mat = distortion_matrix(kind, params)
    corners = _frame_corners(device=mat.device)
    on_canvas = apply_homogeneous(torch.linalg.inv(mat), corners, perspective=True)  # digit -> canvas
    pix = normalized_to_pixel(on_canvas, (size, size))
    return torch.cat([pix.amin(dim=1), pix.amax(dim=1)], dim=1)


def _paste_clutter(canvas_img: torch.Tensor, params: dict[str, torch.Tensor], pool: torch.Tensor, patch: int) -> torch.Tensor:
    """Max-combine every sample's K patches, cut from ``pool`` (P, 1, 28, 28), into (N, 1, S, S).

    Only the patches are gathered and converted (uint8 pools are scaled by 1/255), so a pool can be
    a whole uint8 training set on the device without a per-step copy.
    """
    n, _, size, _ = canvas_img.shape
    index = params["clutter_index"]
    if index.numel() == 0:
        return canvas_img
    dev = canvas_img.device
    index, crop, pos = (params[key].to(dev) for key in ("clutter_index", "clutter_crop", "clutter_pos"))
    ar = torch.arange(patch, device=dev)
    rows = (crop[..., 1, None] + ar)[..., :, None]  # (N, K, patch, 1)
    cols = (crop[..., 0, None] + ar)[..., None, :]  # (N, K, 1, patch)
    patches = pool[:, 0][index[..., None, None], rows, cols]  # (N, K, patch, patch)
    patches = patches.to(canvas_img.dtype) / 255 if patches.dtype == torch.uint8 else patches.to(canvas_img.dtype)
    flat = (pos[..., 1, None] + ar)[..., :, None] * size + (pos[..., 0, None] + ar)[..., None, :]
    layer = canvas_img.new_zeros(n, size * size).scatter_reduce_(
        1, flat.reshape(n, -1), patches.reshape(n, -1), reduce="amax", include_self=True)
    return torch.maximum(canvas_img, layer.view(n, 1, size, size))


def apply_distortion(kind: str, images: torch.Tensor, params: dict[str, torch.Tensor], *,
                     clutter_images: torch.Tensor | None = None) -> torch.Tensor:
    """Warp a batch of digits with sampled parameters; deterministic, batched, on ``images``' device.

    The geometric part is one grid (affine for "R"/"RTS"/"TC", projective for "P", TPS for "E")
    and one :func:`~stnlib.sampler.bilinear_sample` call with zero padding (``align_corners=False``);
    the clutter of "TC" is then max-combined in one scatter.

    Args:
        kind: one of :data:`KINDS`.
        images: (N, 1, 28, 28) float digits in [0, 1] (background 0), on any device.
        params: from :func:`sample_distortion` for the same kind and N (moved to the device here).
        clutter_images: "TC" only: (P, 1, 28, 28) pool, float in [0, 1] or uint8 (divided by 255),
            that ``params["clutter_index"]`` indexes; default ``images`` (the pool
            ``sample_distortion`` assumes without ``pool_size``).

    Returns:
        (N, 1, S, S) distorted images, S = ``params["canvas"]``: 28 for "none", "R", "P", "E",
        42 for "RTS", 60 for "TC" unless another canvas was sampled.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(3, 1, 28, 28)
        >>> apply_distortion("RTS", x, sample_distortion("RTS", 3, g)).shape
        torch.Size([3, 1, 42, 42])
    """
    _spec(kind)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (1, DIGIT_SIZE, DIGIT_SIZE):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 1, 28, 28) tensor (see as_image_batch), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got {images.dtype} (see as_image_batch)")
    size = _canvas_size(params)
    if params["canvas"].shape[0] != images.shape[0]:
        raise ValueError(f"params are for {params['canvas'].shape[0]} distortions but images has {images.shape[0]}")
    if kind == "none":
        return images.clone()
    dtype, dev = images.dtype, images.device
    if kind == "P":
        grid = get_transform("projective").grid(_projective_theta(params).to(dev, dtype), size)
    elif kind == "E":
        grid = _tps().grid(_tps_theta(params).to(dev, dtype), size)
    else:
        theta = distortion_matrix(kind, params)[:, :2].reshape(-1, 6)
        grid = get_transform("affine").grid(theta.to(dev, dtype), size)
    out = bilinear_sample(images, grid)
    if kind == "TC":
        pool = images if clutter_images is None else clutter_images
        if pool.dim() != 4 or pool.shape[1:] != (1, DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(f"clutter_images must have shape (P, 1, 28, 28), got {tuple(pool.shape)}")
        out = _paste_clutter(out, params, pool.to(dev), _clutter_size(params))
    return out


# --------------------------------------------------------------------------------------------------
# Experiment helpers


def make_addition_batch(images_a: torch.Tensor, images_b: torch.Tensor, generator: torch.Generator,
                        strength: float = 1.0
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two-digit addition input (A.1): channel 0 holds digit a, channel 1 digit b, each RTS-distorted alone.

    Args:
        images_a, images_b: (N, 28, 28) uint8 or (N, 1, 28, 28) float digits (see :func:`as_image_batch`).
        generator: randomness; a's parameters are drawn first, then b's.
        strength: in [0, 1]; below 1 both digits' distortions are drawn as at full strength, then moved
            towards upright, unscaled and centred (:func:`soften_distortion`): a training curriculum.

    Returns:
        ``(x, params_a, params_b)``: x is (N, 2, 42, 42) float on the images' device; the targets are
        ``labels_a + labels_b`` (19 classes).
    """
    a, b = as_image_batch(images_a), as_image_batch(images_b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"images_a and images_b must have the same length, got {a.shape[0]} and {b.shape[0]}")
    n = a.shape[0]
    params_a = sample_distortion("RTS", n, generator)
    params_b = sample_distortion("RTS", n, generator)
    if strength != 1.0:
        params_a, params_b = (soften_distortion("RTS", p, strength) for p in (params_a, params_b))
    both = {k: torch.cat([params_a[k], params_b[k]]) for k in params_a}
    x = apply_distortion("RTS", torch.cat([a, b.to(a.device, a.dtype)]), both)  # one warp for both channels
    return torch.cat([x[:n], x[n:]], dim=1), params_a, params_b


def init_step_source(source: StepSource, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                     device: str | torch.device) -> None:
    """Validate and store what every step-indexed MNIST batch source holds (shared by :class:`DistortedMNIST`
    and :class:`stnlib.data.pairs.AdditionMNIST`): the digits (kept as given, e.g. uint8, on ``device``),
    labels, and the :class:`~stnlib.data.streams.StepSource` state (batch size, seed, ``steps_per_epoch``)."""
    as_image_batch(images[:1])  # validate shape and dtype without converting the whole set
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty")
    StepSource.__init__(source, int(images.shape[0]), batch_size, seed)
    source.device = torch.device(device)
    source.images = (images[:, None] if images.dim() == 3 else images).to(source.device)
    source.labels = labels.to(source.device)


class DistortedMNIST(StepSource):
    """Training batches distorted on the fly, indexed by step so a resumed run sees exactly the same batches.

    Step ``t`` belongs to epoch ``t // steps_per_epoch``; the epoch's permutation of the training set
    comes from the stream ``"mnist.permutation"`` keyed by the epoch, and the step's distortion parameters
    from ``"mnist.distortion"`` keyed by ``t`` (:mod:`stnlib.data.streams`), so a batch does not depend on
    which batches were drawn before it, nor on the device. The images are moved to ``device`` once (as
    given, e.g. uint8) and the warp runs there. "TC" clutter is cut from any other training image.

    Args:
        kind: one of :data:`KINDS`.
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float training digits.
        labels: (N,) int64 labels.
        batch_size: images per step; an epoch's last batch holds the remainder, so every image is
            used exactly once per epoch.
        seed: the run's data seed.
        device: where the images live and the warp runs.
        ramp: optional distortion curriculum ``(start, end)`` in steps: the digits of the steps before
            ``start`` are upright, unscaled and centred, and the distortions then grow linearly to full
            strength at ``end`` (:func:`soften_distortion`; kinds in :data:`RAMPABLE_KINDS`). The
            parameters are drawn as without a ramp, then softened, so the same seed gives the same digits
            and poses, only weaker.

    Examples:
        >>> data = DistortedMNIST("R", torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), 4, seed=0)
        >>> data.steps_per_epoch, data.batch(2)[0].shape
        (3, torch.Size([2, 1, 28, 28]))
        >>> ramped = DistortedMNIST("R", torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), 4, seed=0,
        ...                         ramp=(0, 10))
        >>> ramped.params(5)["angle_deg"].equal(0.5 * data.params(5)["angle_deg"])
        True
    """

    def __init__(self, kind: str, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 device: str | torch.device = "cpu", ramp: tuple[int, int] | None = None):
        self.spec = _spec(kind)
        self.kind = kind
        self.ramp = _check_ramp(ramp)
        if self.ramp is not None and kind not in RAMPABLE_KINDS:
            raise ValueError(f"a distortion ramp needs one of {', '.join(RAMPABLE_KINDS)} (rotation, scale and "
                             f"translation), got {kind!r}")
        init_step_source(self, images, labels, batch_size, seed, device)

    def indices(self, step: int) -> torch.Tensor:
        """(B,) CPU int64 training-set indices of the images in batch ``step``."""
        return self.epoch_indices(step, "mnist.permutation")

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """The distortion parameters (CPU) of batch ``step``."""
        idx = self.indices(step)
        g = self.step_generator(step, "mnist.distortion")
        if self.kind == "TC":
            return sample_distortion("TC", len(idx), g, pool_size=self.num_examples, digit_index=idx)
        params = sample_distortion(self.kind, len(idx), g)
        strength = ramp_strength(step, self.ramp)
        return params if strength == 1.0 else soften_distortion(self.kind, params, strength)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of training step ``step``: x (B, 1, S, S) float in [0, 1] and y (B,) on ``device``."""
        idx = self.indices(step)
        params = self.params(step)
        dev_idx = idx.to(self.device)
        pool = self.images if self.kind == "TC" else None  # as stored (uint8): only the patches are converted
        x = apply_distortion(self.kind, as_image_batch(self.images[dev_idx]), params, clutter_images=pool)
        return x, self.labels[dev_idx]

    def __repr__(self) -> str:
        ramp = "" if self.ramp is None else f", ramp={self.ramp}"
        return (f"DistortedMNIST(kind={self.kind!r}, num_examples={self.num_examples}, batch_size={self.batch_size}, "
                f"steps_per_epoch={self.steps_per_epoch}, seed={self.seed}, device={str(self.device)!r}{ramp})")


def fixed_test_set(kind: str, images: torch.Tensor, labels: torch.Tensor, seed: int = SPLIT_SEEDS["test"],
                   n: int | None = None) -> dict:
    """The fixed, seeded test set of ``kind``: the same seed gives bit-identical tensors on every call.

    The first ``n`` images (all by default) are distorted, in chunks of a fixed size, on the CPU with
    parameters drawn from a generator seeded by ``(seed, kind)``; "TC" clutter is cut from other
    images of ``images`` (all of them, also when ``n`` is smaller).

    Args:
        kind: one of :data:`KINDS`.
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float test digits.
        labels: (N,) labels.
        seed: default :data:`SPLIT_SEEDS` ``["test"]``, shared by every run of every model.
        n: use only the first ``n`` images.

    Returns:
        dict with "x" (n, 1, S, S) float32, "y" (n,), "params" (the ground truth, from
        :func:`sample_distortion`), "matrix" (n, 3, 3) (:func:`distortion_matrix`), "box" (n, 4)
        (:func:`digit_box`), and "kind", "seed".
    """
    _spec(kind)
    x_all = as_image_batch(images).cpu()
    if labels.shape[0] != x_all.shape[0]:
        raise ValueError(f"labels must have length {x_all.shape[0]}, got {labels.shape[0]}")
    count = x_all.shape[0] if n is None else min(int(n), x_all.shape[0])
    g = stream_generator(seed, "mnist.test", KINDS.index(kind))
    if kind == "TC":
        params = sample_distortion(kind, count, g, pool_size=x_all.shape[0], digit_index=torch.arange(count))
    else:
        params = sample_distortion(kind, count, g)
    chunks = []
    for start in range(0, count, _TEST_CHUNK):
        part = {k: v[start:start + _TEST_CHUNK] for k, v in params.items()}
        stop = min(start + _TEST_CHUNK, count)
        chunks.append(apply_distortion(kind, x_all[start:stop], part, clutter_images=x_all))
    size = _canvas_size(params)
    x = torch.cat(chunks) if chunks else x_all.new_zeros(0, 1, size, size)
    return {"x": x, "y": labels[:count].cpu().clone(), "params": params,
            "matrix": distortion_matrix(kind, params), "box": digit_box(kind, params),
            "kind": kind, "seed": int(seed)}


__all__ = [
    "DIGIT_SIZE", "DISTORTIONS", "DistortionSpec", "KINDS", "SPLIT_SEEDS", "DistortedMNIST", "apply_distortion",
    "as_image_batch", "derive_seed", "digit_box", "distortion_matrix", "fixed_test_set", "make_addition_batch", "sample_distortion",
]
