"""Cluttered MNIST at any canvas (RAM's protocols): the generator, the models, the experiment and its report."""

from __future__ import annotations

import pytest
import torch

from stnbook.experiments import Profile, get_cells, load_cell, run_cell
from stnlib.data.cluttered import (
    CLUTTER_PROTOCOLS,
    ClutteredMNIST,
    ClutterSpec,
    apply_clutter,
    clutter_box,
    clutter_spec,
    cluttered_test_set,
    sample_clutter,
)
from stnlib.data.distortions import apply_distortion, sample_distortion
from stnlib.models import build_model


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blank_digits(n):
    """Digits with no ink: every bright pixel of a canvas is then clutter."""
    return torch.zeros(n, 1, 28, 28)


# ---- the generator --------------------------------------------------------------------------------------------------

def test_protocols_are_rams_and_the_papers():
    assert CLUTTER_PROTOCOLS["ram60"] == ClutterSpec(60, 4, 8)
    assert CLUTTER_PROTOCOLS["ram100"] == ClutterSpec(100, 8, 8)
    assert CLUTTER_PROTOCOLS["tc"] == ClutterSpec(60, 6, 6)
    assert clutter_spec(ClutterSpec(84, 16, 6)).canvas == 84


@pytest.mark.parametrize("protocol", ["ram60", "ram100"])
def test_shapes_counts_and_sizes_of_the_pieces(protocol):
    spec = CLUTTER_PROTOCOLS[protocol]
    n = 6
    p = sample_clutter(protocol, n, gen())
    assert p["clutter_index"].shape == (n, spec.clutter_count) and p["clutter_pos"].shape == (n, spec.clutter_count, 2)
    assert (p["clutter_size"] == spec.clutter_size).all() and (p["canvas"] == spec.canvas).all()
    assert p["clutter_pos"].max() <= spec.canvas - spec.clutter_size and p["clutter_crop"].max() <= 28 - spec.clutter_size
    # pieces of solid ink on blank digits: each piece is exactly a k x k square at its position
    pool = torch.ones(n, 1, 28, 28)
    one = {**p, **{k: p[k][:, :1] for k in ("clutter_index", "clutter_crop", "clutter_pos")}}
    out = apply_clutter(blank_digits(n), one, clutter_images=pool)
    assert out.shape == (n, 1, spec.canvas, spec.canvas)
    k = spec.clutter_size
    for i in range(n):
        x, y = p["clutter_pos"][i, 0].tolist()
        assert out[i, 0].sum() == k * k and (out[i, 0, y:y + k, x:x + k] == 1).all()
    full = apply_clutter(blank_digits(n), p, clutter_images=pool)
    area = (full[:, 0] > 0).flatten(1).sum(1)
    assert (area <= spec.clutter_count * k * k).all() and (area >= k * k).all()


def test_the_digit_box_is_where_the_digit_is_pasted():
    n = 5
    p = sample_clutter(ClutterSpec(100, 0, 8), n, gen(3))
    digits = torch.zeros(n, 1, 28, 28)
    digits[:, :, 0, 0] = 1  # a mark at the frame's top-left pixel
    digits[:, :, 27, 27] = 0.5  # and at its bottom-right pixel
    out = apply_clutter(digits, p)
    box = clutter_box(p)
    assert torch.allclose(box[:, 2:] - box[:, :2], torch.full((n, 2), 28.0, dtype=torch.float64))
    for i in range(n):
        x0, y0 = (box[i, :2] + 0.5).round().long().tolist()
        # the frame pasted at the box's place, unblurred (integer placement; bilinear weights round to 1e-6)
        torch.testing.assert_close(out[i, :, y0:y0 + 28, x0:x0 + 28], digits[i], rtol=0, atol=1e-5)
        assert float(out[i, 0].sum()) == pytest.approx(1.5, abs=1e-4)  # and nothing else: no clutter
    assert box[:, :2].min() >= -0.5 and box[:, 2:].max() <= 99.5


def test_seeding_the_test_set_and_the_training_batches():
    imgs = (torch.rand(40, 28, 28) * 255).to(torch.uint8)
    labels = torch.arange(40) % 10
    a, b = cluttered_test_set("ram100", imgs, labels, n=12), cluttered_test_set("ram100", imgs, labels, n=12)
    assert torch.equal(a["x"], b["x"]) and a["x"].shape == (12, 1, 100, 100) and a["box"].shape == (12, 4)
    assert not torch.equal(a["x"], cluttered_test_set("ram100", imgs, labels, n=12, seed=7)["x"])
    # the first canvases do not depend on how many are made
    assert torch.equal(cluttered_test_set("ram100", imgs, labels, n=5)["x"], a["x"][:5])
    # clutter never comes from the canvas's own digit
    assert (a["params"]["clutter_index"] != torch.arange(12)[:, None]).all()
    data = ClutteredMNIST("ram60", imgs, labels, batch_size=8, seed=1)
    again = ClutteredMNIST("ram60", imgs, labels, batch_size=8, seed=1)
    assert torch.equal(data.batch(7)[0], again.batch(7)[0]) and not torch.equal(data.batch(7)[0], data.batch(8)[0])
    assert data.batch(0)[0].shape == (8, 1, 60, 60)
    idx = data.indices(3)
    assert (data.params(3)["clutter_index"] != idx[:, None]).all()


def test_bad_sizes_raise_clear_errors():
    with pytest.raises(ValueError, match="canvas must be at least 28"):
        ClutterSpec(27, 4, 8)
    with pytest.raises(ValueError, match="clutter_size must be 1 to 28"):
        ClutterSpec(60, 4, 29)
    with pytest.raises(ValueError, match="clutter_size must be 1 to 28"):
        ClutterSpec(60, 4, 0)
    with pytest.raises(ValueError, match="clutter_count"):
        ClutterSpec(60, -1, 8)
    with pytest.raises(ValueError, match="unknown clutter protocol"):
        clutter_spec("ram200")
    with pytest.raises(ValueError, match="clutter_size must be 1 to 28"):
        sample_distortion("TC", 2, gen(), clutter_size=30)
    with pytest.raises(ValueError, match="TC"):
        sample_distortion("RTS", 2, gen(), clutter_size=8)


def test_tc_keeps_the_papers_six_pixel_pieces_by_default():
    p = sample_distortion("TC", 3, gen())
    assert (p["clutter_size"] == 6).all()
    legacy = {k: v for k, v in p.items() if k != "clutter_size"}  # params recorded before clutter_size existed
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(apply_distortion("TC", x, p), apply_distortion("TC", x, legacy))


# ---- the models -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", [c.id for c in get_cells("clutter")])
def test_models_forward_backward_on_their_canvas(cell):
    c = get_cells("clutter", [cell])[0]
    torch.manual_seed(0)
    model = build_model(c.model)
    s = CLUTTER_PROTOCOLS[c.task].canvas
    x = torch.rand(3, 1, s, s)
    out = model(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    warped, theta = model.transform_input(x)
    if c.model.transform == "attention":
        assert warped.shape == (3, 1, 32, 32) and theta.shape == (3, 3)
        assert torch.allclose(theta, torch.tensor([[1.0, 0.0, 0.0]]).expand(3, 3))  # starts at the identity
    # every model of a canvas has about the plain CNN's parameter count
    assert abs(sum(p.numel() for p in model.parameters()) - c.model.param_budget) < 0.03 * c.model.param_budget


def test_box_measures_known_answers():
    from stnbook.clutter.experiment import box_measures, sampled_boxes

    # attention (s, tx, ty) = (0.28, 0, 0) on a 100 x 100 canvas samples the central 28 x 28 box
    box = sampled_boxes(torch.tensor([[0.28, 0.0, 0.0]]), "attention", 100)
    torch.testing.assert_close(box, torch.tensor([[35.5, 35.5, 63.5, 63.5]], dtype=torch.float64))
    m = box_measures(box, box.clone())
    assert float(m["iou"][0]) == pytest.approx(1.0) and float(m["covered"][0]) == pytest.approx(1.0)
    far = box_measures(box, box + 50)
    assert float(far["iou"][0]) == 0 and float(far["covered"][0]) == 0


# ---- the experiment -------------------------------------------------------------------------------------------------

def test_the_experiment_trains_and_measures_in_a_tmp_root(tmp_path):
    from stnbook.clutter import report
    from stnbook.clutter.experiment import PROFILES

    assert [c.id for c in get_cells("clutter")] == report.CELLS
    assert {"smoke", "full"} <= set(PROFILES) and PROFILES["full"].test_size == 10_000
    # the 100x100 transformers learn at a tenth of the rate (they diverge at the full rate); the rest at the full rate
    from stnbook.experiments import train_config
    rates = {c.id: train_config(PROFILES["full"], 0, "cpu", 1, False, c.id).loc_lr_mult for c in get_cells("clutter")}
    assert rates == {c: 0.1 if c.startswith("ram100-st-") else 1.0 for c in report.CELLS}
    tiny = Profile("tiny", steps=3, batch_size=8, lr=1e-3, train_size=200, test_size=30)
    results = {}
    for cid in ("ram100-cnn", "ram100-st-cnn-attention"):
        cell = get_cells("clutter", [cid])[0]
        results[cid] = run_cell(cell, tiny, seed=0, device="cpu", threads=1, progress=False, root=tmp_path)
    m = results["ram100-st-cnn-attention"]
    assert 0 <= m["test_error"] <= 100 and m["test_size"] == 30
    assert 0 <= m["box"]["iou"] <= 1 and 0 <= m["box"]["covered"] <= 1 and "box" not in results["ram100-cnn"]
    # near the identity the box is (about) the whole canvas: it covers the digit's whole frame
    assert m["box"]["covered"] > 0.9 and m["box"]["side_px"] > 80
    _, model, analysis = load_cell(get_cells("clutter", ["ram100-st-cnn-attention"])[0], "tiny", root=tmp_path)
    assert analysis["theta"].shape == (30, 3) and analysis["pred"].shape == (30,) and analysis["iou"].shape == (30,)
    assert model.config.st_out_size == (32, 32)
    numbers = report.key_numbers(results)
    assert numbers["ram100_cnn_error"] == f"{results['ram100-cnn']['test_error']:.2f}"
    assert numbers["ram60_cnn_error"] == "n/a" and numbers["ram100_st_cnn_attention_iou"] == f"{m['box']['iou']:.2f}"
    assert numbers["ram100_ram"] == "10.83" and numbers["ram60_vs_ram"] == "n/a"
    assert numbers["ram100_vs_ram"] == ("below" if min(r["test_error"] for r in results.values()) < 10.83 else "above")
    assert numbers["ram100_attention_step"] in ("faster", "slower") and numbers["ram60_attention_step"] == "n/a"
    assert all(isinstance(v, str) and 0 < len(v) <= 60 for v in numbers.values())  # numbers and words, no sentences
    assert "--cells ram60-cnn" in report.missing_note(results, "full")
    assert "5.23" in report.results_html(results) and "10.83" in report.results_html({})
