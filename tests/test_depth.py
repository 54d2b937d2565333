"""Transformers inside the CNN (paper Sec. 3.4): the models, the mapping of a feature-map box onto the input, and the
depth experiment in its smoke profile."""

import pytest
import torch

from stnbook.experiments import Profile, get_cells, load_cell, run_cell
from stnlib.models import count_parameters, default_budget
from stnlib.models_depth import SITES, DepthModelConfig, DepthSTClassifier, build_depth_model, map_to_frame_below

PLACEMENTS = [("input",), ("block1",), ("block2",), ("input", "block1"), ("block1", "block2"), SITES]


def images(n=3, size=(28, 28), seed=0):
    return torch.rand(n, 1, *size, generator=torch.Generator().manual_seed(seed))


def copy_trunk(src: DepthSTClassifier, dst: DepthSTClassifier) -> None:
    """Give ``dst`` the CNN weights of ``src`` (the trunk and the classifier; no transformer)."""
    own = {k: v for k, v in src.state_dict().items() if not k.startswith("st.")}
    missing, unexpected = dst.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("st.") for k in missing)


@pytest.mark.parametrize("size", [(32, 32), (42, 36)])
@pytest.mark.parametrize("sites", PLACEMENTS, ids=lambda s: "+".join(s))
def test_forward_backward_and_thetas_at_two_sizes(sites, size):
    m = DepthSTClassifier(DepthModelConfig(sites=sites, in_size=size), width=16)
    x = images(2, size)
    logits, thetas = m.forward_with_thetas(x)
    assert logits.shape == (2, 10) and list(thetas) == [s for s in SITES if s in sites]
    logits.sum().backward()
    loc = m.localisation_parameters()
    assert loc and all(p.grad is not None for p in loc)
    assert {id(p) for p in loc} == {id(p) for n, p in m.named_parameters() if n.startswith("st.")}
    with pytest.raises(ValueError, match="expects images"):
        m(images(2, (size[0] + 1, size[1])))


@pytest.mark.parametrize("sites", [("block1",), ("block2",), ("block1", "block2")], ids=lambda s: "+".join(s))
def test_feature_map_transformers_start_as_the_plain_cnn(sites):
    """At the identity, sampling a map at its own size returns it: the model is the plain CNN with its weights."""
    torch.manual_seed(0)
    plain = DepthSTClassifier(DepthModelConfig(in_size=(42, 42)), width=16)
    st = DepthSTClassifier(DepthModelConfig(sites=sites, in_size=(42, 42)), width=16)
    copy_trunk(plain, st)
    x = images(4, (42, 42))
    torch.testing.assert_close(st(x), plain(x), atol=1e-5, rtol=1e-5)
    for site in sites:  # and a transformer that is not at the identity changes the output
        with torch.no_grad():
            st.st[site].head.bias[2] += 0.3
    assert not torch.allclose(st(x), plain(x), atol=1e-4)


def test_input_transformer_starts_as_the_cnn_on_the_pooled_image():
    plain = DepthSTClassifier(DepthModelConfig(in_size=(21, 21)), width=16)
    st = DepthSTClassifier(DepthModelConfig(sites=("input",), in_size=(42, 42), input_pool=2), width=16)
    copy_trunk(plain, st)
    x = images(3, (42, 42))
    torch.testing.assert_close(st(x), plain(torch.nn.functional.avg_pool2d(x, 2)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(42, 42), (60, 60)])
@pytest.mark.parametrize("sites", [(), *PLACEMENTS[:4]], ids=lambda s: "+".join(s) or "cnn")
def test_every_placement_meets_the_table1_budget(sites, size):
    budget = default_budget(size, width=32)
    m = build_depth_model(DepthModelConfig(sites=sites, in_size=size, param_budget=budget))
    assert abs(count_parameters(m) - budget) / budget < 0.03
    if not sites:  # the plain model is the Table 1 CNN itself
        assert m.width == 32 and count_parameters(m) == budget


def test_pooling_maps_pixel_centres_to_their_windows():
    # a 2x2 max-pool window over pixels 2u, 2u + 1 is centred at 2u + 0.5; two pools compose to stride 4
    u = torch.tensor([[0.0, 3.0]])
    assert map_to_frame_below(u, 2).tolist() == [[0.5, 6.5]]
    torch.testing.assert_close(map_to_frame_below(map_to_frame_below(u, 2), 2), map_to_frame_below(u, 4))


def test_box_on_a_feature_map_maps_onto_the_input():
    m = DepthSTClassifier(DepthModelConfig(sites=("block1", "block2"), in_size=(40, 40)), width=16)
    ident = {s: m.st[s].transform.identity()[None] for s in m.st}
    # the identity on 20x20 (block 1) and 10x10 (block 2) maps of a 40x40 image covers the whole image
    for s in ("block1", "block2"):
        assert m.input_outline(ident, s)[0, :4].tolist() == [[-0.5, -0.5], [39.5, -0.5], [39.5, 39.5], [-0.5, 39.5]]
    # a half-scale box shifted right by 0.5 (normalised) on the block-1 map: map pixels 9.5 .. 19.5 (x) and
    # 4.5 .. 14.5 (y) -> input pixels 2u + 0.5
    half = torch.tensor([[0.5, 0.0, 0.5, 0.0, 0.5, 0.0]])
    box = m.input_outline({"block1": half, "block2": ident["block2"]}, "block1")[0]
    assert box[:, 0].min() == 19.5 and box[:, 0].max() == 39.5 and box[:, 1].min() == 9.5 and box[:, 1].max() == 29.5
    # block 2's identity box seen through that block-1 transformer is the block-1 box itself
    torch.testing.assert_close(m.input_outline({"block1": half, "block2": ident["block2"]}, "block2")[0], box)
    # a synthetic check that the box is where the map's content comes from: a bright square in the image shows up
    # in the block-1 transformer's output where the box says
    with torch.no_grad():
        m.block1[0].weight.zero_()
        m.block1[0].weight[:, :, 4, 4] = 1.0  # conv = the image itself (centre tap), bias 0
        m.block1[0].bias.zero_()
    x = torch.zeros(1, 1, 40, 40)
    x[:, :, 20:30, 30:40] = 1.0  # inside the box's lower-right quarter in the input
    with torch.no_grad():
        feature = m.block1(m.normalize(x))  # the ReLU takes the normalised background to 0
        m.st["block1"].head.bias.copy_(half[0])
        out, theta = m.st["block1"](feature)
    lit = (out[0, 0] > 0.5).nonzero().float()
    # output pixels of the 20x20 block-1 map that see the square, -> normalised -> through theta -> the input
    pix = torch.stack([lit[:, 1], lit[:, 0]], 1)
    src = m.input_outline({"block1": theta, "block2": ident["block2"]}, "block1")[0]
    x0, x1, y0, y1 = src[:, 0].min(), src[:, 0].max(), src[:, 1].min(), src[:, 1].max()
    on_input = torch.stack([x0 + (pix[:, 0] + 0.5) / 20 * (x1 - x0), y0 + (pix[:, 1] + 0.5) / 20 * (y1 - y0)], 1)
    assert len(lit) >= 80 and (on_input[:, 0] >= 29).all() and (on_input[:, 1] >= 19).all() and (on_input[:, 1] <= 31).all()


def test_config_round_trips_and_refuses_unknown_sites():
    cfg = DepthModelConfig(sites=("block1", "input"), in_size=(42, 42), param_budget=1000)
    assert cfg.sites == ("input", "block1") and DepthModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.name == "ST-CNN (input + block1)" and DepthModelConfig().name == "CNN"
    with pytest.raises(ValueError, match="sites"):
        DepthModelConfig(sites=("block3",))


def test_depth_cells_and_smoke_cell(tmp_path):
    cells = get_cells("depth")
    assert [c.id for c in cells][:5] == ["RTS-cnn", "RTS-st-input", "RTS-st-block1", "RTS-st-block2", "RTS-st-multi"]
    assert {c.task for c in cells} == {"RTS", "TC"} and len(cells) == 10
    quick = Profile("smoke", steps=20, batch_size=32, lr=2e-3, train_size=2_000, test_size=200)
    cell = get_cells("depth", ["RTS-st-multi"])[0]
    m = run_cell(cell, quick, root=tmp_path, progress=False)
    assert m["test_error"] is not None and m["steps"] == 20
    cost = m["step_cost"]
    assert cost["batch_size"] == 32 and cost["step_s"] > 0 and cost["relative"] == cost["step_s"] / cost["cnn_step_s"]
    assert set(m["sites"]) == {"input", "block1"} and all(0 < v["scale"] for v in m["sites"].values())
    metrics, model, analysis = load_cell(cell, "smoke", root=tmp_path)
    assert set(analysis["thetas"]) == {"input", "block1"} and analysis["thetas"]["block1"].shape == (200, 6)
    assert analysis["pred"].shape == (200,) and metrics["width"] == model.width
