"""3D MNIST (paper A.3): a digit extruded into a slab and placed in a cubic volume with a random 3D rotation, scale
and translation, for the 3D affine spatial transformer.

Random poses are sampled by :func:`sample_pose` from a ``torch.Generator`` the caller passes in; :func:`apply_pose`
then renders a batch of digits deterministically with those poses (one batched sampling call), so the test set
(:func:`volume_test_set`) is fixed forever by its seed and a figure can be regenerated bit for bit.
:class:`VolumeMNIST` serves step-indexed training batches rendered on the fly, like
:class:`~stnlib.data.distortions.DistortedMNIST`.

Conventions (those of :mod:`stnlib.coords` and :class:`~stnlib.transforms.affine3d.Affine3DTransform`): a volume is
(N, 1, D, H, W) with D = H = W = ``size``; points are (x, y, z) with x along W, y along H (downwards as displayed)
and z along D (the depth, away from the viewer); normalised coordinates in [-1, 1] with ``align_corners=False``;
a grid maps OUTPUT (volume) points to INPUT (digit) points. :func:`pose_matrix` is that map as (N, 3, 4) affine3d
theta from volume normalised coordinates to the normalised coordinates of the digit's 28 x 28 x 28 frame.
Lengths (translations, the slab's thickness) are in voxels; angles in degrees (:func:`~stnlib.transforms.rotation3d`).

What the paper leaves open, and what we assume
----------------------------------------------
* The paper (A.3) extrudes MNIST digits into a 60 x 60 x 60 volume and gives no other numbers. "Extruded": the
  digit's 28 x 28 image (scaled to [0, 1], background 0) is repeated along the depth over a slab ``thickness``
  pixels deep (default 8, a third of its height: thick enough that a tilted slab smears the projected strokes,
  thin enough to read as a flat digit), centred in its 28-pixel-deep frame. Rendering is trilinear sampling of
  that extruded digit with zero padding.
* The pose repeats the paper's RTS numbers in 3D: each of the three rotation angles (about x, y and z, applied
  in that order) uniform in [-45, 45] degrees, one scale uniform in [0.7, 1.2] (the digit's 28-voxel frame
  becomes 28 s voxels), and the frame's centre moved from the volume's centre by a translation uniform in
  +-(size - 28 s) / 2 voxels per axis, so the scaled but unrotated frame cube lies inside the volume. The
  digit's ink (mostly its central 20 x 20 pixels) then stays inside too, but for corners of the largest, most
  rotated digits.
* Volume side: 40 voxels by default (:data:`DEFAULT_SIZE`), not the paper's 60 (:data:`PAPER_SIZE`, an option):
  40 is about the 42 x 42 canvas of RTS, the same digit sizes fit, and a volume has (60 / 40)^3 = 3.4 times
  fewer voxels, which is what rendering, sampling and the localisation net cost on a CPU.
* Every random number is drawn on the generator's device (use a CPU generator: the same seed then gives the same
  poses on every machine), in the order of :func:`sample_pose`; changing that order changes the test set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..sampler import trilinear_sample
from ..transforms import get_transform
from ..transforms.affine3d import rotation3d
from .distortions import DIGIT_SIZE, SPLIT_SEEDS, as_image_batch, init_step_source
from .streams import StepSource, register_stream, stream_generator

DEFAULT_SIZE = 40
"""Side of the volume in voxels (see the module docstring for why not the paper's 60)."""
PAPER_SIZE = 60
"""The paper's volume side (A.3)."""

for _name, _number in {"volume.permutation": 51, "volume.pose": 52, "volume.test": 53}.items():
    register_stream(_name, _number)

_TEST_CHUNK = 256  # fixed: chunk i of the test set draws its poses from the stream "volume.test" keyed by i


@dataclass(frozen=True)
class VolumeSpec:
    """How the 3D digits are made: volume side (voxels), slab thickness (pixels of the 28-pixel digit frame),
    the largest rotation about each axis (degrees) and the scale range.

    Examples:
        >>> VolumeSpec().size, VolumeSpec(size=PAPER_SIZE).size
        (40, 60)
    """

    size: int = DEFAULT_SIZE
    thickness: float = 8.0
    max_angle_deg: float = 45.0
    scale_range: tuple[float, float] = (0.7, 1.2)

    def __post_init__(self):
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if int(self.size) != self.size or self.size < DIGIT_SIZE * hi:
            raise ValueError(f"size must be an integer number of voxels holding the largest digit frame "
                             f"({DIGIT_SIZE} x {hi} = {DIGIT_SIZE * hi:g}), got {self.size}")
        if not 0 < self.thickness <= DIGIT_SIZE:
            raise ValueError(f"thickness must be in (0, {DIGIT_SIZE}] pixels, got {self.thickness}")
        if not 0 <= self.max_angle_deg <= 180:
            raise ValueError(f"max_angle_deg must be in [0, 180], got {self.max_angle_deg}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VolumeSpec:
        return cls(**{**d, "scale_range": tuple(d["scale_range"])})


# --------------------------------------------------------------------------------------------------
# Sampling (all randomness lives here)


def sample_pose(n: int, generator: torch.Generator, spec: VolumeSpec = VolumeSpec()) -> dict[str, torch.Tensor]:
    """Draw ``n`` random poses; nothing is rendered here.

    Every entry has leading dimension ``n``; float entries are float64. Each pose takes one row of seven uniform
    numbers from the generator, in this order (the order is part of what fixes the test set; the first k poses
    are the same for every ``n >= k``): ``angles_deg`` (n, 3), the rotation about x, y, z, each uniform in
    +-``spec.max_angle_deg``; ``scale`` (n,) uniform in ``spec.scale_range``; ``translation`` (n, 3) voxels
    (x, y, z), the digit frame's centre offset from the volume's centre, uniform in +-(size - 28 scale) / 2 per
    axis. ``size`` (n,) int64 is the volume side (no random number).

    Examples:
        >>> p = sample_pose(4, torch.Generator().manual_seed(0))
        >>> sorted(p), tuple(p["translation"].shape)
        (['angles_deg', 'scale', 'size', 'translation'], (4, 3))
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    # one row of 7 uniform numbers per pose, so the first k poses of any draw of n >= k are the same
    u = torch.rand(n, 7, generator=generator, device=generator.device, dtype=torch.float64)
    lo, hi = spec.scale_range
    scale = lo + (hi - lo) * u[:, 3]
    half = ((spec.size - DIGIT_SIZE * scale) / 2).clamp_min(0)[:, None]
    return {"size": torch.full((n,), int(spec.size), dtype=torch.int64, device=generator.device),
            "angles_deg": spec.max_angle_deg * (2 * u[:, :3] - 1), "scale": scale,
            "translation": (2 * u[:, 4:] - 1) * half}


# --------------------------------------------------------------------------------------------------
# Deterministic geometry


def _volume_size(params: dict[str, torch.Tensor]) -> int:
    size = params.get("size")
    if size is None or size.dim() != 1:
        raise ValueError("params must hold a 'size' entry of shape (N,), as sample_pose returns")
    if size.numel() == 0:
        return DEFAULT_SIZE
    s = int(size[0])
    if bool((size != s).any()):
        raise ValueError("all poses of one batch must share one volume size")
    return s


def pose_rotation(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 3, 3) float64 rotation of each pose (digit -> volume, :func:`~stnlib.transforms.rotation3d`)."""
    return rotation3d(params["angles_deg"])


def pose_matrix(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ground-truth placement as (N, 3, 4) float64 affine3d theta: volume normalised -> digit-frame normalised.

    Output -> input, like every stnlib grid: ``M @ (x, y, z, 1)`` is the point of the digit's 28-voxel frame that
    volume point (x, y, z) shows. The digit is placed by ``volume_px = scale R digit_px + translation`` (pixel
    offsets from the centres), so ``M = [k R^T | -k R^T t]`` with ``k = size / (28 scale)`` and ``t`` the
    translation in volume normalised units. A spatial transformer whose theta has the rotation part of
    ``inverse(M)`` (``R``) shows the digit facing the viewer, upright.

    Examples:
        >>> p = sample_pose(3, torch.Generator().manual_seed(1))
        >>> m = pose_matrix(p)
        >>> m.shape, torch.allclose(m[:, :, :3] @ pose_rotation(p) * (28 * p["scale"] / 40)[:, None, None],
        ...                         torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
        (torch.Size([3, 3, 4]), True)
    """
    size = _volume_size(params)
    rot_t = pose_rotation(params).transpose(1, 2)
    k = (size / (DIGIT_SIZE * params["scale"].double()))[:, None, None]
    t = 2 * params["translation"].double() / size
    lin = k * rot_t
    return torch.cat([lin, -(lin @ t[:, :, None])], dim=2)


def slab_profile(thickness: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """(28,) the fraction of each depth slice of the digit's frame that the slab of ``thickness`` pixels,
    centred in the frame, covers.

    Examples:
        >>> slab_profile(8.0).nonzero().flatten().tolist()
        [10, 11, 12, 13, 14, 15, 16, 17]
        >>> slab_profile(3.0)[12:16].tolist()
        [0.5, 1.0, 1.0, 0.5]
    """
    j = torch.arange(DIGIT_SIZE, dtype=torch.float64)
    lo, hi = DIGIT_SIZE / 2 - thickness / 2, DIGIT_SIZE / 2 + thickness / 2
    return (torch.minimum(j + 1, torch.tensor(hi)) - torch.maximum(j, torch.tensor(lo))).clamp(0, 1).to(device, dtype)


def extrude(images: torch.Tensor, thickness: float) -> torch.Tensor:
    """Digits as (N, 1, 28, 28, 28) volumes: each image repeated over the depth slices of the slab
    (:func:`slab_profile`), zero elsewhere: what :func:`apply_pose` places in the volume."""
    x = as_image_batch(images)
    return x[:, :, None] * slab_profile(thickness, x.dtype, x.device)[None, None, :, None, None]


def apply_pose(images: torch.Tensor, params: dict[str, torch.Tensor], spec: VolumeSpec = VolumeSpec()) -> torch.Tensor:
    """Render digits extruded into slabs (:func:`extrude`) with sampled poses; deterministic, batched, on the
    images' device: one grid (:func:`pose_matrix`) and one :func:`~stnlib.sampler.trilinear_sample` call with
    zero padding.

    Args:
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) digits (see :func:`~stnlib.data.distortions.as_image_batch`).
        params: from :func:`sample_pose` for the same N (moved to the images' device here).
        spec: gives the slab's thickness; its ``size`` must be the poses' volume size.

    Returns:
        (N, 1, S, S, S) float volumes in [0, 1], S = ``spec.size``.

    Examples:
        >>> p = sample_pose(2, torch.Generator().manual_seed(0), VolumeSpec(size=36))
        >>> apply_pose(torch.rand(2, 1, 28, 28), p, VolumeSpec(size=36)).shape
        torch.Size([2, 1, 36, 36, 36])
    """
    x = as_image_batch(images)
    size = _volume_size(params)
    n = x.shape[0]
    if params["size"].shape[0] != n:
        raise ValueError(f"params are for {params['size'].shape[0]} poses but images has {n}")
    if size != spec.size:
        raise ValueError(f"the poses are for a {size}-voxel volume but spec.size is {spec.size}")
    if n == 0:
        return x.new_zeros(0, 1, size, size, size)
    grid = get_transform("affine3d").grid(pose_matrix(params).reshape(n, 12).to(x.device, x.dtype), size)
    return trilinear_sample(extrude(x, spec.thickness), grid)


# --------------------------------------------------------------------------------------------------
# Training batches and the fixed test set


class VolumeMNIST(StepSource):
    """Training volumes rendered on the fly, indexed by step so a resumed run sees exactly the same batches.

    Step ``t`` belongs to epoch ``t // steps_per_epoch``; the epoch's permutation of the training digits comes
    from the stream ``"volume.permutation"`` keyed by the epoch, and the step's poses from ``"volume.pose"`` keyed
    by ``t`` (:mod:`stnlib.data.streams`), so a batch depends neither on the batches before it nor on the device.
    The digits are moved to ``device`` once (as given, e.g. uint8) and rendered there.

    Args:
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float training digits.
        labels: (N,) int64 labels.
        batch_size: volumes per step (an epoch's last batch holds the remainder).
        seed: the run's data seed.
        spec: how the volumes are made.
        device: where the digits live and the rendering runs.

    Examples:
        >>> data = VolumeMNIST(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), 4, seed=0,
        ...                    spec=VolumeSpec(size=34))
        >>> data.steps_per_epoch, data.batch(2)[0].shape
        (3, torch.Size([2, 1, 34, 34, 34]))
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 spec: VolumeSpec = VolumeSpec(), device: str | torch.device = "cpu"):
        self.spec = spec
        init_step_source(self, images, labels, batch_size, seed, device)

    def indices(self, step: int) -> torch.Tensor:
        """(B,) CPU int64 training-set indices of the digits in batch ``step``."""
        return self.epoch_indices(step, "volume.permutation")

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """The poses (CPU) of batch ``step``."""
        return sample_pose(len(self.indices(step)), self.step_generator(step, "volume.pose"), self.spec)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of training step ``step``: x (B, 1, S, S, S) float in [0, 1] and y (B,) on ``device``."""
        idx = self.indices(step).to(self.device)
        return apply_pose(self.images[idx], self.params(step), self.spec), self.labels[idx]

    def __repr__(self) -> str:
        return (f"VolumeMNIST(num_examples={self.num_examples}, batch_size={self.batch_size}, seed={self.seed}, "
                f"spec={self.spec}, device={str(self.device)!r})")


def volume_test_set(images: torch.Tensor, labels: torch.Tensor, spec: VolumeSpec = VolumeSpec(), n: int | None = None,
                    seed: int = SPLIT_SEEDS["volume_test"]) -> dict:
    """The fixed, seeded 3D test set: the same seed and spec give bit-identical tensors on every call.

    The first ``n`` digits (all by default) are rendered on the CPU in chunks of 256; chunk i draws its poses from
    the stream ``"volume.test"`` keyed by i and is always rendered whole (a short chunk's rows repeated), so the
    first k volumes are the same whatever ``n`` is (a figure can regenerate a few without the rest).

    Args:
        images: (N, 28, 28) uint8 or (N, 1, 28, 28) float test digits.
        labels: (N,) labels.
        spec: how the volumes are made.
        n: use only the first ``n`` digits.
        seed: default :data:`~stnlib.data.distortions.SPLIT_SEEDS` ``["volume_test"]``.

    Returns:
        dict with "x" (n, 1, S, S, S) float32, "y" (n,), "params" (the ground truth, from :func:`sample_pose`),
        "rotation" (n, 3, 3) (:func:`pose_rotation`), "matrix" (n, 3, 4) (:func:`pose_matrix`), "spec" (dict),
        "seed".
    """
    x_all = as_image_batch(images[: images.shape[0] if n is None else int(n)]).cpu()
    count = x_all.shape[0]
    if labels.shape[0] < count:
        raise ValueError(f"labels must have at least {count} entries, got {labels.shape[0]}")
    chunks, params = [], []
    for i, start in enumerate(range(0, count, _TEST_CHUNK)):
        part = x_all[start:start + _TEST_CHUNK]
        k = part.shape[0]
        p = sample_pose(k, stream_generator(seed, "volume.test", i), spec)
        # rendered as a whole chunk (rows repeated): the grid's matrix product then has the same shape whatever n
        # is, and so the same rounding (a BLAS takes another path for a few rows, 1 ulp apart)
        rows = torch.arange(_TEST_CHUNK) % k
        chunks.append(apply_pose(part[rows], {key: v[rows] for key, v in p.items()}, spec)[:k])
        params.append(p)
    size = spec.size
    merged = {k: torch.cat([p[k] for p in params]) for k in params[0]} if params else sample_pose(
        0, torch.Generator(), spec)
    x = torch.cat(chunks) if chunks else x_all.new_zeros(0, 1, size, size, size)
    return {"x": x, "y": labels[:count].cpu().clone(), "params": merged, "rotation": pose_rotation(merged),
            "matrix": pose_matrix(merged), "spec": spec.to_dict(), "seed": int(seed)}


__all__ = ["DEFAULT_SIZE", "PAPER_SIZE", "VolumeMNIST", "VolumeSpec", "apply_pose", "extrude", "pose_matrix",
           "pose_rotation", "sample_pose", "slab_profile", "volume_test_set"]
