"""The spatial transformer module (paper Sec. 3): localisation net -> theta -> grid generator -> sampler.

The localisation net's regression layer starts at the identity transform (zero weights, bias =
the family's identity parameters; paper Sec. 4), so at step 0 the module passes its input through.

Mixed precision: under ``torch.autocast`` the localisation net runs in the low precision like any
network, but the geometry (regression layer, grid generator and sampler) is computed in float32:
bfloat16 has 8 bits of mantissa, about 0.1 px on a 60 px canvas, too coarse for theta and the grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from .coords import ALIGN_CORNERS, as_size
from .sampler import bilinear_sample, trilinear_sample
from .transforms import Transform, get_transform


def float32_geometry(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``: theta, grids and sampling stay in float32 (module docstring)."""
    return torch.autocast(device_type=device.type, enabled=False)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32/float64 (gradcheck) and integer tensors unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_input(x: torch.Tensor, loc_net: nn.Module, head: nn.Linear) -> torch.Tensor:
    """Check that ``x`` can go through the localisation net; return it, upcast if it is half precision.

    Outside autocast a dtype mismatch would otherwise fail deep inside the first layer with a
    message about "mat1 and mat2". float16/bfloat16 input to a float32/float64 model is upcast (no
    loss); other mismatches (float64 input to a float32 model) are refused with a clear message.
    Under autocast the layers cast for themselves, so only the floating-point check applies.

    Raises:
        ValueError: ``x`` is not a floating-point tensor, or its dtype does not match the model's.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor, got {x.dtype} (convert with .float() / 255)")
    if torch.is_autocast_enabled(x.device.type):
        return x
    # The first layer that sees x decides its dtype; a parameter-free loc net passes x to the head.
    expected = next((q.dtype for q in loc_net.parameters() if q.is_floating_point()), head.weight.dtype)
    if x.dtype == expected:
        return x
    if x.dtype in (torch.float16, torch.bfloat16) and expected in (torch.float32, torch.float64):
        return x.to(expected)
    raise ValueError(f"input dtype {x.dtype} does not match the localisation net's {expected}: convert the input "
                     f"with .to({expected}), the model with .to({x.dtype}), or run under torch.autocast")


def infer_features(loc_net: nn.Module) -> int:
    """Output width of ``loc_net``: the ``out_features`` of its last ``nn.Linear``."""
    linears = [m for m in loc_net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot infer the localisation net's output width (it has no nn.Linear); "
                         "pass loc_features=<number of features it outputs>")
    return linears[-1].out_features


def identity_head(in_features: int, identity: torch.Tensor) -> nn.Linear:
    """The regression layer: a Linear(in_features, len(identity)) with zero weights and identity bias."""
    head = nn.Linear(in_features, identity.numel())
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(identity)
    return head


class SpatialTransformer(nn.Module):
    """A spatial transformer: ``forward(x) -> (output, theta)``.

    Args:
        loc_net: the localisation net f_loc, mapping the input (B, C, H, W) to features (B, F). A
            regression layer Linear(F, num_params), initialised to the identity, is appended here.
        transform: a family name from :func:`stnlib.get_transform` or a :class:`Transform`.
        out_size: (H', W') of the output (D', H', W' for 3D); ``None`` keeps the input's size. A size
            smaller than the input downsamples (the paper's attention STs).
        loc_features: F; inferred from the last ``nn.Linear`` of ``loc_net`` when omitted.
        align_corners: convention of :mod:`stnlib.coords`; leave the default.
        padding: sampler padding ("zeros" as in the paper; see :mod:`stnlib.sampler` on collapse).
        check_finite: raise a clear error when theta is NaN/inf or too large to give a finite grid
            (one device sync per call).

    Conventions: theta maps output points to input points in normalised [-1, 1] coordinates,
    (x, y) order. Any number of channels; the output has the input's channels.

    Examples:
        >>> st = SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU()), "affine")
        >>> x = torch.rand(2, 1, 28, 28)
        >>> out, theta = st(x)
        >>> torch.allclose(out, x, atol=1e-5), theta.shape  # identity, up to float rounding
        (True, torch.Size([2, 6]))
    """

    def __init__(self, loc_net: nn.Module, transform: str | Transform = "affine",
                 out_size: int | Sequence[int] | None = None, loc_features: int | None = None,
                 align_corners: bool = ALIGN_CORNERS, padding: str = "zeros", check_finite: bool = True):
        super().__init__()
        self.transform = get_transform(transform)
        self.loc_net = loc_net
        features = loc_features if loc_features is not None else infer_features(loc_net)
        self.head = identity_head(features, self.transform.identity())
        self.out_size = None if out_size is None else as_size(out_size, self.transform.ndim)
        self.align_corners = align_corners
        self.padding = padding
        self.check_finite = check_finite

    def localise(self, x: torch.Tensor) -> torch.Tensor:
        """Theta = regression(f_loc(x)), shape (B, num_params), float32."""
        features = self.loc_net(x).flatten(1)
        with float32_geometry(features.device):
            return self.head(_upcast(features).to(self.head.weight.dtype))

    def sample(self, source: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Warp ``source`` with ``theta`` (grid generator + sampler) to ``out_size``."""
        nd = self.transform.ndim
        if source.dim() != nd + 2:
            raise ValueError(f"input must be {'(B, C, H, W)' if nd == 2 else '(B, C, D, H, W)'}, got shape {tuple(source.shape)}")
        size = self.out_size or tuple(source.shape[2:])
        sampler = bilinear_sample if nd == 2 else trilinear_sample
        with float32_geometry(source.device):
            grid = self.transform.grid(_upcast(theta), size, self.align_corners, check_finite=self.check_finite)
            return sampler(_upcast(source), grid, self.align_corners, self.padding)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict theta from ``x`` and warp ``source`` (default ``x``).

        Args:
            x: (B, C, H, W) input to the localisation net.
            source: optional (B, C', H_s, W_s) image to sample from instead of ``x``, e.g. a higher
                resolution copy (the paper's birds: theta from 224 px, crops from 448 px).

        Returns:
            (output (B, C', H', W'), theta (B, num_params)).

        Raises:
            ValueError: ``x`` is not floating point (uint8 images: ``.float() / 255``) or, outside
                autocast, its dtype does not match the model's (half precision input is upcast).
        """
        x = _check_input(x, self.loc_net, self.head)
        theta = self.localise(x)
        return self.sample(x if source is None else source, theta), theta


class ParallelSpatialTransformers(nn.Module):
    """N spatial transformers on the same input (paper Secs. 4.3, A.1), sharing one localisation net or each
    with its own.

    Shared (one module): the net's features go to one regression layer with N x num_params outputs;
    transformer n uses slice n. Separate (a sequence of N modules): net n's features go to regression layer n
    (``heads[n]``), so each transformer's theta depends on its own net only.
    ``forward(x) -> (outputs (B, N, C, H', W'), theta (B, N, num_params))``.

    Args:
        loc_net: the shared localisation net, (B, C, H, W) -> (B, F); or a list of N such nets, one per
            transformer.
        num_transformers: N.
        transform, out_size, loc_features, align_corners, padding, check_finite: as in
            :class:`SpatialTransformer`.
        init: optional (N, num_params) initial theta per transformer (e.g. crops that tile the image,
            paper A.6); default: every transformer starts at the identity.
    """

    def __init__(self, loc_net: nn.Module, num_transformers: int, transform: str | Transform = "affine",
                 out_size: int | Sequence[int] | None = None, loc_features: int | None = None,
                 init: torch.Tensor | None = None, align_corners: bool = ALIGN_CORNERS, padding: str = "zeros",
                 check_finite: bool = True):
        super().__init__()
        if int(num_transformers) < 1:
            raise ValueError(f"num_transformers must be >= 1, got {num_transformers}")
        self.num_transformers = int(num_transformers)
        self.transform = get_transform(transform)
        p = self.transform.num_params
        if init is None:
            init = self.transform.identity().repeat(self.num_transformers, 1)
        init = torch.as_tensor(init, dtype=torch.float32)
        if init.shape != (self.num_transformers, p):
            raise ValueError(f"init must have shape ({self.num_transformers}, {p}), got {tuple(init.shape)}")
        self.shared = not isinstance(loc_net, (list, tuple, nn.ModuleList))
        if self.shared:
            self.loc_net = loc_net
            features = loc_features if loc_features is not None else infer_features(loc_net)
            self.head = identity_head(features, init.flatten())
        else:
            if len(loc_net) != self.num_transformers:
                raise ValueError(f"separate localisation nets: expected {self.num_transformers} (one per transformer), "
                                 f"got {len(loc_net)}")
            self.loc_net = nn.ModuleList(loc_net)
            self.heads = nn.ModuleList(
                identity_head(loc_features if loc_features is not None else infer_features(net), init[k])
                for k, net in enumerate(self.loc_net))
        self.out_size = None if out_size is None else as_size(out_size, self.transform.ndim)
        self.align_corners = align_corners
        self.padding = padding
        self.check_finite = check_finite

    def localise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, num_params) theta of every transformer, float32."""
        if not self.shared:
            features = [net(x).flatten(1) for net in self.loc_net]
            with float32_geometry(x.device):
                return torch.stack([head(_upcast(f).to(head.weight.dtype)) for head, f in zip(self.heads, features)], 1)
        features = self.loc_net(x).flatten(1)
        with float32_geometry(features.device):
            theta = self.head(_upcast(features).to(self.head.weight.dtype))
            # Explicit sizes: ``-1`` cannot be inferred for an empty batch.
            return theta.reshape(x.shape[0], self.num_transformers, self.transform.num_params)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict N thetas from ``x`` and warp ``source`` (default ``x``) with each.

        Inputs, dtype handling and errors are as in :meth:`SpatialTransformer.forward`.
        """
        x = _check_input(x, self.loc_net, self.head if self.shared else self.heads[0])
        src = x if source is None else source
        if src.dim() != 4:
            raise ValueError(f"input must be (B, C, H, W), got shape {tuple(src.shape)}")
        theta = self.localise(x)
        b, n = theta.shape[:2]
        size = self.out_size or tuple(src.shape[2:])
        with float32_geometry(src.device):
            src = _upcast(src)
            grid = self.transform.grid(theta.reshape(b * n, self.transform.num_params), size, self.align_corners,
                                       check_finite=self.check_finite)
            # Each transformer reads the same source: repeat it along a new transformer axis (a view,
            # materialised once by grid_sample's input requirements).
            rep = src.unsqueeze(1).expand(b, n, *src.shape[1:]).reshape(b * n, *src.shape[1:])
            out = bilinear_sample(rep, grid, self.align_corners, self.padding)
        return out.reshape(b, n, *out.shape[1:]), theta


def localisation_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of every spatial transformer inside ``module`` (localisation nets and regression
    layers), each once: what a model returns from ``localisation_parameters()`` so that the trainer can give
    them their own learning rate (``TrainConfig.loc_lr_mult``)."""
    seen, out = set(), []
    for m in module.modules():
        if isinstance(m, (SpatialTransformer, ParallelSpatialTransformers)):
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out
