"""Analyses of transformers: d(output)/d(theta), fitting theta by gradient descent, and measuring what a trained
transformer does (the rotation and scale implied by theta, and how much of an applied distortion it undoes)."""

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


def rotation_deg(theta: torch.Tensor) -> torch.Tensor:
    """Rotation (degrees) of each affine theta (N, 6): the angle of the closest similarity transform to its
    2x2 block, ``atan2(a21 - a12, a11 + a22)``. theta maps output to input points (normalised, (x, y)), so a
    transformer that undoes a digit rotated by alpha samples along a grid rotated by alpha.

    Examples:
        >>> import math
        >>> c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
        >>> rotation_deg(torch.tensor([[c, -s, 0.1, s, c, 0.0]])).round()
        tensor([30.])
    """
    a = theta.reshape(-1, 6).double()
    return torch.rad2deg(torch.atan2(a[:, 3] - a[:, 1], a[:, 0] + a[:, 4])).float()


def scale_of(theta: torch.Tensor) -> torch.Tensor:
    """sqrt|det| of each affine theta's 2x2 block: the linear size of the sampled region (1 = the whole input)."""
    a = theta.reshape(-1, 2, 3)[:, :, :2].double()
    return torch.linalg.det(a).abs().sqrt().float()


def rectification(applied: torch.Tensor, recovered: torch.Tensor) -> dict[str, float]:
    """How much of an applied distortion a transformer undoes: Pearson r and the least-squares line
    ``recovered = slope * applied + intercept``. A transformer that fully undoes a rotation has
    |r| near 1 and |slope| near 1; one that ignores it has slope near 0.

    Examples:
        >>> a = torch.linspace(-90, 90, 50)
        >>> m = rectification(a, 0.5 * a + 3)
        >>> round(m["r"], 3), round(m["slope"], 3), round(m["intercept"], 3)
        (1.0, 0.5, 3.0)
    """
    x, y = applied.double().flatten(), recovered.double().flatten()
    if x.numel() != y.numel() or x.numel() < 3:
        raise ValueError(f"need two equal-length series of at least 3 values, got {x.numel()} and {y.numel()}")
    xc, yc = x - x.mean(), y - y.mean()
    slope = float((xc * yc).sum() / (xc * xc).sum())
    r = float((xc * yc).sum() / ((xc * xc).sum() * (yc * yc).sum()).sqrt())
    return {"r": r, "slope": slope, "intercept": float(y.mean() - slope * x.mean()), "n": int(x.numel()),
            "residual_sd": float((yc - slope * xc).std())}


def implied_similarity(theta: torch.Tensor, transform: str | Transform = "affine", points: int = 7) -> dict[str, torch.Tensor]:
    """The similarity transform (rotation, scale, translation) closest to each theta's sampling grid.

    Works for every 2D family: the grid of ``points`` x ``points`` output locations is mapped to the input
    by theta (output -> input, normalised (x, y)), and the least-squares similarity from the base grid to
    it (Procrustes) is returned: ``rotation_deg`` (N,), ``scale`` (N,, 1 = the whole input), ``translation``
    (N, 2). For an affine theta, ``rotation_deg`` equals :func:`rotation_deg`.

    Examples:
        >>> import math
        >>> c, s = 0.5 * math.cos(math.radians(20)), 0.5 * math.sin(math.radians(20))
        >>> out = implied_similarity(torch.tensor([[c, -s, 0.2, s, c, -0.1]]))
        >>> out["rotation_deg"].round(), out["scale"].round(decimals=3)
        (tensor([20.]), tensor([0.5000]))
    """
    tf = get_transform(transform)
    theta = theta.reshape(theta.shape[0], -1).double()
    grid = tf.grid(theta, (points, points), check_finite=False).reshape(theta.shape[0], -1, 2)
    base = tf.grid(tf.identity().double()[None], (points, points)).reshape(1, -1, 2)
    p = base - base.mean(1, keepdim=True)
    q = grid - grid.mean(1, keepdim=True)
    # least squares q = s R p: with complex numbers z = x + iy, q = a p with a = sum(conj(p) q) / sum(|p|^2)
    pz, qz = torch.complex(p[..., 0], p[..., 1]), torch.complex(q[..., 0], q[..., 1])
    a = (pz.conj() * qz).sum(1) / (pz.abs() ** 2).sum(1)
    return {"rotation_deg": torch.rad2deg(torch.angle(a)).float(), "scale": a.abs().float(),
            "translation": grid.mean(1).float()}
