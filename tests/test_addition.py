"""Two-digit addition: data (channels, targets, boxes, fixed test set), models with matched budgets, the split
measurement, and the experiment's artifacts."""

import pytest
import torch

from stnbook.addition.experiment import PARAM_BUDGET, attention_split, transformer_boxes
from stnbook.experiments import Profile, get_cells, load_cell, run_cell
from stnlib.data.distortions import apply_distortion, as_image_batch
from stnlib.data.pairs import AdditionMNIST, addition_test_set
from stnlib.models import build_model
from stnlib.train import count_parameters


def digits(n=40, seed=0):
    """Random blobs as stand-in digits: each image distinct, labels 0..9."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 8:20, 8:20] = torch.randint(1, 256, (n, 12, 12), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


def test_batches_are_step_indexed_and_targets_are_sums():
    x, y = digits()
    data = AdditionMNIST(x, y, batch_size=8, seed=3)
    a, ta = data.batch(5)
    b, tb = data.batch(5)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, data.batch(6)[0])
    ia, ib = data.indices(5)
    assert torch.equal(ta, y[ia] + y[ib])
    assert a.shape == (8, 2, 42, 42) and int(ta.max()) <= 18
    # a fresh object (a resumed run) gives the same batch
    assert torch.equal(AdditionMNIST(x, y, batch_size=8, seed=3).batch(5)[0], a)


def test_a_ramp_starts_both_digits_upright_and_centred_and_ends_at_the_unramped_batches():
    x, y = digits()
    plain = AdditionMNIST(x, y, batch_size=8, seed=3)
    ramped = AdditionMNIST(x, y, batch_size=8, seed=3, ramp=(2, 6))
    for step in (0, 1):  # before the ramp: each channel holds its digit as it is, in the canvas's centre
        got, target = ramped.batch(step)
        ia, ib = ramped.indices(step)
        for ch, idx in enumerate((ia, ib)):
            want = torch.zeros(8, 42, 42)
            want[:, 7:35, 7:35] = x[idx].float() / 255
            torch.testing.assert_close(got[:, ch], want, rtol=0, atol=1e-5)
        assert torch.equal(target, plain.batch(step)[1])
    assert not torch.equal(ramped.batch(4)[0], plain.batch(4)[0])  # half strength: between the two
    for step in (6, 9):  # full strength: the very batches of the run without a ramp
        assert torch.equal(ramped.batch(step)[0], plain.batch(step)[0])
    assert "ramp=(2, 6)" in repr(ramped) and "ramp" not in repr(plain)
    with pytest.raises(ValueError, match="0 <= start < end"):
        AdditionMNIST(x, y, batch_size=8, seed=3, ramp=(4, 2))


def test_test_set_channels_hold_their_own_digit_and_boxes_contain_the_ink():
    x, y = digits()
    t = addition_test_set(x, y, n=12)
    assert torch.equal(t["y"], t["labels"].sum(1))
    assert bool((t["index"][:, 0] != t["index"][:, 1]).all())
    for ch in range(2):  # channel ch is digit index[:, ch] warped with its own parameters
        again = apply_distortion("RTS", as_image_batch(x[t["index"][:, ch]]), t["params"][ch])
        assert torch.allclose(again[:, 0], t["x"][:, ch], atol=1e-6)
    cols = torch.arange(42).float()
    for ch in range(2):
        ink = t["x"][:, ch]
        box = t["box"][:, ch].float()
        inside = ((cols[None, None, :] >= box[:, 0, None, None]) & (cols[None, None, :] <= box[:, 2, None, None])
                  & (cols[None, :, None] >= box[:, 1, None, None]) & (cols[None, :, None] <= box[:, 3, None, None]))
        assert float((ink * inside).sum() / ink.sum()) > 0.99


def test_test_set_is_fixed_and_prefix_stable():
    x, y = digits(30)
    a = addition_test_set(x, y)
    b = addition_test_set(x, y, n=7)
    assert torch.equal(a["x"][:7], b["x"]) and torch.equal(a["box"][:7], b["box"])
    assert not torch.equal(addition_test_set(x, y, seed=1)["x"], a["x"])


@pytest.mark.parametrize("cell", [c.id for c in get_cells("addition")])
def test_every_row_matches_the_budget_and_classifies_sums(cell):
    cfg = get_cells("addition", [cell])[0].model
    model = build_model(cfg)
    assert abs(count_parameters(model) - PARAM_BUDGET) < 0.03 * PARAM_BUDGET
    assert model(torch.rand(3, 2, 42, 42)).shape == (3, 19)
    if cell.startswith("2st"):
        warped, theta = model.transform_input(torch.rand(3, 2, 42, 42))
        assert warped.shape[1] == 4 and theta.shape[:2] == (3, 2)  # each ST warps both channels


def test_the_separate_localisation_nets_profile_gives_each_transformer_its_own_net():
    from dataclasses import replace

    from stnbook.addition.experiment import PROFILES, RECIPE_BUDGET
    from stnlib.models import ModelConfig
    cell = get_cells("addition", ["2st-fcn-affine"])[0]
    overrides = PROFILES["recipe-separate"].model_overrides["*st-*"]
    cfg = replace(cell.model, **overrides, param_budget=RECIPE_BUDGET)
    model = build_model(cfg)
    assert not model.st.shared and len(model.st.loc_net) == 2
    assert abs(count_parameters(model) - RECIPE_BUDGET) < 0.03 * RECIPE_BUDGET
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and "st_shared_loc" in cfg.to_dict()
    _, theta = model.transform_input(torch.rand(3, 2, 42, 42))
    torch.testing.assert_close(theta, theta[:1].expand(3, 2, 6))  # both start at the centred crop
    assert build_model(replace(cfg, st_shared_loc=True)).st.shared


def box_theta(box, size=42):
    """Attention theta sampling exactly the square pixel box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    c = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2])
    return torch.cat([torch.tensor([(x1 - x0) / size]), (2 * c + 1) / size - 1])


def test_split_measurement_known_answers():
    boxes = torch.tensor([[[2.0, 2, 20, 20], [20.0, 18, 38, 36]], [[20.0, 18, 38, 36], [2.0, 2, 20, 20]]])
    # ST1 on digit a and ST2 on digit b in the first pair; swapped roles in the second
    theta = torch.stack([torch.stack([box_theta(boxes[0, 0]), box_theta(boxes[0, 1])]),
                         torch.stack([box_theta(boxes[1, 1]), box_theta(boxes[1, 0])])])
    assert torch.allclose(transformer_boxes(theta, "attention")[0], boxes[0], atol=1e-4)
    s = attention_split(theta, "attention", boxes)
    assert s["split"] == 100.0 and s["split_covered"] == 100.0
    assert s["prefers_a"].tolist() == [50.0, 50.0]
    assert torch.allclose(s["iou"][0, 0, 0], torch.tensor(1.0), atol=1e-4)
    both_on_a = torch.stack([box_theta(boxes[0, 0])] * 2)[None]
    assert attention_split(both_on_a, "attention", boxes[:1])["split"] == 0.0


def test_experiment_writes_the_split_into_its_artifact(tmp_path):
    tiny = Profile("tiny", steps=6, batch_size=16, lr=1e-3, train_size=300, test_size=40)
    cell = get_cells("addition", ["2st-fcn-affine"])[0]
    a = run_cell(cell, tiny, seed=1, device="cpu", progress=False, root=tmp_path)
    b = run_cell(cell, tiny, seed=1, device="cpu", progress=False, root=tmp_path / "again")
    assert a["test_error"] == b["test_error"] and a["history"] == b["history"]
    split = a["attention_split"]
    assert len(split["prefers_a"]) == 2 and 0 <= split["split"] <= 100 and split["split_pairs"] == 40
    metrics, model, analysis = load_cell(cell, "tiny", root=tmp_path, seed=1)
    assert analysis["theta"].shape == (40, 2, 6) and analysis["iou"].shape == (40, 2, 2)
    assert analysis["pred"].shape == (40,) and metrics["test_size"] == 40


def test_report_numbers_compare_with_the_paper_and_measure_the_split():
    from stnbook.addition import report as reports

    def metrics(cell, error, split=None, **extra):
        m = {"cell": cell, "test_error": error, "test_size": 40, "params": 200_000, "steps": 100, "batch_size": 8,
             "wall_time_s": 120.0, **extra}
        if split is not None:
            m["attention_split"] = {"prefers_a": [50.0, 40.0], "split": split, "split_covered": split / 2,
                                    "split_pairs": 40}
        return m

    results = {"fcn": metrics("fcn", 80.0), "st-fcn-affine": metrics("st-fcn-affine", 70.0),
               "st-fcn-tps": metrics("st-fcn-tps", 60.0), "2st-fcn-affine": metrics("2st-fcn-affine", 50.0, 20.0),
               "2st-fcn-tps": metrics("2st-fcn-tps", 55.0, 30.0)}
    out = reports.table4_key_numbers(results)
    assert (out["add_t4_best"], out["add_t4_best_error"], out["add_t4_pairs"]) == ("2xST-FCN Aff", "50.0", "40")
    assert (out["add_t4_best_single"], out["add_t4_best_single_gap"]) == ("ST-FCN TPS", "+41.5")  # 60 - 18.5
    assert (out["add_t4_best_2st"], out["add_t4_best_2st_error"]) == ("2xST-FCN Aff", "50.0")
    assert float(out["add_t4_chance"]) == pytest.approx(reports.chance_error(40), abs=0.05)
    assert set(reports.table4_key_numbers({}).values()) == {"n/a"}
    assert "<td>+47.4</td>" in reports.table4_html(results)  # ST-FCN Aff: 70 against the paper's 22.6
    assert reports.split_key_numbers(results) == {"add_split_max": "30", "add_split_pairs": "40"}
    assert set(reports.split_key_numbers({"fcn": results["fcn"]}).values()) == {"n/a"}
    long = {"2st-fcn-tps": metrics("2st-fcn-tps", 20.0, 80.0, steps=4000)}
    assert ("<th>2xST-FCN TPS</th><td>5.8</td><td>55.0</td><td>50%</td><td>40%</td><td>30% (15% with IoU &gt; 0.5)</td>"
            "<td>20.0</td><td>4,000 x 8, 2 min</td><td>80% (40% with IoU &gt; 0.5)</td>"
            in reports.summary_table_html(results, long))
    assert ("<th>2xST-FCN TPS</th><td>55.00</td><td>20.00</td><td>40x</td><td>5.8</td><td>+49.20</td><td>+14.20</td>"
            in reports.long_gaps_html(results, long))


def test_transformer_rectification_finds_thetas_that_undo_their_digit():
    """Each transformer's theta rotates and scales exactly as the digit it prefers was: |r| = |slope| = 1; a theta
    that ignores the distortion gives slopes near 0."""
    import math

    from stnbook.addition import report as reports
    n = 200
    params = reports.test_pairs(n)["params"]

    def similarity(d):
        a, s = torch.deg2rad(params[d]["angle_deg"][:n]).float(), params[d]["scale"][:n].float()
        c, si = s * torch.cos(a), s * torch.sin(a)
        return torch.stack([c, -si, torch.zeros(n), si, c, torch.zeros(n)], 1)

    theta = torch.stack([similarity(0), similarity(1)], 1)  # ST1 undoes digit a, ST2 digit b
    iou = torch.tensor([[[0.8, 0.1], [0.2, 0.7]]]).expand(n, 2, 2)
    fits = reports.transformer_rectification({"theta": theta, "iou": iou}, "affine")
    assert [round(f["prefers_a"]) for f in fits] == [100, 0]
    for f in fits:
        for what in ("rotation", "scale"):
            assert math.isclose(abs(f[what]["r"]), 1, abs_tol=1e-3) and math.isclose(abs(f[what]["slope"]), 1, abs_tol=1e-3)
    still = torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(n, 2, 6) + 0.01 * torch.randn(n, 2, 6, generator=torch.Generator().manual_seed(0))
    lazy = reports.transformer_rectification({"theta": still, "iou": iou}, "affine")
    assert all(abs(f["rotation"]["slope"]) < 0.05 for f in lazy)
