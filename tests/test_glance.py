"""Results at a glance (stnbook.glance): the verdicts, the landing table computed from artifacts, its HTML."""

from __future__ import annotations

import json
import re

import pytest

from stnbook import glance
from stnbook.experiments import load_results

CPU = {"device": "cpu", "cpu_model": "Test CPU", "cpu_count": 2, "torch_threads": 1}
MARKDOWN_TABLE = [re.compile(r"^\s*\|.*\|\s*$", re.M), re.compile(r"\|\s*:?-{3,}")]


def test_verdict_on_constructed_numbers():
    assert glance.verdict(0.7, 0.5, True) == "reproduced"  # 1.4x the paper's error
    assert glance.verdict(0.7, 0.5, False) == "reproduced"  # the numbers alone decide it
    assert glance.verdict(0.75, 0.5, False) == "reproduced"  # exactly 1.5x
    assert glance.verdict(0.2, 0.5, None) == "reproduced"  # better than the paper
    assert glance.verdict(3.0, 0.5, True) == "ordering only"
    assert glance.verdict(3.0, 0.5, False) == "not yet"
    assert glance.verdict(3.0, 0.5, None) == "not yet"  # no ordering to check
    assert glance.verdict(0.0, 0.0, False) == "reproduced" and glance.verdict(1.0, 0.0, True) == "ordering only"
    assert glance.verdict(None, 0.5, True) == "ordering only" and glance.verdict(None, None, False) == "not yet"
    # another data set: only the ordering can be compared, however close the numbers
    assert glance.verdict(0.5, 0.5, True, comparable=False) == "ordering only"
    assert glance.verdict(0.5, 0.5, False, comparable=False) == "not yet"
    assert set(glance.VERDICTS) == {"reproduced", "ordering only", "not yet"}


def test_random_window_is_chance():
    assert glance.random_window_success(28, 28) == 100.0
    assert 0 < glance.random_window_success(84, 28) < 10
    assert glance.random_window_success(84, 28, threshold=0.99) < glance.random_window_success(84, 28)


def write_metrics(root, experiment, profile, cell, **fields):
    folder = root / experiment / profile / cell
    folder.mkdir(parents=True)
    metrics = {"experiment": experiment, "cell": cell, "profile": profile, "steps": 100, "batch_size": 8,
               "wall_time_s": 60.0, "hardware": CPU, "test_error": None, **fields}
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def fake_results(tmp_path):
    """A results root holding a few artifacts with made-up numbers, and one benchmark."""
    w = lambda *a, **k: write_metrics(tmp_path, *a, **k)
    w("table1", "full", "E-cnn", test_error=2.0)
    w("table1", "full", "E-st-cnn-tps", test_error=1.6)  # 1.45x the paper's 1.1: reproduced
    w("table1", "full", "E-st-cnn-affine", test_error=1.9)
    w("table1", "full", "R-cnn", test_error=1.0)
    w("table1", "full", "R-st-cnn-affine", test_error=3.0)  # worse than the CNN and far from 0.7: not yet
    w("table1", "full", "RTS-cnn", test_error=5.0)
    w("table1", "full", "RTS-st-cnn-affine", test_error=2.0)  # beats the CNN, 4x the paper's 0.5: ordering only
    w("table1", "long", "RTS-st-cnn-affine", test_error=0.6, steps=400)  # more training: replaces the full run
    w("addition", "full", "fcn", test_error=80.0)
    w("addition", "full", "2st-fcn-tps", test_error=40.0)
    for d in range(10):
        w("colocalisation", "full", f"T-{d}", success=100.0, model_config={"canvas": 84, "out_size": 28})
        w("colocalisation", "full", f"TC-{d}", success=1.0 * (d == 0), model_config={"canvas": 84, "out_size": 28})
    w("birds", "full", "cnn", test_error=90.0, accuracy=10.0)
    w("birds", "full", "2xst", test_error=40.0, accuracy=60.0)
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "floor-cpu.json").write_text(json.dumps({"hardware": CPU, "rows": [
        {"setup": "R", "batch": 128, "st_over_cnn": 1.05}, {"setup": "RTS", "batch": 128, "st_over_cnn": 0.7}]}))
    return tmp_path


def by_title(rows) -> dict[str, glance.Row]:
    return {re.sub(r"<[^>]+>", "", r.result): r for r in rows}


def test_the_landing_table_is_computed_from_the_artifacts(fake_results):
    rows = by_title(glance.rows(fake_results))
    e = rows["Distorted MNIST (Table 1), E (elastic): best ST-CNN"]
    assert (e.ours_value, e.paper_value, e.verdict) == (1.6, 1.1, "reproduced")
    assert "1.60%" in e.ours and "CNN 2.00%" in e.ours and "100 x 8 (full), 2 runs" in e.compute
    r = rows["Distorted MNIST (Table 1), R (rotated): best ST-CNN"]
    assert (r.ours_value, r.verdict) == (3.0, "not yet")
    rts = rows["Distorted MNIST (Table 1), RTS (rotated, scaled, translated): best ST-CNN"]
    assert rts.ours_value == 0.6 and rts.verdict == "reproduced" and "400 x 8 (long)" in rts.compute
    assert rows["Distorted MNIST (Table 1), P (projective): best ST-CNN"].ours == "no artifact"
    table1 = rows["Distorted MNIST (Table 1), all 36 cells"]
    # within 1.5x: E-cnn, E-st-cnn-tps, R-cnn and the long RTS-st-cnn-affine; on R the ST-CNN loses to the CNN
    assert "4 of 36</b> within 1.5x (29 not run)" in table1.ours and table1.verdict == "not yet"
    tps = rows["Two-digit addition (Table 4), 2xST-FCN TPS"]
    assert (tps.ours_value, tps.paper_value, tps.verdict) == (40.0, 5.8, "ordering only")
    assert rows["Two-digit addition (Table 4), 2xST-FCN Aff"].verdict == "not yet"
    t, tc = rows["Co-localisation (A.2), T: images localised"], rows["Co-localisation (A.2), TC: images localised"]
    assert (t.ours_value, t.paper_value, t.verdict) == (0.0, 0.0, "reproduced")
    assert tc.ours_value == pytest.approx(99.9) and tc.paper_value == 25.0 and tc.verdict == "not yet"  # below chance
    birds = rows["Fine-grained birds (Table 3), 2xST-CNN vs CNN: synthetic proxy, not CUB"]
    assert birds.ours_value == 40.0 and birds.verdict == "ordering only"
    cpu = rows["Speed (Sec. 4.2), ST-CNN vs CNN training step, CPU"]
    assert cpu.ours_value == pytest.approx(5.0) and cpu.paper_value == 6.0 and cpu.verdict == "reproduced"
    assert "RTS 0.70x" in cpu.ours
    assert rows["Speed (Sec. 4.2), ST-CNN vs CNN training step, GPU"].ours == "no benchmark artifact"


def test_clutter_rows_compare_the_best_st_cnn_with_ram(tmp_path):
    from stnbook.clutter.report import ANCHORS

    empty = glance.clutter_rows(glance.Artifacts(tmp_path))
    assert [r.paper_value for r in empty] == [ANCHORS["ram60"][0][1], ANCHORS["ram100"][0][1]] == [5.23, 10.83]
    assert all(r.ours == "no artifacts" and r.verdict == glance.NOT_YET and r.chapter == "clutter" for r in empty)
    assert "5.23%" in empty[0].paper and "Mnih et al. 2014" in empty[0].paper
    w = lambda *a, **k: write_metrics(tmp_path, "clutter", "full", *a, **k)
    w("ram60-cnn", test_error=8.0)
    w("ram60-st-cnn-affine", test_error=6.0)  # the best ST-CNN, within 1.5x of RAM's 5.23: reproduced
    w("ram60-st-cnn-attention", test_error=7.0)
    w("ram100-cnn", test_error=18.0)
    w("ram100-st-cnn-attention", test_error=17.0)  # beats the CNN, but above 1.5 x 10.83: ordering only
    r60, r100 = glance.clutter_rows(glance.Artifacts(tmp_path))
    assert (r60.ours_value, r60.paper_value, r60.verdict) == (6.0, 5.23, glance.REPRODUCED)
    assert "ST-CNN affine, 100 steps" in r60.ours and "7.00%" in r60.ours
    assert "at equal budgets (100 steps): best ST-CNN 6.00%, CNN 8.00%" in r60.ours
    assert "100 x 8 (full), 3 runs" in r60.compute and len(r60.runs) == 3
    assert (r100.ours_value, r100.paper_value, r100.verdict) == (17.0, 10.83, glance.ORDERING_ONLY)
    w("ram60-st-cnn-affine-2", test_error=1.0)  # not a cell of the chapter: ignored
    path = tmp_path / "clutter" / "full" / "ram100-st-cnn-attention" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "test_error": 19.0}))  # now worse than the CNN
    r60, r100 = glance.clutter_rows(glance.Artifacts(tmp_path))
    assert r60.ours_value == 6.0 and (r100.ours_value, r100.verdict) == (19.0, glance.NOT_YET)
    # a longer run of a transformer is the number quoted; the ordering stays a comparison at equal budgets
    write_metrics(tmp_path, "clutter", "long", "ram100-st-cnn-attention", test_error=10.0, steps=400)
    r60, r100 = glance.clutter_rows(glance.Artifacts(tmp_path))
    assert (r100.ours_value, r100.verdict) == (10.0, glance.REPRODUCED) and "400 steps" in r100.ours
    assert "best ST-CNN 19.00%, CNN 18.00%" in r100.ours and len(r100.runs) == 2
    write_metrics(tmp_path, "clutter", "long", "ram60-st-cnn-attention", test_error=20.0, steps=400)
    r60, _ = glance.clutter_rows(glance.Artifacts(tmp_path))  # more training, but not better: still the full run
    assert r60.ours_value == 6.0 and "ST-CNN attention (32x32) 20.00%" in r60.ours


def test_depth_rows_compare_the_best_feature_map_transformer_with_the_cnn(tmp_path):
    empty = glance.depth_rows(glance.Artifacts(tmp_path))
    assert len(empty) == 2 and all(r.ours == "no artifacts" and r.verdict == glance.NOT_YET for r in empty)
    assert all(r.paper_value is None and r.paper.startswith("no number") and r.chapter == "depth" for r in empty)
    w = lambda *a, **k: write_metrics(tmp_path, "depth", "full", *a, **k)
    w("RTS-cnn", test_error=5.0)
    w("RTS-st-input", test_error=3.0)  # beats the CNN, but is no feature-map transformer
    w("RTS-st-block1", test_error=6.0)
    w("RTS-st-block2", test_error=5.5)
    w("TC-cnn", test_error=4.0)
    w("TC-st-multi", test_error=3.5)  # a transformer after block 1 (and one at the input): beats the CNN
    rts, tc = glance.depth_rows(glance.Artifacts(tmp_path))
    assert "RTS" in rts.result and "TC" in tc.result
    assert (rts.ours_value, rts.paper_value, rts.verdict) == (5.5, None, glance.NOT_YET)
    assert "ST after block 2" in rts.ours and "CNN 5.00% with the same budget" in rts.ours
    assert "ST at the input 3.00%" in rts.ours and "ST after block 1 6.00%" in rts.ours and len(rts.runs) == 4
    assert (tc.ours_value, tc.verdict) == (3.5, glance.ORDERING_ONLY) and "ST at the input and after block 1" in tc.ours
    w("TC-st-input", test_error=1.0)
    (tmp_path / "depth" / "full" / "TC-st-multi" / "metrics.json").unlink()  # only the input transformer is left
    assert glance.depth_rows(glance.Artifacts(tmp_path))[1].ours == "no artifacts"


def test_the_landing_table_lists_the_chapters_in_the_book_order(fake_results):
    chapters = list(dict.fromkeys(r.chapter for r in glance.rows(fake_results)))
    assert chapters == ["distorted_mnist", "clutter", "addition", "colocalisation", "birds", "volume3d", "depth",
                        "cost"]


def test_a_changed_artifact_changes_the_table(fake_results):
    before = by_title(glance.rows(fake_results))["Two-digit addition (Table 4), 2xST-FCN TPS"]
    path = fake_results / "addition" / "full" / "2st-fcn-tps" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "test_error": 6.0}))
    after = by_title(glance.rows(fake_results))["Two-digit addition (Table 4), 2xST-FCN TPS"]
    assert (before.ours_value, before.verdict) == (40.0, "ordering only")
    assert (after.ours_value, after.verdict) == (6.0, "reproduced")


def test_every_row_quotes_the_committed_artifacts():
    rows = glance.rows()
    assert rows and all(r.verdict in glance.VERDICTS for r in rows)
    for r in rows:
        for m in r.runs:
            if "cell" not in m:  # a benchmark
                continue
            committed = load_results(m["experiment"], m["profile"])[m["cell"]]
            assert m["test_error"] == committed["test_error"]
        if r.chapter in ("distorted_mnist", "addition") and r.ours_value is not None:
            assert r.ours_value == r.runs[0]["test_error"], r.result
        if r.chapter == "colocalisation" and r.runs:
            mean = sum(m["success"] for m in r.runs) / len(r.runs)
            assert r.ours_value == pytest.approx(100 - mean)


def test_the_landing_table_is_html_without_a_pipe_table(fake_results):
    for root in (fake_results, None):
        text = glance.glance_html(root=root)
        assert text.startswith("<table class='stn-table'>")
        assert not any(rx.search(text) for rx in MARKDOWN_TABLE), "a Markdown pipe table in the landing table"
        assert text.count("<tr>") == 1 + len(glance.rows(root))  # the header and one row per result
        for v in glance.VERDICTS:
            assert f"<b>{v}</b>" in text  # every verdict is defined under the table


def test_key_numbers_are_strings_and_survive_missing_artifacts(tmp_path, fake_results):
    for fn in (glance.addition_key_numbers, glance.colocalisation_key_numbers, glance.birds_key_numbers):
        for root in (tmp_path / "empty", fake_results, None):
            numbers = fn(root)
            assert numbers and all(isinstance(v, str) and v for v in numbers.values())
    assert glance.birds_key_numbers(fake_results)["birds_2xst"] == "60.0"
    assert glance.colocalisation_key_numbers(fake_results)["coloc_t_mean"] == "100.0"


def test_table1_summary_numbers_and_the_st_against_plain_comparisons():
    from stnbook.table1 import report as t1

    results = {c: {"test_error": e} for c, e in [("R-cnn", 2.0), ("R-st-cnn-affine", 1.5), ("R-st-cnn-tps", 1.0),
                                                   ("R-fcn", 3.0), ("R-st-fcn-affine", 4.0), ("TC-fcn", 20.0)]}
    comparisons = t1.st_vs_plain(results)
    assert [(c["distortion"], c["arch"], c["transform"], c["better"]) for c in comparisons] == \
        [("R", "fcn", "affine", False), ("R", "cnn", "tps", True)]
    table = t1.st_vs_plain_html(results)
    assert "<th>R</th><td>CNN</td><td>ST-CNN TPS</td><td>1.00</td><td>2.00</td><td>better</td>" in table
    assert "<td>4.00</td><td>3.00</td><td>not better</td>" in table
    out = t1.shortfall_key_numbers(results)
    # paper: R CNN 1.2, ST-CNN Aff 0.7, ST-CNN TPS 0.7, FCN 2.1, ST-FCN Aff 1.2, TC FCN 13.2; worst gap TC FCN +6.8
    assert (out["table1_above"], out["table1_compared"]) == ("6", "6")
    assert (out["table1_worst_cell"], out["table1_worst_gap"]) == ("TC FCN", "+6.80")
    assert (out["table1_st_cnn_min"], out["table1_st_cnn_max"]) == ("1.4", "2.1")  # 1.0 / 0.7 and 1.5 / 0.7
    assert (out["table1_better"], out["table1_comparisons"]) == ("1", "2")
    assert out["table1_median_gap"] == "+0.90"  # gaps 0.3, 0.8, 0.8, 0.9, 2.8, 6.8: the upper median
    assert t1.shortfall_key_numbers({})["table1_above"] == "n/a"


def test_colocalisation_row_shows_the_best_complete_profile(fake_results):
    """Two embeddings (two-stage) replace the features-only run on the landing table only once every problem of its
    seed 0 has an artifact; the row names the method."""
    t_title = "Co-localisation (A.2), T: images localised"
    for d in range(10):  # two-stage: T-0..T-9 at 50%, TC only for 0..8: incomplete, the full profile stays
        write_metrics(fake_results, "colocalisation", "two-stage", f"T-{d}", success=50.0,
                      model_config={"canvas": 84, "out_size": 28})
        if d < 9:
            write_metrics(fake_results, "colocalisation", "two-stage", f"TC-{d}", success=80.0,
                          model_config={"canvas": 84, "out_size": 28})
    art = glance.Artifacts(fake_results)
    assert glance.colocalisation_profile(art) == "full"
    assert by_title(glance.rows(fake_results))[t_title].ours_value == 0.0
    write_metrics(fake_results, "colocalisation", "two-stage", "TC-9", success=80.0,
                  model_config={"canvas": 84, "out_size": 28})
    assert glance.colocalisation_profile(glance.Artifacts(fake_results)) == "two-stage"
    t = by_title(glance.rows(fake_results))[t_title]
    assert t.ours_value == 50.0 and "two embeddings" in t.ours
    k = glance.colocalisation_key_numbers(fake_results)
    assert (k["coloc_t_mean"], k["coloc_tc_mean"], k["coloc_profile"]) == ("50.0", "80.0", "two-stage")
    assert k["coloc_t_missed"] == "50.0"  # one decimal: a class missing 1 image in 200 must not read as 0
    assert "two embeddings" in k["coloc_changes"] and set(glance.COLOC_CHANGES) == set(glance.COLOC_PROFILES)


def test_rectify_rows_quote_the_curriculum_and_check_the_target(tmp_path):
    empty = glance.rectify_rows(glance.Artifacts(tmp_path))
    assert len(empty) == 2 and all(r.ours == "no artifacts" and r.verdict == glance.NOT_YET for r in empty)
    fit = lambda slope, r: {"rectification": {"slope": slope, "r": r, "intercept": 0.0}}  # noqa: E731
    write_metrics(tmp_path, "rectify", "full", "R-st-cnn-affine", test_error=0.9, **fit(-0.53, -0.81))
    cnn, fcn = glance.rectify_rows(glance.Artifacts(tmp_path))
    assert "ST-CNN" in cnn.result and "slope 0.53, r 0.81" in cnn.ours and cnn.verdict == glance.NOT_YET
    assert "trained on every rotation" in cnn.ours and fcn.ours == "no artifacts"
    write_metrics(tmp_path, "rectify", "ramp", "R-st-cnn-affine", test_error=0.8, **fit(-0.95, -0.93))
    cnn = glance.rectify_rows(glance.Artifacts(tmp_path))[0]
    assert "slope 0.95, r 0.93" in cnn.ours and cnn.verdict == glance.REPRODUCED and cnn.runs[0]["profile"] == "ramp"
    assert "distortion curriculum; 0.80% error" in cnn.ours and "from the start: slope 0.53" in cnn.ours


def test_table1_row_averages_the_other_seeds_of_the_best_run(fake_results):
    title = "Distorted MNIST (Table 1), RTS (rotated, scaled, translated): best ST-CNN"
    assert "seeds" not in by_title(glance.rows(fake_results))[title].ours  # seed 0 alone
    write_metrics(fake_results, "table1", "long", "RTS-st-cnn-affine/seed1", test_error=0.8, steps=400)
    write_metrics(fake_results, "table1", "full", "RTS-st-cnn-affine/seed2", test_error=9.9)  # another profile
    row = by_title(glance.rows(fake_results))[title]
    assert row.ours_value == 0.6 and "2 seeds: 0.70 &plusmn; 0.14%" in row.ours


def test_a_run_of_a_fixed_recipe_replaces_the_runs_it_supersedes_however_long(tmp_path):
    w = lambda *a, **k: write_metrics(tmp_path, "table1", *a, **k)
    w("adam", "TC-fcn", test_error=40.0, steps=60_000)
    w("adam-400k", "TC-fcn", test_error=26.0, steps=60_000)
    w("adam-400k-long", "TC-fcn", test_error=22.0, steps=300_000)
    w("adam-400k", "RTS-fcn", test_error=6.0, steps=60_000)
    w("adam-400k-long", "RTS-fcn", test_error=9.0, steps=300_000)
    art = glance.Artifacts(tmp_path)
    assert art.best("table1", "TC-fcn")["profile"] == "adam-400k-long"  # the most training, while nothing fixes it
    w("adam-400k-warmup", "TC-fcn", test_error=30.0, steps=60_000)  # worse, and still the one quoted: the recipe decides
    w("adam-400k-warmup", "RTS-fcn", test_error=5.0, steps=60_000)
    art = glance.Artifacts(tmp_path)
    assert art.best("table1", "TC-fcn")["test_error"] == 30.0
    assert art.best("table1", "RTS-fcn")["profile"] == "adam-400k-warmup"
    w("adam", "E-fcn", test_error=2.0, steps=60_000)  # a profile the fix does not supersede: most training, tie: later
    w("adam-400k-warmup", "E-fcn", test_error=3.0, steps=60_000)
    assert glance.Artifacts(tmp_path).best("table1", "E-fcn")["profile"] == "adam-400k-warmup"
    assert glance.Artifacts(tmp_path).best("table1", "P-fcn") is None
