"""Analyses of transformers: d(output)/d(theta), fitting theta by gradient descent, and measuring what a trained
transformer does (the rotation and scale implied by theta, and how much of an applied distortion it undoes); and
which units of a trained network never fire."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

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


def nearest_rotation(linear: torch.Tensor) -> torch.Tensor:
    """The proper rotation closest (Frobenius norm) to each (N, 3, 3) matrix: ``U diag(1, 1, det(U V^T)) V^T`` from
    its SVD; ``s R`` (s > 0) gives R back. Used as the rotation part of a 3D affine theta.

    Examples:
        >>> from stnlib.transforms import rotation3d
        >>> r = rotation3d(torch.tensor([[10.0, 20.0, 30.0]]))
        >>> torch.allclose(nearest_rotation(0.5 * r), r)
        True
    """
    if linear.dim() != 3 or linear.shape[1:] != (3, 3):
        raise ValueError(f"linear must have shape (N, 3, 3), got {tuple(linear.shape)}")
    u, _, vh = torch.linalg.svd(linear.double())
    d = torch.ones(linear.shape[0], 3, dtype=torch.float64, device=linear.device)
    d[:, 2] = torch.linalg.det(u @ vh).sign()
    return u @ torch.diag_embed(d) @ vh


def rotation_angle_deg(rotation: torch.Tensor) -> torch.Tensor:
    """(N,) angle in degrees of each (N, 3, 3) rotation about its axis (0 for the identity, at most 180).

    Examples:
        >>> from stnlib.transforms import rotation3d
        >>> rotation_angle_deg(rotation3d(torch.tensor([[0.0, 0.0, 30.0], [0.0, -50.0, 0.0]]))).round().tolist()
        [30.0, 50.0]
    """
    trace = rotation.double().diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.acos(((trace - 1) / 2).clamp(-1.0, 1.0)))


def volume_pose(applied_rotation: torch.Tensor, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per volume: which pose of the digit a 3D transformer's output shows.

    ``applied_rotation`` (N, 3, 3) placed each digit in its volume (digit -> volume,
    :func:`~stnlib.data.volumes.pose_rotation`); ``theta`` (N, 12) maps the transformer's output to the volume
    (affine3d, output -> input). The output shows the digit turned by ``residual = R_applied^T @ R_theta``, with
    ``R_theta`` the rotation part of theta (:func:`nearest_rotation`): the identity when the transformer undoes
    the placement's rotation (the digit faces the viewer, upright), ``R_applied^T`` when it leaves it.

    Returns:
        dict of float64 tensors: "implied" (N, 3, 3) = R_theta and "implied_angles_deg" (N, 3) its rotation about
        x, y, z (:func:`~stnlib.transforms.rotation3d_angles`: a transformer that undoes the placement implies the
        applied angles); "residual" (N, 3, 3); "residual_deg" (N,) its angle; "tilt_deg" (N,) the angle between
        the output's viewing axis and the digit's normal (the slab's depth axis), which is what smears the
        flattened image, whatever the turn within the image plane.
    """
    from .transforms import rotation3d_angles

    if theta.dim() != 2 or theta.shape[1] != 12:
        raise ValueError(f"theta must have shape (N, 12) (affine3d), got {tuple(theta.shape)}")
    if applied_rotation.shape != (theta.shape[0], 3, 3):
        raise ValueError(f"applied_rotation must have shape ({theta.shape[0]}, 3, 3), got {tuple(applied_rotation.shape)}")
    implied = nearest_rotation(theta.double().reshape(-1, 3, 4)[:, :, :3])
    residual = applied_rotation.double().transpose(1, 2) @ implied
    return {"implied": implied, "implied_angles_deg": rotation3d_angles(implied), "residual": residual,
            "residual_deg": rotation_angle_deg(residual),
            "tilt_deg": torch.rad2deg(torch.acos(residual[:, 2, 2].clamp(-1.0, 1.0)))}


def volume_rectification(applied_rotation: torch.Tensor, applied_angles_deg: torch.Tensor,
                         theta: torch.Tensor) -> dict:
    """How much of the applied 3D rotations a 3D transformer undoes, over a test set (:func:`volume_pose`).

    Returns:
        dict of numbers: "applied_deg" / "residual_deg", the mean angle of the digits' rotation in the input and in
        the transformer's output (0 = facing the viewer, upright); "undone" = 1 - residual / applied (1: fully
        undone, 0: untouched); "applied_tilt_deg" / "residual_tilt_deg", the mean tilt of the digit's normal from
        the viewing axis before and after; "pose_deg", the angle of the mean output pose (the chordal mean of the
        residuals) from upright, and "spread_deg", the mean angle of each output pose from that mean: a
        transformer that maps every digit to one pose other than upright has a large "residual_deg" but a small
        "spread_deg"; "axes": per axis x, y, z, :func:`rectification` of the implied angle against the applied one
        (slope near 1 with r near 1: that axis's rotation is undone); "n".

    Examples:
        >>> from stnlib.transforms import rotation3d
        >>> angles = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) * 90 - 45
        >>> r = rotation3d(angles)
        >>> perfect = torch.cat([r, torch.zeros(50, 3, 1, dtype=r.dtype)], 2).reshape(50, 12)
        >>> m = volume_rectification(r, angles, perfect)
        >>> round(m["undone"], 6), round(m["axes"]["y"]["slope"], 6), round(m["spread_deg"], 4)
        (1.0, 1.0, 0.0)
    """
    pose = volume_pose(applied_rotation, theta)
    applied = rotation_angle_deg(applied_rotation)
    applied_tilt = torch.rad2deg(torch.acos(applied_rotation.double()[:, 2, 2].clamp(-1.0, 1.0)))
    mean_pose = nearest_rotation(pose["residual"].mean(0, keepdim=True))
    spread = rotation_angle_deg(mean_pose.transpose(1, 2) @ pose["residual"])
    axes = {axis: rectification(applied_angles_deg[:, k], pose["implied_angles_deg"][:, k])
            for k, axis in enumerate("xyz")}
    return {"applied_deg": float(applied.mean()), "residual_deg": float(pose["residual_deg"].mean()),
            "undone": float(1 - pose["residual_deg"].mean() / applied.mean()),
            "applied_tilt_deg": float(applied_tilt.mean()), "residual_tilt_deg": float(pose["tilt_deg"].mean()),
            "pose_deg": float(rotation_angle_deg(mean_pose)[0]), "spread_deg": float(spread.mean()),
            "axes": axes, "n": int(theta.shape[0])}


def silent_units(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> list[dict]:
    """The units behind each ``nn.ReLU`` of ``model`` that never fire on the inputs ``x``.

    A unit is a feature of a fully connected layer's output (N, C) or a channel of a convolution's (N, C, ...);
    it is silent when its ReLU output is zero at every position of every input. A silent unit passes no signal
    and no gradient, so it is capacity the model has lost; ReLU networks trained at a high learning rate from the
    first step can lose many (the "dying ReLU"). ``model`` runs in eval mode without gradients, ``batch_size``
    inputs at a time; its training mode is restored afterwards. Only ``nn.ReLU`` modules are seen (not
    ``F.relu``); a module called twice counts its units once, firing if either call fired.

    Returns one dict per ReLU module, in the order they first ran: ``layer`` (its name in ``model``), ``units``,
    ``silent`` (never fired) and ``spatial`` (True when its output has positions, a convolution's channels).

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.zero_(), net[0].bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
        >>> silent_units(net, torch.randn(8, 2))
        [{'layer': '1', 'units': 3, 'silent': 1, 'spatial': False}]
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) == 0:
        raise ValueError(f"silent_units expects a non-empty batch of inputs (N, ...), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU modules to measure")
    fired: dict[str, torch.Tensor] = {}
    spatial: dict[str, bool] = {}

    def hook(name):
        def record(module, inputs, out):
            if out.dim() < 2:
                raise ValueError(f"ReLU {name!r} gave an output of shape {tuple(out.shape)}; expected (N, C, ...)")
            now = (out > 0).transpose(0, 1).reshape(out.shape[1], -1).any(1)
            fired[name] = now if name not in fired else fired[name] | now
            spatial[name] = out.dim() > 2
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in relus]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [{"layer": name, "units": int(f.numel()), "silent": int((~f).sum()), "spatial": spatial[name]}
            for name, f in fired.items()]
