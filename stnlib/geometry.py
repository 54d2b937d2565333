"""Geometry helpers for drawing and analysing thetas: sampled regions in pixels, composition, boxes and IoU."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .coords import ALIGN_CORNERS, as_size, normalized_to_pixel
from .transforms import Transform, get_transform


def output_boundary(points_per_side: int = 2, device=None, dtype=torch.float32) -> torch.Tensor:
    """(4 * points_per_side - 4 + 1, 2) closed outline of the output square [-1, 1]^2, clockwise from top-left.

    Examples:
        >>> output_boundary(2).tolist()
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]]
    """
    t = torch.linspace(-1.0, 1.0, points_per_side, device=device, dtype=dtype)
    one = torch.ones_like(t)
    top = torch.stack([t, -one], 1)
    right = torch.stack([one, t], 1)[1:]
    bottom = torch.stack([t.flip(0), one], 1)[1:]
    left = torch.stack([-one, t.flip(0)], 1)[1:]
    return torch.cat([top, right, bottom, left], 0)


def sampling_outline(theta: torch.Tensor, transform: str | Transform, in_size: int | Sequence[int],
                     points_per_side: int | None = None, align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """The region of the input that theta samples, as a closed polygon in input pixel coordinates.

    The output square's boundary is mapped through T_theta (output -> input), so the polygon is the
    box (attention), parallelogram (affine), quadrilateral (projective) or curved outline (TPS)
    drawn in the paper's figures.

    Args:
        theta: (B, num_params) or (num_params,).
        transform: family name or instance.
        in_size: (H, W) of the input the region is drawn on.
        points_per_side: boundary samples per side (default 2 for straight-edged families, 16 for TPS).
        align_corners: convention of :mod:`stnlib.coords`.

    Returns:
        (B, P, 2) pixel (x, y) vertices (x = column, y = row), first vertex repeated at the end;
        (P, 2) if theta was 1-D.

    Examples:
        >>> sampling_outline(torch.tensor([0.5, 0.0, 0.0]), "attention", 28)[:4].tolist()
        [[6.5, 6.5], [20.5, 6.5], [20.5, 20.5], [6.5, 20.5]]
    """
    tf = get_transform(transform)
    single = theta.dim() == 1
    theta = tf.check_theta(theta[None] if single else theta)
    n = points_per_side or (16 if tf.name == "tps" else 2)
    pts = tf.transform_points(theta, output_boundary(n, theta.device, theta.dtype))
    pix = normalized_to_pixel(pts, as_size(in_size, 2, "in_size"), align_corners)
    return pix[0] if single else pix


BOX3D_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7),
                                             (0, 4), (1, 5), (2, 6), (3, 7))
"""The 12 edges of a box as pairs of :func:`sampling_box3d` corner indices."""


def sampling_box3d(theta: torch.Tensor, in_size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """The box of the input volume that a 3D affine theta samples: the 8 corners of the output cube [-1, 1]^3
    mapped through theta (output -> input), in input voxel coordinates.

    Args:
        theta: (B, 12) or (12,) affine3d parameters.
        in_size: (D, H, W) of the input volume (an int: a cube).
        align_corners: convention of :mod:`stnlib.coords`.

    Returns:
        (B, 8, 3) voxel (x, y, z) corners (x = column, y = row, z = depth slice; voxel centres at integers), corner
        ``k`` being output corner (x, y, z) = (-1 or 1) by the bits of k (x lowest); (8, 3) if theta was 1-D.
        :data:`BOX3D_EDGES` lists its edges; drop one coordinate to draw the box on a projection.

    Examples:
        >>> from stnlib import get_transform
        >>> box = sampling_box3d(0.5 * get_transform("affine3d").identity(), 40)
        >>> box[0].tolist(), box[7].tolist()
        ([9.5, 9.5, 9.5], [29.5, 29.5, 29.5])
    """
    tf = get_transform("affine3d")
    single = theta.dim() == 1
    theta = tf.check_theta(theta[None] if single else theta)
    bits = torch.arange(8, device=theta.device)
    corners = torch.stack([(bits >> k) & 1 for k in range(3)], 1).to(theta.dtype) * 2 - 1  # (8, 3), x lowest bit
    pts = tf.transform_points(theta, corners)
    d, h, w = as_size(in_size, 3, "in_size")
    n = pts.new_tensor([w, h, d])
    pix = (pts + 1) * (n - 1) / 2 if align_corners else ((pts + 1) * n - 1) / 2
    return pix[0] if single else pix


def to_matrix(theta: torch.Tensor, transform: str | Transform) -> torch.Tensor:
    """(B, 3, 3) homogeneous matrix (output -> input) of an affine, attention or projective theta."""
    return get_transform(transform).matrix(theta)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Compose two output -> input warps given as (B, 3, 3) matrices: first ``outer``, then ``inner``.

    If an image ``D`` was made from ``U`` with the warp ``inner`` (D(p) = U(inner p)) and a spatial
    transformer then samples ``D`` with ``outer`` (V(q) = D(outer q)), then V(q) = U(inner @ outer q):
    the returned matrix ``inner @ outer`` says where each output point of the transformer reads the
    *undistorted* image. A transformer that undoes the distortion returns a matrix close to a fixed
    canonical transform for every sample.

    Examples:
        >>> r = torch.tensor([[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]])
        >>> compose(r.transpose(1, 2), r)[0].tolist()  # a rotation followed by its inverse
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if outer.shape[-2:] != (3, 3) or inner.shape[-2:] != (3, 3):
        raise ValueError(f"compose expects (B, 3, 3) matrices, got {tuple(outer.shape)} and {tuple(inner.shape)}")
    return inner @ outer


def polygon_box(poly: torch.Tensor) -> torch.Tensor:
    """Axis-aligned bounding boxes (x0, y0, x1, y1) of (B, P, 2) or (P, 2) polygons."""
    lo = poly.amin(dim=-2)
    hi = poly.amax(dim=-2)
    return torch.cat([lo, hi], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of (..., 4) boxes (x0, y0, x1, y1).

    Examples:
        >>> box_iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 0, 3, 2])).item()
        0.3333333432674408
    """
    x0 = torch.maximum(a[..., 0], b[..., 0])
    y0 = torch.maximum(a[..., 1], b[..., 1])
    x1 = torch.minimum(a[..., 2], b[..., 2])
    y1 = torch.minimum(a[..., 3], b[..., 3])
    inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    return inter / (area_a + area_b - inter).clamp_min(1e-12)
