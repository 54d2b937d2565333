"""Affine transformation family (paper Eq. 1): six parameters, theta = [[t11 t12 t13], [t21 t22 t23]] row-major."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..coords import ALIGN_CORNERS, as_size, base_grid
from .base import Transform, apply_homogeneous, register_transform


def affine_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B, 6) affine parameters -> (B, 3, 3) homogeneous matrices with bottom row [0, 0, 1].

    Examples:
        >>> affine_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0]]))[0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    bottom = theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)
    return torch.cat([theta.reshape(-1, 2, 3), bottom], dim=1)


def affine_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map (N, 2) or (B, N, 2) normalised output points through (B, 6) theta: (x_s, y_s) = A (x_t, y_t, 1)."""
    return apply_homogeneous(theta.reshape(-1, 2, 3), points, perspective=False)


def affine_grid(theta: torch.Tensor, out_size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """Affine sampling grid, (B, 6) -> (B, H, W, 2), equal to ``F.affine_grid(theta.view(-1, 2, 3), ...)``.

    One matmul of the stacked rows of theta (2B x 3) against the shared homogeneous base grid
    (3 x HW) instead of ``F.affine_grid``'s B small matmuls over a B x H x W x 3 base grid: same values
    (to float rounding), less memory traffic (see the cost chapter).
    """
    h, w = as_size(out_size, 2)
    b = theta.shape[0]
    base = base_grid((h, w), align_corners, device=theta.device, dtype=theta.dtype).reshape(-1, 2)
    ones = base.new_ones(base.shape[0], 1)
    base_h = torch.cat([base, ones], dim=1).t()  # (3, HW)
    out = theta.reshape(2 * b, 3) @ base_h  # (2B, HW): row 2b is x_s of item b, row 2b+1 its y_s
    return out.reshape(b, 2, h, w).permute(0, 2, 3, 1)


@register_transform("affine")
class AffineTransform(Transform):
    """Affine family: 6 parameters (t11, t12, t13, t21, t22, t23); identity (1, 0, 0, 0, 1, 0).

    The 2x2 block rotates, scales and shears; (t13, t23) translates, in normalised units of the input
    (t13 = 1 moves the sampling window half an image width right). A block with |det| < 1 samples
    a region smaller than the input: a zoom-in crop.
    """

    num_params = 6

    def identity(self) -> torch.Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return affine_points(theta, points)

    def grid(self, theta, out_size, align_corners=ALIGN_CORNERS, check_finite=True):
        self.check_theta(theta, check_finite)
        return affine_grid(theta, out_size, align_corners)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        return affine_matrix(self.check_theta(theta, check_finite=False))


def affine_from_params(rotation_deg: float = 0.0, scale_x: float = 1.0, scale_y: float = 1.0, shear: float = 0.0,
                       tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """Affine theta (6,) from readable parameters: A = R(rotation) @ [[1, shear], [0, 1]] @ diag(scale_x, scale_y).

    theta maps output points to input points, so in the output the content appears turned
    counter-clockwise on screen by ``rotation_deg`` (90 equals ``torch.rot90(x, 1, (2, 3))``),
    magnified by 1/scale, and moved by ``-(tx, ty)`` (normalised units).

    Examples:
        >>> affine_from_params(90.0).round(decimals=6).tolist()
        [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]
    """
    a = math.radians(rotation_deg)
    c, s = math.cos(a), math.sin(a)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    m = r @ torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64) @ torch.diag(
        torch.tensor([scale_x, scale_y], dtype=torch.float64))
    return torch.tensor([m[0, 0], m[0, 1], tx, m[1, 0], m[1, 1], ty], dtype=torch.float32)


def decompose_affine(theta: torch.Tensor) -> dict[str, float]:
    """Inverse of :func:`affine_from_params` for one (6,) theta (QR decomposition of its 2x2 block).

    A reflection (negative determinant) shows up as a negative ``scale_y``.

    Examples:
        >>> d = decompose_affine(affine_from_params(30.0, 0.8, 1.2, 0.1, 0.2, -0.3))
        >>> [round(d[k], 4) for k in ("rotation_deg", "scale_x", "scale_y", "shear", "tx", "ty")]
        [30.0, 0.8, 1.2, 0.1, 0.2, -0.3]
    """
    t = [float(v) for v in theta.reshape(-1).tolist()]
    a00, a01, a10, a11 = t[0], t[1], t[3], t[4]
    scale_x = math.hypot(a00, a10)
    if scale_x == 0:
        return {"rotation_deg": 0.0, "scale_x": 0.0, "scale_y": a11, "shear": 0.0, "tx": t[2], "ty": t[5]}
    rot = math.atan2(a10, a00)
    c, s = math.cos(rot), math.sin(rot)
    r01 = c * a01 + s * a11  # (R^T A)[0, 1] = shear * scale_y
    scale_y = -s * a01 + c * a11  # (R^T A)[1, 1]
    shear = r01 / scale_y if scale_y != 0 else 0.0
    return {"rotation_deg": math.degrees(rot), "scale_x": scale_x, "scale_y": scale_y, "shear": shear,
            "tx": t[2], "ty": t[5]}
