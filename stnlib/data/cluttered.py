"""Cluttered MNIST at any canvas size, with the recurrent attention model's protocols by name (RAM, Mnih et al. 2014).

A protocol (:class:`ClutterSpec`) is the canvas side, the number of clutter pieces and their side; the pixels are
made by the translated-cluttered generator of :mod:`stnlib.data.distortions` (kind "TC"), so every convention of
that module holds: the 28 x 28 digit, neither rotated nor scaled, at an integer position uniform over all places
where its whole frame fits on the canvas; each clutter piece a square crop at a uniform integer position of a
uniformly drawn *other* digit, pasted at a uniform integer position where it fits; everything max-combined.

Protocols (:data:`CLUTTER_PROTOCOLS`):

* ``"tc"``: the STN paper's TC (A.4): 60 x 60, six 6 x 6 pieces.
* ``"ram60"``: RAM's 60 x 60 cluttered translated MNIST: four 8 x 8 pieces.
* ``"ram100"``: RAM's 100 x 100 cluttered translated MNIST: eight 8 x 8 pieces.

Where ours differs from DeepMind's released generator (``mnist_cluttered.lua`` in google-deepmind/mnist-cluttered,
whose README makes 100 x 100 with 8 pieces of 8 x 8): there, pieces and digit are *added* and clipped at 1 where we
take the maximum (the same image wherever ink does not overlap; brighter where it does); its pieces are cut from
any image of the set, possibly the digit itself, where ours never come from the digit; and its clutter of the test
set is cut from whatever set the generator loads (we cut test clutter from test digits, training clutter from
training digits). The RAM paper's own text says only "8 x 8 sub-patches of other random MNIST digits"; it does
not say whether its test set was fixed.

Randomness comes from named streams (:mod:`stnlib.data.streams`): ``"clutter.permutation"`` (the epoch's order of
training digits), ``"clutter.placement"`` (each step's positions and pieces) and ``"clutter.test"`` (the fixed test
set, keyed by the protocol's numbers), so these sets never share draws with Table 1's TC.

Examples:
    >>> spec = clutter_spec("ram100")
    >>> spec.canvas, spec.clutter_count, spec.clutter_size
    (100, 8, 8)
    >>> x = torch.rand(3, 1, 28, 28)
    >>> p = sample_clutter("ram60", 3, torch.Generator().manual_seed(0))
    >>> apply_clutter(x, p).shape
    torch.Size([3, 1, 60, 60])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .distortions import (
    _TEST_CHUNK,
    DIGIT_SIZE,
    SPLIT_SEEDS,
    apply_distortion,
    as_image_batch,
    digit_box,
    init_step_source,
    sample_distortion,
)
from .streams import StepSource, stream_generator


@dataclass(frozen=True)
class ClutterSpec:
    """A cluttered-MNIST protocol: ``canvas`` side (pixels, at least 28), ``clutter_count`` pieces of side
    ``clutter_size`` (1 to 28: a crop of a 28 x 28 digit).

    Examples:
        >>> ClutterSpec(canvas=20)
        Traceback (most recent call last):
        ...
        ValueError: canvas must be at least 28 (the digit's frame), got 20
    """

    canvas: int = 60
    clutter_count: int = 6
    clutter_size: int = 6

    def __post_init__(self):
        if int(self.canvas) < DIGIT_SIZE:
            raise ValueError(f"canvas must be at least {DIGIT_SIZE} (the digit's frame), got {self.canvas}")
        if int(self.clutter_count) < 0:
            raise ValueError(f"clutter_count must be non-negative, got {self.clutter_count}")
        if not 1 <= int(self.clutter_size) <= DIGIT_SIZE:
            raise ValueError(f"clutter_size must be 1 to {DIGIT_SIZE} (a crop of a digit), got {self.clutter_size}")


CLUTTER_PROTOCOLS: dict[str, ClutterSpec] = {
    "tc": ClutterSpec(60, 6, 6),
    "ram60": ClutterSpec(60, 4, 8),
    "ram100": ClutterSpec(100, 8, 8),
}
"""Protocols by name (see the module docstring)."""


def clutter_spec(protocol: str | ClutterSpec) -> ClutterSpec:
    """The :class:`ClutterSpec` of a protocol name (or the spec itself)."""
    if isinstance(protocol, ClutterSpec):
        return protocol
    if protocol not in CLUTTER_PROTOCOLS:
        raise ValueError(f"unknown clutter protocol {protocol!r}; available: {', '.join(CLUTTER_PROTOCOLS)}")
    return CLUTTER_PROTOCOLS[protocol]


def sample_clutter(protocol: str | ClutterSpec, n: int, generator: torch.Generator, *, pool_size: int | None = None,
                   digit_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Draw the placement and clutter of ``n`` canvases; :func:`~stnlib.data.distortions.sample_distortion` ("TC")
    with the protocol's canvas, count and piece size (the same keys, the same order of draws).

    Args:
        protocol: a name of :data:`CLUTTER_PROTOCOLS` or a :class:`ClutterSpec`.
        n: number of canvases.
        generator: the source of randomness (a CPU generator gives the same numbers on every machine).
        pool_size, digit_index: the digits clutter is cut from and each canvas's own digit in that pool
            (see ``sample_distortion``); default: the batch itself, never a digit's own image.
    """
    spec = clutter_spec(protocol)
    return sample_distortion("TC", n, generator, canvas=spec.canvas, clutter=spec.clutter_count,
                             clutter_size=spec.clutter_size, pool_size=pool_size, digit_index=digit_index)


def apply_clutter(images: torch.Tensor, params: dict[str, torch.Tensor],
                  clutter_images: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1, S, S) canvases from (N, 1, 28, 28) float digits in [0, 1] and :func:`sample_clutter`'s parameters;
    deterministic, on ``images``' device. ``clutter_images``: the (P, 1, 28, 28) pool (float or uint8) the
    parameters index; default ``images``."""
    return apply_distortion("TC", images, params, clutter_images=clutter_images)


def clutter_box(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 4) float64 box (x0, y0, x1, y1) of each digit's 28 x 28 frame, in canvas pixels (pixel centres at
    integers, so the frame at the top-left corner is (-0.5, -0.5, 27.5, 27.5)).

    Examples:
        >>> p = sample_clutter("ram100", 2, torch.Generator().manual_seed(0))
        >>> box = clutter_box(p)
        >>> torch.allclose(box[:, 2:] - box[:, :2], torch.full((2, 2), 28.0, dtype=torch.float64))
        True
    """
    return digit_box("TC", params)


class ClutteredMNIST(StepSource):
    """Training canvases of one protocol made on the fly, indexed by step (a resumed run sees the same batches).

    Step ``t`` takes its digits from epoch ``t // steps_per_epoch``'s permutation (stream ``"clutter.permutation"``)
    and its placement and clutter from ``"clutter.placement"`` keyed by ``t``; clutter is cut from any other
    training digit. The digits are moved to ``device`` once, as given (e.g. uint8).

    Examples:
        >>> data = ClutteredMNIST("ram100", torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), 4, seed=0)
        >>> data.steps_per_epoch, tuple(data.batch(2)[0].shape)
        (3, (2, 1, 100, 100))
    """

    def __init__(self, protocol: str | ClutterSpec, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 seed: int, device: str | torch.device = "cpu"):
        self.spec = clutter_spec(protocol)
        init_step_source(self, images, labels, batch_size, seed, device)

    def indices(self, step: int) -> torch.Tensor:
        """(B,) CPU int64 training-set indices of batch ``step``."""
        return self.epoch_indices(step, "clutter.permutation")

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """The placement and clutter (CPU) of batch ``step``."""
        idx = self.indices(step)
        g = self.step_generator(step, "clutter.placement")
        return sample_clutter(self.spec, len(idx), g, pool_size=self.num_examples, digit_index=idx)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of step ``step``: x (B, 1, S, S) float in [0, 1], y (B,), on ``device``."""
        idx = self.indices(step)
        dev_idx = idx.to(self.device)
        x = apply_clutter(as_image_batch(self.images[dev_idx]), self.params(step), clutter_images=self.images)
        return x, self.labels[dev_idx]


def cluttered_test_set(protocol: str | ClutterSpec, images: torch.Tensor, labels: torch.Tensor,
                       seed: int = SPLIT_SEEDS["test"], n: int | None = None) -> dict:
    """The fixed test set of a protocol: the first ``n`` digits (all by default) on canvases drawn from the stream
    ``"clutter.test"`` keyed by the protocol's (canvas, count, size) and the chunk of 1024 canvases, clutter cut
    from any other digit of ``images`` (all of them, also when ``n`` is smaller). The same arguments give
    bit-identical tensors, and canvas i is the same whatever ``n`` (so a figure can show the first canvases).

    Returns:
        dict with "x" (n, 1, S, S) float32, "y" (n,), "params" (:func:`sample_clutter`), "box" (n, 4) the digit
        frames (:func:`clutter_box`), "spec" (the :class:`ClutterSpec`) and "seed".
    """
    spec = clutter_spec(protocol)
    x_all = as_image_batch(images).cpu()
    if labels.shape[0] != x_all.shape[0]:
        raise ValueError(f"labels must have length {x_all.shape[0]}, got {labels.shape[0]}")
    count = x_all.shape[0] if n is None else min(int(n), x_all.shape[0])
    chunks, parts = [], []
    for start in range(0, count, _TEST_CHUNK):  # a whole chunk drawn every time: canvas i never depends on n
        g = stream_generator(seed, "clutter.test", spec.canvas, spec.clutter_count, spec.clutter_size, start)
        stop = min(start + _TEST_CHUNK, count)
        full = sample_clutter(spec, _TEST_CHUNK, g, pool_size=x_all.shape[0],
                              digit_index=torch.arange(start, start + _TEST_CHUNK))
        part = {k: v[:stop - start] for k, v in full.items()}
        chunks.append(apply_clutter(x_all[start:stop], part, clutter_images=x_all))
        parts.append(part)
    params = {k: torch.cat([q[k] for q in parts]) for k in parts[0]} if parts else \
        sample_clutter(spec, 0, torch.Generator(), pool_size=max(x_all.shape[0], 2))
    x = torch.cat(chunks) if chunks else x_all.new_zeros(0, 1, spec.canvas, spec.canvas)
    return {"x": x, "y": labels[:count].cpu().clone(), "params": params, "box": clutter_box(params), "spec": spec,
            "seed": int(seed)}


__all__ = ["CLUTTER_PROTOCOLS", "ClutterSpec", "ClutteredMNIST", "apply_clutter", "clutter_box", "clutter_spec",
           "cluttered_test_set", "sample_clutter"]
