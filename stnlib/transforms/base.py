"""The interface every transformation family shares, and the registry that selects one by name.

A family is a *grid generator* (paper Sec. 3.2): it maps a batch of parameters theta to the source
point of every output point, ``T_theta(x_t, y_t) = (x_s, y_s)``. Each family file holds a pure
function (theta, points) -> points and a thin :class:`Transform` subclass around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..coords import ALIGN_CORNERS, as_size, base_grid

_REGISTRY: dict[str, type[Transform]] = {}

MAX_ABS_THETA: float = 1e6
"""Largest |theta| entry :meth:`Transform.check_theta` accepts. Sensible parameters are of order 1
(normalised coordinates); far larger finite values (3e38, say) overflow float32 in the grid or the
sampler's pixel conversion and give NaN output silently. 1e6 leaves ample headroom below that."""


class Transform(nn.Module):
    """Base class of a transformation family: ``num_params``, ``identity()`` and ``grid()``.

    Subclasses set ``name``, ``ndim`` (2 for images, 3 for volumes), ``num_params`` and implement
    :meth:`transform_points`; :meth:`grid` follows from it. Families that have a 3x3 (or 4x4)
    matrix form also implement :meth:`matrix`.
    """

    name: str = ""
    ndim: int = 2
    num_params: int = 0

    def identity(self) -> torch.Tensor:
        """The identity parameters as a 1-D float tensor of length ``num_params``.

        Used to initialise the bias of the localisation net's regression layer (its weights are zero),
        so an untrained spatial transformer passes its input through unchanged.
        """
        raise NotImplementedError

    def transform_points(self, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Map output points to source points.

        Args:
            theta: (B, num_params) parameters, already validated.
            points: (N, ndim) or (B, N, ndim) normalised output points, (x, y[, z]) order.

        Returns:
            (B, N, ndim) normalised source points.
        """
        raise NotImplementedError

    def check_theta(self, theta: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        """Validate ``theta`` of shape (B, num_params); raise ValueError naming what was expected.

        With ``check_finite``, also refuse NaN/inf entries and entries above ``MAX_ABS_THETA`` in
        magnitude, naming the offending batch rows.
        """
        if not isinstance(theta, torch.Tensor):
            raise ValueError(f"{self.name} theta must be a tensor of shape (B, {self.num_params}), got {type(theta).__name__}")
        if theta.dim() != 2 or theta.shape[1] != self.num_params:
            raise ValueError(f"{self.name} theta must have shape (B, {self.num_params}), got {tuple(theta.shape)}")
        if not theta.is_floating_point():
            raise ValueError(f"{self.name} theta must be floating point, got {theta.dtype}")
        # One reduction (one device sync) catches NaN, inf and finite values so large that the grid
        # overflows (NaN compares False, so it fails ``<=`` too).
        if check_finite and not bool((theta.abs() <= MAX_ABS_THETA).all()):
            nonfinite = (~torch.isfinite(theta)).any(dim=1)
            huge = (theta.abs() > MAX_ABS_THETA).any(dim=1) & ~nonfinite
            hint = "the localisation net has diverged: lower its learning rate or check its input"
            if bool(nonfinite.any()):
                rows = nonfinite.nonzero().flatten().tolist()
                raise ValueError(f"{self.name} theta contains NaN or inf (batch rows {rows[:10]}); {hint}")
            rows = huge.nonzero().flatten().tolist()
            raise ValueError(f"{self.name} theta has entries larger than {MAX_ABS_THETA:g} in magnitude "
                             f"(batch rows {rows[:10]}), which overflow the sampling grid; {hint}")
        return theta

    def grid(self, theta: torch.Tensor, out_size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS,
             check_finite: bool = True) -> torch.Tensor:
        """The sampling grid for ``theta``: output grid points mapped to source points.

        Args:
            theta: (B, num_params).
            out_size: (H, W) of the output (3D: (D, H, W)); an int means a square (cube).
            align_corners: convention of :mod:`stnlib.coords`.
            check_finite: raise on NaN/inf theta or |theta| > ``MAX_ABS_THETA`` (costs one device
                sync; turn off in tight loops).

        Returns:
            (B, H, W, 2) source (x_s, y_s), or (B, D, H, W, 3) for 3D families; normalised coordinates.
        """
        self.check_theta(theta, check_finite)
        size = as_size(out_size, self.ndim)
        base = base_grid(size, align_corners, device=theta.device, dtype=theta.dtype, ndim=self.ndim)
        pts = self.transform_points(theta, base.reshape(-1, self.ndim))
        return pts.reshape(theta.shape[0], *size, self.ndim)

    def forward(self, theta: torch.Tensor, out_size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
        return self.grid(theta, out_size, align_corners)

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, ndim+1, ndim+1) homogeneous matrix of theta (output -> source), where the family has one."""
        raise NotImplementedError(f"the {self.name} family has no matrix form")

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}"


def register_transform(name: str) -> Callable[[type[Transform]], type[Transform]]:
    """Class decorator adding a :class:`Transform` subclass to the registry under ``name``."""

    def deco(cls: type[Transform]) -> type[Transform]:
        if name in _REGISTRY:
            raise ValueError(f"transform {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_transforms() -> list[str]:
    """Names accepted by :func:`get_transform`."""
    return sorted(_REGISTRY)


def get_transform(name: str | Transform, **kwargs) -> Transform:
    """A transform by name ("affine", "attention", "projective", "tps", "affine3d") or pass-through.

    Args:
        name: a registered name, or a :class:`Transform` instance (returned as is).
        **kwargs: options of the family, e.g. ``get_transform("tps", grid_size=5)``.

    Examples:
        >>> get_transform("affine").num_params
        6
        >>> get_transform("tps").num_params  # 16 control points, (x, y) each
        32
    """
    if isinstance(name, Transform):
        if kwargs:
            raise ValueError("options cannot be given together with a Transform instance")
        return name
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown transform {name!r}; available: {', '.join(available_transforms())}")
    return _REGISTRY[name](**kwargs)


def apply_homogeneous(mat: torch.Tensor, points: torch.Tensor, perspective: bool) -> torch.Tensor:
    """Apply (B, n+1, n+1) or (B, n, n+1) matrices to (N, n) or (B, N, n) points.

    With ``perspective`` the result is divided by the homogeneous coordinate; its magnitude is kept
    at least 1e-6 (sign preserved) so a point on the horizon maps far away instead of to inf/NaN.
    """
    n = points.shape[-1]
    lin = mat[:, :, :n]  # (B, r, n)
    off = mat[:, :, n]  # (B, r)
    if points.dim() == 2:
        out = torch.einsum("brn,pn->bpr", lin, points)
    else:
        out = torch.einsum("brn,bpn->bpr", lin, points)
    out = out + off[:, None, :]
    if not perspective:
        return out[..., :n]
    w = out[..., n:]
    eps = 1e-6
    w = torch.where(w.abs() < eps, torch.where(w < 0, -eps, eps) + torch.zeros_like(w), w)
    return out[..., :n] / w
