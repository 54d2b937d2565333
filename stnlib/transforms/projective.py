"""Projective (homography) family: eight parameters, the 3x3 matrix with its bottom-right entry fixed to 1."""

from __future__ import annotations

import torch

from .base import Transform, apply_homogeneous, register_transform


def projective_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B, 8) -> (B, 3, 3) homography [[h1 h2 h3], [h4 h5 h6], [h7 h8 1]] (row-major, output -> source).

    Examples:
        >>> projective_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0, 0, 0]]))[0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    one = theta.new_ones(theta.shape[0], 1)
    return torch.cat([theta, one], dim=1).reshape(-1, 3, 3)


def projective_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map (N, 2) or (B, N, 2) normalised points: (x', y', w) = H (x_t, y_t, 1), (x_s, y_s) = (x'/w, y'/w).

    |w| is kept at least 1e-6 (sign preserved), so points at the horizon map far outside the input
    (where the sampler reads zeros) instead of producing inf or NaN.
    """
    return apply_homogeneous(projective_matrix(theta), points, perspective=True)


@register_transform("projective")
class ProjectiveTransform(Transform):
    """Projective family: 8 parameters; identity (1, 0, 0, 0, 1, 0, 0, 0).

    With (h7, h8) = (0, 0) it is exactly the affine family with theta = (h1, ..., h6).
    """

    num_params = 8

    def identity(self) -> torch.Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return projective_points(theta, points)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        return projective_matrix(self.check_theta(theta, check_finite=False))


def homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The projective theta that maps 4 points ``src`` onto 4 points ``dst`` (direct linear transform).

    Solves ``(x', y', w) = H (x, y, 1)``, ``(x'/w, y'/w) = dst`` for the 8 unknowns of ``H`` (its
    bottom-right entry fixed to 1, stnlib's projective convention) from the 8 linear equations the
    4 correspondences give, in float64. For a *sampling* theta (output -> input, as every stnlib
    grid), pass output-grid points as ``src`` and the input points they should read as ``dst``.
    Points are meant to be normalised coordinates (order 1), where the system is well conditioned
    without Hartley normalisation.

    Args:
        src: (B, 4, 2) or (4, 2) points, (x, y) order.
        dst: same shape as ``src``.

    Returns:
        (B, 8) theta (or (8,) for unbatched input), dtype of ``src``, such that
        ``projective_points(theta, src)`` equals ``dst`` up to rounding.

    Raises:
        ValueError: wrong shapes, or three of the 4 points of a row collinear (no unique homography).

    Examples:
        >>> sq = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
        >>> theta = homography_from_points(sq, 0.5 * sq + 0.25)  # a zoom-in crop: affine, h7 = h8 = 0
        >>> torch.allclose(theta, torch.tensor([0.5, 0, 0.25, 0, 0.5, 0.25, 0, 0]), atol=1e-6)
        True
        >>> torch.allclose(projective_points(theta[None], sq), 0.5 * sq + 0.25, atol=1e-6)
        True
    """
    single = src.dim() == 2
    if single:
        src, dst = src[None], dst[None]
    if src.dim() != 3 or src.shape[1:] != (4, 2) or dst.shape != src.shape:
        raise ValueError(f"src and dst must both have shape (B, 4, 2) or (4, 2), got {tuple(src.shape)} and {tuple(dst.shape)}")
    s, d = src.double(), dst.double()
    x, y = s.unbind(-1)  # (B, 4) each
    u, v = d.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -x * u, -y * u], dim=-1)  # (B, 4, 8)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -x * v, -y * v], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (B, 8, 8)
    b = torch.cat([u, v], dim=1)  # (B, 8)
    h, info = torch.linalg.solve_ex(a, b)
    bad = (info != 0) | _three_collinear(s) | _three_collinear(d)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"no unique homography for batch rows {rows[:10]}: three of their 4 points are collinear")
    h = h.to(src.dtype)
    return h[0] if single else h


def _three_collinear(pts: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """(B,) whether any 3 of the 4 points of (B, 4, 2) ``pts`` are collinear, relative to their spread."""
    triples = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]], device=pts.device)
    p = pts[:, triples]  # (B, 4, 3, 2)
    u, v = p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0]
    area = (u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]).abs()  # (B, 4)
    spread = (pts - pts.mean(dim=1, keepdim=True)).square().sum(-1).amax(dim=1)  # (B,)
    return (area <= eps * spread[:, None]).any(dim=1)
