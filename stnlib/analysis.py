"""Analyses of a transformer's differentiability: d(output)/d(theta), and fitting theta by gradient descent."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .coords import ALIGN_CORNERS
from .sampler import bilinear_sample
from .transforms import Transform, get_transform


def warp(image: torch.Tensor, theta: torch.Tensor, transform: str | Transform = "affine",
         out_size: int | Sequence[int] | None = None, align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """Grid generator + sampler for a batch: (B, C, H, W) and (B, P) theta -> (B, C, H', W').

    Examples:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> torch.allclose(warp(x, get_transform("affine").identity()[None]), x, atol=1e-5)
        True
    """
    tf = get_transform(transform)
    size = out_size if out_size is not None else tuple(image.shape[-2:])
    return bilinear_sample(image, tf.grid(theta, size, align_corners), align_corners)


def theta_jacobian(image: torch.Tensor, theta: torch.Tensor, transform: str | Transform = "affine",
                   out_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """d(output)/d(theta) for one image: (C, H, W) and (P,) -> (P, C, H', W').

    Slice k is how every output pixel changes when theta_k grows. Through the bilinear kernel
    (Eq. 5, 7) it equals the input's spatial gradient at the sample point times d(x_s, y_s)/d(theta_k),
    so it is non-zero only where the sampled image has edges: that is what gradient descent uses
    to move the transformer.
    """
    if image.dim() != 3 or theta.dim() != 1:
        raise ValueError(f"theta_jacobian expects image (C, H, W) and theta (P,), got {tuple(image.shape)} and {tuple(theta.shape)}")

    def f(th: torch.Tensor) -> torch.Tensor:
        return warp(image[None], th[None], transform, out_size)[0]

    jac = torch.autograd.functional.jacobian(f, theta)  # (C, H', W', P)
    return jac.permute(3, 0, 1, 2)


def fit_theta(source: torch.Tensor, target: torch.Tensor, transform: str | Transform = "affine",
              steps: int = 200, lr: float = 0.05, theta0: torch.Tensor | None = None,
              blur: float = 0.0) -> dict[str, torch.Tensor]:
    """Recover theta such that warp(source, theta) matches target, by gradient descent on theta alone.

    Demonstrates that the sampler makes theta learnable: the only signal is the pixel loss.

    Args:
        source: (C, H, W) image to warp.
        target: (C, H', W') image to match.
        transform: family.
        steps, lr: Adam steps and learning rate.
        theta0: start (default identity).
        blur: Gaussian sigma (pixels) applied to both images first; smoothing widens the basin of
            attraction, since bilinear gradients only see one pixel around each sample point.

    Returns:
        dict with "theta" (P,), "losses" (steps,), "thetas" (steps + 1, P).
    """
    tf = get_transform(transform)
    if blur > 0:
        source, target = gaussian_blur(source, blur), gaussian_blur(target, blur)
    theta = (tf.identity() if theta0 is None else theta0.detach().clone()).to(source.dtype).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    losses, thetas = [], [theta.detach().clone()]
    for _ in range(steps):
        out = warp(source[None], theta[None], tf, tuple(target.shape[-2:]))[0]
        loss = F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        thetas.append(theta.detach().clone())
    return {"theta": theta.detach(), "losses": torch.tensor(losses), "thetas": torch.stack(thetas)}


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W) or (B, C, H, W) images with standard deviation ``sigma`` pixels."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    batched = image.dim() == 4
    img = image if batched else image[None]
    c = img.shape[1]
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return img if batched else img[0]
