"""3D affine family (paper A.3): twelve parameters, a 3x4 matrix acting on (x, y, z, 1) of a volume."""

from __future__ import annotations

import torch

from .base import Transform, apply_homogeneous, register_transform


def affine3d_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B, 12) -> (B, 4, 4) homogeneous matrices with bottom row [0, 0, 0, 1]."""
    bottom = theta.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 4)
    return torch.cat([theta.reshape(-1, 3, 4), bottom], dim=1)


@register_transform("affine3d")
class Affine3DTransform(Transform):
    """3D affine family: 12 parameters (row-major 3x4); identity [[1,0,0,0],[0,1,0,0],[0,0,1,0]].

    Points are (x, y, z) with x along W, y along H and z along D of a (B, C, D, H, W) volume; the
    grid is (B, D, H, W, 3).
    """

    ndim = 3
    num_params = 12

    def identity(self) -> torch.Tensor:
        return torch.eye(3, 4).flatten()

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return apply_homogeneous(theta.reshape(-1, 3, 4), points, perspective=False)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        return affine3d_matrix(self.check_theta(theta, check_finite=False))
