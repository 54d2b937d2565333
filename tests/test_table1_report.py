"""The numbers the Table 1 chapter's model-size section quotes (stnbook.table1.report), on made-up metrics."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from stnbook.table1 import report  # noqa: E402


def run(cell: str, error: float, params: int = 150_000) -> dict:
    return {"cell": cell, "test_error": error, "params": params, "steps": 60_000, "batch_size": 128,
            "wall_time_s": 600.0}


def test_adam_numbers_count_cells_within_the_target_and_the_ordering():
    full = {"R-fcn": run("R-fcn", 9.9, 42_000), "R-st-fcn-affine": run("R-st-fcn-affine", 7.9, 42_000)}
    adam = {"R-fcn": run("R-fcn", 3.0),  # paper 2.1: 1.43x, within 1.5x
            "R-st-fcn-affine": run("R-st-fcn-affine", 1.9),  # paper 1.2: 1.58x, not within
            "R-st-fcn-tps": run("R-st-fcn-tps", 1.1)}  # paper 1.1: within, and the best ST-FCN of R
    k = report.adam_key_numbers(full, adam)
    assert (k["adam_cells"], k["adam_of"], k["adam_compared"]) == ("3", "36", "3")
    assert (k["adam_within"], k["adam_full_within"]) == ("2", "0")
    assert k["adam_median_ratio"] == f"{3.0 / 2.1:.1f}"  # ratios 1.0, 1.43, 1.58
    assert (k["adam_better"], k["adam_comparisons"]) == ("1", "1")  # R: ST-FCN TPS 1.1% < FCN 3.0%
    assert k["adam_missing"].startswith("FCN (RTS, P, E, TC); CNN (R, RTS, P, E, TC); ST-FCN Aff (RTS, P, E, TC)")
    assert "ST-FCN TPS (RTS, P, E)" in k["adam_missing"]
    everything = {c: run(c, 1.0) for c in (report.cell_id(d, a, t) for a, t in report.ROWS for d in report.COLUMNS)
                  if report._paper_by_cell().get(c) is not None}
    assert report.adam_key_numbers({}, everything)["adam_missing"] == "none"


def test_adam_table_marks_the_cells_within_the_target():
    adam = {"R-fcn": run("R-fcn", 3.0), "R-st-fcn-affine": run("R-st-fcn-affine", 1.9)}
    html = report.adam_table_html({"R-fcn": run("R-fcn", 9.9, 42_000)}, adam)
    row_fcn, row_st = html.split("<tr>")[2:4]
    assert "within 1.5x" in row_fcn and "9.90" in row_fcn and "3.00" in row_fcn
    assert "within 1.5x" not in row_st and "&ndash;" in row_st  # no full-profile run of that cell
    fig = report.plot_ratio_to_paper({"full": {"R-fcn": run("R-fcn", 9.9)}, "adam": adam})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["R FCN", "R ST-FCN Aff"]
    assert report.plot_ratio_to_paper({"adam": {}}) is None


def test_seed_numbers_give_mean_spread_and_the_ordering_per_seed_and_column():
    cpu = {"device": "cpu", "cpu_model": "Intel(R) Xeon(R) Processor"}
    gpu = {"device": "cuda:0", "cuda_device": "NVIDIA H200"}
    moved = {**run("R-cnn", 1.3), "segments": [{"from_step": 0, "to_step": 45_000, "hardware": gpu},
                                                 {"from_step": 45_000, "to_step": 60_000, "hardware": cpu}]}
    by_seed = {0: {"R-cnn": run("R-cnn", 1.1), "R-st-cnn-affine": run("R-st-cnn-affine", 0.7),
                   "RTS-cnn": run("RTS-cnn", 0.9), "RTS-st-cnn-affine": run("RTS-st-cnn-affine", 1.0)},
               1: {"R-cnn": moved, "R-st-cnn-affine": run("R-st-cnn-affine", 0.9)},
               2: {"R-cnn": run("R-cnn", 1.2)}}
    rows = {r["cell"]: r for r in report.seed_rows(by_seed)}
    assert rows["R-cnn"]["errors"] == {0: 1.1, 1: 1.3, 2: 1.2}
    assert abs(rows["R-cnn"]["mean"] - 1.2) < 1e-9 and abs(rows["R-cnn"]["std"] - 0.1) < 1e-9
    assert rows["RTS-cnn"]["std"] is None  # one seed: no spread
    assert rows["R-cnn"]["where"][1] == "45k steps on NVIDIA H200, 15k on Intel Xeon"
    order = report.seed_ordering(by_seed)
    assert [(o["seed"], o["column"], o["better"]) for o in order] == [(0, "R", True), (0, "RTS", False), (1, "R", True)]
    k = report.seed_key_numbers(by_seed)
    assert (k["seeds_complete"], k["seeds_cells"], k["seeds_better"], k["seeds_comparisons"]) == ("1", "8", "2", "3")
    assert k["seeds_within"] == "1"  # of the cells with every seed: R CNN 1.2 (paper 1.2)
    by_seed[1]["R-st-cnn-tps"] = run("R-st-cnn-tps", 1.4)  # above seed 1's R CNN (1.3): the ordering fails there
    order = report.seed_ordering(by_seed)
    assert [(o["seed"], o["transform"], o["better"]) for o in order if o["column"] == "R"] == [
        (0, "affine", True), (1, "affine", True), (1, "tps", False)]
    assert report.seed_rows(by_seed)[3]["errors"] == {1: 1.4}  # every ST-CNN of R and RTS has a row
    assert k["seeds_max_range"] == "0.20"
    html = report.seed_table_html(report.seed_rows(by_seed))
    assert "not finished" in html and "1.20</b> &plusmn; 0.10" in html


def test_paper_progress_numbers_compare_each_st_cnn_with_the_cnn_of_its_column_at_shared_evaluations():
    ev = lambda *e: [{"step": 10_000 * (k + 1), "error": v} for k, v in enumerate(e)]  # noqa: E731
    progress = {"R-cnn": {"state": "in progress", "step": 40_000, "eval_history": ev(3.0, 2.0, 1.5, 1.4)},
                "R-st-cnn-affine": {"state": "in progress", "step": 30_000, "eval_history": ev(2.0, 2.5, 1.0)},
                "RTS-st-cnn-affine": {"state": "finished", "step": 150_000, "eval_history": ev(1.0)}}  # no RTS CNN
    k = report.paper_progress_key_numbers(progress)
    assert (k["paper_comparisons"], k["paper_st_below"]) == ("3", "2")
    assert (k["paper_cells"], k["paper_finished"], k["paper_min_step"], k["paper_max_step"]) == ("3", "1", "30,000", "150,000")


def test_wide_numbers_compare_the_400k_runs_with_the_same_cells_at_150k():
    adam = {"TC-st-fcn-affine": run("TC-st-fcn-affine", 4.8), "RTS-st-fcn-affine": run("RTS-st-fcn-affine", 1.33),
            "R-st-fcn-affine": run("R-st-fcn-affine", 1.5)}
    wide = {"TC-st-fcn-affine": {**run("TC-st-fcn-affine", 2.6, 400_000), "width": 230},  # paper 2.0: 1.3x
            "RTS-st-fcn-affine": {**run("RTS-st-fcn-affine", 1.3, 400_000), "width": 400}}  # paper 0.8: 1.63x
    k = report.wide_key_numbers(adam, wide)
    assert (k["wide_cells"], k["wide_compared"], k["wide_within"], k["wide_adam_within"]) == ("2", "2", "1", "0")
    assert k["wide_outside"] == "RTS ST-FCN Aff (1.62x)"
    assert k["wide_median_gain"] == f"{1.3 / 1.33:.2f}"  # gains 0.54 and 0.98: the upper median
    # ST-FCN cells taken at 400k where run (TC within, RTS not) and at 150k elsewhere (R: 1.5 <= 1.8, within)
    assert (k["wide_st_fcn_within"], k["wide_st_fcn_cells"]) == ("2", "3")
    html = report.wide_table_html(adam, wide)
    assert "classifier width 230" in html and html.count("within 1.5x") == 1


def test_severity_rows_leave_out_the_least_kept_images_first():
    kept = torch.tensor([0.2, 0.95, 1.0, 0.5, 1.0, 1.0, 0.99, 1.0, 1.0, 1.0])
    wrong = {"P-fcn": torch.tensor([True, False, False, True, False, False, False, False, False, True])}
    row = report.severity_rows(wrong, kept, drops=(10, 20))[0]
    assert row["all"] == pytest.approx(30.0)
    assert row["without"][10] == pytest.approx(200 / 9) and row["share"][10] == pytest.approx(100 / 3)
    assert row["without"][20] == pytest.approx(12.5) and row["share"][20] == pytest.approx(200 / 3)
    k = report.severity_key_numbers([row], kept)
    assert (k["psev_half"], k["psev_ninety"], k["psev_drop"], k["psev_best_without"]) == ("10.0", "20.0", "20", "12.50")
    with pytest.raises(ValueError, match="one verdict per test image"):
        report.severity_rows({"P-fcn": torch.zeros(3, dtype=torch.bool)}, kept)
    with pytest.raises(ValueError, match="projective distortions only"):
        report.ink_kept("R")


def test_ink_kept_counts_what_leaves_the_canvas():
    kept = report.ink_kept("P", n=300)
    test = report.test_set("P", 300)
    moved = test["params"]["corner_offset"].norm(dim=-1).amax(1)
    # the digits whose corners moved least keep (almost) all their ink; the most moved keep less on average
    calm, wild = kept[moved.argsort()[:30]], kept[moved.argsort()[-30:]]
    assert calm.min() > 0.9 and wild.mean() < calm.mean()


def test_the_milder_p_column_moves_the_same_corners_less(tmp_path):
    from stnbook.experiments import get_cells, run_cell
    from stnbook.paths import load_mnist
    from stnbook.table1 import pnoise
    from stnlib.data.distortions import DistortedMNIST

    x, y = load_mnist("train")
    tx, ty = load_mnist("test")
    same, mild = pnoise.MilderP(5.0, x[:500], y[:500], 32, seed=3), pnoise.MilderP(2.0, x[:500], y[:500], 32, seed=3)
    plain = DistortedMNIST("P", x[:500], y[:500], 32, seed=3)
    assert torch.equal(same.batch(4)[0], plain.batch(4)[0])  # 5 px is the P column itself
    assert torch.equal(mild.params(4)["corner_offset"], 0.4 * plain.params(4)["corner_offset"])
    assert torch.equal(mild.params(4)["scale"], plain.params(4)["scale"]) and torch.equal(mild.batch(4)[1], plain.batch(4)[1])
    test5, test2 = pnoise.milder_test_set(5.0, tx, ty, n=200), pnoise.milder_test_set(2.0, tx, ty, n=200)
    assert torch.equal(test5["x"], report.test_set("P", 200)["x"]) and torch.equal(test2["y"], test5["y"])
    assert not torch.equal(test2["x"], test5["x"])
    # less corner noise: fewer digits pushed off the canvas
    assert (report.ink_kept("P", 300, corner_std=2.0) < 0.9).sum() < (report.ink_kept("P", 300) < 0.9).sum()
    with pytest.raises(ValueError, match=r"corner_std must be in \[0, 5\]"):
        pnoise.MilderP(6.0, x[:10], y[:10], 4, seed=0)
    with pytest.raises(ValueError, match="expected a cell id such as"):
        pnoise.corner_std_of("P-fcn")
    cells = get_cells("pnoise")
    assert {c.id for c in cells} == ({f"P{s:g}px-{m}" for s in pnoise.CORNER_STDS for m in ("fcn", "st-fcn-affine")}
                                     | {"P3.5px-cnn", "P3.5px-st-cnn-affine"})
    table1 = {c.id: c for c in get_cells("table1")}
    assert all(c.model == table1[f"P-{c.id.partition('px-')[2]}"].model for c in cells)  # the P column's models
    m = run_cell(cells[1], "smoke", device="cpu", progress=False, root=tmp_path)
    assert m["command"] == f"python -m stnbook run pnoise --profile smoke --cells {cells[1].id} --seed 0"
    assert 0.0 <= m["test_error"] <= 100.0 and m["test_size"] == 500


def test_pnoise_numbers_find_the_corner_noise_at_which_the_fcn_meets_the_paper(tmp_path):
    import json

    for exp, cell, err in (("pnoise", "P2px-fcn", 2.5), ("pnoise", "P3px-fcn", 3.7), ("table1", "P-fcn", 11.0),
                           ("pnoise", "P2px-st-fcn-affine", 1.4), ("pnoise", "P3px-st-fcn-affine", 2.0),
                           ("table1", "P-st-fcn-affine", 3.8), ("pnoise", "P3.5px-cnn", 1.2), ("table1", "P-cnn", 3.5)):
        folder = tmp_path / exp / "adam" / cell
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(run(cell, err)))
    curves = report.pnoise_curves("adam", root=tmp_path)
    assert curves == {"fcn": [(2.0, 2.5), (3.0, 3.7), (5.0, 11.0)], "st-fcn-affine": [(2.0, 1.4), (3.0, 2.0), (5.0, 3.8)],
                      "cnn": [(3.5, 1.2), (5.0, 3.5)]}
    said = report.pnoise_conv_sentence(curves, "2.1 to 2.2")
    assert said.startswith("At 3.5 px the plain CNN reaches 1.20% (paper 1.5%, 0.8x; 3.50% at 5 px).")
    assert "The affine ST-CNN at 3.5 px has no finished run yet" in said and "2.1 to 2.2 hours" in said
    assert "no finished run" not in report.pnoise_conv_sentence({**curves, "st-cnn-affine": [(3.5, 0.9)]})
    curves.pop("cnn")
    k = report.pnoise_key_numbers(curves)
    assert (k["pn_fcn_sigma"], k["pn_st_at"], k["pn_st_within_sigma"]) == ("2.5", "1.70", "3.3")  # paper 3.1, 1.5
    assert (k["pn_fcn_min"], k["pn_st_fcn_min"], k["pn_min_sigma"]) == ("2.50", "1.40", "2")
    # an FCN above the paper at every noise run: no crossing claimed
    assert report.pnoise_key_numbers({"fcn": [(2.0, 4.0), (5.0, 11.0)]})["pn_fcn_sigma"] == "n/a"
    html = report.pnoise_html(report.pnoise_rows(curves, n=100))
    assert html.count("<tr>") == 4 and "(the P column)" in html and "11.00" in html and "paper: 3.1" in html
    assert report.plot_pnoise(curves, n=2) is not None and report.plot_pnoise({}) is None


def _write_run(root, cell, profile, steps, segments, seed=0):
    import json
    folder = root / "table1" / profile / cell / ("" if seed == 0 else f"seed{seed}")
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({**run(cell, 1.0), "steps": steps, "segments": segments}))


def test_remaining_rows_estimate_each_unfinished_cell_from_finished_runs_of_its_kind(tmp_path):
    cpu, gpu = {"device": "cpu", "cpu_model": "AMD EPYC"}, {"device": "cuda", "cuda_device": "NVIDIA H200"}
    # a 28x28 ST-CNN: 0.1 s a step on the CPU, 0.01 s on the GPU; a 42x42 CNN: 0.2 s a step on the CPU only
    _write_run(tmp_path, "R-st-cnn-affine", "adam", 60_000,
               [{"from_step": 0, "to_step": 20_000, "wall_time_s": 200.0, "hardware": gpu},
                {"from_step": 20_000, "to_step": 60_000, "wall_time_s": 4_000.0, "hardware": cpu}])
    _write_run(tmp_path, "RTS-cnn", "adam", 60_000, [{"from_step": 0, "to_step": 60_000, "wall_time_s": 12_000.0,
                                                      "hardware": cpu}], seed=1)
    rows = {r["cell"]: r for r in report.remaining_rows("adam", root=tmp_path)}
    assert "R-st-cnn-affine" not in rows and "RTS-cnn" in rows  # seed 1 finished, seed 0 not
    tps = rows["P-st-cnn-tps"]
    assert (tps["step"], tps["of"], tps["basis"]) == (0, 60_000, "R ST-CNN Aff (CPU: AMD EPYC)")
    assert tps["cpu_hours"] == pytest.approx(60_000 * 0.1 / 3600) and tps["gpu_minutes"] == pytest.approx(10.0)
    tc = rows["TC-cnn"]  # no 60x60 CNN measured: the 42x42 one scaled by the pixels
    assert tc["cpu_hours"] == pytest.approx(60_000 * 0.2 * (60 / 42) ** 2 / 3600) and tc["gpu_minutes"] is None
    assert tc["basis"] == "RTS CNN (CPU: AMD EPYC), x2.0 for the larger canvas"
    assert rows["R-cnn"]["cpu_hours"] is None  # no CNN on a canvas this small or smaller
    assert rows["R-fcn"]["basis"] == ""
    k = report.remaining_key_numbers(list(rows.values()))
    # the longest GPU estimate: the TC ST-CNN, from the 28x28 one scaled by (60 / 28)^2
    assert k["left_gpu_minutes"] == f"{60_000 * 0.01 * (60 / 28) ** 2 / 60:.0f}" and k["left_cells"] == str(len(rows))
    assert "<td>not started</td>" in report.remaining_html([tps])
    # further seeds of chosen cells: seed 1 of RTS CNN is finished, seed 1 of the R ST-CNN affine is not
    more = report.remaining_rows("adam", seed=1, root=tmp_path, cells=("RTS-cnn", "R-st-cnn-affine", "R-st-cnn-tps"))
    assert [(r["cell"], r["seed"]) for r in more] == [("R-st-cnn-affine", 1), ("R-st-cnn-tps", 1)]
    assert [r["cpu_hours"] for r in more] == pytest.approx([60_000 * 0.1 / 3600] * 2)  # from seed 0's run
    assert "<td>R ST-CNN Aff</td><td>1</td>" in report.remaining_html(more)
    assert report.remaining_sentence(more, "runs of seed 1") == (
        "2 runs of seed 1 remain: about 3.3 hours of one CPU thread, or about 10 minutes side by side on one GPU.")
    with pytest.raises(ValueError, match="unknown Table 1 cells.*R-st-cnn-tsp"):
        report.remaining_rows("adam", root=tmp_path, cells=("R-st-cnn-tsp",))


def test_seed_wanted_cells_are_the_r_and_rts_cnn_and_every_st_cnn():
    assert sorted(report.SEED_WANTED_CELLS) == sorted(f"{d}-{m}" for d in ("R", "RTS") for m in
                                                      ("cnn", "st-cnn-affine", "st-cnn-projective", "st-cnn-tps"))


def test_table1_html_names_each_runs_profile_and_marks_the_cells_within_the_target():
    best = {"R-fcn": {**run("R-fcn", 2.0), "profile": "adam"},  # paper 2.1: within
            "TC-st-fcn-affine": {**run("TC-st-fcn-affine", 3.5, 400_000), "profile": "adam-400k", "wall_time_s": 9000.0}}
    html = report.table1_html(best, profiles=True)
    assert "150k p, 10 min, adam &#10003;" in html and "400k p, 2.5 h, adam-400k<" in html  # 3.5 > 1.5 x 2.0
    assert "adam" not in report.table1_html(best)  # the chapter's own table names no profile


def test_clutter_on_digit_counts_the_patches_that_share_a_pixel_with_the_digits_box():
    data = report.test_set("TC", 40)
    p = data["params"]
    size, patch = int(p["canvas"][0]), int(p["clutter_size"][0])
    got = report.clutter_on_digit(data["box"], p["clutter_pos"], p["clutter_size"])
    corner = (p["translation"] + (size - 28) / 2).long()  # the digit's top-left pixel (x, y)
    for i in range(len(got)):
        digit = torch.zeros(size, size, dtype=torch.bool)
        digit[corner[i, 1]:corner[i, 1] + 28, corner[i, 0]:corner[i, 0] + 28] = True
        want = sum(bool(digit[y:y + patch, x:x + patch].any()) for x, y in p["clutter_pos"][i].tolist())
        assert got[i].item() == want
    assert got.min() >= 0 and got.max() <= p["clutter_pos"].shape[1] and got.float().mean() > 0


def test_tc_failure_verdict_separates_underfitting_from_a_generalisation_gap():
    def failure(train, test):
        return {"curves": {}, "train": {"CNN": train}, "test": {"CNN": test}}

    assert report.tc_failure_key_numbers(failure(10.3, 10.5))["tcf_verdict"].endswith("it underfits.")
    assert report.tc_failure_key_numbers(failure(2.0, 10.5))["tcf_verdict"].endswith("it does not simply underfit.")
    k = report.tc_failure_key_numbers(None)
    assert k["tcf_cnn_test"] == "n/a" and k["tcf_verdict"] == "Its training error was not logged."


def test_outside_rows_name_a_lever_per_cell_and_estimate_the_paper_size_from_a_measured_run():
    def metrics(cell, error, train, params=150_000, arch="cnn", side=60):
        return {"cell": cell, "test_error": error, "params": params, "steps": 60_000, "batch_size": 128,
                "profile": "adam",
                "width": 45 if arch == "cnn" else 41,
                "model_config": {"arch": arch, "transform": None, "in_size": [side, side], "in_channels": 1,
                                 "num_classes": 10, "param_budget": 150_000},
                "segments": [{"from_step": 0, "to_step": 60_000, "wall_time_s": 3600.0, "hardware": {"device": "cpu"}}],
                "history": [{"step": 60_000, "error": train}],
                "eval_history": [{"step": 40_000, "error": error + 1.0}, {"step": 60_000, "error": error}]}

    best = {"TC-cnn": metrics("TC-cnn", 10.5, 10.3),  # 3.0x, underfits below 400k: capacity
            "TC-fcn": metrics("TC-fcn", 26.0, 26.1, 400_000, "fcn"),  # 1.97x, underfits at 400k: steps
            "P-cnn": metrics("P-cnn", 3.5, 3.8, side=28),  # P: the data
            "E-cnn": metrics("E-cnn", 2.8, 0.5, side=28),  # 2.0x, trains far below its test error: other
            "R-cnn": metrics("R-cnn", 1.0, 1.0, side=28)}  # within 1.5x: not listed
    rows = report.outside_rows(best, by_seed={}, progress={})
    assert [r["cell"] for r in rows] == ["TC-cnn", "P-cnn", "E-cnn", "TC-fcn"]  # worst ratio first
    assert [r["lever"] for r in rows] == ["capacity", "data", "other", "steps"]
    assert rows[0]["late_drop"] == pytest.approx(1.0) and rows[0]["train"] == 10.3
    hours, ratio = rows[0]["estimate"]
    assert ratio > 2 and hours == pytest.approx(ratio)  # one measured hour for the run, scaled by multiply-adds
    assert rows[1]["estimate"] is None and rows[2]["estimate"] is None
    assert rows[3]["estimate"] == pytest.approx((5.0, 5.0))  # one measured hour, the paper's 5x the images
    html = report.outside_html(rows)
    assert "--profile adam-400k-warmup --cells TC-cnn" in html and "mostly the data" in html and "3.00x" in html
    assert "--profile adam-400k-warmup-long --cells TC-fcn</code>, about 5.0 CPU-hours" in html
    done = {**best["TC-fcn"], "steps": 300_000, "profile": "adam-400k-long",  # the paper's images seen: no estimate
            "segments": [{**best["TC-fcn"]["segments"][0], "to_step": 300_000}],
            "history": [{"step": 300_000, "error": 26.1}],
            "eval_history": [{"step": 280_000, "error": 27.0}, {"step": 300_000, "error": 26.0}]}
    row = report.outside_rows({"TC-fcn": done}, by_seed={}, progress={})[0]
    assert row["lever"] == "steps" and row["estimate"] is None
    assert "after the paper's number of training images" in report.outside_html([row])
    assert rows[0]["progress"] is None and "Under way" not in html  # no 400k run started


def test_outside_rows_show_how_far_the_400k_run_has_got_and_what_it_still_costs():
    best = {"TC-cnn": {"cell": "TC-cnn", "test_error": 10.5, "params": 150_000, "steps": 60_000, "batch_size": 128,
                       "profile": "adam", "width": 45,
                       "model_config": {"arch": "cnn", "transform": None, "in_size": [60, 60], "in_channels": 1,
                                        "num_classes": 10, "param_budget": 150_000},
                       "segments": [{"from_step": 0, "to_step": 60_000, "wall_time_s": 3600.0}],
                       "history": [{"step": 60_000, "error": 10.3}],
                       "eval_history": [{"step": 15_000, "error": 14.4}, {"step": 60_000, "error": 10.5}]}}
    running = {"state": "in progress", "step": 15_000, "of": 60_000, "error": 7.25,
               "eval_history": [{"step": 10_000, "error": 9.0}, {"step": 15_000, "error": 7.25}],
               "segments": [{"from_step": 0, "to_step": 5_000, "wall_time_s": 1800.0},
                            {"from_step": 5_000, "to_step": 15_000, "wall_time_s": 3600.0}]}
    finished = {**running, "state": "finished", "step": 60_000}
    row = report.outside_rows(best, by_seed={}, progress={"TC-cnn": running})[0]
    assert row["lever"] == "capacity" and row["progress"] is running
    html = report.outside_html([row])
    # 5,400 s over 15,000 steps = 0.36 s a step; 45,000 steps left = 4.5 hours
    assert row["wide_profile"] == "adam-400k-warmup" and row["same_step"] == 14.4
    assert ("Under way: step 15,000 of 60,000, 7.25% at its latest evaluation (step 15,000; the adam run had "
            "14.40% there)") in html
    assert "0.36 s per step, about 4.5 CPU-hours left" in html
    assert report.outside_rows(best, by_seed={}, progress={"TC-cnn": finished})[0]["progress"] is None


class _TinyST(torch.nn.Module):
    """A classifier behind a localisation net, named as the Table 1 models name them, with known silent units."""

    def __init__(self):
        super().__init__()
        self.st = torch.nn.Module()
        self.st.loc_net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
                                              torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU())
        self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4), torch.nn.ReLU(),
                                              torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        with torch.no_grad():
            for layer, bias in ((self.st.loc_net[2], [-1.0] * 4), (self.classifier[1], [1.0, -1.0, -1.0, 1.0]),
                                (self.classifier[3], [1.0, 1.0, 1.0, -1.0])):
                layer.weight.zero_()
                layer.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        self.st.loc_net(x)
        return self.classifier(x)


def test_silent_units_of_a_run_split_classifier_and_localisation_net_and_show_in_the_table():
    from stnbook.table1 import units

    info = {"state": "in progress", "step": 7_000, "of": 60_000, "error": 2.5, "error_step": 5_000, "params": 123_456}
    row = units.silent_row("RTS-st-cnn-affine", "adam-400k-warmup", _TinyST(), info, torch.randn(6, 1, 4, 4))
    assert [u["silent"] for u in row["layers"]] == [2, 1] and not row["layers"][0]["spatial"]
    assert [u["silent"] for u in row["loc_layers"]][1] == 4 and row["loc_layers"][1]["spatial"]
    plain = {**row, "cell": "RTS-cnn", "profile": "adam", "state": "finished", "step": 60_000, "error": 1.55,
             "loc_layers": []}
    html = units.silent_html([row, plain])
    assert "adam-400k-warmup, 123k parameters, step 7,000 of 60,000" in html and "2.50% (step 5,000)" in html
    assert "<b>2 of 4 units (50%)</b>" in html and "1 of 4 units (25%)</td>" in html
    assert "<b>4 of 4 channels (100%)</b>" in html and "adam, 123k parameters, finished" in html
    assert "<td>1.55%</td>" in html and html.count("&ndash;") == 1  # the plain model has no localisation net
    k = units.silent_key_numbers([row, plain])
    assert k["silent_RTS_st_cnn_affine_adam_400k_warmup"] == "2 of 4" and k["silent_RTS_cnn_adam_error"] == "1.55"
    assert k["silent_RTS_st_cnn_affine_adam_400k_warmup_loc"] == "4 of 4" and "silent_RTS_cnn_adam_loc" not in k
    assert (k["silent_loc_min"], k["silent_loc_max"]) == ("n/a", "n/a")  # no row of the adam profile has a loc net
    assert k["silent_RTS_cnn_adam_result"] == "finished at 1.55% after 60,000 steps"
    assert k["silent_RTS_st_cnn_affine_adam_400k_warmup_result"] == (
        "was at 2.50% at step 5,000 of 60,000 when this page was built (the run goes on)")
    fresh = units.silent_key_numbers([{**row, "step": 300, "error": None, "error_step": None}])
    assert fresh["silent_RTS_st_cnn_affine_adam_400k_warmup_result"] == "has no evaluation yet (step 300 of 60,000)"
    k = units.silent_key_numbers([row, plain], same_step={"RTS-st-cnn-affine": {"eval_history": [
        {"step": 5_000, "error": 3.25}]}})
    assert k["silent_RTS_st_cnn_affine_adam_400k_warmup_ref"] == "3.25" and "silent_RTS_cnn_adam_ref" not in k
    k = units.silent_key_numbers([row, plain], loc_profile="adam-400k-warmup")
    assert (k["silent_loc_min"], k["silent_loc_max"]) == ("100%", "100%")
