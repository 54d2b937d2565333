"""Normalised coordinates: the one ``align_corners`` convention, base grids and pixel conversions.

Convention (used everywhere in stnlib)
--------------------------------------
* Points are (x, y) for images and (x, y, z) for volumes: x runs along the width (last tensor
  axis), y along the height, z along the depth. This is the order ``torch.nn.functional.grid_sample``
  expects; tensors stay (B, C, H, W) / (B, C, D, H, W).
* Coordinates are normalised to [-1, 1] over the image, independently of its size, so one theta
  applies to a 28 px or a 448 px image alike (paper Sec. 3.2).
* ``ALIGN_CORNERS = False``: -1 and +1 are the *outer edges* of the corner pixels, so the centre of
  pixel ``i`` of ``W`` sits at ``(2 i + 1) / W - 1``. With this choice a crop of scale ``s`` covers
  exactly the fraction ``s`` of the image whatever its resolution, which is what the paper's
  attention (Eq. 2) and downsampling STs mean by "scale". (With ``True``, -1/+1 are the corner
  pixel *centres*, and the meaning of a scale changes with the image size.) Every function takes
  an ``align_corners`` argument so both can be tested; nothing else should change it.
* A sampling grid maps *output* points to *input* (source) points: ``grid[b, i, j] = (x_s, y_s)``
  is where output pixel (i, j) reads the input (paper Eq. 1, "output -> input").
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch

ALIGN_CORNERS: bool = False


def _as_positive_int(value: object) -> int | None:
    """``value`` as a positive int, or None when it is not one (bools, fractions, zero, negatives)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool):  # True == 1, but a bool size is always a mistake
        return None
    try:
        n = operator.index(value)  # int, numpy integers
    except TypeError:
        # Whole-number floats (28.0, from JSON configs or arithmetic) are accepted; 2.7 is refused
        # rather than silently truncated.
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or not float(value).is_integer():
            return None
        n = int(value)
    return n if n > 0 else None


def as_size(size: int | Sequence[int], ndim: int, what: str = "out_size") -> tuple[int, ...]:
    """Return ``size`` as a tuple of ``ndim`` positive ints, or raise a clear ValueError.

    Entries must be positive integers; whole-number floats (``28.0``) count as integers, anything
    else (``2.7``, ``True``, ``0``, ``-3``) is refused rather than truncated.

    Examples:
        >>> as_size(28, 2)
        (28, 28)
        >>> as_size((42, 60.0), 2)
        (42, 60)
        >>> as_size((2.7, 3.2), 2)
        Traceback (most recent call last):
            ...
        ValueError: out_size must be positive integers, got (2.7, 3.2)
    """
    original = size
    if isinstance(size, torch.Tensor):
        size = size.tolist()  # 0-d -> a scalar, 1-d -> a list
    if isinstance(size, (str, bytes)):
        raise ValueError(f"{what} must be an int or {ndim} ints, got {original!r}")
    if not isinstance(size, Iterable):
        size = (size,) * ndim
    size = tuple(size)
    if len(size) != ndim:
        raise ValueError(f"{what} must have {ndim} entries ({'(D, H, W)' if ndim == 3 else '(H, W)'}), got {original!r}")
    ints = tuple(_as_positive_int(s) for s in size)
    if any(n is None for n in ints):
        raise ValueError(f"{what} must be positive integers, got {original!r}")
    return ints


def linspace_centres(n: int, align_corners: bool, device=None, dtype=None) -> torch.Tensor:
    """Normalised coordinates of the ``n`` pixel centres along one axis (length ``n``).

    Examples:
        >>> linspace_centres(4, align_corners=False).tolist()
        [-0.75, -0.25, 0.25, 0.75]
        >>> linspace_centres(3, align_corners=True).tolist()
        [-1.0, 0.0, 1.0]
    """
    if align_corners:
        if n == 1:  # torch.nn.functional.affine_grid's choice for a single pixel
            return torch.zeros(1, device=device, dtype=dtype)
        return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
    return (torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1


@lru_cache(maxsize=64)
def _base_grid_cached(size: tuple[int, ...], align_corners: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    axes = [linspace_centres(n, align_corners, device, dtype) for n in size]
    mesh = torch.meshgrid(*axes, indexing="ij")  # (D,) H, W order
    return torch.stack(mesh[::-1], dim=-1)  # x first


def base_grid(size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS, device=None,
              dtype: torch.dtype = torch.float32, ndim: int = 2) -> torch.Tensor:
    """The regular output grid in normalised coordinates: (H, W, 2) or (D, H, W, 3), (x, y[, z]) order.

    The result is cached and shared: do not modify it in place.

    Examples:
        >>> g = base_grid((2, 3))
        >>> g.shape
        torch.Size([2, 3, 2])
        >>> [round(v, 4) for v in g[0, 0].tolist()]  # top-left pixel centre, x before y
        [-0.6667, -0.5]
    """
    size = as_size(size, ndim)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        # A traced graph must build its own constant: a cached entry made while tracing would hold a
        # fake tensor and poison every later eager call.
        return _base_grid_cached.__wrapped__(size, bool(align_corners), device, dtype)
    return _base_grid_cached(size, bool(align_corners), device, dtype)


def normalized_to_pixel(xy: torch.Tensor, size: Sequence[int], align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """Convert normalised (x, y) points to pixel coordinates (x = column, y = row, pixel centres at integers).

    Args:
        xy: (..., 2) normalised points, x before y.
        size: (H, W) of the image the points live in.
        align_corners: the convention (see module docstring).

    Examples:
        >>> normalized_to_pixel(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), (28, 28)).tolist()
        [[-0.5, -0.5], [27.5, 27.5]]
    """
    h, w = as_size(size, 2, "size")
    scale = xy.new_tensor([w, h])
    if align_corners:
        return (xy + 1) * (scale - 1) / 2
    return ((xy + 1) * scale - 1) / 2


def pixel_to_normalized(pix: torch.Tensor, size: Sequence[int], align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """Inverse of :func:`normalized_to_pixel`: (..., 2) pixel (x, y) -> normalised (x, y).

    Examples:
        >>> pixel_to_normalized(torch.tensor([13.5, 13.5]), (28, 28)).tolist()
        [0.0, 0.0]
    """
    h, w = as_size(size, 2, "size")
    scale = pix.new_tensor([w, h])
    if align_corners:
        return pix * 2 / (scale - 1) - 1
    return (pix * 2 + 1) / scale - 1
