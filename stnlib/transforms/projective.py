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
