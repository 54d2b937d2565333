"""The 3D spatial transformer classifier (paper A.3): a 3D affine transformer on a volume, its output flattened
along the depth into a 2D image, and one of the paper's 2D classifiers (:mod:`stnlib.models`) on that image.

* Localisation net, 3D: "cnn" runs on the volume average-pooled by ``loc_pool`` (default 2): conv 8@5^3 ->
  max-pool 2 -> conv 16@3^3 -> max-pool 2 -> FC 32 (the 2D ST-CNN's net of A.4, in 3D, with fewer channels to keep
  it small); "fcn" runs on the volume average-pooled by ``loc_pool`` (default 4): three FC layers of 32 units (the
  ST-FCN's). Both end in the regression layer to the twelve affine3d parameters, which starts at the identity.
* The transformer samples its output volume (``st_out_size``, default the input's size) trilinearly, with zero
  padding. A half-size output of a volume downsamples by 2: at the identity its voxels fall between the input's,
  and trilinear sampling there is exactly a 2 x 2 x 2 average (``align_corners=False``).
* Flattening: the mean over the depth axis, times ``projection_scale`` so that a digit facing the viewer has ink
  near 1 like an MNIST image (the volume side over the slab's thickness, for :mod:`stnlib.data.volumes`); the
  paper says "flattened", which we read as this projection (a sum, up to the constant).
* Classifier: :func:`~stnlib.models.cnn_classifier` or :func:`~stnlib.models.fcn_classifier` on the projection,
  average-pooled by ``pool``, normalised with MNIST's statistics after the transformer (its zero padding is then
  background, as in the 2D models).
* The baseline (``transform=None``): the same classifier on the flattened input volume.
* Widths: as :func:`~stnlib.models.build_model`, the classifier width that brings the model nearest
  ``param_budget``.

The paper gives no architecture for A.3: all of the above is our assumption. Sizes are derived from ``in_size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .models import Normalize, cnn_classifier, count_parameters, fcn_classifier, width_for_budget
from .spatial_transformer import SpatialTransformer, localisation_parameters
from .transforms import get_transform


@dataclass
class VolumeModelConfig:
    """What :func:`build_volume_model` builds; saved beside every result.

    Attributes:
        arch: the 2D classifier after the projection, "fcn" or "cnn".
        transform: "affine3d" for the 3D ST model, None for the classifier on the flattened input.
        in_size: (D, H, W) of the input volume.
        num_classes: outputs.
        loc_arch: the localisation net, "cnn" or "fcn"; default the classifier's.
        loc_pool: average-pooling factor of the volume before the localisation net (default 2 for "cnn", 4 for
            "fcn").
        st_out_size: (D', H', W') of the transformer's output; None keeps the input's size.
        pool: average-pooling factor of the 2D projection before the classifier.
        projection_scale: the depth mean is multiplied by this.
        width: classifier width (as in :class:`~stnlib.models.ModelConfig`); None = chosen to match
            ``param_budget``.
        param_budget: target total parameter count used when ``width`` is None.
    """

    arch: str = "cnn"
    transform: str | None = "affine3d"
    in_size: tuple[int, int, int] = (40, 40, 40)
    num_classes: int = 10
    loc_arch: str | None = None
    loc_pool: int | None = None
    st_out_size: tuple[int, int, int] | None = None
    pool: int = 1
    projection_scale: float = 1.0
    width: int | None = None
    param_budget: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["in_size"] = list(self.in_size)
        if self.st_out_size is not None:
            d["st_out_size"] = list(self.st_out_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VolumeModelConfig:
        d = dict(d)
        d["in_size"] = tuple(d["in_size"])
        if d.get("st_out_size") is not None:
            d["st_out_size"] = tuple(d["st_out_size"])
        return cls(**d)

    @property
    def name(self) -> str:
        base = self.arch.upper()
        return base if self.transform is None else f"3D ST-{base}"


def _pooled(in_size, pool: int) -> tuple[int, int, int]:
    return tuple(n // pool for n in in_size)


def cnn_loc_net3d(in_size: tuple[int, int, int], pool: int = 2, in_channels: int = 1) -> nn.Sequential:
    """3D localisation net on the volume average-pooled by ``pool``: conv 8@5^3 -> max-pool 2 -> conv 16@3^3 ->
    max-pool 2 -> FC 32 (the regression layer is added by the transformer).

    Examples:
        >>> cnn_loc_net3d((40, 40, 40))(torch.zeros(2, 1, 40, 40, 40)).shape
        torch.Size([2, 32])
    """
    size = [((n - 4) // 2 - 2) // 2 for n in _pooled(in_size, pool)]
    if min(size) < 1:
        raise ValueError(f"the 3D CNN localisation net needs a volume of at least {12 * pool} voxels a side after "
                         f"pooling by {pool}, got {tuple(in_size)}")
    return nn.Sequential(
        nn.AvgPool3d(pool) if pool > 1 else nn.Identity(),
        nn.Conv3d(in_channels, 8, 5), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(8, 16, 3), nn.ReLU(), nn.MaxPool3d(2),
        nn.Flatten(), nn.Linear(16 * size[0] * size[1] * size[2], 32), nn.ReLU())


def fcn_loc_net3d(in_size: tuple[int, int, int], pool: int = 4, in_channels: int = 1) -> nn.Sequential:
    """3D localisation net on the volume average-pooled by ``pool``: three FC layers of 32 units.

    Examples:
        >>> fcn_loc_net3d((40, 40, 40))(torch.zeros(2, 1, 40, 40, 40)).shape
        torch.Size([2, 32])
    """
    d, h, w = _pooled(in_size, pool)
    if min(d, h, w) < 1:
        raise ValueError(f"pooling {tuple(in_size)} by {pool} leaves nothing for the localisation net")
    return nn.Sequential(
        nn.AvgPool3d(pool) if pool > 1 else nn.Identity(), nn.Flatten(),
        nn.Linear(in_channels * d * h * w, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())


def project_depth(volume: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Flatten (B, C, D, H, W) volumes along the depth: the mean over D times ``scale``, (B, C, H, W).

    Examples:
        >>> project_depth(torch.ones(1, 1, 4, 2, 3), 2.0).shape, project_depth(torch.ones(1, 1, 4, 2, 3), 2.0).max().item()
        (torch.Size([1, 1, 2, 3]), 2.0)
    """
    if volume.dim() != 5:
        raise ValueError(f"volume must be (B, C, D, H, W), got shape {tuple(volume.shape)}")
    return volume.mean(dim=2) * scale


class VolumeSTClassifier(nn.Module):
    """An optional 3D spatial transformer at the input, depth flattening, then a 2D classifier.

    ``forward(x)`` takes (B, 1, D, H, W) volumes in [0, 1] and returns logits; :meth:`transform_input` returns
    (the transformer's output volume, theta (B, 12)), or (the input, None) without a transformer;
    :meth:`classify` takes that volume to logits. The same interface as :class:`~stnlib.models.STClassifier`.

    Examples:
        >>> m = VolumeSTClassifier(VolumeModelConfig(in_size=(24, 24, 24)), width=16)
        >>> m(torch.rand(2, 1, 24, 24, 24)).shape
        torch.Size([2, 10])
    """

    def __init__(self, config: VolumeModelConfig, width: int):
        super().__init__()
        if config.arch not in ("fcn", "cnn"):
            raise ValueError(f"arch must be 'fcn' or 'cnn', got {config.arch!r}")
        self.config = config
        self.width = width
        size = tuple(config.in_size)
        if len(size) != 3:
            raise ValueError(f"in_size must be (D, H, W), got {config.in_size}")
        self.st: SpatialTransformer | None = None
        out = size
        if config.transform is not None:
            tf = get_transform(config.transform)
            if tf.ndim != 3:
                raise ValueError(f"a volume transformer needs a 3D transform family (affine3d), got {config.transform!r}")
            loc_arch = config.loc_arch or config.arch
            if loc_arch not in ("fcn", "cnn"):
                raise ValueError(f"loc_arch must be 'fcn' or 'cnn', got {loc_arch!r}")
            pool = config.loc_pool or (2 if loc_arch == "cnn" else 4)
            loc = cnn_loc_net3d(size, pool) if loc_arch == "cnn" else fcn_loc_net3d(size, pool)
            out = size if config.st_out_size is None else tuple(config.st_out_size)
            self.st = SpatialTransformer(loc, tf, out_size=out)
        cls_size = (out[1] // config.pool, out[2] // config.pool)
        self.pool = nn.AvgPool2d(config.pool) if config.pool > 1 else nn.Identity()
        self.normalize = Normalize()
        build = fcn_classifier if config.arch == "fcn" else cnn_classifier
        self.classifier = build(1, cls_size, width, config.num_classes)

    def transform_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The transformer's output volume and theta; the input itself (and None) without a transformer."""
        if self.st is None:
            return x, None
        return self.st(x)

    def project(self, volume: torch.Tensor) -> torch.Tensor:
        """The 2D image the classifier sees, before pooling: :func:`project_depth` with ``projection_scale``."""
        return project_depth(volume, self.config.projection_scale)

    def classify(self, warped: torch.Tensor) -> torch.Tensor:
        """Logits from a volume (:meth:`transform_input`): flattening, pooling, normalisation, classifier."""
        return self.classifier(self.normalize(self.pool(self.project(warped))))

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The transformer's parameters, for the trainer's ``loc_lr_mult``."""
        return localisation_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (1, *self.config.in_size)
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.config.name} expects volumes (B, {', '.join(map(str, expected))}), got {shape}")
        warped, _ = self.transform_input(x)
        return self.classify(warped)


def build_volume_model(config: VolumeModelConfig) -> VolumeSTClassifier:
    """Build the model of ``config``; with ``width=None``, the width whose total parameter count is closest to
    ``config.param_budget`` (the default width 64 without a budget).

    Examples:
        >>> m = build_volume_model(VolumeModelConfig(in_size=(40, 40, 40), st_out_size=(20, 20, 20),
        ...                                          param_budget=70_000))
        >>> abs(count_parameters(m) - 70_000) < 2_000
        True
    """
    if config.width is not None:
        return VolumeSTClassifier(config, config.width)
    if config.param_budget is None:
        return VolumeSTClassifier(config, 64)
    return VolumeSTClassifier(config, width_for_budget(
        lambda w: count_parameters(VolumeSTClassifier(config, w)), config.param_budget))


__all__ = ["VolumeModelConfig", "VolumeSTClassifier", "build_volume_model", "cnn_loc_net3d",
           "fcn_loc_net3d", "project_depth"]
