"""What the chapters teach stays true: the anatomy chapter's 25-line spatial transformer is stnlib's module,
the Jacobian figure carries its colour bars, and test screenshots stay out of the published site."""

from __future__ import annotations

import copy
import json

import matplotlib.pyplot as plt
import pytest
import torch
from chapters import ROOT
from torch import nn

import stnlib
from stnbook.figures import plot_jacobian

ANATOMY = ROOT / "book" / "anatomy.ipynb"
MARKER = "# minimal-spatial-transformer"


def minimal_cell_source() -> str:
    """The source of the anatomy chapter's code cell that starts with :data:`MARKER`."""
    cells = json.loads(ANATOMY.read_text())["cells"]
    found = [src for c in cells if c["cell_type"] == "code" and (src := "".join(c["source"])).lstrip().startswith(MARKER)]
    assert len(found) == 1, f"{ANATOMY.name} must have exactly one code cell starting with {MARKER!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def minimal_class():
    source = minimal_cell_source()
    assert "stnlib" not in source and "stnbook" not in source, "the minimal cell is plain PyTorch: no book imports"
    namespace: dict = {}
    exec(compile(source, f"{ANATOMY.name}:{MARKER}", "exec"), namespace)
    return namespace["MinimalSpatialTransformer"]


def test_minimal_cell_is_short_and_starts_at_the_identity(minimal_class):
    assert len(minimal_cell_source().strip().splitlines()) <= 30
    mini = minimal_class(nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 16, 10), nn.ReLU()), 10)
    x = torch.rand(2, 3, 12, 16)
    out, theta = mini(x)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0, 0, 1, 0]]).expand(2, 6))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 20, 36)])
def test_minimal_cell_equals_stnlib_spatial_transformer(minimal_class, shape):
    """Random theta (random regression weights and bias, so theta differs per image) on random images: the chapter's
    module and stnlib.SpatialTransformer with the same weights give the same output, theta and gradients.

    In float64: the head's gradients are sums over every output pixel (a few hundred in size), and in float32 the two
    modules' different summation orders alone move them by about 1e-3, more than any tolerance that would still
    catch a wrong formula; in float64 they agree to about 1e-12."""
    gen = torch.Generator().manual_seed(sum(shape))
    b, c, h, w = shape
    with torch.random.fork_rng(devices=[]):  # the localisation layer's initial weights, independent of other tests
        torch.manual_seed(sum(shape))
        loc_net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.Tanh()).double()
    mini = minimal_class(loc_net, 16).double()
    with torch.no_grad():
        mini.head.weight.copy_(0.05 * torch.randn(6, 16, generator=gen))
        mini.head.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]) + 0.4 * torch.randn(6, generator=gen))
    st = stnlib.SpatialTransformer(copy.deepcopy(loc_net), "affine").double()
    st.load_state_dict(mini.state_dict())
    x = torch.rand(shape, generator=gen, dtype=torch.float64)

    out_mini, theta_mini = mini(x)
    out_st, theta_st = st(x)
    assert not torch.allclose(theta_mini[0], theta_mini[1]), "theta should differ per image"
    torch.testing.assert_close(theta_mini, theta_st)
    torch.testing.assert_close(out_mini, out_st)
    assert out_st.abs().max() > 0

    weights = torch.randn(out_st.shape, generator=gen, dtype=torch.float64)
    (out_mini * weights).sum().backward()
    (out_st * weights).sum().backward()
    for (name, p_mini), p_st in zip(mini.named_parameters(), st.parameters()):
        assert p_st.grad.dtype == torch.float64 and p_st.grad.abs().max() > 0, name
        torch.testing.assert_close(p_mini.grad, p_st.grad, atol=1e-9, rtol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("p, ncols, shared", [(6, 3, False), (5, 3, True), (3, 5, False)])
def test_plot_jacobian_has_one_symmetric_colour_bar_per_panel(p, ncols, shared):
    jac = torch.randn(p, 1, 10, 10)
    fig = plot_jacobian(jac, [f"t{k}" for k in range(p)], ncols=ncols, shared=shared)
    try:
        panels = [ax for ax in fig.axes if ax.images]
        bars = [ax for ax in fig.axes if not ax.images]
        assert len(panels) == p and len(bars) == p, f"{len(panels)} panels and {len(bars)} other axes for {p} images"
        for k, ax in enumerate(panels):
            im = ax.images[0]
            assert im.colorbar is not None and im.colorbar.ax in bars, f"panel {k} has no colour bar"
            vmin, vmax = im.get_clim()
            assert vmin == pytest.approx(-vmax) and vmax > 0, "the scale is symmetric about zero"
            expected = float(jac.abs().max() if shared else jac[k].abs().max())
            assert vmax == pytest.approx(expected)
            assert im.get_cmap().name == "RdBu_r"
    finally:
        plt.close(fig)


def test_browser_screenshots_stay_outside_the_published_html():
    test_browser = pytest.importorskip("test_browser")
    html = (ROOT / "_build" / "html").resolve()
    shots = test_browser.screenshot_dir().resolve()
    assert shots == test_browser.SCREENSHOTS.resolve()
    assert html != shots and html not in shots.parents, f"screenshots go to {shots}, inside the published {html}"
    assert not (html / "screenshots").exists(), "a screenshots folder is left in the published _build/html"
