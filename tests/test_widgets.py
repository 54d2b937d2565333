"""The Jupyter theta explorer: sliders and raw numbers stay in sync and every change redraws the figure."""

import pytest
import torch

from stnbook.widgets import ThetaExplorer, theta_from_controls
from stnlib.transforms import affine_from_params


@pytest.fixture
def digit():
    x = torch.zeros(1, 28, 28)
    x[0, 6:22, 12:16] = 1.0
    return x


def test_slider_moves_theta_raw_numbers_and_figure(digit):
    ex = ThetaExplorer(digit)
    first = ex.figure.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    torch.testing.assert_close(ex.theta, affine_from_params())
    ex.sliders["rotation_deg"].value = 90.0
    torch.testing.assert_close(ex.theta, affine_from_params(90.0))
    assert [r.value for r in ex.raw] == pytest.approx([0.0, -1.0, 0.0, 1.0, 0.0, 0.0], abs=1e-4)
    assert ex.figure.value != first


def test_raw_numbers_update_the_sliders(digit):
    ex = ThetaExplorer(digit)
    target = affine_from_params(30.0, 0.8, 1.2, 0.1, 0.2, -0.3)
    for r, v in zip(ex.raw, target.tolist()):
        r.value = v
    values = ex.values
    assert values["rotation_deg"] == pytest.approx(30.0, abs=0.01)
    assert values["scale_y"] == pytest.approx(1.2, abs=0.01) and values["ty"] == pytest.approx(-0.3, abs=0.01)


def test_describe_callback_and_other_families(digit):
    seen = []
    ex = ThetaExplorer(digit, "projective", describe=lambda th, out: seen.append(out.shape) or "ok")
    ex.sliders["p1"].value = 0.3
    assert seen[-1] == (1, 28, 28) and "ok" in ex.info.value
    assert theta_from_controls({"bend": 0.5}, "tps").shape == (32,)
    assert theta_from_controls({"scale_x": 0.5, "scale_y": 0.7}, "attention").tolist() == pytest.approx([0.6, 0, 0])
    with pytest.raises(ValueError, match="affine, attention, projective and tps"):
        theta_from_controls({}, "affine3d")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ThetaExplorer(torch.zeros(28, 28))
