"""The birds experiment: the synthetic fine-grained data, the parallel attention ST-CNN, its loss and artifacts."""

import dataclasses

import pytest
import torch

import stnbook.birds.experiment as birds_exp
from stnbook.birds.data import (
    BODY_COLOURS,
    HEAD_COLOURS,
    PartsBatches,
    PartsSpec,
    crop_contains,
    low_res,
    make_parts_batch,
    part_geometry,
    part_masks,
    parts_test_set,
    render_parts,
    sample_parts,
    tiles,
)
from stnbook.birds.model import (
    BirdClassifier,
    BirdsConfig,
    birds_loss,
    step_time_benchmark,
    tiling_init,
    torchvision_backbone,
)
from stnbook.experiments import Profile, get_cells, load_cell, run_cell

SPECS = [PartsSpec(size=48), PartsSpec()]


# ---- data -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SPECS, ids=["48px", "96px"])
def test_batches_depend_only_on_seed_and_step(spec):
    a, b = PartsBatches(spec, 8, seed=0), PartsBatches(spec, 8, seed=1)
    x, y, parts = a.batch(5)
    assert x.shape == (8, 3, spec.size, spec.size) and x.dtype == torch.uint8
    assert torch.equal(x, a.batch(5)[0]) and torch.equal(parts, a.batch(5)[2])
    assert not torch.equal(x, a.batch(6)[0]) and not torch.equal(x, b.batch(5)[0])
    assert y.max() < spec.num_classes and parts.abs().max() < 1


def test_test_set_is_fixed_and_shares_complete_chunks():
    spec = PartsSpec(size=48)
    small, big = parts_test_set(spec, 256), parts_test_set(spec, 300)
    assert torch.equal(small["x"], big["x"][:256]) and torch.equal(small["parts"], big["parts"][:256])
    assert torch.equal(big["x"], parts_test_set(spec, 300)["x"])
    assert torch.equal(big["y"], big["head_attr"] * spec.num_attributes + big["body_attr"])
    assert not torch.equal(big["x"][:10], PartsBatches(spec, 10, seed=0).batch(0)[0])


def test_every_texture_has_the_same_block_mean():
    t = tiles(PartsSpec(num_attributes=6))
    assert t.shape == (6, 3, 3) and t.sum((1, 2)).eq(3).all()
    assert len({tuple(x.flatten().tolist()) for x in t}) == 6


@pytest.mark.parametrize("spec", SPECS, ids=["48px", "96px"])
def test_ground_truth_parts_wear_their_textures(spec):
    g = torch.Generator().manual_seed(3)
    params = sample_parts(spec, 16, g)
    x = render_parts(spec, params).float() / 255
    geo = part_geometry(spec, params)
    for key, colours in (("head_xy", HEAD_COLOURS), ("body_xy", BODY_COLOURS)):
        px = geo[key].round().long()
        rgb = x[torch.arange(16), :, px[:, 1], px[:, 0]]  # (16, 3) at the part's centre pixel
        choices = torch.tensor(colours)  # ink and base of this part's colour scheme
        dist = (rgb[:, None] - choices[None]).abs().amax(-1).amin(1)
        assert dist.max() < 0.01, (key, rgb)


def test_low_res_view_cannot_tell_head_textures_apart():
    spec = PartsSpec()
    params = sample_parts(spec, 8, torch.Generator().manual_seed(1))
    other = dict(params, head_attr=(params["head_attr"] + 1) % spec.num_attributes)
    a, b = render_parts(spec, params), render_parts(spec, other)
    geo = part_geometry(spec, params)
    for i in range(8):
        # 3x3 blocks entirely inside the head (with a one-pixel margin for the soft edge)
        cx, cy = geo["head_xy"][i].tolist()
        r = geo["head_r"][i].item() - 1.5
        ys, xs = torch.meshgrid(torch.arange(spec.low_res), torch.arange(spec.low_res), indexing="ij")
        corners = [(xs * 3 + dx, ys * 3 + dy) for dx in (0, 2) for dy in (0, 2)]
        inside = torch.stack([((px - cx) ** 2 + (py - cy) ** 2) <= r * r for px, py in corners]).all(0)
        assert inside.sum() >= 1
        la, lb = low_res(a[i:i + 1], 3)[0], low_res(b[i:i + 1], 3)[0]
        assert torch.equal(la[:, inside], lb[:, inside])  # the low-resolution view is blind to the head texture
        block = inside.repeat_interleave(3, 0).repeat_interleave(3, 1)
        assert not torch.equal(a[i][:, block], b[i][:, block])  # the full-resolution image is not


def test_crop_contains_the_part_it_is_centred_on():
    batch = make_parts_batch(PartsSpec(), 32, torch.Generator().manual_seed(2))
    parts = batch["parts"]
    hits = crop_contains(parts, parts, 1 / 6)  # crop n centred on part n
    assert hits[:, 0, 0].all() and hits[:, 1, 1].all()
    assert not (hits[:, 0, 1] | hits[:, 1, 0]).any()  # head and body centres never share a 20 px crop
    far = crop_contains(torch.full((32, 1, 2), 5.0), parts, 1 / 6)
    assert not far.any()


def test_no_crop_of_the_chapter_can_hold_both_parts():
    spec = PartsSpec()
    params = sample_parts(spec, 64, torch.Generator().manual_seed(4))
    masks = part_masks(spec, params) > 0  # every pixel a part touches, soft edge included
    gaps = []
    for i in range(64):
        head = masks[i, 0].nonzero().float()
        body = masks[i, 1].nonzero().float()
        gaps.append((head[:, None] - body[None]).abs().amax(-1).min().item())  # Chebyshev distance, pixels
    # a 20 px crop reads pixels at most 20 px apart (its sample points span 19 px, plus 1 px of bilinear reach)
    assert min(gaps) > 20 and min(gaps) >= spec.part_gap() - 1
    assert spec.part_gap() > 21


def test_spec_rejects_impossible_settings():
    with pytest.raises(ValueError, match="period"):
        PartsSpec(period=2)
    with pytest.raises(ValueError, match="does not fit"):
        PartsSpec(neck=0.8)
    with pytest.raises(ValueError, match="multiple of period"):
        PartsSpec(size=50)
    assert PartsSpec.from_dict(PartsSpec().to_dict()) == PartsSpec()


# ---- models ---------------------------------------------------------------------------------------

SIZES = [dict(in_size=48, low_res=16, crop=12, width=4, loc_width=8),
         dict(in_size=96, low_res=32, crop=24, width=4, loc_width=8)]


@pytest.mark.parametrize("size", SIZES, ids=["48px", "96px"])
@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_models_run_at_two_sizes(size, n):
    m = BirdClassifier(BirdsConfig(num_transformers=n, **size))
    x = torch.randint(0, 256, (3, 3, size["in_size"], size["in_size"]), dtype=torch.uint8)
    logits, theta = m(x)
    assert logits.shape == (3, 16)
    if n == 0:
        assert theta is None
    else:
        assert theta.shape == (3, n, 2)
        torch.testing.assert_close(theta, tiling_init(n, 0.25).expand(3, n, 2))  # the crops start tiled
        crops, _ = m.attend(x)
        assert crops.shape == (3, n, 3, size["crop"], size["crop"])


def test_crops_are_native_resolution_windows_of_the_full_image():
    m = BirdClassifier(BirdsConfig(num_transformers=2, in_size=48, low_res=16, crop=12, width=4, loc_width=8))
    x = torch.rand(2, 3, 48, 48)
    crops, _ = m.attend(x)
    # crop 0 is centred at (0, -0.5) with s = 12/48: input pixels 18..29 across, 6..17 down, unresampled
    torch.testing.assert_close(crops[:, 0], x[:, :, 6:18, 18:30], rtol=0, atol=1e-5)
    torch.testing.assert_close(crops[:, 1], x[:, :, 30:42, 18:30], rtol=0, atol=1e-5)


def test_the_localisation_net_sees_only_the_low_res_view():
    m = BirdClassifier(BirdsConfig(num_transformers=2, in_size=48, low_res=16, crop=12, width=4, loc_width=8))
    with torch.no_grad():
        m.st.head.weight.normal_()  # make theta depend on the input
    x = torch.rand(2, 3, 48, 48)
    y = x.clone()
    y[:, :, 0:3, 0:3] = y[:, :, 0:3, 0:3].flip(-1)  # same 3x3 block mean, different pixels
    torch.testing.assert_close(m.eval()(x)[1], m(y)[1])


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="must divide"):
        BirdsConfig(in_size=96, low_res=40)
    with pytest.raises(ValueError, match="backbone"):
        BirdsConfig(backbone="vgg")
    m = BirdClassifier(BirdsConfig(num_transformers=1, in_size=48, low_res=16, crop=12, width=4, loc_width=8))
    with pytest.raises(ValueError, match=r"expects input \(B, 3, 48, 48\)"):
        m(torch.rand(2, 3, 96, 96))


def test_torchvision_backbone_loads_a_local_file_and_never_downloads(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(ref.state_dict(), path)
    cfg = BirdsConfig(num_transformers=2, in_size=64, low_res=32, crop=32, backbone="resnet18",
                      backbone_weights=str(path))
    m = BirdClassifier(cfg)
    assert all(torch.equal(net.conv1.weight, ref.conv1.weight) for net in m.subnets)
    logits, theta = m(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert logits.shape == (2, 16) and m.classifier.in_features == 2 * 512
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        torchvision_backbone("resnet18", tmp_path / "missing.pt")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(RuntimeError, match="does not fit resnet18"):
        torchvision_backbone("resnet18", tmp_path / "r34.pt")


def test_loss_reports_where_each_transformer_looks():
    m = BirdClassifier(BirdsConfig(num_transformers=2, in_size=48, low_res=16, crop=12, width=4, loc_width=8))
    x = torch.rand(4, 3, 48, 48)
    y = torch.tensor([0, 1, 2, 3])
    start = tiling_init(2, 0.25)
    parts = torch.stack([start[0], torch.tensor([0.9, 0.9])]).expand(4, 2, 2)  # head under crop 1, body nowhere
    loss, metrics = birds_loss(m, (x, y, parts))
    assert loss.requires_grad and 0 <= metrics["error"] <= 100
    assert metrics["st1_head"] == 100 and metrics["st2_head"] == 0 and metrics["st1_body"] == metrics["st2_body"] == 0
    assert set(birds_loss(m, (x, y))[1]) == {"loss", "error"}


def test_step_time_benchmark_reports_every_model():
    cfgs = {"cnn": BirdsConfig(0, in_size=24, low_res=24, crop=6, width=2, loc_width=4),
            "2xst": BirdsConfig(2, in_size=24, low_res=8, crop=6, width=2, loc_width=4)}
    out = step_time_benchmark(cfgs, batch_size=2, repeats=3, warmup=1)
    assert set(out) == {"cnn", "2xst"}
    assert all(v["median_s"] >= v["min_s"] > 0 for v in out.values())
    assert out["2xst"]["params"] > out["cnn"]["params"] and out["2xst"]["config"]["num_transformers"] == 2
    assert out["2xst"]["label"] == "2xST-CNN 24px"


# ---- experiment -----------------------------------------------------------------------------------

def test_birds_experiment_writes_artifacts_with_part_measurements(tmp_path, monkeypatch):
    monkeypatch.setattr(birds_exp, "BENCHMARK_REPEATS", 1)
    monkeypatch.setattr(birds_exp, "BENCHMARK_BATCH", 2)
    assert [c.id for c in get_cells("birds")] == ["cnn", "1xst", "2xst", "4xst"]
    assert {"smoke", "full"} <= set(birds_exp.PROFILES)
    tiny = Profile("tiny", steps=4, batch_size=8, lr=1e-3, test_size=40, train_overrides={"loc_lr_mult": 0.3})
    cell = get_cells("birds", ["2xst"])[0]
    m = run_cell(cell, tiny, seed=0, device="cpu", progress=False, root=tmp_path)
    assert m["train_config"]["loc_lr_mult"] == 0.3
    assert len(m["hits"]) == 2 and set(m["hits"][0]) == {"head", "body", "neither"}
    assert 0 <= m["head_accuracy"] <= 100 and abs(m["accuracy"] - (100 - m["test_error"])) < 1e-6
    assert {"cnn_full", "2xst_full", "cnn_low"} == set(m["benchmark"])
    assert m["benchmark"]["cnn_full"]["label"] == "CNN 120px"
    assert "st2_body" in m["history"][-1]
    metrics, model, analysis = load_cell(cell, "tiny", root=tmp_path)
    assert analysis["theta"].shape == (40, 2, 2) and analysis["pred"].shape == (40,)
    assert dataclasses.asdict(model.config) == metrics["model_config"]


def test_reports_name_the_specialised_transformer_and_the_cost_ratio():
    from stnbook.birds import report as reports

    hw = {"cpu_model": "cpu", "torch_threads": 1}
    bench = {k: {"label": k, "median_s": t, "min_s": t / 2, "config": {"crop": 20}}
             for k, t in (("cnn_full", 0.4), ("2xst_full", 0.1), ("cnn_low", 0.05))}
    bench["2xst_full"]["min_s"] = 0.08  # fastest rounds: 0.08 / 0.2
    results = {"2xst": {"model": "2xST-CNN 120px", "hardware": hw, "benchmark": bench, "benchmark_batch_size": 32,
                        "hits": [{"head": 3.0, "body": 81.0, "neither": 16.0},
                                 {"head": 70.0, "body": 4.0, "neither": 26.0}]},
               "1xst": {"model": "1xST-CNN 120px", "hits": [{"head": 40.0, "body": 30.0, "neither": 30.0}]}}
    spec = reports.specialisation_key_numbers(results, {"2xst": {"head": 70.0, "body": 81.0, "both": 60.0}})
    assert spec["birds_roles_1xst"] == "ST1 mixed" and spec["birds_roles_2xst"] == "ST1 body, ST2 head"
    assert (spec["birds_cover_2xst_head"], spec["birds_cover_2xst_both"]) == ("70", "60")
    assert spec["birds_roles_4xst"] == spec["birds_cover_1xst_both"] == "n/a"  # no artifact, no coverage
    cost = reports.compute_key_numbers(results)
    assert (cost["birds_cost_ratio"], cost["birds_cost_ratio_fastest"], cost["birds_cost_ratio_low"]) == \
        ("0.25", "0.40", "2.0")
    assert (cost["birds_bench_st_median"], cost["birds_bench_full_fastest"]) == ("100", "200")
    assert cost["birds_bench_threads"] == "1 thread" and cost["birds_bench_crop"] == "20"
    assert set(reports.compute_key_numbers({}).values()) == {"n/a"}
    assert "<td>body</td>" in reports.specialisation_html(results)
    assert [r["st"] for r in reports.specialisation(results)] == [1, 1, 2]


def test_closing_numbers_order_the_models_and_say_whether_they_still_improve():
    from stnbook.birds import report as reports

    def model(name, acc, errors, head=0.0, body=0.0):
        return {"model": name, "accuracy": acc, "head_accuracy": head, "body_accuracy": body,
                "history": [{"error": e} for e in errors]}

    results = {"cnn": model("CNN", 6.25, [94] * 4), "1xst": model("1xST", 20.0, [90] * 4, head=30.0, body=80.0),
               "2xst": model("2xST", 70.0, [60, 50, 40, 30]), "4xst": model("4xST", 50.0, [51, 50, 50, 49.5])}
    out = reports.closing_key_numbers(results, chance=6.25)
    assert out["birds_order"] == "CNN < 1xST < 4xST < 2xST"
    assert out["birds_4xst_vs_2xst"] == "20.0 points below the 2xST-CNN, unlike the paper"
    assert (out["birds_x_chance_cnn"], out["birds_x_chance_2xst"]) == ("1.0", "11.2")
    assert (out["birds_one_part"], out["birds_1xst_part"], out["birds_1xst_expected"]) == ("25", "80", "20.0")
    assert (out["birds_train_2xst_late"], out["birds_train_2xst_end"]) == ("30", "30")  # 3/4 of 4 points: the last
    results["2xst"]["history"] = [{"error": e} for e in (60, 50, 40, 35, 30, 29, 28, 25)]
    out = reports.closing_key_numbers(results, chance=6.25)
    assert out["birds_train_2xst_trend"].startswith("still improving") and out["birds_train_2xst_late"] == "28"
    assert out["birds_train_4xst_trend"].startswith("no longer improving")
    results["4xst"]["accuracy"] = 75.0
    assert reports.closing_key_numbers(results)["birds_4xst_vs_2xst"].endswith("as in the paper")
    assert reports.closing_key_numbers({})["birds_order"] == "n/a"
