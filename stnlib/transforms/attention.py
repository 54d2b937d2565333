"""Attention family (paper Eq. 2): isotropic scale and translation, theta = (s, t_x, t_y)."""

from __future__ import annotations

import torch

from ..coords import ALIGN_CORNERS
from .affine import affine_grid, affine_matrix, affine_points
from .base import Transform, register_transform


def attention_to_affine(theta: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """(B, 3) attention parameters (s, t_x, t_y) -> (B, 6) affine [[s, 0, t_x], [0, s, t_y]].

    With a fixed ``scale``, theta is (B, 2) = (t_x, t_y) (the paper's birds setting, A.6).

    Examples:
        >>> attention_to_affine(torch.tensor([[0.5, 0.25, -0.125]])).tolist()
        [[0.5, 0.0, 0.25, 0.0, 0.5, -0.125]]
        >>> attention_to_affine(torch.tensor([[0.25, -0.125]]), scale=0.5).tolist()
        [[0.5, 0.0, 0.25, 0.0, 0.5, -0.125]]
    """
    if scale is None:
        s, tx, ty = theta.unbind(dim=1)
    else:
        tx, ty = theta.unbind(dim=1)
        s = torch.full_like(tx, scale)
    zero = torch.zeros_like(s)
    return torch.stack([s, zero, tx, zero, s, ty], dim=1)


@register_transform("attention")
class AttentionTransform(Transform):
    """Attention family: 3 parameters (s, t_x, t_y); identity (1, 0, 0).

    A square window of side ``s`` (a fraction of the input) centred at (t_x, t_y): with s < 1 the
    transformer crops and zooms, and with a small ``out_size`` it also downsamples, so the
    network after it pays for the crop's size, not the input's.

    Args:
        scale: fix s to this value and regress only the location (2 parameters, identity (0, 0)),
            as the paper did for the birds (A.6: free scale overfits).
    """

    def __init__(self, scale: float | None = None):
        super().__init__()
        if scale is not None and not (0 < float(scale) <= 10):
            raise ValueError(f"attention scale must be in (0, 10], got {scale}")
        self.scale = None if scale is None else float(scale)
        self.num_params = 3 if scale is None else 2

    def identity(self) -> torch.Tensor:
        return torch.tensor([1.0, 0.0, 0.0] if self.scale is None else [0.0, 0.0])

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return affine_points(attention_to_affine(theta, self.scale), points)

    def grid(self, theta, out_size, align_corners=ALIGN_CORNERS, check_finite=True):
        self.check_theta(theta, check_finite)
        return affine_grid(attention_to_affine(theta, self.scale), out_size, align_corners)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        return affine_matrix(attention_to_affine(self.check_theta(theta, check_finite=False), self.scale))

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}, scale={self.scale}"
