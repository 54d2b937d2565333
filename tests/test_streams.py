"""Named random streams: one number per purpose, and sources that draw exactly what they always drew."""

from __future__ import annotations

import pytest
import torch

from stnlib.data.pairs import AdditionMNIST
from stnlib.data.streams import STREAMS, StepSource, derive_seed, register_stream, stream, stream_generator


def test_every_stream_name_has_its_own_number():
    from stnbook.experiments import load_all

    load_all()  # the book's experiments register their own streams (birds) on import
    numbers = list(STREAMS.values())
    assert len(numbers) == len(set(numbers)), {n: [k for k, v in STREAMS.items() if v == n] for n in numbers
                                               if numbers.count(n) > 1}
    assert {"mnist.permutation", "addition.first", "colocalisation.crops", "birds.train"} <= set(STREAMS)


def test_register_refuses_a_taken_number_or_a_renamed_stream():
    assert register_stream("mnist.permutation", 1) == 1  # the same pair again: fine
    with pytest.raises(ValueError, match="taken by 'mnist.permutation'"):
        register_stream("something.new", 1)
    with pytest.raises(ValueError, match="registered as 1"):
        register_stream("mnist.permutation", 999)
    with pytest.raises(KeyError, match="unknown random stream 'nope'"):
        stream("nope")


def test_step_source_visits_every_example_once_per_epoch():
    src = StepSource(num_examples=10, batch_size=4, seed=3)
    assert src.steps_per_epoch == 3
    for epoch in range(2):
        seen = torch.cat([src.epoch_indices(epoch * 3 + i, "mnist.permutation") for i in range(3)])
        assert sorted(seen.tolist()) == list(range(10))
    assert not torch.equal(src.epoch_indices(0, "addition.first"), src.epoch_indices(0, "addition.second"))
    with pytest.raises(ValueError, match="non-negative"):
        src.epoch_indices(-1, "mnist.permutation")


def test_derive_seed_is_pinned():
    """Every committed artifact was drawn from these seeds: the mixing function must never change."""
    assert derive_seed(0, 1) == 3364290834513671632
    assert derive_seed(5, 11, 0) == 5572545492540393242
    assert derive_seed(1234, 3, 0) == 2656858601425742850


def test_the_fixed_addition_test_set_is_pinned():
    """The first pairs of the addition test set every committed addition artifact was scored on."""
    from stnbook.addition.experiment import addition_test_pairs

    t = addition_test_pairs(5)
    assert t["index"].tolist() == [[0, 5472], [1, 4571], [2, 9099], [3, 9467], [4, 9702]]
    assert t["y"].tolist() == [10, 8, 5, 9, 9]


def test_sources_draw_what_their_committed_results_were_made_with():
    """The registry renamed the streams, not the draws: the same (seed, number, key) seeds as before."""
    images, labels = torch.randint(0, 255, (50, 28, 28), dtype=torch.uint8), torch.arange(50) % 10
    data = AdditionMNIST(images, labels, batch_size=8, seed=5)
    epoch, i = divmod(9, data.steps_per_epoch)
    perm_a = torch.randperm(50, generator=torch.Generator().manual_seed(derive_seed(5, 11, epoch)))
    perm_b = torch.randperm(50, generator=torch.Generator().manual_seed(derive_seed(5, 12, epoch)))
    a, b = data.indices(9)
    assert torch.equal(a, perm_a[i * 8:(i + 1) * 8]) and torch.equal(b, perm_b[i * 8:(i + 1) * 8])
    g = stream_generator(5, "addition.distortion", 9)
    assert torch.equal(torch.rand(4, generator=g),
                       torch.rand(4, generator=torch.Generator().manual_seed(derive_seed(5, 13, 9))))
