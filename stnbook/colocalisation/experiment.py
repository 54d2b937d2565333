"""Co-localisation (paper A.2): an attention spatial transformer finds the digit that 100 images share, with
neither labels nor boxes, by a hinge triplet loss on the embeddings of a CNN trained on MNIST.

Cells:

* ``mnist-cnn``: the embedding network e(), the paper's CNN classifier (:mod:`stnlib.models`) trained on
  plain MNIST through the one :class:`~stnlib.train.Trainer`. Its artifact is what every other cell loads.
* ``<variant>-<digit>`` (variant ``T``: digits on an 84 x 84 canvas; ``TC``: plus 16 clutter patches): an
  attention spatial transformer (theta = (s, t_x, t_y), paper Eq. 2) trained on the 100 images of one
  class (:func:`~stnlib.data.pairs.colocalisation_set`) with :func:`triplet_hinge_loss`; the 100 images
  are both the training set and what is scored (co-localisation is an optimisation over a given set).

The metric is the paper's: the fraction of the 100 images whose predicted box (the sampling region,
:func:`~stnlib.geometry.sampling_outline`) has IoU > 0.5 with the digit's true 28 x 28 box.

What the paper (A.2) leaves open, and what we assume (it gives only "a hinge triplet loss on embeddings of a
pre-trained MNIST CNN, alpha = 1"; the details below are our reading of A.2):

* e(I) is the concatenation of the CNN's activations (both pooled convolutional stages, flattened, and
  the logits, no softmax) on the transformer's 28 x 28 output, **scaled to unit L2 norm**. The paper's
  alpha = 1 needs some such scale: on raw activations the loss of the true boxes is more than 100x the
  loss of crops that all show blank background (every blank crop embeds alike, so its positive
  distances are 0), and the blank solution wins outright; on unit-norm embeddings the true boxes have
  the lower loss (:func:`loss_at` measures both; the chapter prints them).
* The random patch I_n^rand is a square of the digit's size (28 / 84 of the canvas) at a uniform
  location inside the canvas, redrawn for every image at every step
  (:class:`~stnlib.data.pairs.CoLocalisationBatches`).
* The localisation net is a small CNN: conv 8@9x9 stride 4 -> max-pool 2 -> FC 8 -> FC 8 -> the
  regression layer (3 outputs), ReLU; the sampler pads with zeros.
* **A scale curriculum** (ours; :meth:`CoLocalisationConfig.scale_at`). Trained as the paper's rule for every
  regression layer says (free scale, starting at the identity, the whole canvas), the transformer never finds
  the digits: every digit of the class sits at another place, and the cheapest way to make 100 crops alike is
  to zoom out until they all look like blank background with a speck in it (our first full run: 0% of images
  localised in every problem, the scale grown past 4). Starting at the digit's size instead, most crops show
  blank background and agree on that (a local minimum the hinge cannot leave: a blank crop has no gradient).
  What works: the window's scale is *set*, not learned, for most of the run: the whole canvas (s = 1) for the
  first ``hold`` of the steps, in which the net learns to move the window so that every digit sits at the same
  place in it, then shrinking linearly to the sampling scale of the encoder (28 / 84: one output pixel per
  input pixel) by ``anneal_end`` of the steps, while the translation keeps the digit in view; after that the
  scale is learned again, as a residual on 28 / 84. The translation is learned throughout, and nothing sees a
  box or a label. Evaluation uses the learned scale.
* **Two embeddings** (optional: :attr:`CoLocalisationConfig.coarse_embedding`, the ``two-stage`` profile). Which
  activations of the CNN make e() is ours to choose, and it decides the result. With ``features`` the large
  windows of the curriculum align every digit at one place in the window (any shared place makes the crops
  alike), but that place is arbitrary, and at the digit's scale the loss is lowest at an offset from the digit, so
  many problems end with every window off centre by the same amount (:func:`window_offsets`,
  :func:`offset_landscape`). With ``logits`` the loss at the digit's scale is lowest at the true boxes, but a
  digit shrunk into a whole-canvas window barely moves the class scores, so the large windows find nothing to
  align. Two stages use each where it works: ``coarse_embedding`` while the curriculum's window is at least
  ``coarse_until`` of the canvas, ``embedding`` once it is smaller and after.
* Every step uses all 100 images and all ordered pairs (n, m), n != m (the full-batch form of the
  paper's sum, which samples pairs by SGD); Adam with cosine decay, as every experiment here.
* Two callbacks of the experiment run around every step: :class:`ScaleCurriculum` sets the window's scale
  the step's loss uses, and :class:`TrajectoryRecorder` keeps theta of the problem's images at log-spaced
  steps (0, 1, 2, 3, 4, 6, 8, 12, ...: :data:`RECORD_STEPS`) in the trainer's records, which are
  checkpointed (a resumed run keeps them) and saved in the artifact's analysis.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stnbook.experiments import Cell, Experiment, Profile, cell_model, register
from stnbook.paths import load_mnist, results_dir
from stnlib.data.distortions import DistortedMNIST, fixed_test_set
from stnlib.data.pairs import (
    COLOCALISATION_CANVAS,
    COLOCALISATION_CLUTTER,
    COLOCALISATION_SIZE,
    CoLocalisationBatches,
    colocalisation_set,
    random_crops,
)
from stnlib.data.streams import register_stream, stream_generator, stream_seed
from stnlib.geometry import box_iou, polygon_box, sampling_outline
from stnlib.io import safe_torch_load
from stnlib.models import ModelConfig, STClassifier, build_model
from stnlib.sampler import bilinear_sample
from stnlib.spatial_transformer import SpatialTransformer
from stnlib.train import Callback, autocast, classification_loss
from stnlib.transforms.attention import AttentionTransform

EXPERIMENT = "colocalisation"
ENCODER_CELL = "mnist-cnn"
ENCODER_WIDTH = 32
DIGITS = tuple(range(10))
VARIANTS = tuple(COLOCALISATION_CLUTTER)  # ("T", "TC")
EMBEDDINGS = ("features", "logits")  # what e() is made of: see cnn_embedding
IOU_THRESHOLD = 0.5
NO_DIGIT = 10  # the label of the embedding CNN's extra class, where it has one (see background_crops)
BACKGROUND_PER_CLASS = 300  # training canvases per digit class and variant the "no digit" crops are cut from
BACKGROUND_WINDOWS = 4  # random windows per canvas
BACKGROUND_IOU = 0.3  # a window counts as "no digit" when its IoU with the digit's box is below this
register_stream("colocalisation.background", 23)
RECORD_STEPS: tuple[int, ...] = (0,) + tuple(sorted({int(b * 2 ** k) for k in range(13) for b in (1, 1.5)}))
"""Steps after which theta of every image is recorded (log-spaced: fast early changes, slow late ones)."""

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", steps=30, batch_size=64, lr=3e-3, train_size=10_000, test_size=1_000,
                     description="CI: 30 Adam steps (the encoder at batch 64 on a 10k subset; each problem: "
                                 "30 full-batch steps on its 100 images)"),
    "full": Profile("full", steps=600, batch_size=256, lr=3e-3, cell_overrides={ENCODER_CELL: {"steps": 150}},
                    description="CPU budget: Adam, cosine decay; the encoder 150 steps at batch 256 (0.64 "
                                "epochs); each problem 600 full-batch steps on its 100 images"),
}
# Two embeddings (see the module docstring): features while the curriculum's window is at least 0.6 of the canvas,
# logits below and after; the scale is set by the curriculum for 85% of the steps (the full profile: 70%).
TWO_STAGE = {"embedding": "logits", "coarse_embedding": "features", "coarse_until": 0.6, "anneal_end": 0.85}
PROFILES["two-stage"] = dataclasses.replace(
    PROFILES["full"], name="two-stage", model_overrides={"T-*": TWO_STAGE, "TC-*": TWO_STAGE},
    description="the full profile's budget (the encoder 150 steps at batch 256; each problem 600 full-batch steps), "
                "e() made of the encoder's pooled features while the curriculum's window is at least 0.6 of the "
                "canvas and of its logits once it is smaller; the scale set by the curriculum for 85% of the steps")
# Two embeddings, and at the end of the curriculum a search for the one shift of every window with the lowest loss
# (within +-12 px, on a 1.5 px grid): the failed problems frame every digit at a common offset, which gradient
# descent on the narrow, rugged logits landscape does not leave
SEARCH = {**TWO_STAGE, "offset_search": 12.0, "offset_step": 1.5}
PROFILES["search"] = dataclasses.replace(
    PROFILES["full"], name="search", model_overrides={"T-*": SEARCH, "TC-*": SEARCH},
    description="the two-stage profile, and where the curriculum ends (85% of the steps) the common shift of every "
                "window (within 12 px, on a 1.5 px grid) with the lowest loss, added to every window's centre; then "
                "gradient descent as before")
# The search profile with the window's scale fixed at the digit's size once the curriculum ends (translation-only
# attention after it; during the curriculum the scale is set, as before)
FIXED = {**SEARCH, "fixed_scale": True}
PROFILES["fixed-scale"] = dataclasses.replace(
    PROFILES["full"], name="fixed-scale", model_overrides={"T-*": FIXED, "TC-*": FIXED},
    description="the search profile with the window's scale kept at the digit's size (28 of 84 pixels) after the "
                "curriculum instead of learned: translation-only attention, as the paper's attention on the birds")
# The fixed-scale profile with the search twice as wide (within 24 px, on a 2 px grid): where the large windows
# leave the digit more than 12 px from the window's centre, the 12 px search cannot bring it back
WIDE = {**FIXED, "offset_search": 24.0, "offset_step": 2.0}
PROFILES["wide-search"] = dataclasses.replace(
    PROFILES["full"], name="wide-search", model_overrides={"T-*": WIDE, "TC-*": WIDE},
    description="the fixed-scale profile with the search for the windows' common shift within 24 px on a 2 px "
                "grid (instead of 12 px on 1.5 px)")
# The fixed-scale profile with the well-trained encoder of the trained-encoder profile (2,350 steps, about 1% error):
# the encoder is the objective, so a better one may change where the loss is lowest
PROFILES["trained-fixed"] = dataclasses.replace(
    PROFILES["fixed-scale"], name="trained-fixed", cell_overrides={ENCODER_CELL: {"steps": 2_350}},
    description="the fixed-scale profile with the encoder trained 2,350 steps at batch 256 (10 epochs, about 1% "
                "error) instead of 150")
# The paper used "a pre-trained MNIST classifier": here one trained to about 1% error (2,350 steps at batch 256, 10
# epochs) instead of the full profile's 150 steps (2.5%); the problems are trained as in the full profile.
PROFILES["trained-encoder"] = dataclasses.replace(
    PROFILES["full"], name="trained-encoder", cell_overrides={ENCODER_CELL: {"steps": 2_350}},
    description="Adam, cosine decay; the encoder 2,350 steps at batch 256 (10 epochs, about 1% error); each problem "
                "600 full-batch steps on its 100 images")

# The paper's objective minimised by search first: before the first step every image gets the digit-sized window of
# a grid (2 px) that minimises the hinge loss (proposals from five images, then coordinate descent; window_search),
# the localisation net learns those windows in the first third of the steps, and the hinge loss trains it from there,
# the scale fixed at the digit's size; the trained-encoder profile's 10-epoch encoder, its logits as e(); 300
# full-batch steps a problem
WINDOW_SEARCH = {"embedding": "logits", "hold": 0.0, "anneal_end": 0.0, "fixed_scale": True, "window_search": 1 / 3}
PROFILES["window-search"] = dataclasses.replace(
    PROFILES["trained-encoder"], name="window-search", model_overrides={"T-*": WINDOW_SEARCH, "TC-*": WINDOW_SEARCH},
    cell_overrides={ENCODER_CELL: {"steps": 2_350}, "T-*": {"steps": 300}, "TC-*": {"steps": 300}},
    needs_profile="trained-encoder",
    description="the trained-encoder profile's encoder (10 epochs); each problem: a search over digit-sized windows for "
                "the lowest hinge loss, the localisation net taught those windows (100 steps), then the hinge loss "
                "(200 steps), the scale fixed at the digit's size")

# The window-search profile with an embedding CNN that has an eleventh class, "no digit": trained (as the
# trained-encoder profile's, 2,350 steps at batch 256) on MNIST's training digits and on digit-sized windows of
# training canvases that miss the digit (background_crops). With ten classes the CNN must call an empty or cut-off
# window some digit (an empty crop is read as a one), so for some classes the loss's random patches look like the
# digit itself; the eleventh class gives them a place of their own. The objective is unchanged; e() is the 11 logits.
NO_DIGIT_ENCODER = {ENCODER_CELL: {"num_classes": NO_DIGIT + 1}, "T-*": {"encoder_classes": NO_DIGIT + 1},
                    "TC-*": {"encoder_classes": NO_DIGIT + 1}}
PROFILES["no-digit-encoder"] = dataclasses.replace(
    PROFILES["trained-encoder"], name="no-digit-encoder", model_overrides=NO_DIGIT_ENCODER,
    description="the trained-encoder profile with an eleventh class in the embedding CNN, 'no digit', trained on "
                "digit-sized windows of training canvases that miss the digit (IoU < 0.3)")
NO_DIGIT_SEARCH = {**WINDOW_SEARCH, "encoder_classes": NO_DIGIT + 1}
PROFILES["no-digit-search"] = dataclasses.replace(
    PROFILES["window-search"], name="no-digit-search", model_overrides={"T-*": NO_DIGIT_SEARCH, "TC-*": NO_DIGIT_SEARCH},
    needs_profile="no-digit-encoder",
    description="the window-search profile with the no-digit-encoder profile's embedding CNN (ten digits and 'no "
                "digit'; e() its 11 logits)")
# The no-digit-search profile trained twice as long, half of it taught the searched windows (300 of 600 steps, then
# the hinge loss): after 100 steps of being taught, the small localisation net still misses a few of the windows the
# search found (1-2 images in most problems)
NO_DIGIT_LONG = {**NO_DIGIT_SEARCH, "window_search": 0.5}
PROFILES["no-digit-long"] = dataclasses.replace(
    PROFILES["no-digit-search"], name="no-digit-long", model_overrides={"T-*": NO_DIGIT_LONG, "TC-*": NO_DIGIT_LONG},
    cell_overrides={ENCODER_CELL: {"steps": 2_350}, "T-*": {"steps": 600}, "TC-*": {"steps": 600}},
    description="the no-digit-search profile with 600 steps a problem, the first 300 teaching the localisation net "
                "the searched windows, then the hinge loss")


@dataclass
class CoLocalisationConfig:
    """One co-localisation problem and its model; saved beside the results.

    Attributes:
        digit: the class whose 100 images are co-localised.
        variant: "T" (plain 84 x 84 canvas) or "TC" (16 clutter patches).
        canvas: input side in pixels.
        out_size: side of the transformer's output, the encoder's input (28: an MNIST digit).
        num_images: images in the problem.
        alpha: the hinge margin (paper: 1).
        encoder_width: width of the embedding CNN (:func:`stnlib.models.build_model`).
        encoder_dir: the encoder artifact folder this model was trained with (relative to ``results/``
            when it lies there); set by :func:`use_dependencies` from the encoder cell the class cells
            declare they need, so that :func:`build` can load it and metrics.json names the encoder used.
        embedding: what e() is made of (:func:`cnn_embedding`): "features" (every max-pooled stage of the
            encoder and its logits) or "logits" (the class scores only).
        coarse_embedding: the e() of the steps in which the curriculum holds the window at a scale of at least
            :attr:`coarse_until` (None: :attr:`embedding` throughout); see :meth:`embedding_at`.
        coarse_until: the scale below which :attr:`embedding` takes over from :attr:`coarse_embedding`.
        hold: fraction of the training steps at the whole-canvas scale (s = 1), translation learned.
        anneal_end: fraction of the steps by which the scale has shrunk linearly to :attr:`final_scale`;
            from there on the scale is learned. ``hold = anneal_end = 0``: no curriculum, the scale is
            learned from the start (as a residual on :attr:`final_scale`).
        offset_search: radius in canvas pixels of a search, at the step where the curriculum ends, for the one
            shift of every window that minimises the loss (:class:`OffsetSearch`; 0: none, and the model has no
            ``window_shift``). Gradient descent cannot leave a solution that frames every digit at the same
            offset; the search moves all windows together, along exactly that direction, and keeps the shift
            with the lowest loss.
        offset_step: spacing in pixels of the search's square grid of shifts.
        fixed_scale: after the curriculum, keep the window at :attr:`final_scale` (the digit's size) instead of
            learning the scale: translation-only attention, as the paper's own attention transformers on the
            birds (scale fixed, location regressed). The T and TC digits are unscaled, so their boxes all have
            this size; a learned scale drifts (the search profile's windows end at 25 to 39 px), and a window
            larger than its digit misses the IoU threshold at a smaller offset.
        window_search: fraction of the steps in which the localisation net learns to output the windows that a
            search over digit-sized windows found before the first step (:func:`window_search`, the
            :class:`WindowSearch` callback), by the squared error of its window centres; the hinge loss trains it
            for the rest. 0: no search. The search minimises the same hinge loss, over a grid of windows instead of
            by gradient descent, and sees no box or label.
        search_step: spacing in canvas pixels of the search's grid of window centres.
        encoder_classes: outputs of the embedding CNN: 10 (the digits) or 11, the eleventh a "no digit" class
            trained on windows of training canvases that miss the digit (:func:`background_crops`, the
            ``no-digit-encoder`` profile).
    """

    digit: int = 0
    variant: str = "T"
    canvas: int = COLOCALISATION_CANVAS
    out_size: int = 28
    num_images: int = COLOCALISATION_SIZE
    alpha: float = 1.0
    encoder_width: int = ENCODER_WIDTH
    encoder_dir: str | None = None
    embedding: str = "features"
    coarse_embedding: str | None = None
    coarse_until: float = 0.6
    hold: float = 0.25
    anneal_end: float = 0.7
    offset_search: float = 0.0
    offset_step: float = 1.0
    fixed_scale: bool = False
    window_search: float = 0.0
    search_step: float = 2.0
    encoder_classes: int = 10

    def __post_init__(self):
        if self.encoder_classes not in (10, NO_DIGIT + 1):
            raise ValueError(f"encoder_classes must be 10 (the digits) or {NO_DIGIT + 1} (and a 'no digit' class), "
                             f"got {self.encoder_classes}")
        if not 0 <= self.window_search < 1 or self.search_step <= 0:
            raise ValueError(f"need 0 <= window_search < 1 (a fraction of the steps) and search_step > 0 (pixels), got "
                             f"{self.window_search} and {self.search_step}")
        if self.offset_search < 0 or self.offset_step <= 0:
            raise ValueError(f"need offset_search >= 0 and offset_step > 0 (pixels), got {self.offset_search} and "
                             f"{self.offset_step}")
        if self.variant not in COLOCALISATION_CLUTTER:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.coarse_embedding is not None and self.coarse_embedding not in EMBEDDINGS:
            raise ValueError(f"coarse_embedding must be None or one of {EMBEDDINGS}, got {self.coarse_embedding!r}")
        if not 0 < self.coarse_until <= 1:
            raise ValueError(f"coarse_until must be in (0, 1], got {self.coarse_until}")
        if not 0 <= self.hold <= self.anneal_end <= 1:
            raise ValueError(f"need 0 <= hold <= anneal_end <= 1, got hold={self.hold}, anneal_end={self.anneal_end}")

    @property
    def final_scale(self) -> float:
        """The scale at which the window samples the canvas 1:1 into the encoder's input (28 / 84)."""
        return self.out_size / self.canvas

    def scale_at(self, step: int, steps: int) -> float | None:
        """The window's scale set by the curriculum at ``step`` of ``steps``, or None where it is learned.

        Examples:
            >>> c = CoLocalisationConfig(hold=0.2, anneal_end=0.6)
            >>> [c.scale_at(k, 100) for k in (0, 19, 20, 60)]
            [1.0, 1.0, 1.0, None]
            >>> round(c.scale_at(40, 100), 4)  # halfway between 20 and 60: halfway from 1 to 1/3
            0.6667
        """
        hold, end = round(self.hold * steps), round(self.anneal_end * steps)
        if step >= end:
            return None
        if step < hold:
            return 1.0
        f = (step - hold) / (end - hold)
        return 1.0 + f * (self.final_scale - 1.0)

    def embedding_at(self, scale: float | None) -> str:
        """The embedding the loss uses when the curriculum sets the window's ``scale`` (None: the scale is learned):
        :attr:`coarse_embedding` while the window is at least :attr:`coarse_until` of the canvas, else
        :attr:`embedding`.

        Examples:
            >>> c = CoLocalisationConfig(embedding="logits", coarse_embedding="features", coarse_until=0.6)
            >>> [c.embedding_at(s) for s in (1.0, 0.6, 0.5, None)]
            ['features', 'features', 'logits', 'logits']
            >>> CoLocalisationConfig().embedding_at(1.0)  # no coarse embedding: the one embedding throughout
            'features'
        """
        if self.coarse_embedding is not None and scale is not None and scale >= self.coarse_until:
            return self.coarse_embedding
        return self.embedding

    @property
    def clutter(self) -> int:
        return COLOCALISATION_CLUTTER[self.variant]

    @property
    def name(self) -> str:
        return f"attention ST, digit {self.digit}, {self.variant}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CoLocalisationConfig:
        d = dict(d)
        if d.pop("encoder_root", None) is not None:  # a field of earlier artifacts, always None in them
            raise ValueError("encoder_root is no longer supported: the encoder is the run's own mnist-cnn cell")
        return cls(**d)


def encoder_config(width: int = ENCODER_WIDTH, num_classes: int = 10) -> ModelConfig:
    """The embedding network: the paper's CNN classifier on plain 28 x 28 MNIST (``num_classes=11``: and a
    "no digit" class, see :func:`background_crops`)."""
    return ModelConfig("cnn", None, (28, 28), num_classes=num_classes, width=width)


def localisation_net(canvas: int) -> nn.Sequential:
    """Conv 8@9x9 stride 4 -> max-pool 2 -> FC 8 -> FC 8 (the regression layer is added by the transformer)."""
    side = ((canvas - 9) // 4 + 1) // 2
    if side < 1:
        raise ValueError(f"the co-localisation localisation net needs a canvas of at least 17 px, got {canvas}")
    return nn.Sequential(nn.Conv2d(1, 8, 9, stride=4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * side * side, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())


def cnn_embedding(encoder: STClassifier, x: torch.Tensor, normalize: bool = True,
                  kind: str = "features") -> torch.Tensor:
    """e(x): the concatenated activations of a plain CNN classifier (each max-pooled stage, flattened, and
    the logits; ``kind="logits"``: the logits only), scaled to unit L2 norm (unless ``normalize`` is False),
    for (B, 1, 28, 28) images in [0, 1]; returns (B, D).

    Unit norm puts every squared distance in [0, 4], the scale on which the paper's margin alpha = 1
    means something (see the module docstring).

    Examples:
        >>> enc = build_model(encoder_config(16))
        >>> e = cnn_embedding(enc, torch.rand(2, 1, 28, 28))
        >>> tuple(e.shape), torch.allclose(e.norm(dim=1), torch.ones(2))  # 8*14*14 + 16*7*7 + 10
        ((2, 2362), True)
        >>> tuple(cnn_embedding(enc, torch.rand(2, 1, 28, 28), kind="logits").shape)
        (2, 10)
    """
    if encoder.st is not None or encoder.config.arch != "cnn":
        raise ValueError("cnn_embedding needs a plain CNN classifier (no transformer)")
    h = encoder.normalize(x)
    if kind not in EMBEDDINGS:
        raise ValueError(f"kind must be one of {EMBEDDINGS}, got {kind!r}")
    feats = []
    for layer in encoder.classifier:
        h = layer(h)
        if isinstance(layer, nn.MaxPool2d) and kind == "features":
            feats.append(h.flatten(1))
    feats.append(h)  # the logits
    e = torch.cat(feats, 1)
    return F.normalize(e, dim=1) if normalize else e


class CoLocaliser(nn.Module):
    """An attention spatial transformer (the trainable part) and a frozen embedding CNN e().

    ``forward(x, scale=None)`` returns ``(crops, theta)``: the (B, 1, 28, 28) outputs and the (B, 3)
    attention parameters (s, t_x, t_y), output -> input in normalised coordinates. The regression layer
    starts at (1, 0, 0); its scale output is a residual, s = final_scale + (output - 1), unless ``scale``
    (the curriculum's, :meth:`CoLocalisationConfig.scale_at`) sets s; its translation outputs pass through
    tanh, so the window's centre stays on the canvas (a window parked off the canvas samples only zeros,
    a blank crop that agrees with every other blank crop and has no gradient to leave by). ``embed(crops)`` is e().

    ``curriculum_scale`` is the scale the training loss passes to ``forward`` (None: learned) and
    ``curriculum_embedding`` the embedding it uses (None: ``config.embedding``); the :class:`ScaleCurriculum`
    callback sets both before every step.
    """

    def __init__(self, config: CoLocalisationConfig):
        super().__init__()
        self.config = config
        self.st = SpatialTransformer(localisation_net(config.canvas), "attention", out_size=config.out_size)
        self.encoder = build_model(encoder_config(config.encoder_width, config.encoder_classes))
        self.encoder.requires_grad_(False)
        self.curriculum_scale: float | None = None
        self.curriculum_embedding: str | None = None
        if config.offset_search > 0:  # the common shift OffsetSearch finds, added to every window's centre
            self.register_buffer("window_shift", torch.zeros(2))
        if config.window_search > 0:  # the windows' centres the search found (normalised), what the net first learns
            self.register_buffer("search_centres", torch.full((config.num_images, 2), float("nan")))
        self.regressing = False  # set by WindowSearch before every step: the step's loss regresses search_centres

    def forward(self, x: torch.Tensor, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        expected = (1, self.config.canvas, self.config.canvas)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"CoLocaliser expects (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}")
        raw = self.st.localise(x)
        theta = torch.cat([self.scales(raw, scale), self.centres(raw)], 1)
        return self.st.sample(x, theta), theta

    def scales(self, raw: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """The windows' scales (B, 1) from the regression layer's outputs (B, 3): ``scale`` where the curriculum
        sets it, else :attr:`~CoLocalisationConfig.final_scale` with ``fixed_scale``, else the learned residual."""
        if scale is None and self.config.fixed_scale:
            scale = self.config.final_scale
        return raw[:, :1] + (self.config.final_scale - 1.0) if scale is None else torch.full_like(raw[:, :1], scale)

    def centres(self, raw: torch.Tensor) -> torch.Tensor:
        """The windows' centres (B, 2) from the regression layer's outputs (B, 3): tanh keeps them on the canvas,
        and the common shift of :class:`OffsetSearch` (when the config has one) moves them all alike."""
        t = torch.tanh(raw[:, 1:])
        return t + self.window_shift if hasattr(self, "window_shift") else t

    def embed(self, crops: torch.Tensor, normalize: bool = True, kind: str | None = None) -> torch.Tensor:
        """e(crops) with the embedding ``kind`` (default: ``config.embedding``, the one the results are scored with)."""
        return cnn_embedding(self.encoder, crops, normalize, kind or self.config.embedding)


def pairwise_sq_distances(e: torch.Tensor) -> torch.Tensor:
    """(N, N) squared Euclidean distances between the rows of (N, D) ``e`` (clamped at 0 against rounding)."""
    sq = e.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp_min(0)


def hinge_triplets(e: torch.Tensor, e_rand: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean hinge over the ordered pairs n != m, fraction of pairs whose hinge is non-zero) for embeddings
    ``e`` (N, D) of the localised crops and ``e_rand`` (N, D) of the random patches (see
    :func:`triplet_hinge_loss`)."""
    d_pos = pairwise_sq_distances(e)  # (N, N): crop n against crop m
    d_neg = (e - e_rand).pow(2).sum(1)  # (N,): crop n against its own image's random patch
    hinge = F.relu(d_pos - d_neg[:, None] + alpha)
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return hinge[off_diagonal].mean(), (hinge[off_diagonal] > 0).float().mean()


def triplet_hinge_loss(model: CoLocaliser, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The co-localisation loss of paper A.2, in the Trainer's ``loss(model, batch)`` form.

    For images I_1..I_N of one class, the transformer's crops I_n^T = T_theta(I_n) and random patches
    I_n^rand of the same images,

        L = 1 / (N (N - 1)) * sum_n sum_{m != n}
              max(0, ||e(I_n^T) - e(I_m^T)||^2 - ||e(I_n^T) - e(I_n^rand)||^2 + alpha)

    with e() the frozen embedding (:func:`cnn_embedding`) and alpha = ``model.config.alpha``: two
    localised digits of the class must be closer to each other than a localised digit is to a random
    patch of its own image, by the margin alpha. Gradients reach only the localisation net (through the
    sampler); the random patches carry none.

    Args:
        model: a :class:`CoLocaliser`; its ``curriculum_scale`` (None: learned) sets the window's scale and its
            ``curriculum_embedding`` (None: ``config.embedding``) what e() is made of.
        batch: ``(x, crops)``: x (N, 1, S, S) the problem's images; crops (N, 3) attention parameters
            (s, t_x, t_y) of the random patches.

    Returns:
        ``(loss, {"loss", "active"})``; "active" is the % of triplets whose hinge is non-zero.
    """
    x, crops = batch
    out, _ = model(x, model.curriculum_scale)
    kind = model.curriculum_embedding
    with torch.no_grad():
        e_rand = model.embed(model.st.sample(x, crops), kind=kind)
    loss, active = hinge_triplets(model.embed(out, kind=kind), e_rand, model.config.alpha)
    loss_value, active_value = torch.stack([loss.detach(), active]).tolist()
    return loss, {"loss": loss_value, "active": 100.0 * active_value}


@torch.no_grad()
def loss_at(model: CoLocaliser, images: torch.Tensor, theta: torch.Tensor, seed: int = 0, draws: int = 8,
            normalize: bool = True) -> float:
    """The loss :func:`triplet_hinge_loss` would have if the transformer output ``theta`` (N, 3) for
    ``images``, averaged over ``draws`` sets of random patches: compares, e.g., the true boxes with
    the solution training found. ``normalize=False`` scores it on the raw (unscaled) activations."""
    data = CoLocalisationBatches(images, seed=seed, device=images.device)
    e = model.embed(model.st.sample(images, theta.to(images.dtype)), normalize)
    total = 0.0
    for step in range(draws):
        _, crops = data.batch(step)
        total += hinge_triplets(e, model.embed(model.st.sample(images, crops), normalize), model.config.alpha)[0].item()
    return total / draws


def predicted_boxes(theta: torch.Tensor, canvas: int = COLOCALISATION_CANVAS) -> torch.Tensor:
    """(..., 4) boxes (x0, y0, x1, y1) in canvas pixels of (..., 3) attention thetas (the sampled square)."""
    flat = theta.reshape(-1, 3)
    return polygon_box(sampling_outline(flat, "attention", canvas)).reshape(*theta.shape[:-1], 4)


def true_theta(boxes: torch.Tensor, canvas: int = COLOCALISATION_CANVAS) -> torch.Tensor:
    """(N, 3) attention parameters whose sampled square is exactly each (N, 4) pixel box (square boxes).

    Examples:
        >>> true_theta(torch.tensor([[27.5, 27.5, 55.5, 55.5]])).tolist()  # the centre third of 84 px
        [[0.3333333432674408, 0.0, 0.0]]
    """
    b = boxes.float()
    side = (b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2
    centre = (b[:, :2] + b[:, 2:]) / 2
    return torch.cat([(side / canvas)[:, None], (2 * centre + 1) / canvas - 1], 1)


def localisation_scores(theta: torch.Tensor, boxes: torch.Tensor, canvas: int = COLOCALISATION_CANVAS,
                        threshold: float = IOU_THRESHOLD) -> dict[str, torch.Tensor | float]:
    """IoU of each predicted box with the true box, and the paper's success rate (% with IoU > threshold).

    Args:
        theta: (N, 3) attention parameters.
        boxes: (N, 4) true boxes (x0, y0, x1, y1) in canvas pixels.

    Examples:
        >>> theta = torch.tensor([[28 / 84, 0.0, 0.0], [28 / 84, 0.7, 0.7]])
        >>> box = torch.tensor([[27.5, 27.5, 55.5, 55.5]] * 2)
        >>> s = localisation_scores(theta, box)
        >>> [round(v, 3) for v in s["iou"].tolist()], s["success"]
        ([1.0, 0.0], 50.0)
    """
    iou = box_iou(predicted_boxes(theta.float(), canvas), boxes.float())
    return {"iou": iou, "success": 100.0 * (iou > threshold).float().mean().item()}


def window_offsets(theta: torch.Tensor, boxes: torch.Tensor, canvas: int = COLOCALISATION_CANVAS) -> torch.Tensor:
    """(..., N, 2) offsets (x, y) in canvas pixels of each window's centre from its digit's centre, for (..., N, 3)
    attention thetas and (N, 4) true boxes: a transformer that finds every digit but frames it consistently off
    centre has offsets that are large on average and nearly equal across the images.

    Examples:
        >>> box = torch.tensor([[27.5, 27.5, 55.5, 55.5]])  # the centre third of 84 px
        >>> window_offsets(torch.tensor([[1 / 3, 0.0, 0.0]]), box).tolist()
        [[0.0, 0.0]]
        >>> window_offsets(torch.tensor([[1 / 3, 2 * 6 / 84, -2 * 3 / 84]]), box).round().tolist()  # 6 px right, 3 up
        [[6.0, -3.0]]
    """
    centre = (theta[..., 1:].float() + 1) * canvas / 2 - 0.5
    return centre - (boxes[:, :2].float() + boxes[:, 2:].float()) / 2


@torch.no_grad()
def offset_landscape(model: CoLocaliser, images: torch.Tensor, boxes: torch.Tensor, offsets: Sequence[float],
                     kind: str | None = None, scale: float | None = None, draws: int = 4, seed: int = 0) -> torch.Tensor:
    """The loss (:func:`loss_at`) when every window is the true box moved by one common offset: (len(offsets),
    len(offsets)) values, row i moved by ``offsets[i]`` pixels down, column j by ``offsets[j]`` pixels right.

    This is the loss along the direction in which training's solutions differ from the truth (each image framed
    alike, all off by the same amount), so it shows whether the objective prefers the truth to its shifted copies,
    and how wide the truth's basin is. ``kind`` (one of :data:`EMBEDDINGS`) replaces the model's embedding for the
    measurement; ``scale`` (default: the digit's size, ``config.final_scale``) sets every window's side.

    Examples:
        >>> _ = torch.manual_seed(0); cfg = CoLocalisationConfig(encoder_width=8, num_images=6)
        >>> x = torch.zeros(6, 1, 84, 84); x[:, :, 30:50, 30:50] = 1
        >>> box = torch.tensor([[27.5, 27.5, 55.5, 55.5]] * 6)
        >>> offset_landscape(CoLocaliser(cfg), x, box, [-4, 0, 4], draws=1).shape
        torch.Size([3, 3])
    """
    if kind is not None and kind not in EMBEDDINGS:
        raise ValueError(f"kind must be one of {EMBEDDINGS}, got {kind!r}")
    saved = model.config
    if kind is not None:
        model.config = dataclasses.replace(saved, embedding=kind)
    try:
        base = true_theta(boxes, saved.canvas).to(images.device)
        base[:, 0] = saved.final_scale if scale is None else scale
        out = torch.zeros(len(offsets), len(offsets))
        for i, dy in enumerate(offsets):
            for j, dx in enumerate(offsets):
                th = base.clone()
                th[:, 1] += 2 * dx / saved.canvas
                th[:, 2] += 2 * dy / saved.canvas
                out[i, j] = loss_at(model, images, th, seed=seed, draws=draws)
    finally:
        model.config = saved
    return out


# --------------------------------------------------------------------------------------------------
# The experiment


def cell_id(variant: str, digit: int) -> str:
    return f"{variant}-{digit}"


def colocalisation_cells() -> list[Cell]:
    """The encoder first, then T and TC for every digit, each declaring that it needs the encoder."""
    cells = [Cell(EXPERIMENT, ENCODER_CELL, "mnist", encoder_config())]
    cells += [Cell(EXPERIMENT, cell_id(v, d), v, CoLocalisationConfig(digit=d, variant=v), needs=(ENCODER_CELL,))
              for v in VARIANTS for d in DIGITS]
    return cells


def problem(config: CoLocalisationConfig) -> dict:
    """The fixed co-localisation set of ``config`` (MNIST test digits of the class; TC clutter cut from
    the MNIST training digits), see :func:`~stnlib.data.pairs.colocalisation_set`."""
    x, y = load_mnist("test")
    pool = load_mnist("train")[0] if config.clutter else None
    return colocalisation_set(x, y, config.digit, config.clutter, clutter_pool=pool, n=config.num_images,
                              canvas=config.canvas)


def use_dependencies(config, folders: dict[str, Path]):
    """A class cell's config with ``encoder_dir`` set to the encoder artifact's folder (relative to ``results/``
    when it lies there, so committed metrics name no machine's paths)."""
    folder = folders[ENCODER_CELL].resolve()
    base = results_dir().resolve()
    where = folder.relative_to(base).as_posix() if folder.is_relative_to(base) else str(folder)
    return dataclasses.replace(config, encoder_dir=where)


def background_crops(images: torch.Tensor, labels: torch.Tensor, seed: int, per_class: int = BACKGROUND_PER_CLASS,
                     windows: int = BACKGROUND_WINDOWS, iou_below: float = BACKGROUND_IOU,
                     canvas: int = COLOCALISATION_CANVAS, out_size: int = 28) -> torch.Tensor:
    """The examples of the embedding CNN's "no digit" class: digit-sized windows of training canvases that miss
    the digit, (M, 28, 28) uint8.

    For every class and both variants (T, TC), ``per_class`` canvases made as the problems' are
    (:func:`~stnlib.data.pairs.colocalisation_set`, from ``images``, the training split, clutter cut from them
    too, placed by a stream of their own), and ``windows`` windows on each drawn as the loss draws its random
    patches (:func:`~stnlib.data.pairs.random_crops`); kept are those whose IoU with the digit's box is below
    ``iou_below``: empty background, clutter, or a digit cut off at the window's edge. No problem's image (the test
    split) is used. The same ``seed`` gives the same crops.

    Examples:
        >>> imgs = torch.zeros(40, 28, 28, dtype=torch.uint8); imgs[:, 4:24, 12:16] = 255  # a bar for every digit
        >>> crops = background_crops(imgs, torch.arange(40) % 10, seed=0, per_class=4, windows=2)
        >>> crops.dtype, tuple(crops.shape[1:]), 0 < len(crops) <= 10 * 2 * 4 * 2
        (torch.uint8, (28, 28), True)
        >>> torch.equal(crops, background_crops(imgs, torch.arange(40) % 10, seed=0, per_class=4, windows=2))
        True
    """
    transform = AttentionTransform()
    out = []
    for d in DIGITS:
        for clutter in sorted(set(COLOCALISATION_CLUTTER.values())):
            s = colocalisation_set(images, labels, d, clutter, clutter_pool=images, n=per_class, canvas=canvas,
                                   seed=stream_seed(seed, "colocalisation.background"))
            theta = random_crops(per_class * windows, stream_generator(seed, "colocalisation.background", d, clutter),
                                 out_size / canvas)
            box = s["box"].float().repeat_interleave(windows, 0)
            keep = box_iou(predicted_boxes(theta, canvas), box) < iou_below
            x = s["x"].repeat_interleave(windows, 0)[keep]
            crops = bilinear_sample(x, transform.grid(theta[keep], (out_size, out_size)))
            out.append((crops[:, 0] * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def make_data(cell: Cell, profile: Profile, seed: int, device: torch.device, root: Path | None = None):
    if cell.id == ENCODER_CELL or isinstance(cell.model, ModelConfig):
        x, y = load_mnist("train")
        tx, ty = load_mnist("test")
        if profile.train_size is not None:
            x, y = x[:profile.train_size], y[:profile.train_size]
        if cell_model(cell, profile).num_classes == NO_DIGIT + 1:  # and the "no digit" crops, labelled 10
            bg = background_crops(x, y, seed)
            x, y = torch.cat([x, bg]), torch.cat([y, torch.full((len(bg),), NO_DIGIT, dtype=y.dtype)])
        n = profile.test_size
        return (DistortedMNIST("none", x, y, profile.batch_size, seed=seed, device=device),
                fixed_test_set("none", tx, ty, n=n))
    data = problem(cell.model)
    return CoLocalisationBatches(data["x"], seed=seed, device=device), {"problem": data}


class ScaleCurriculum(Callback):
    """Before every step, sets ``model.curriculum_scale`` to the scale of the config's curriculum at that step
    (:meth:`CoLocalisationConfig.scale_at`; None where the scale is learned) and ``model.curriculum_embedding``
    to the embedding the loss uses at that scale (:meth:`CoLocalisationConfig.embedding_at`)."""

    def on_step_start(self, trainer, step: int) -> None:
        model = trainer.model
        model.curriculum_scale = model.config.scale_at(step, trainer.config.steps)
        model.curriculum_embedding = model.config.embedding_at(model.curriculum_scale)


def search_offsets(radius: float, step: float) -> torch.Tensor:
    """(K, 2) shifts (x, y) in pixels of the square grid of spacing ``step`` within +-``radius``, (0, 0) first.

    Examples:
        >>> search_offsets(1, 1).tolist()[:3], len(search_offsets(1, 1))
        ([[0.0, 0.0], [-1.0, -1.0], [0.0, -1.0]], 9)
    """
    k = int(radius // step)
    axis = torch.arange(-k, k + 1, dtype=torch.float32) * step
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    grid = grid[(grid != 0).any(1)]
    return torch.cat([torch.zeros(1, 2), grid])


@torch.no_grad()
def best_common_shift(model: CoLocaliser, images: torch.Tensor, shifts: torch.Tensor, draws: int = 8,
                      seed: int = 0) -> tuple[int, torch.Tensor]:
    """The loss of the model's windows (at the scale they have once the curriculum ends) when every window is moved
    by each of ``shifts`` (K, 2) pixels, averaged over ``draws`` sets of random patches with the model's own
    embedding: (index of the lowest, losses (K,))."""
    raw = model.st.localise(images)
    s = model.scales(raw)
    centres = model.centres(raw)
    data = CoLocalisationBatches(images, seed=seed, device=images.device)
    e_rand = [model.embed(model.st.sample(images, data.batch(k)[1])) for k in range(draws)]
    losses = torch.zeros(len(shifts))
    for i, d in enumerate(shifts.to(raw.device)):
        theta = torch.cat([s, centres + 2 * d / model.config.canvas], 1)
        e = model.embed(model.st.sample(images, theta))
        losses[i] = sum(hinge_triplets(e, er, model.config.alpha)[0].item() for er in e_rand) / draws
    return int(losses.argmin()), losses


class OffsetSearch(Callback):
    """At the first step after the curriculum (the window's scale learned from then on), when the config asks for
    it (``offset_search > 0``): the common shift of every window with the lowest loss
    (:func:`best_common_shift` over :func:`search_offsets`) is added to the model's ``window_shift`` (a buffer:
    saved with the model, not trained), and ``trainer.records["offset_search"]`` keeps the step, the shift and
    the loss before and after."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def on_step_start(self, trainer, step: int) -> None:
        model = trainer.model
        cfg = model.config
        if cfg.offset_search <= 0 or step != round(cfg.anneal_end * trainer.config.steps):
            return
        if "offset_search" in trainer.records:
            return
        shifts = search_offsets(cfg.offset_search, cfg.offset_step)
        was_training = model.training
        model.eval()
        best, losses = best_common_shift(model, self.images.to(trainer.device), shifts, seed=trainer.config.seed)
        model.train(was_training)
        model.window_shift += 2 * shifts[best].to(model.window_shift) / cfg.canvas
        trainer.records["offset_search"] = {"step": step, "shift_px": shifts[best].tolist(),
                                            "loss_before": float(losses[0]), "loss_after": float(losses[best]),
                                            "candidates": len(shifts)}


@torch.no_grad()
def window_search(model: CoLocaliser, images: torch.Tensor, step: float = 2.0, proposals: int = 5, sweeps: int = 20,
                  draws: int = 8, seed: int = 0) -> dict:
    """Digit-sized windows for the problem's images that minimise the hinge loss of :func:`triplet_hinge_loss`,
    found by search rather than gradient descent; no box or label is used.

    The candidates are windows of the encoder's sampling scale (:attr:`CoLocalisationConfig.final_scale`) centred
    on a grid of spacing ``step`` pixels, each embedded once with the model's embedding; the random patches are
    ``draws`` sets drawn as in training. Two stages:

    1. Proposals: every window of each of the first ``proposals`` images proposes itself as what the images share;
       every other image takes its window with the lowest hinge against it, and the five best proposals of each
       image are scored by the whole loss. The best assignment starts stage 2.
    2. Coordinate descent: image by image (in a seeded random order), the window with the lowest loss given all
       the others' windows, until a sweep changes none (at most ``sweeps``).

    Returns:
        ``{"centres"}`` (N, 2) the windows' centres in normalised coordinates (x, y), ``"loss"`` (the hinge loss
        of the windows found, over the ``draws`` sets of patches), ``"proposal_loss"`` (after stage 1),
        ``"sweeps"`` and ``"candidates"`` (windows per image).
    """
    cfg = model.config
    n, dev = len(images), images.device
    half = cfg.out_size / 2
    axis = torch.arange(half, cfg.canvas - half + 1e-6, step, device=dev)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)  # (P, 2) centres (x, y) in px
    centres = (2 * grid + 1) / cfg.canvas - 1
    theta = torch.cat([torch.full((len(grid), 1), cfg.final_scale, device=dev), centres], 1)
    kind = cfg.embedding
    cand = torch.stack([model.embed(model.st.sample(images[i:i + 1].expand(len(grid), -1, -1, -1), theta), kind=kind)
                        for i in range(n)])  # (N, P, D)
    data = CoLocalisationBatches(images, seed=seed, device=dev)
    rand = torch.stack([model.embed(model.st.sample(images, data.batch(k)[1]), kind=kind) for k in range(draws)], 1)
    alpha = cfg.alpha
    off = ~torch.eye(n, dtype=torch.bool, device=dev)

    def total(idx: torch.Tensor) -> float:
        e = cand[torch.arange(n), idx]
        d_neg = (e[:, None] - rand).pow(2).sum(-1)  # (N, draws)
        h = F.relu(pairwise_sq_distances(e)[:, :, None] - d_neg[:, None, :] + alpha).mean(2)
        return float(h[off].mean())

    neg = (cand[:, :, None] - rand[:, None]).pow(2).sum(-1).mean(-1)  # (N, P): a window against its image's patches
    sq = cand.pow(2).sum(-1)  # (N, P)
    best_loss, best = float("inf"), None
    for i in range(min(proposals, n)):
        d_pos = (sq[i][:, None, None] + sq[None] - 2 * torch.einsum("pd,nqd->pnq", cand[i], cand)).clamp_min(0)
        hinge = F.relu(d_pos - neg[None] + alpha)  # (P, N, P): proposal, image, that image's window
        idx = hinge.argmin(2)  # (P, N)
        score = hinge.gather(2, idx[..., None])[..., 0].mean(1)
        for p in score.argsort()[:5].tolist():
            assign = idx[p].clone()
            assign[i] = p
            if (value := total(assign)) < best_loss:
                best_loss, best = value, assign
    proposal_loss = best_loss
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    done = 0
    for done in range(1, sweeps + 1):
        changed = 0
        for i in order:
            others = torch.cat([torch.arange(i, device=dev), torch.arange(i + 1, n, device=dev)])
            eo = cand[others, best[others]]  # (N - 1, D)
            d_pos = (sq[i][:, None] + eo.pow(2).sum(1)[None] - 2 * cand[i] @ eo.T).clamp_min(0)  # (P, N - 1)
            d_neg_i = (cand[i][:, None] - rand[i][None]).pow(2).sum(-1)  # (P, draws)
            d_neg_o = (eo[:, None] - rand[others]).pow(2).sum(-1)  # (N - 1, draws)
            cost = (F.relu(d_pos[:, :, None] - d_neg_i[:, None, :] + alpha).mean((1, 2))
                    + F.relu(d_pos[:, :, None] - d_neg_o[None] + alpha).mean((1, 2)))
            j = int(cost.argmin())
            changed += j != int(best[i])
            best[i] = j
        if changed == 0:
            break
    return {"centres": centres[best], "loss": total(best), "proposal_loss": proposal_loss, "sweeps": done,
            "candidates": len(grid)}


class WindowSearch(Callback):
    """When the config asks for it (``window_search > 0``): before the first step, :func:`window_search` finds each
    image's window and stores its centre in the model's ``search_centres`` (a buffer: saved with the model, so a
    resumed run does not search again); before every step, ``model.regressing`` says whether the step's loss
    regresses those centres (the first ``window_search`` of the steps) or is the hinge loss.
    ``trainer.records["window_search"]`` keeps the search's loss, sweeps, candidates and seconds."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def on_step_start(self, trainer, step: int) -> None:
        model = trainer.model
        cfg = model.config
        model.regressing = cfg.window_search > 0 and step < round(cfg.window_search * trainer.config.steps)
        if cfg.window_search <= 0 or not bool(model.search_centres.isnan().any()):
            return
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        found = window_search(model, self.images.to(trainer.device), cfg.search_step, seed=trainer.config.seed)
        model.train(was_training)
        model.search_centres.copy_(found.pop("centres"))
        trainer.records["window_search"] = {**found, "step": step, "seconds": time.perf_counter() - start}


class TrajectoryRecorder(Callback):
    """Keeps theta (num_images, 3) of the problem's images before each step in ``steps`` (so, after that many
    completed steps), as ``trainer.records["trajectory"]``: a list of ``{"step", "theta"}``. Runs after
    :class:`ScaleCurriculum`, so theta is the one the step's loss sees."""

    def __init__(self, images: torch.Tensor, steps: Sequence[int] = RECORD_STEPS):
        self.images = images
        self.steps = set(steps)

    @torch.no_grad()
    def on_step_start(self, trainer, step: int) -> None:
        done = trainer.records.setdefault("trajectory", [])
        if step in self.steps and all(r["step"] != step for r in done):
            model, dev = trainer.model, trainer.device
            with autocast(dev, trainer.config.precision):  # the precision of the step's own forward
                _, theta = model(self.images.to(dev), model.curriculum_scale)
            done.append({"step": step, "theta": theta.float().cpu()})


def callbacks(cell: Cell, test: dict) -> list[Callback]:
    """The class cells' callbacks (the curriculum first); the encoder has none."""
    if "problem" not in test:
        return []
    x = test["problem"]["x"]
    return [ScaleCurriculum(), OffsetSearch(x), WindowSearch(x), TrajectoryRecorder(x)]


def trajectory(analysis: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps (K,), theta (K, num_images, 3)) recorded along a class cell's training, in step order."""
    rec = sorted(analysis["records"]["trajectory"], key=lambda r: r["step"])
    return torch.tensor([r["step"] for r in rec]), torch.stack([r["theta"] for r in rec])


def build(config) -> nn.Module:
    """The encoder cell: the CNN classifier. A class cell: a :class:`CoLocaliser` whose embedding CNN is
    loaded from ``config.encoder_dir`` (the encoder artifact, see :func:`use_dependencies`)."""
    if isinstance(config, ModelConfig):
        return build_model(config)
    model = CoLocaliser(config)
    if config.encoder_dir is not None:
        state = safe_torch_load(results_dir() / config.encoder_dir / "model.pt")  # an absolute dir stays as is
        model.encoder.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def rebuild(metrics: dict) -> nn.Module:
    d = metrics["model_config"]
    if metrics["cell"] == ENCODER_CELL:
        return build_model(ModelConfig.from_dict(d))
    return CoLocaliser(CoLocalisationConfig.from_dict(d))  # weights (encoder included) come from model.pt


def search_regression_loss(model: CoLocaliser, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean squared distance, in canvas pixels, between the windows' centres and those the search found
    (``model.search_centres``, image by image: the batch is the problem's images in their fixed order)."""
    x, _ = batch
    raw = model.st.localise(x)
    d = (model.centres(raw) - model.search_centres.to(raw)) * model.config.canvas / 2
    sq = d.pow(2).sum(1).mean()
    return sq, {"loss": sq.item(), "active": 0.0}  # no triplets in these steps


def loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy for the encoder; for the co-localisers :func:`triplet_hinge_loss`, or
    :func:`search_regression_loss` in the steps that learn the searched windows."""
    if isinstance(model, CoLocaliser):
        return search_regression_loss(model, batch) if model.regressing else triplet_hinge_loss(model, batch)
    return classification_loss(model, batch)


@torch.no_grad()
def analyse(model: nn.Module, test: dict, cell: Cell) -> dict:
    """Encoder: its test predictions. Co-localiser: final theta, IoU and success on the problem's images,
    and the true boxes (all CPU tensors); the trajectory is in the records (:func:`trajectory`)."""
    model.eval()
    dev = next(model.parameters()).device
    if not isinstance(model, CoLocaliser):
        pred = torch.cat([model(test["x"][i:i + 1000].to(dev)).argmax(1).cpu() for i in range(0, len(test["y"]), 1000)])
        model.train()
        return {"pred": pred.to(torch.uint8)}
    data = test["problem"]
    _, theta = model(data["x"].to(dev))
    theta = theta.float().cpu()
    scores = localisation_scores(theta, data["box"], model.config.canvas)
    x = data["x"].to(dev)
    losses = {f"loss_{name}": loss_at(model, x, th.to(dev)) for name, th in
              [("learned", theta), ("true", true_theta(data["box"], model.config.canvas)),
               ("identity", model.st.transform.identity().expand(len(x), 3))]}
    model.train()
    return {"theta": theta, "iou": scores["iou"], "box": data["box"].float(), "index": data["index"],
            "metrics": {"success": scores["success"], "mean_iou": scores["iou"].mean().item(),
                        "digit": model.config.digit, "variant": model.config.variant,
                        "encoder_dir": model.config.encoder_dir, **losses}}


COLOCALISATION = register(Experiment(EXPERIMENT, colocalisation_cells, PROFILES, make_data, build, rebuild, analyse,
                                     loss, callbacks=callbacks, use_dependencies=use_dependencies))

__all__ = ["COLOCALISATION", "CoLocalisationConfig", "CoLocaliser", "OffsetSearch", "RECORD_STEPS", "ScaleCurriculum",
           "TrajectoryRecorder", "WindowSearch", "best_common_shift", "callbacks", "cnn_embedding", "colocalisation_cells", "encoder_config",
           "hinge_triplets", "localisation_net", "localisation_scores", "loss_at", "offset_landscape",
           "pairwise_sq_distances", "predicted_boxes", "problem", "search_offsets", "search_regression_loss", "trajectory", "triplet_hinge_loss",
           "true_theta", "use_dependencies", "window_offsets", "window_search"]
