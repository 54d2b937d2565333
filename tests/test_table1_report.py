"""The numbers the Table 1 chapter's model-size section quotes (stnbook.table1.report), on made-up metrics."""

from __future__ import annotations

import matplotlib

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
