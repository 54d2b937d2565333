"""The differentiable image sampler of the paper (Sec. 3.3): bilinear (Eq. 5) and its 3D, trilinear form.

Both wrap ``torch.nn.functional.grid_sample``, whose bilinear mode computes exactly Eq. 5,
``V_i = sum_nm U_nm max(0, 1 - |x_s - m|) max(0, 1 - |y_s - n|)``, and whose backward gives the
sub-gradients of Eqs. 6-7 with respect to the image and the grid (tests compare it with a
per-pixel implementation of Eq. 5). Conventions are those of :mod:`stnlib.coords`.

Padding. Points outside the input read zeros (``padding="zeros"``), as in the paper. This is only
right if zero *is* the background. If images are normalised before the transformer (MNIST's
``(x - 0.1307) / 0.3081`` turns the black background into -0.42), the zero padding becomes a
bright frame that differs from the background: the classifier can use the frame, and the
localisation net can shrink the digit out of view or move it off the canvas without penalty,
and training drifts into degenerate transforms ("collapse"). stnlib's models therefore warp the
raw, un-normalised image (background exactly 0) and normalise *after* the sampler; for inputs
whose background is not zero, use ``padding="border"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .coords import ALIGN_CORNERS

PADDING_MODES = ("zeros", "border", "reflection")


def _check_sample_inputs(images: torch.Tensor, grid: torch.Tensor, ndim: int, padding: str) -> None:
    names = "(B, C, H, W)" if ndim == 2 else "(B, C, D, H, W)"
    gnames = "(B, H', W', 2)" if ndim == 2 else "(B, D', H', W', 3)"
    if not isinstance(images, torch.Tensor) or images.dim() != ndim + 2:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a {ndim + 2}-D tensor {names}, got shape {shape}")
    if not isinstance(grid, torch.Tensor) or grid.dim() != ndim + 2 or grid.shape[-1] != ndim:
        shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise ValueError(f"grid must be a {ndim + 2}-D tensor {gnames}, got shape {shape}")
    if grid.shape[0] != images.shape[0]:
        raise ValueError(f"images and grid must have the same batch size, got {images.shape[0]} and {grid.shape[0]}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor, got {images.dtype} (convert with .float() / 255)")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")


def bilinear_sample(images: torch.Tensor, grid: torch.Tensor, align_corners: bool = ALIGN_CORNERS,
                    padding: str = "zeros") -> torch.Tensor:
    """Sample ``images`` at ``grid`` with the bilinear kernel of Eq. 5.

    Args:
        images: (B, C, H, W) floating-point input feature map U; any number of channels.
        grid: (B, H', W', 2) source points (x_s, y_s) in normalised [-1, 1] coordinates, x before y;
            ``grid[b, i, j]`` is where output pixel (i, j) reads the input (output -> input mapping).
        align_corners: pixel-centre convention, see :mod:`stnlib.coords` (default ``ALIGN_CORNERS``).
        padding: value outside the input: "zeros" (the paper), "border" or "reflection".

    Returns:
        (B, C, H', W') output V, differentiable with respect to ``images`` and ``grid``.

    Examples:
        >>> from stnlib.coords import base_grid
        >>> x = torch.arange(12.0).reshape(1, 1, 3, 4)
        >>> torch.allclose(bilinear_sample(x, base_grid((3, 4))[None]), x, atol=1e-5)
        True
    """
    _check_sample_inputs(images, grid, 2, padding)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode=padding,
                         align_corners=align_corners)


def trilinear_sample(volumes: torch.Tensor, grid: torch.Tensor, align_corners: bool = ALIGN_CORNERS,
                     padding: str = "zeros") -> torch.Tensor:
    """Sample ``volumes`` at ``grid`` with the trilinear kernel (Eq. 5 with a third factor; paper A.3).

    Args:
        volumes: (B, C, D, H, W) floating-point input.
        grid: (B, D', H', W', 3) source points (x_s, y_s, z_s), normalised, output -> input.
        align_corners: pixel-centre convention, see :mod:`stnlib.coords`.
        padding: "zeros", "border" or "reflection".

    Returns:
        (B, C, D', H', W').
    """
    _check_sample_inputs(volumes, grid, 3, padding)
    # grid_sample's "bilinear" mode is trilinear on 5-D inputs.
    return F.grid_sample(volumes, grid.to(volumes.dtype), mode="bilinear", padding_mode=padding,
                         align_corners=align_corners)
