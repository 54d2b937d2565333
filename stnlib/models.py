"""The paper's classifiers (A.4): FCN, CNN, and their spatial-transformer versions ST-FCN / ST-CNN.

* FCN: two hidden fully connected layers + a linear classifier (three weight layers), ReLU.
* CNN: conv 9x9 -> max-pool 2 -> conv 7x7 -> max-pool 2 -> linear classifier (three weight layers).
* ST-FCN localisation net: three FC layers of 32 units (+ the regression layer).
* ST-CNN localisation net, on the input average-pooled by 2: conv 20@5x5 -> max-pool 2 -> conv 20@5x5 ->
  FC 20 (+ the regression layer).
* The transformer sits at the input; for RTS and TC its output is average-pooled by 2 (``st_pool=2``).
* "All models of a column have about the same number of parameters": :func:`build_model` picks the
  classifier width so the whole model's count is as close as possible to ``param_budget``.

We assume "same" padding for the classifier convolutions (the paper does not say; valid 9x9/7x7
convolutions would leave nothing of a 21x21 pooled ST output) and "valid" padding in the ST-CNN
localisation net. Sizes are derived from ``in_size``; nothing is baked in. Models take raw images in
[0, 1] (background 0, so the sampler's zero padding is background) and normalise after the transformer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .spatial_transformer import ParallelSpatialTransformers, SpatialTransformer, localisation_parameters
from .transforms import get_transform

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MIN_WIDTH = 16


@dataclass
class ModelConfig:
    """What :func:`build_model` builds; saved beside every result.

    Attributes:
        arch: classifier, "fcn" or "cnn".
        transform: None for the plain classifier, else a transform family for ST-<arch>.
        in_size: (H, W) of the input.
        in_channels: input channels (2 for the addition task).
        num_classes: outputs (10 digits; 19 sums).
        num_transformers: parallel transformers (2 for 2xST-FCN); their outputs are concatenated along channels.
        st_pool: average-pooling factor applied to the transformer's output (2 for RTS and TC).
        width: classifier width (FCN hidden units; CNN second-conv channels, first conv has half).
            ``None`` = chosen to match ``param_budget``.
        param_budget: target total parameter count used when ``width`` is None.
        loc_arch: localisation net, "fcn" or "cnn"; default the classifier's.
        st_out_size: (H', W') of each transformer's output; ``None`` keeps the input's size. A smaller output
            is a crop at the input's resolution when ``st_init_scale`` matches it (28 of 42 pixels with
            2/3).
        st_init_scale: the transformers start at the identity scaled by this factor (their sampled region a
            centred box of this fraction of the input's side); ``None`` means 1, the paper's identity.
        st_shared_loc: with parallel transformers, one localisation net for all (True) or one each (False).
        loc_width: the localisation net's channels and units; ``None``: the paper's (32 for the FCN one, 20 for
            the CNN one).
    """

    arch: str = "cnn"
    transform: str | None = None
    in_size: tuple[int, int] = (28, 28)
    in_channels: int = 1
    num_classes: int = 10
    num_transformers: int = 1
    st_pool: int = 1
    width: int | None = None
    param_budget: int | None = None
    loc_arch: str | None = None
    transform_kwargs: dict = field(default_factory=dict)
    st_out_size: tuple[int, int] | None = None
    st_init_scale: float | None = None
    st_shared_loc: bool = True
    loc_width: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["in_size"] = list(self.in_size)
        if self.st_out_size is not None:
            d["st_out_size"] = list(self.st_out_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["in_size"] = tuple(d["in_size"])
        if d.get("st_out_size") is not None:
            d["st_out_size"] = tuple(d["st_out_size"])
        return cls(**d)

    @property
    def name(self) -> str:
        base = self.arch.upper()
        if self.transform is None:
            return base
        n = f"{self.num_transformers}x" if self.num_transformers > 1 else ""
        return f"{n}ST-{base} {self.transform}"


class Normalize(nn.Module):
    """(x - mean) / std with fixed MNIST statistics, applied after the transformer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MNIST_MEAN) / MNIST_STD


def fcn_classifier(in_channels: int, in_size: tuple[int, int], width: int, num_classes: int) -> nn.Sequential:
    """Two hidden FC layers of ``width`` units + linear classifier."""
    n = in_channels * in_size[0] * in_size[1]
    return nn.Sequential(nn.Flatten(), nn.Linear(n, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def cnn_classifier(in_channels: int, in_size: tuple[int, int], width: int, num_classes: int) -> nn.Sequential:
    """Conv 9x9 (width/2) -> max-pool 2 -> conv 7x7 (width) -> max-pool 2 -> linear classifier."""
    c1 = max(1, width // 2)
    h, w = in_size[0] // 4, in_size[1] // 4  # "same" convs, two floor-halving pools
    if h < 1 or w < 1:
        raise ValueError(f"CNN classifier needs an input of at least 4x4, got {in_size}")
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 9, padding=4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, width, 7, padding=3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(width * h * w, num_classes))


def fcn_loc_net(in_channels: int, in_size: tuple[int, int], width: int = 32) -> nn.Sequential:
    """ST-FCN localisation net: three FC layers of ``width`` (the paper: 32) units (the regression layer is added
    by the ST)."""
    n = in_channels * in_size[0] * in_size[1]
    return nn.Sequential(nn.Flatten(), nn.Linear(n, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU())


def cnn_loc_net(in_channels: int, in_size: tuple[int, int], width: int = 20) -> nn.Sequential:
    """ST-CNN localisation net on the 2x downsampled input: conv ``width``@5x5 -> pool 2 -> conv ``width``@5x5 ->
    FC ``width`` (the paper: 20)."""
    h, w = in_size[0] // 2, in_size[1] // 2
    h, w = (h - 4) // 2 - 4, (w - 4) // 2 - 4
    if h < 1 or w < 1:
        raise ValueError(f"the ST-CNN localisation net needs an input of at least 28x28, got {in_size}")
    return nn.Sequential(
        nn.AvgPool2d(2), nn.Conv2d(in_channels, width, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 5), nn.ReLU(), nn.Flatten(), nn.Linear(width * h * w, width), nn.ReLU())


class STClassifier(nn.Module):
    """Optional spatial transformer(s) at the input, then average pooling, normalisation and a classifier.

    ``forward(x)`` returns logits; :meth:`transform_input` returns (warped input, theta) for figures.
    theta is (B, P) for one transformer and (B, N, P) for N parallel ones; None without a transformer.
    """

    def __init__(self, config: ModelConfig, width: int):
        super().__init__()
        self.config = config
        self.width = width
        c, size = config.in_channels, tuple(config.in_size)
        self.st: nn.Module | None = None
        cls_channels, cls_size = c, size
        if config.transform is not None:
            loc_arch = config.loc_arch or config.arch
            make_loc = fcn_loc_net if loc_arch == "fcn" else cnn_loc_net
            loc_kw = {} if config.loc_width is None else {"width": config.loc_width}
            loc = make_loc(c, size, **loc_kw)
            tf = get_transform(config.transform, **config.transform_kwargs)
            out_size = None if config.st_out_size is None else tuple(config.st_out_size)
            init = tf.identity() * (1.0 if config.st_init_scale is None else float(config.st_init_scale))
            if config.num_transformers == 1:
                self.st = SpatialTransformer(loc, tf, out_size=out_size)
                with torch.no_grad():
                    self.st.head.bias.copy_(init)
            else:
                if not config.st_shared_loc:
                    loc = [loc] + [make_loc(c, size, **loc_kw) for _ in range(config.num_transformers - 1)]
                self.st = ParallelSpatialTransformers(loc, config.num_transformers, tf, out_size=out_size,
                                                      init=init.repeat(config.num_transformers, 1))
                cls_channels = c * config.num_transformers
            cls_size = size if out_size is None else out_size
            if config.st_pool > 1:
                cls_size = (cls_size[0] // config.st_pool, cls_size[1] // config.st_pool)
        self.pool = nn.AvgPool2d(config.st_pool) if config.st_pool > 1 and self.st is not None else nn.Identity()
        self.normalize = Normalize()
        build = fcn_classifier if config.arch == "fcn" else cnn_classifier
        self.classifier = build(cls_channels, cls_size, width, config.num_classes)

    def transform_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The transformer's output (before pooling) and theta; the input itself without a transformer."""
        if self.st is None:
            return x, None
        out, theta = self.st(x)
        if out.dim() == 5:  # parallel transformers: (B, N, C, H, W) -> channels concatenated
            out = out.flatten(1, 2)
        return out, theta

    def classify(self, warped: torch.Tensor) -> torch.Tensor:
        """Logits from the transformer's output (:meth:`transform_input`): pooling, normalisation, classifier."""
        return self.classifier(self.normalize(self.pool(warped)))

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The transformers' parameters, for the trainer's ``loc_lr_mult``."""
        return localisation_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.config.in_channels, *self.config.in_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.config.name} expects input (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}")
        warped, _ = self.transform_input(x)
        return self.classify(warped)


def build_model(config: ModelConfig) -> STClassifier:
    """Build the model of ``config``; with ``width=None``, the width whose total parameter count is
    closest to ``config.param_budget`` (or the default width 64 when there is no budget).

    Examples:
        >>> m = build_model(ModelConfig(arch="cnn", transform="affine", param_budget=150_000))
        >>> abs(count_parameters(m) - 150_000) < 10_000
        True
    """
    if config.arch not in ("fcn", "cnn"):
        raise ValueError(f"arch must be 'fcn' or 'cnn', got {config.arch!r}")
    if config.width is not None:
        return STClassifier(config, config.width)
    if config.param_budget is None:
        return STClassifier(config, 64)
    return STClassifier(config, width_for_budget(lambda w: count_parameters(STClassifier(config, w)),
                                                 config.param_budget))


def width_for_budget(total: Callable[[int], int], budget: int) -> int:
    """The classifier width (at least :data:`MIN_WIDTH`) whose model's parameter count ``total(width)`` is
    closest to ``budget``; ``total`` must grow with the width.

    Examples:
        >>> width_for_budget(lambda w: 100 * w, 2_040)
        20
    """
    # A classifier narrower than MIN_WIDTH is no model at all: where the localisation net alone eats
    # the budget (ST-FCN on the 60x60 TC canvas), we keep MIN_WIDTH and exceed the budget, and the
    # chapter prints the counts.
    lo, hi = MIN_WIDTH, 4096
    while lo < hi:  # the count grows with width: find the first width at or above the budget
        mid = (lo + hi) // 2
        if total(mid) < budget:
            lo = mid + 1
        else:
            hi = mid
    return min((max(MIN_WIDTH, lo - 1), lo), key=lambda w: abs(total(w) - budget))


def default_budget(in_size: tuple[int, int], in_channels: int = 1, num_classes: int = 10, width: int = 64) -> int:
    """Parameter count of the plain CNN of the given width on this input: the budget of a Table 1 column."""
    return count_parameters(STClassifier(ModelConfig("cnn", None, tuple(in_size), in_channels, num_classes), width))


def forward_features_check(model: STClassifier) -> None:
    """Run a dummy batch through ``model`` to fail early on shape errors (used by the experiment runner)."""
    c, (h, w) = model.config.in_channels, model.config.in_size
    with torch.no_grad():
        out = model(torch.zeros(2, c, h, w, device=next(model.parameters()).device))
    if out.shape != (2, model.config.num_classes):
        raise RuntimeError(f"{model.config.name} produced {tuple(out.shape)} logits for 2 inputs")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["count_parameters", "ModelConfig", "STClassifier", "build_model", "default_budget", "fcn_classifier",
           "cnn_classifier", "fcn_loc_net", "cnn_loc_net", "width_for_budget"]
