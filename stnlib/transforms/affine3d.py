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


def rotation3d(angles_deg: torch.Tensor) -> torch.Tensor:
    """(N, 3) angles (alpha, beta, gamma) in degrees about the x, y and z axes -> (N, 3, 3) rotations
    ``R = R_z(gamma) @ R_y(beta) @ R_x(alpha)`` (x first), float64.

    Each factor is the right-handed rotation about its axis, acting on (x, y, z) column vectors. In a volume's
    frame (x along W, y along H *downwards*, z along D away from the viewer; a right-handed frame), a positive
    ``gamma`` therefore turns an image in the x-y plane *clockwise* as displayed: the opposite sign of the 2D
    distortions' angle.

    Examples:
        >>> rotation3d(torch.tensor([[0.0, 0.0, 90.0]]))[0].round().tolist()
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if angles_deg.dim() != 2 or angles_deg.shape[1] != 3:
        raise ValueError(f"angles_deg must have shape (N, 3), got {tuple(angles_deg.shape)}")
    a = torch.deg2rad(angles_deg.double())
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a[:, 0]), torch.zeros_like(a[:, 0])

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def rotation3d_angles(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rotation3d`: (N, 3, 3) rotations -> (N, 3) angles (alpha, beta, gamma) in degrees,
    beta in [-90, 90] and the others in (-180, 180] (unique away from beta = +-90, gimbal lock).

    Examples:
        >>> angles = torch.tensor([[10.0, -20.0, 30.0], [-45.0, 45.0, -45.0]])
        >>> torch.allclose(rotation3d_angles(rotation3d(angles)), angles.double())
        True
    """
    if rotation.dim() != 3 or rotation.shape[1:] != (3, 3):
        raise ValueError(f"rotation must have shape (N, 3, 3), got {tuple(rotation.shape)}")
    r = rotation.double()
    alpha = torch.atan2(r[:, 2, 1], r[:, 2, 2])
    beta = torch.asin((-r[:, 2, 0]).clamp(-1.0, 1.0))
    gamma = torch.atan2(r[:, 1, 0], r[:, 0, 0])
    return torch.rad2deg(torch.stack([alpha, beta, gamma], 1))
