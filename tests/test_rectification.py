"""The rectification measure: implied rotation/scale of theta, and the fit against the applied distortion; and the
count of units that never fire."""

import pytest
import torch
from torch import nn

from stnlib import get_transform
from stnlib.analysis import implied_similarity, rectification, rotation_deg, scale_of, silent_units
from stnlib.data.distortions import distortion_matrix, sample_distortion


def similarity_theta(angle_deg: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    a = torch.deg2rad(angle_deg)
    c, s = scale * torch.cos(a), scale * torch.sin(a)
    return torch.stack([c, -s, 0 * c + 0.1, s, c, 0 * c - 0.2], 1)


def test_implied_rotation_and_scale_of_known_affine_thetas():
    angles, scales = torch.tensor([-170.0, -45, 0, 30, 89]), torch.tensor([0.5, 1.0, 0.8, 1.2, 0.7])
    theta = similarity_theta(angles, scales)
    torch.testing.assert_close(rotation_deg(theta), angles, atol=1e-4, rtol=0)
    torch.testing.assert_close(scale_of(theta), scales, atol=1e-5, rtol=0)
    sim = implied_similarity(theta)
    torch.testing.assert_close(sim["rotation_deg"], angles, atol=1e-4, rtol=0)
    torch.testing.assert_close(sim["scale"], scales, atol=1e-5, rtol=0)


def test_implied_similarity_is_family_independent():
    theta = similarity_theta(torch.tensor([25.0]), torch.tensor([0.9]))
    proj = torch.cat([theta, torch.zeros(1, 2)], 1)  # bottom row [0, 0, 1]: the same map
    a, p = implied_similarity(theta, "affine"), implied_similarity(proj, "projective")
    torch.testing.assert_close(a["rotation_deg"], p["rotation_deg"], atol=1e-4, rtol=0)
    ident = get_transform("tps").identity()[None]
    t = implied_similarity(ident, "tps")
    assert abs(float(t["rotation_deg"])) < 1e-4 and abs(float(t["scale"]) - 1) < 1e-5


def test_the_measure_recovers_the_true_inverse_of_the_R_distortion():
    # the canvas -> digit matrix of each R test distortion is what a perfect transformer would predict:
    # its implied rotation must follow the applied angle with slope magnitude 1 and |r| = 1
    params = sample_distortion("R", 500, torch.Generator().manual_seed(0))
    m = distortion_matrix("R", params)
    theta = m[:, :2].reshape(-1, 6).float()
    fit = rectification(params["angle_deg"], rotation_deg(theta))
    assert abs(abs(fit["slope"]) - 1) < 1e-3 and abs(fit["r"]) > 0.999
    # ... and a transformer that ignores the rotation scores a slope of 0
    still = rectification(params["angle_deg"], torch.zeros(500) + 0.3 * torch.randn(500))
    assert abs(still["slope"]) < 0.01


def test_rectification_refuses_mismatched_series():
    with pytest.raises(ValueError, match="equal-length"):
        rectification(torch.zeros(5), torch.zeros(4))


def test_silent_units_counts_channels_that_never_fire_across_batches():
    conv = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, -1.0, -1.0, 0.5]))
        conv.weight[2, 0, 1, 1] = 1.0  # channel 2 fires only where the input exceeds 1
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3), nn.ReLU()).train()
    x = torch.zeros(10, 1, 5, 5)
    x[7, 0, 2, 3] = 2.0  # one pixel of one image, in the third batch of 3
    out = silent_units(net, x, batch_size=3)
    assert out[0] == {"layer": "1", "units": 4, "silent": 1, "spatial": True}
    assert out[1]["layer"] == "4" and out[1]["units"] == 3 and not out[1]["spatial"]
    assert silent_units(net, x[:7])[0]["silent"] == 2  # without that image channel 2 never fires
    assert net.training  # the caller's mode is restored


def test_silent_units_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="no nn.ReLU"):
        silent_units(nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"batch of inputs \(N, \.\.\.\)"):
        silent_units(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.zeros(2))
    with pytest.raises(ValueError, match="batch_size"):
        silent_units(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.zeros(3, 2), batch_size=0)
