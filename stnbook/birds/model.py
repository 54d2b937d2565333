"""Fine-grained classification with parallel attention transformers (paper Sec. 4.3, Table 3; A.6).

The paper's CUB-200-2011 models: N spatial transformers with *attention* transforms act in parallel on
the input; a shared localisation net, looking at a downsampled copy of the image, predicts where each
crop goes; every crop is sampled from the high-resolution image (448 px in, 224 px crops) and goes
through its own sub-network; the N feature vectors are concatenated into one softmax classifier.
Trained end to end with class labels only, one transformer learns to look at the head and another
at the body.

What we follow and where we deviate (the paper's A.6 is terse):

* Attention with a *fixed* scale ``s`` and only the location regressed (2 numbers per transformer),
  as A.6 says (free scale and affine overfit there). Our default ``s = crop / in_size`` makes every crop
  a native-resolution window (our 120 px -> 20 px is the paper's 448 -> 224 with a smaller window: s = 1/6
  instead of about 0.5), so the crop sub-networks cost what the crop costs, not what the input costs.
* The regression layer starts at crops laid out on a grid over the image (:func:`tiling_init`), the
  paper's "initialised so the crops tile the image"; two crops start stacked top and bottom. Which
  transformer ends up on which part follows from where it starts; finding that part in each image is
  what is learned.
* The localisation net's learning rate is a fraction of the base rate
  (:attr:`stnlib.train.TrainConfig.loc_lr_mult`).
* Backbone: the paper used an ImageNet-pretrained Inception-BN per crop. For the CPU proxy we use a small
  CNN (:func:`small_backbone`); ``backbone="resnet18"`` (or any torchvision ResNet) is there for readers
  with real CUB and a GPU, with weights loaded from a local file when given (nothing is downloaded).
* The plain CNN baseline is the same backbone on the whole image downsampled to ``low_res`` (the
  paper's 224 px CNN); the localisation net sees that same downsampled image.

Conventions: images are (B, C, H, W), uint8 (divided by 255) or float in [0, 1]; theta is (B, N, 2) =
(t_x, t_y) per transformer, the centre of a crop of half-side ``s`` in the normalised coordinates of
:mod:`stnlib.coords` (output -> input, ``align_corners=False``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stnbook.birds.data import crop_contains
from stnlib.models import count_parameters
from stnlib.spatial_transformer import ParallelSpatialTransformers, localisation_parameters
from stnlib.transforms import get_transform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50")


@dataclass
class BirdsConfig:
    """What :class:`BirdClassifier` builds; saved beside every result.

    Attributes:
        num_transformers: N parallel attention transformers; 0 is the plain CNN on the downsampled image.
        in_size: side of the (square) high-resolution input.
        low_res: side of the downsampled whole image (the plain CNN's input and the localisation net's).
            Must divide ``in_size`` (block averaging). Set it to ``in_size`` for a CNN at full resolution.
        crop: side of each transformer's output (the crop fed to its sub-network).
        scale: the fixed attention scale s (crop half-side in normalised units); ``None`` = crop / in_size,
            a crop at the input's native resolution.
        num_classes: classifier outputs.
        in_channels: image channels.
        width: width of :func:`small_backbone` (its feature vector has 4 * width entries).
        loc_width: channels of the localisation net's convolutions (it runs on the whole low-res view, so
            it costs more than the crop sub-networks unless kept narrow).
        backbone: "small" or a torchvision ResNet name (:data:`TORCHVISION_BACKBONES`).
        backbone_weights: local path to a torchvision state dict for the backbone (e.g. ImageNet weights
            saved with ``torch.save(model.state_dict(), path)``); never downloaded.
        padding: sampler padding; "border" because the images' background is not zero
            (see :mod:`stnlib.sampler`).
    """

    num_transformers: int = 2
    in_size: int = 120
    low_res: int = 40
    crop: int = 20
    scale: float | None = None
    num_classes: int = 16
    in_channels: int = 3
    width: int = 16
    loc_width: int = 16
    backbone: str = "small"
    backbone_weights: str | None = None
    padding: str = "border"

    def __post_init__(self) -> None:
        problems = []
        if self.num_transformers < 0:
            problems.append(f"num_transformers must be >= 0, got {self.num_transformers}")
        if self.low_res < 1 or self.in_size % self.low_res:
            problems.append(f"low_res ({self.low_res}) must divide in_size ({self.in_size})")
        if self.backbone != "small" and self.backbone not in TORCHVISION_BACKBONES:
            problems.append(f"backbone must be 'small' or one of {TORCHVISION_BACKBONES}, got {self.backbone!r}")
        if self.backbone == "small" and self.backbone_weights is not None:
            problems.append("backbone_weights is only for torchvision backbones")
        if self.scale is not None and not 0 < self.scale <= 1:
            problems.append(f"scale must be in (0, 1], got {self.scale}")
        if problems:
            raise ValueError("invalid BirdsConfig: " + "; ".join(problems))

    @property
    def attention_scale(self) -> float:
        """The fixed attention scale s."""
        return self.crop / self.in_size if self.scale is None else float(self.scale)

    @property
    def name(self) -> str:
        """The row label, e.g. "2xST-CNN 120px" or "CNN 40px"."""
        if self.num_transformers == 0:
            return f"CNN {self.low_res}px"
        return f"{self.num_transformers}xST-CNN {self.in_size}px"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BirdsConfig:
        return cls(**d)


def small_backbone(in_channels: int, width: int = 16) -> nn.Sequential:
    """A small CNN for crops: (B, C, H, W) -> (B, 4 * width) features, any H, W >= 4.

    conv3x3(width) BN ReLU, conv3x3(width) BN ReLU, max-pool 2, conv3x3(2 width) BN ReLU, max-pool 2,
    conv3x3(4 width) BN ReLU, global average pool. Two convolutions at full resolution come first because
    the proxy's textures are 3 px periodic: they must be seen before any pooling.

    Examples:
        >>> small_backbone(3, 8)(torch.rand(2, 3, 24, 24)).shape
        torch.Size([2, 32])
    """

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(in_channels, width), *block(width, width), nn.MaxPool2d(2),
                         *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def torchvision_backbone(name: str, weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier: ((B, 3, H, W) -> (B, F), F).

    Args:
        name: "resnet18", "resnet34" or "resnet50".
        weights: path to a local state dict of that architecture (the ``fc`` layer's entries are ignored);
            ``None`` leaves the random initialisation. Nothing is ever downloaded.

    Raises:
        FileNotFoundError: ``weights`` does not exist (the message names it).
        RuntimeError: the file does not fit the architecture.
    """
    if name not in TORCHVISION_BACKBONES:
        raise ValueError(f"backbone must be one of {TORCHVISION_BACKBONES}, got {name!r}")
    import torchvision  # optional dependency (the "book" extra)

    net = getattr(torchvision.models, name)(weights=None)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: '{path}' (give a local state dict of {name}; "
                                    "stnlib never downloads weights)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise RuntimeError(f"'{path}' does not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


def localisation_net(in_channels: int, low_res: int, width: int = 32) -> nn.Sequential:
    """The shared localisation net on the (low_res x low_res) downsampled image -> (B, 64) features.

    conv3x3(width) ReLU, max-pool 2, conv3x3(width) ReLU, max-pool 2, conv3x3(width) ReLU, FC 64 ReLU
    (the regression layer is appended by :class:`~stnlib.spatial_transformer.ParallelSpatialTransformers`).
    A fully connected layer after the convolutions keeps *where* things are, which a global pool would lose.

    Examples:
        >>> localisation_net(3, 32)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 64])
    """
    side = low_res // 4
    if side < 1:
        raise ValueError(f"the localisation net needs low_res >= 4, got {low_res}")
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(in_channels, width), nn.MaxPool2d(2), *block(width, width), nn.MaxPool2d(2),
                         *block(width, width), nn.Flatten(), nn.Linear(width * side * side, 64, bias=False),
                         nn.BatchNorm1d(64), nn.ReLU(inplace=True))


def tiling_init(num: int, scale: float) -> torch.Tensor:
    """(num, 2) initial crop centres (t_x, t_y): the centres of a rows x cols grid over the image (row-major).

    ``rows = ceil(sqrt(num))``, ``cols = ceil(num / rows)``: two crops are stacked top and bottom (for upright
    birds this layout overlaps head and body far more often than left / right, which is what gives the crops
    a gradient to follow early on), four make a 2 x 2 grid. With ``scale = 1 / rows`` (and as many columns)
    the crops tile the image exactly; with a smaller scale they are spread over it the same way.

    Examples:
        >>> tiling_init(2, 0.25).tolist()
        [[0.0, -0.5], [0.0, 0.5]]
        >>> tiling_init(4, 0.5).tolist()
        [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    """
    if num < 1 or not 0 < scale <= 1:
        raise ValueError(f"need num >= 1 and scale in (0, 1], got {num}, {scale}")
    rows = math.ceil(math.sqrt(num))
    cols = math.ceil(num / rows)
    out = []
    for k in range(num):
        r, c = divmod(k, cols)
        out.append([(2 * c + 1) / cols - 1, (2 * r + 1) / rows - 1])
    return torch.tensor(out)


class BirdClassifier(nn.Module):
    """The plain CNN (``num_transformers = 0``) or the N x ST-CNN of :class:`BirdsConfig`.

    ``forward(x) -> (logits (B, K), theta (B, N, 2) or None)``: the plain CNN classifies the block-averaged
    ``low_res`` image; the ST-CNN predicts theta from that image, samples N crops of ``crop`` px from the
    full-resolution ``x`` (the ``source=`` argument of the transformers), sends crop n through sub-network n
    and classifies the concatenated features.

    Examples:
        >>> m = BirdClassifier(BirdsConfig(num_transformers=2, in_size=48, low_res=16, crop=12, width=4))
        >>> logits, theta = m(torch.randint(0, 255, (3, 3, 48, 48), dtype=torch.uint8))
        >>> logits.shape, theta.shape
        (torch.Size([3, 16]), torch.Size([3, 2, 2]))
    """

    def __init__(self, config: BirdsConfig):
        super().__init__()
        self.config = config
        c, n = config.in_channels, config.num_transformers
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if config.backbone != "small" else ((0.5,) * 3, (0.25,) * 3)
        self.register_buffer("mean", torch.tensor(mean[:c] if c <= 3 else [0.5] * c).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std[:c] if c <= 3 else [0.25] * c).view(1, c, 1, 1), persistent=False)
        self.st: ParallelSpatialTransformers | None = None
        if n:
            s = config.attention_scale
            self.st = ParallelSpatialTransformers(
                localisation_net(c, config.low_res, config.loc_width), n, get_transform("attention", scale=s),
                out_size=config.crop, init=tiling_init(n, s), padding=config.padding, check_finite=False)
        self.subnets = nn.ModuleList()
        features = 0
        for _ in range(max(1, n)):
            net, f = self._backbone()
            self.subnets.append(net)
            features += f
        self.classifier = nn.Linear(features, config.num_classes)

    def _backbone(self) -> tuple[nn.Module, int]:
        cfg = self.config
        if cfg.backbone == "small":
            return small_backbone(cfg.in_channels, cfg.width), 4 * cfg.width
        return torchvision_backbone(cfg.backbone, cfg.backbone_weights)

    @property
    def scale(self) -> float:
        return self.config.attention_scale

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input's shape; uint8 -> float in [0, 1]."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.in_size, cfg.in_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{cfg.name} expects input (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}")
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    def low_res_view(self, x: torch.Tensor) -> torch.Tensor:
        """The whole image block-averaged to ``low_res`` (float, unnormalised)."""
        f = self.config.in_size // self.config.low_res
        return F.avg_pool2d(x, f) if f > 1 else x

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(crops (B, N, C, crop, crop) in [0, 1], theta (B, N, 2)) of the ST-CNN; ``x`` as for forward."""
        if self.st is None:
            raise ValueError("the plain CNN has no transformers")
        x = self.prepare(x)
        return self.st((self.low_res_view(x) - self.mean) / self.std, source=x)

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The transformers' parameters, for the trainer's ``loc_lr_mult``."""
        return localisation_parameters(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.st is None:
            x = self.prepare(x)
            return self.classifier(self.subnets[0]((self.low_res_view(x) - self.mean) / self.std)), None
        crops, theta = self.attend(x)
        feats = [net((crops[:, k] - self.mean) / self.std) for k, net in enumerate(self.subnets)]
        return self.classifier(torch.cat(feats, 1)), theta


def build_birds_model(config: BirdsConfig) -> BirdClassifier:
    """:class:`BirdClassifier` of ``config`` (the experiment's ``build``)."""
    return BirdClassifier(config)


@torch.no_grad()
def predict(model: BirdClassifier, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(predicted classes (B,), crop centres (B, N, 2) or None for the plain CNN) of ``model`` on ``x``, in batches on
    the model's device; CPU tensors. The caller sets eval mode."""
    dev = next(model.parameters()).device
    preds, thetas = [], []
    for i in range(0, len(x), batch_size):
        logits, theta = model(x[i:i + batch_size].to(dev))
        preds.append(logits.argmax(1).cpu())
        if theta is not None:
            thetas.append(theta.float().cpu())
    return torch.cat(preds), (torch.cat(thetas) if thetas else None)


def part_hit_rates(theta: torch.Tensor, parts: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, P) fraction of images whose crop n contains part p's centre (see :func:`~stnbook.birds.data.crop_contains`).

    A part centre that is NaN (CUB: no part of that group is visible) is left out of that part's fraction;
    a part visible in none of the images gets 0.

    Examples:
        >>> parts = torch.tensor([[[0.0, 0.0], [0.9, 0.9]], [[float("nan")] * 2, [0.0, 0.0]]])  # (B=2, P=2, 2)
        >>> part_hit_rates(torch.zeros(2, 1, 2), parts, 0.5).tolist()  # the head is visible in image 0 only
        [[1.0, 0.5]]
    """
    visible = ~parts.isnan().any(-1)  # (B, P)
    hits = crop_contains(theta, parts, scale) & visible[:, None]  # (B, N, P)
    return hits.float().sum(0) / visible.float().sum(0).clamp_min(1)


def birds_loss(model: BirdClassifier, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy, % error and, when the batch carries part centres, where each transformer looks.

    Args:
        model: a :class:`BirdClassifier`.
        batch: ``(x, y)`` or ``(x, y, parts)`` with ``parts`` (B, 2, 2) the (head, body) centres.

    Returns:
        ``(loss, metrics)`` with "loss", "error" (%) and, for an ST-CNN given parts, "st<n>_head" and
        "st<n>_body": % of the batch whose crop n contains the head's (body's) centre. The trainer averages
        them into its history, which is how the chapter follows specialisation over training.
    """
    x, y = batch[0], batch[1]
    logits, theta = model(x)
    loss = F.cross_entropy(logits, y)
    stats = [loss.detach().double(), (logits.detach().argmax(1) != y).double().mean() * 100]
    names = ["loss", "error"]
    if theta is not None and len(batch) > 2:
        hits = part_hit_rates(theta.detach(), batch[2], model.scale) * 100
        for k in range(hits.shape[0]):
            names += [f"st{k + 1}_head", f"st{k + 1}_body"]
            stats += [hits[k, 0].double(), hits[k, 1].double()]
    values = torch.stack(stats).tolist()  # one device sync
    return loss, dict(zip(names, values))


def step_time_benchmark(configs: dict[str, BirdsConfig], batch_size: int = 32, repeats: int = 15, warmup: int = 3,
                        seed: int = 0, device: str | torch.device = "cpu") -> dict[str, dict]:
    """Seconds per training step (forward, backward, Adam update) of each model, measured in one process.

    The models are timed in turn, round after round (A B C A B C ...), on the same random uint8 batch, and
    each one's median over the rounds is reported, so that a slow spell of a shared machine hits all of
    them alike. Compare the numbers as ratios; their absolute values depend on the machine and its load.

    Returns:
        name -> {"label" (the model's name), "median_s", "min_s", "params", "config"}.

    Examples:
        >>> cfgs = {"cnn": BirdsConfig(0, in_size=24, low_res=24, width=2, crop=6)}
        >>> step_time_benchmark(cfgs, batch_size=2, repeats=2, warmup=1)["cnn"]["median_s"] > 0
        True
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    runs = {}
    for name, cfg in configs.items():
        torch.manual_seed(seed)
        model = BirdClassifier(cfg).to(dev).train()
        x = torch.randint(0, 256, (batch_size, cfg.in_channels, cfg.in_size, cfg.in_size), generator=gen,
                          dtype=torch.uint8).to(dev)
        y = torch.randint(0, cfg.num_classes, (batch_size,), generator=gen).to(dev)
        runs[name] = (model, torch.optim.Adam(model.parameters(), 1e-4), x, y, [])

    def step(model, opt, x, y) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():  # also when called under no_grad (e.g. from an experiment's analysis)
            F.cross_entropy(model(x)[0], y).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for r in range(warmup + repeats):
        for model, opt, x, y, times in runs.values():
            t0 = time.perf_counter()
            step(model, opt, x, y)
            if r >= warmup:
                times.append(time.perf_counter() - t0)
    out = {}
    for name, (model, _, _, _, times) in runs.items():
        times.sort()
        out[name] = {"label": configs[name].name, "median_s": times[len(times) // 2], "min_s": times[0],
                     "params": count_parameters(model), "config": configs[name].to_dict()}
    return out


__all__ = ["BirdsConfig", "BirdClassifier", "build_birds_model", "small_backbone", "torchvision_backbone",
           "localisation_net", "tiling_init", "part_hit_rates", "birds_loss", "step_time_benchmark",
           "TORCHVISION_BACKBONES"]
