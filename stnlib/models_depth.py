"""Spatial transformers inside a CNN (paper Sec. 3.4: a transformer "can be inserted at any point in an existing CNN").

The trunk is the Table 1 CNN of :func:`~stnlib.models.cnn_classifier`, cut into its two blocks:

    [ST "input"] -> (avg-pool) -> block 1: conv 9x9 (w/2), ReLU, max-pool 2 -> [ST "block1"]
                 -> block 2: conv 7x7 (w), ReLU, max-pool 2 -> [ST "block2"] -> linear classifier

* A transformer at a *site* regresses theta from the map it acts on and samples that same map (bilinear, zero
  padding, the map's own size, every channel with the same theta), so the layers after it see a map of unchanged
  shape. Its regression layer starts at the identity, where sampling a map at its own size with
  ``align_corners=False`` returns the map exactly: at step 0 every model computes what the plain CNN with the same
  trunk weights computes (the ``input`` site with ``input_pool > 1`` also pools the input, as Table 1's ST-CNN
  does on RTS and TC).
* ``input``: the Table 1 ST-CNN's transformer (:func:`~stnlib.models.cnn_loc_net` on the image), its output
  average-pooled by ``input_pool``. ``block1`` / ``block2``: :func:`feature_loc_net`, our own small localisation net
  on a feature map (the paper gives none for feature maps): conv 20@3x3 -> max-pool 2 -> conv 20@3x3 ->
  max-pool 2 -> FC 20.
* Feature maps are the post-ReLU, post-pooling activations, so the sampler's zero padding is "no activation".
* The classifier width is chosen to match ``param_budget`` (:func:`~stnlib.models.width_for_budget`), so that every
  placement is compared at the same parameter count.

Mapping a feature-map transformer back onto the input (:meth:`DepthSTClassifier.input_outline`): a max-pool of 2
takes map pixel ``u`` (centres at integers) to the centre ``2u + 0.5`` of its window below ("same" convolutions keep
the grid), so a map of total stride ``s`` places pixel ``u`` at input pixel ``s u + (s - 1) / 2``. That is exact for
pixel centres, and the maps' floor halving (21 -> 10) is taken into account; what it leaves out is the receptive
field: each map pixel also *sees* a window around that centre (:meth:`DepthSTClassifier.receptive_field`: 10 input
pixels for block 1, 24 for block 2, times ``input_pool`` behind an input transformer). The outline is where the
transformer's sampling points sit, not everything its output depends on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .coords import normalized_to_pixel, pixel_to_normalized
from .geometry import output_boundary
from .models import Normalize, cnn_loc_net, count_parameters, width_for_budget
from .spatial_transformer import SpatialTransformer, localisation_parameters
from .transforms import get_transform

SITES = ("input", "block1", "block2")
"""Where a transformer can sit, from the image up: before block 1, after block 1, after block 2."""


@dataclass
class DepthModelConfig:
    """What :func:`build_depth_model` builds; saved beside every result.

    Attributes:
        sites: where the transformers sit, a subset of :data:`SITES` (empty: the plain CNN).
        in_size: (H, W) of the input.
        in_channels: input channels.
        num_classes: outputs.
        transform: the transformers' family (every site the same).
        input_pool: average pooling of the input transformer's output (2 for RTS and TC, as in Table 1); the input
            is not pooled when no transformer sits there.
        width: the CNN's width (second conv's channels; the first has half). ``None``: chosen to match
            ``param_budget``.
        param_budget: target total parameter count when ``width`` is None.
        loc_channels: channels of the feature-map localisation nets' convolutions.
    """

    sites: tuple[str, ...] = ()
    in_size: tuple[int, int] = (42, 42)
    in_channels: int = 1
    num_classes: int = 10
    transform: str = "affine"
    input_pool: int = 2
    width: int | None = None
    param_budget: int | None = None
    loc_channels: int = 20

    def __post_init__(self):
        self.sites = tuple(self.sites)
        self.in_size = tuple(self.in_size)
        unknown = [s for s in self.sites if s not in SITES]
        if unknown or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"sites must be distinct names from {SITES}, got {self.sites}")
        self.sites = tuple(s for s in SITES if s in self.sites)  # always from the image up

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sites"], d["in_size"] = list(self.sites), list(self.in_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DepthModelConfig:
        return cls(**d)

    @property
    def name(self) -> str:
        """"CNN", "ST-CNN (input)", "ST-CNN (input + block1)", ..."""
        return "CNN" if not self.sites else f"ST-CNN ({' + '.join(self.sites)})"


def feature_loc_net(in_channels: int, in_size: tuple[int, int], channels: int = 20) -> nn.Sequential:
    """Localisation net on a (B, C, H, W) feature map: conv ``channels``@3x3 -> ReLU -> max-pool 2 -> conv
    ``channels``@3x3 -> ReLU -> max-pool 2 -> FC 20 -> ReLU (the regression layer is added by the transformer).

    Examples:
        >>> feature_loc_net(16, (21, 21))(torch.zeros(2, 16, 21, 21)).shape
        torch.Size([2, 20])
    """
    h, w = in_size[0] // 4, in_size[1] // 4
    if h < 1 or w < 1:
        raise ValueError(f"a feature-map localisation net needs a map of at least 4x4, got {in_size}")
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(channels * h * w, 20), nn.ReLU())


def map_to_frame_below(pix: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel (x, y) points on a map of total ``stride`` -> pixel points on the frame below it (pixel centres at
    integers): ``stride * u + (stride - 1) / 2``, the centre of the pooling windows (module docstring).

    Examples:
        >>> map_to_frame_below(torch.tensor([[-0.5, 0.0], [9.5, 20.0]]), 2).tolist()
        [[-0.5, 0.5], [19.5, 40.5]]
    """
    return pix * stride + (stride - 1) / 2


class DepthSTClassifier(nn.Module):
    """The Table 1 CNN with spatial transformers at ``config.sites`` (module docstring).

    ``forward(x)`` takes (B, C, H, W) images in [0, 1] and returns logits; :meth:`forward_with_thetas` also returns
    each transformer's theta by site; :meth:`thetas` only those. :meth:`input_outline` maps a transformer's
    sampling region onto the input image.

    Examples:
        >>> m = DepthSTClassifier(DepthModelConfig(sites=("block1",), in_size=(28, 28)), width=16)
        >>> logits, thetas = m.forward_with_thetas(torch.rand(2, 1, 28, 28))
        >>> logits.shape, list(thetas), thetas["block1"].shape
        (torch.Size([2, 10]), ['block1'], torch.Size([2, 6]))
    """

    def __init__(self, config: DepthModelConfig, width: int):
        super().__init__()
        self.config = config
        self.width = width
        c, (h, w) = config.in_channels, tuple(config.in_size)
        c1 = max(1, width // 2)
        pool = config.input_pool if "input" in config.sites else 1
        size0 = (h // pool, w // pool)  # what block 1 sees
        # (H, W) of the map each site acts on
        self.map_sizes = {"input": (h, w), "block1": (size0[0] // 2, size0[1] // 2),
                          "block2": (size0[0] // 4, size0[1] // 4)}
        if min(self.map_sizes["block2"]) < 1:
            raise ValueError(f"the CNN needs an input of at least {4 * pool}x{4 * pool}, got {config.in_size}")
        self.strides = {"input": 1, "block1": 2 * pool, "block2": 4 * pool}  # of each map, in input pixels
        tf = get_transform(config.transform)
        if tf.ndim != 2:
            raise ValueError(f"feature-map transformers need a 2D family, got {config.transform!r}")
        channels = {"input": c, "block1": c1, "block2": width}
        self.st = nn.ModuleDict()
        for site in config.sites:
            size = self.map_sizes[site]
            loc = cnn_loc_net(c, size) if site == "input" else feature_loc_net(channels[site], size,
                                                                                config.loc_channels)
            self.st[site] = SpatialTransformer(loc, tf)
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.normalize = Normalize()
        # the trunk of cnn_classifier, in two blocks
        self.block1 = nn.Sequential(nn.Conv2d(c, c1, 9, padding=4), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, width, 7, padding=3), nn.ReLU(), nn.MaxPool2d(2))
        hb, wb = self.map_sizes["block2"]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * hb * wb, config.num_classes))

    def _transform(self, site: str, x: torch.Tensor, thetas: dict) -> torch.Tensor:
        if site not in self.st:
            return x
        out, thetas[site] = self.st[site](x)
        return out.to(x.dtype)

    def forward_with_thetas(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits (B, num_classes), {site: theta (B, num_params)}) for (B, C, H, W) images in [0, 1]."""
        expected = (self.config.in_channels, *self.config.in_size)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.config.name} expects images (B, {', '.join(map(str, expected))}), got {shape}")
        thetas: dict[str, torch.Tensor] = {}
        x = self.normalize(self.pool(self._transform("input", x, thetas)))
        x = self._transform("block1", self.block1(x), thetas)
        x = self._transform("block2", self.block2(x), thetas)
        return self.head(x), thetas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_thetas(x)[0]

    @torch.no_grad()
    def thetas(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{site: theta (B, num_params)} of every transformer on images ``x`` (no gradients)."""
        return self.forward_with_thetas(x)[1]

    def localisation_parameters(self) -> list[nn.Parameter]:
        """Every transformer's parameters, for the trainer's ``loc_lr_mult``."""
        return localisation_parameters(self)

    def receptive_field(self, site: str) -> int:
        """Side, in input pixels, of the window one pixel of the map at ``site`` sees (see the module docstring)."""
        pool = self.strides["block1"] // 2
        return {"input": 1, "block1": 10 * pool, "block2": 24 * pool}[site]

    def input_outline(self, thetas: dict[str, torch.Tensor], site: str, points_per_side: int = 2) -> torch.Tensor:
        """Where the transformer at ``site`` samples, as a closed polygon in input pixel coordinates: the output
        square's boundary through :meth:`input_points`.

        Args:
            thetas: {site: theta (B, num_params)} as :meth:`thetas` returns, with every site of the model.
            site: one of the model's sites.
            points_per_side: boundary samples per side (2 for an affine theta).

        Returns:
            (B, P, 2) pixel (x, y) vertices on the input (x = column, y = row, pixel centres at integers), first
            vertex repeated at the end.
        """
        theta = thetas[site] if site in thetas else None
        if theta is None:
            raise ValueError(f"no theta for {site!r} (the model's sites: {list(self.st)})")
        return self.input_points(thetas, site, output_boundary(points_per_side, theta.device, theta.dtype))

    def input_points(self, thetas: dict[str, torch.Tensor], site: str, points: torch.Tensor) -> torch.Tensor:
        """Output points of the transformer at ``site`` -> input pixel coordinates.

        The points are mapped through the site's theta (output -> input of that transformer, on its map), then down
        the network to the image: through each pooling (:func:`map_to_frame_below`) and through every transformer
        below the site (whose output that map was computed from).

        Args:
            thetas: {site: theta (B, num_params)} as :meth:`thetas` returns, with every site of the model.
            site: one of the model's sites.
            points: (N, 2) or (B, N, 2) normalised (x, y) points of the transformer's output.

        Returns:
            (B, N, 2) pixel (x, y) points on the input (pixel centres at integers).
        """
        if site not in self.st:
            raise ValueError(f"{self.config.name} has no transformer at {site!r}")
        missing = [s for s in self.st if SITES.index(s) <= SITES.index(site) and s not in thetas]
        if missing:
            raise ValueError(f"thetas lacks the transformers at {missing}")
        theta = thetas[site]
        pts = points.to(theta.dtype).expand(len(theta), *points.shape[-2:])
        for lv in range(SITES.index(site), -1, -1):
            here = SITES[lv]
            if here in self.st:
                pts = self.st[here].transform.transform_points(thetas[here].to(pts.dtype), pts)
            if lv > 0:  # map pixels -> the frame below (block2 -> block1 -> the input transformer's output)
                below = SITES[lv - 1]
                stride = self.strides[here] // self.strides[below]
                pix = map_to_frame_below(normalized_to_pixel(pts, self.map_sizes[here]), stride)
                pts = pixel_to_normalized(pix, self.map_sizes[below])
        return normalized_to_pixel(pts, self.config.in_size)


def build_depth_model(config: DepthModelConfig) -> DepthSTClassifier:
    """Build the model of ``config``; with ``width=None``, the width whose total parameter count is closest to
    ``config.param_budget`` (the default width 32 without a budget).

    Examples:
        >>> m = build_depth_model(DepthModelConfig(sites=("block2",), param_budget=58_442))
        >>> abs(count_parameters(m) - 58_442) < 3_000
        True
    """
    if config.width is not None:
        return DepthSTClassifier(config, config.width)
    if config.param_budget is None:
        return DepthSTClassifier(config, 32)
    return DepthSTClassifier(config, width_for_budget(lambda w: count_parameters(DepthSTClassifier(config, w)),
                                                      config.param_budget))


def step_times(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, repeats: int = 15,
               warmup: int = 3, autocast: torch.dtype | None = None) -> dict[str, dict[str, float]]:
    """Seconds per training step (forward, cross-entropy, backward, Adam update) of each model on the batch
    ``(x, y)``, measured in one process, the models in turn round after round (A B C A B C ...) so that a slow spell
    of a shared machine hits all of them alike; compare the numbers as ratios. The models are trained by it (use
    fresh copies). ``autocast``: run the forward pass under ``torch.autocast`` with this dtype (as the trainer does
    with ``precision="bf16"``).

    Returns:
        name -> {"median_s", "min_s"} over ``repeats`` rounds after ``warmup``.

    Examples:
        >>> t = step_times({"lin": nn.Sequential(nn.Flatten(), nn.Linear(4, 3))}, torch.rand(2, 1, 2, 2),
        ...                torch.tensor([0, 2]), repeats=2, warmup=1)
        >>> t["lin"]["median_s"] > 0
        True
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    runs = {name: (m.train(), torch.optim.Adam(m.parameters(), 1e-4), []) for name, m in models.items()}
    for r in range(warmup + repeats):
        for model, opt, times in runs.values():
            dev = next(model.parameters()).device
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():  # also when called under no_grad (an experiment's analysis)
                with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                    loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
                loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if r >= warmup:
                times.append(time.perf_counter() - t0)
    return {name: {"median_s": sorted(t)[len(t) // 2], "min_s": min(t)} for name, (_, _, t) in runs.items()}


__all__ = ["SITES", "DepthModelConfig", "DepthSTClassifier", "build_depth_model", "feature_loc_net",
           "map_to_frame_below", "step_times"]
