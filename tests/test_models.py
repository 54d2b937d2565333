"""The paper's classifiers: sizes derived from the input, matched parameter budgets, identity start."""

import pytest
import torch

from stnlib.models import MIN_WIDTH, ModelConfig, build_model, default_budget
from stnlib.train import count_parameters


@pytest.mark.parametrize("size,pool", [((28, 28), 1), ((42, 42), 2), ((60, 60), 2), ((36, 44), 2)])
@pytest.mark.parametrize("arch", ["fcn", "cnn"])
@pytest.mark.parametrize("transform", [None, "affine", "projective", "tps"])
def test_models_run_at_several_sizes_and_match_the_budget(size, pool, arch, transform):
    budget = default_budget(size, width=32)
    m = build_model(ModelConfig(arch, transform, size, st_pool=pool if transform else 1, param_budget=budget))
    out = m(torch.rand(3, 1, *size))
    assert out.shape == (3, 10)
    if m.width > MIN_WIDTH:
        assert abs(count_parameters(m) - budget) / budget < 0.06, (count_parameters(m), budget)
    else:  # the localisation net alone exceeds the budget: the narrowest classifier, over budget
        assert count_parameters(m) > budget and transform is not None


def test_st_model_starts_as_the_plain_classifier_on_its_input():
    m = build_model(ModelConfig("cnn", "affine", (28, 28), width=16))
    x = torch.rand(4, 1, 28, 28)
    warped, theta = m.transform_input(x)
    torch.testing.assert_close(warped, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(theta, torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(4, 6))


def test_parallel_transformers_concatenate_channels():
    m = build_model(ModelConfig("fcn", "affine", (42, 42), in_channels=2, num_classes=19, num_transformers=2,
                                st_pool=2, width=64))
    warped, theta = m.transform_input(torch.rand(5, 2, 42, 42))
    assert warped.shape == (5, 4, 42, 42) and theta.shape == (5, 2, 6)
    assert m(torch.rand(5, 2, 42, 42)).shape == (5, 19)


def test_bad_input_shape_and_config_raise():
    m = build_model(ModelConfig("cnn", None, (28, 28), width=8))
    with pytest.raises(ValueError, match=r"expects input \(B, 1, 28, 28\)"):
        m(torch.rand(2, 1, 42, 42))
    with pytest.raises(ValueError, match="arch"):
        build_model(ModelConfig("rnn"))
    with pytest.raises(ValueError, match="at least 28x28"):
        build_model(ModelConfig("cnn", "affine", (12, 12), width=8))
