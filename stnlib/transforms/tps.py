"""Thin-plate-spline family (paper Sec. 3.2, Bookstein 1989): K control points on a regular grid.

theta holds the *source* positions of the K control points, (x_1, y_1, ..., x_K, y_K) in normalised
coordinates; control point k sits at c_k on the output grid. The map is the thin plate spline that
sends every c_k to its theta position with the least bending:
``T(p) = a_0 + a_1 x + a_2 y + sum_k w_k U(|p - c_k|)``, ``U(r) = r^2 log r^2``. It is linear in theta,
so ``T(p) = M(p) theta`` with ``M(p)`` fixed by the control points (precomputed once per grid).
Identity: theta = the control points themselves. A theta that is an affine image of the control
points gives exactly that affine map (no bending).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from ..coords import ALIGN_CORNERS, as_size, base_grid
from .base import Transform, register_transform

GRID_CACHE_SIZE = 32
"""Output sizes whose point matrix a :class:`TPSTransform` keeps (least recently used dropped first):
a model uses a handful of sizes, but a sweep over many would otherwise grow the cache without bound."""


def tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """U as a function of the squared distance: r^2 log r^2, with U(0) = 0."""
    return r2 * torch.log(r2.clamp_min(1e-12))


def regular_control_points(grid_size: int) -> torch.Tensor:
    """(grid_size**2, 2) control points on a regular grid spanning [-1, 1], x varying fastest.

    Examples:
        >>> regular_control_points(2).tolist()
        [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    """
    axis = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1).float()


def tps_weights(control: torch.Tensor) -> torch.Tensor:
    """(K + 3, K) matrix W such that the spline coefficients are W @ target (the first K columns of L^-1)."""
    c = control.double()
    k = c.shape[0]
    p = torch.cat([c.new_ones(k, 1), c], dim=1)  # (K, 3)
    lmat = torch.zeros(k + 3, k + 3, dtype=torch.float64)
    lmat[:k, :k] = tps_kernel(torch.cdist(c, c) ** 2)
    lmat[:k, k:] = p
    lmat[k:, :k] = p.t()
    return torch.linalg.inv(lmat)[:, :k]


def tps_basis(points: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """(..., N, K + 3) features [U(|p - c_k|)_k, 1, x, y] of (..., N, 2) points."""
    diff = points[..., :, None, :] - control
    u = tps_kernel((diff ** 2).sum(-1))
    return torch.cat([u, torch.ones_like(points[..., :1]), points], dim=-1)


@register_transform("tps")
class TPSTransform(Transform):
    """Thin-plate-spline family: ``2 * grid_size**2`` parameters (default 4 x 4 = 16 control points, 32 numbers).

    Args:
        grid_size: control points per side of the regular grid (the paper uses 16 points: 4).
    """

    def __init__(self, grid_size: int = 4):
        super().__init__()
        if int(grid_size) < 2:
            raise ValueError(f"TPS grid_size must be at least 2, got {grid_size}")
        self.grid_size = int(grid_size)
        self.num_params = 2 * self.grid_size ** 2
        self.register_buffer("control", regular_control_points(self.grid_size), persistent=False)
        # float64: the spline solve is ill-conditioned enough that float32 weights move the identity by ~1e-5
        self.register_buffer("weights", tps_weights(self.control), persistent=False)
        # (size, align_corners, device, dtype) -> (H*W, K) point matrix, bounded LRU (GRID_CACHE_SIZE).
        self._grid_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def identity(self) -> torch.Tensor:
        return self.control.detach().cpu().flatten().clone()

    def point_matrix(self, points: torch.Tensor) -> torch.Tensor:
        """(..., N, K) matrix M with source = M @ theta.view(K, 2), for (..., N, 2) output points."""
        control = self.control.to(points.device, torch.float64)
        weights = self.weights.to(points.device, torch.float64)
        return (tps_basis(points.double(), control) @ weights).to(points.dtype)

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.point_matrix(points.to(theta.dtype)) @ self._control_targets(theta)

    def _control_targets(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) view of theta; K is explicit because ``-1`` is ambiguous for an empty batch."""
        return theta.reshape(theta.shape[0], self.num_params // 2, 2)

    def grid(self, theta, out_size, align_corners=ALIGN_CORNERS, check_finite=True):
        self.check_theta(theta, check_finite)
        size = as_size(out_size, 2)
        key = (size, bool(align_corners), theta.device, theta.dtype)
        mat = self._grid_cache.get(key)
        if mat is None:  # M depends only on the output grid: compute it once per size, in float64
            base = base_grid(size, align_corners, theta.device, torch.float64).reshape(-1, 2)
            mat = self.point_matrix(base).to(theta.dtype)
            self._grid_cache[key] = mat
            while len(self._grid_cache) > GRID_CACHE_SIZE:
                self._grid_cache.popitem(last=False)
        else:
            self._grid_cache.move_to_end(key)
        return (mat @ self._control_targets(theta)).reshape(theta.shape[0], *size, 2)

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}, grid_size={self.grid_size}"
