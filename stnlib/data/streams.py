"""Named random streams, and the base of every step-indexed batch source.

Every random draw of the data pipeline comes from a generator seeded by ``derive_seed(seed, stream, *keys)``:
the run's seed, a stream number that says what the draw is for, and its position (an epoch, a step, a chunk).
:data:`STREAMS` gives each purpose a name and a number, once: two purposes never share a number, so their
draws are independent for every seed. A new data source registers its streams with :func:`register_stream`
(the book's own sources too).

:class:`StepSource` holds what a step-indexed source needs: batch ``t`` belongs to epoch
``t // steps_per_epoch``, takes its examples from that epoch's permutation (a stream of its own) and draws
its distortions from a generator seeded by the step, so a batch never depends on the batches before it and
a resumed run sees exactly the same data.

Examples:
    >>> stream("mnist.permutation"), stream("addition.first")
    (1, 11)
    >>> g1, g2 = stream_generator(0, "mnist.distortion", 5), stream_generator(0, "mnist.distortion", 5)
    >>> torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    True
"""

from __future__ import annotations

import math

import torch

_MASK64 = (1 << 64) - 1

STREAMS: dict[str, int] = {}
"""Stream name -> number (see :func:`register_stream`)."""


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer ``keys`` with splitmix64, so (seed, stream, step) streams never collide.

    Examples:
        >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(1, 0)
        True
    """
    h = 0x9E3779B97F4A7C15
    for k in keys:
        z = ((h ^ (int(k) & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        h = z ^ (z >> 31)
    return h >> 1


def register_stream(name: str, number: int) -> int:
    """Give the purpose ``name`` the stream ``number``; registering the same pair again is a no-op.

    Raises:
        ValueError: the name is registered with another number, or the number is taken by another name.
    """
    number = int(number)
    if STREAMS.get(name, number) != number:
        raise ValueError(f"stream {name!r} is registered as {STREAMS[name]}, not {number}")
    taken = {n: k for k, n in STREAMS.items()}
    if taken.get(number, name) != name:
        raise ValueError(f"stream number {number} is taken by {taken[number]!r}; pick a free one for {name!r} "
                         f"(in use: {sorted(STREAMS.values())})")
    STREAMS[name] = number
    return number


def stream(name: str) -> int:
    """The number of the stream ``name``."""
    try:
        return STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown random stream {name!r}; registered: {', '.join(sorted(STREAMS))}") from None


def stream_seed(seed: int, name: str, *keys: int) -> int:
    """``derive_seed(seed, stream(name), *keys)``."""
    return derive_seed(int(seed), stream(name), *(int(k) for k in keys))


def stream_generator(seed: int, name: str, *keys: int) -> torch.Generator:
    """A CPU generator seeded by :func:`stream_seed`."""
    return torch.Generator(device="cpu").manual_seed(stream_seed(seed, name, *keys))


# The library's streams. Numbers are part of every committed result: never renumber one.
for _name, _number in {
    "mnist.permutation": 1, "mnist.distortion": 2, "mnist.test": 3,
    "addition.first": 11, "addition.second": 12, "addition.distortion": 13, "addition.partner": 14,
    "addition.test": 15,
    "colocalisation.images": 21, "colocalisation.crops": 22,
    "cub.permutation": 41, "cub.flip": 42,
    "clutter.permutation": 61, "clutter.placement": 62, "clutter.test": 63,
}.items():
    register_stream(_name, _number)


class StepSource:
    """Base of the step-indexed batch sources: ``num_examples``, ``batch_size``, ``seed``, ``steps_per_epoch``,
    epoch permutations and per-step generators from named streams.

    Subclasses implement ``batch(step)``; :meth:`epoch_indices` gives the examples of a step (the permutation
    of its epoch, cached for the current epoch) and :meth:`step_generator` the step's generator.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(num_examples) < 1:
            raise ValueError("the source holds no examples")
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = math.ceil(self.num_examples / self.batch_size)
        self._perm_cache: dict[str, tuple[int, torch.Tensor]] = {}

    def _check_step(self, step: int) -> int:
        if int(step) < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        return int(step)

    def epoch_indices(self, step: int, stream_name: str) -> torch.Tensor:
        """(B,) CPU int64 example indices of batch ``step``: its slice of its epoch's permutation, drawn from
        the stream ``stream_name`` keyed by the epoch (the last batch of an epoch holds the remainder)."""
        epoch, i = divmod(self._check_step(step), self.steps_per_epoch)
        cached = self._perm_cache.get(stream_name)
        if cached is None or cached[0] != epoch:
            perm = torch.randperm(self.num_examples, generator=stream_generator(self.seed, stream_name, epoch))
            cached = self._perm_cache[stream_name] = (epoch, perm)
        return cached[1][i * self.batch_size:(i + 1) * self.batch_size]

    def step_generator(self, step: int, stream_name: str) -> torch.Generator:
        """The generator of batch ``step``'s random draws in the stream ``stream_name``."""
        return stream_generator(self.seed, stream_name, self._check_step(step))


__all__ = ["STREAMS", "StepSource", "derive_seed", "register_stream", "stream", "stream_generator", "stream_seed"]
