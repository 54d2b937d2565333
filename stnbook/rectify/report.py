"""Tables and figures of the rectify experiment (shown in the distorted-MNIST chapter), from its artifacts."""

from __future__ import annotations

from stnbook import artifacts as common
from stnbook.figures import html_table
from stnbook.table1.report import (
    PAPER_TABLE1,
    cell_id,
    implied_on_test,
    paper_progress,
    plot_pose_by_class,
    pose_by_class,
    row_name,
    test_set,
)

RECTIFY_SMOKE = ["R-st-fcn-affine", "R-st-cnn-affine", "R180-st-fcn-affine"]


def rectification_cells() -> list[str]:
    """Every transformer cell of the R and RTS columns."""
    return [cell_id(d, arch, tf) for d in ("R", "RTS") for arch in ("fcn", "cnn") for tf in ("affine", "projective", "tps")]


def rectify_label(cell: str) -> str:
    kind, rest = cell.split("-", 1)
    return f"{kind} {row_name(rest.split('-')[1], 'affine')}"


def rectify_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile) of the rectify experiment: its committed full run, or smoke cells trained now."""
    return common.chapter_results("rectify", profile, RECTIFY_SMOKE)


def rectify_html(rect: dict[str, dict]) -> str:
    """HTML table: per rectify cell, test error, rotation fit on the whole test set, and its compute."""
    body = [[rectify_label(c), f"{m['test_error']:.2f}", f"{m['rectification']['slope']:+.2f}",
             f"{m['rectification']['r']:+.2f}", f"{m['steps']:,}", f"{m['wall_time_s'] / 60:.1f} min"]
            for c, m in rect.items()]
    return html_table(["cell", "% error", "rotation slope", "r", "steps", "wall time (1 CPU thread)"], body)


def paper_rectification(cell: str = "R-st-cnn-affine") -> dict | None:
    """The rotation fit of the paper-profile R ST-CNN at its latest state (artifact or checkpoint), on the
    whole R test set; None when there is neither."""
    from stnbook.experiments import cell_model, get_cells, get_experiment, get_profile
    from stnlib.analysis import rectification
    from stnlib.io import safe_torch_load

    progress = paper_progress([cell]).get(cell)
    if progress is None:
        return None
    if progress["state"] == "finished":
        _, model, _ = common.chapter_cell("table1", cell, "paper")
    else:
        from stnbook.experiments import run_dir_of

        c = get_cells("table1", [cell])[0]
        model = get_experiment("table1").build(cell_model(c, get_profile("table1", "paper")))
        model.load_state_dict(safe_torch_load(run_dir_of(c, "paper") / "checkpoint.pt", map_location="cpu")["model"])
    sim, data = implied_on_test(model.eval(), "R")
    return {"step": progress["step"], "error": progress["error"],
            "rotation": rectification(data["params"]["angle_deg"], sim["rotation_deg"])}


PAPER_R_ST_CNN = PAPER_TABLE1[("cnn", "affine")][0]  # the paper's R ST-CNN Aff error, %


def rectify_key_numbers(rect: dict[str, dict], paper_rect: dict | None) -> dict[str, str]:
    """The numbers the rectification prose quotes (strings; "n/a" where a run is missing)."""
    def get(cell, f):
        m = rect.get(cell)
        return "n/a" if m is None else f(m)
    return {
        "rect_fcn_slope": get("R-st-fcn-affine", lambda m: f"{abs(m['rectification']['slope']):.2f}"),
        "rect_fcn_r": get("R-st-fcn-affine", lambda m: f"{abs(m['rectification']['r']):.2f}"),
        "rect_fcn_percent": get("R-st-fcn-affine", lambda m: f"{100 * abs(m['rectification']['slope']):.0f}"),
        "rect_fcn_error": get("R-st-fcn-affine", lambda m: f"{m['test_error']:.2f}"),
        "rect_cnn_slope": get("R-st-cnn-affine", lambda m: f"{abs(m['rectification']['slope']):.2f}"),
        "rect_cnn_error": get("R-st-cnn-affine", lambda m: f"{m['test_error']:.2f}"),
        "rect_cnn_vs_paper": get("R-st-cnn-affine", lambda m: f"{m['test_error'] / PAPER_R_ST_CNN:.1f}"),
        "r180_cnn_slope": get("R180-st-cnn-affine", lambda m: f"{abs(m['rectification']['slope']):.3f}"),
        "r180_cnn_spread": get("R180-st-cnn-affine", lambda m: f"{m['rectification']['residual_sd']:.1f}"),
        "r180_cnn_error": get("R180-st-cnn-affine", lambda m: f"{m['test_error']:.2f}"),
        "paper_cnn_slope": "n/a" if paper_rect is None else
        f"{abs(paper_rect['rotation']['slope']):.2f} at step {paper_rect['step']:,}",
    }


def rectify_models(profile: str) -> dict[str, object]:
    """The trained R transformers of the rectify experiment, by label (those with an artifact)."""
    out = {}
    for cell in ("R-st-fcn-affine", "R-st-cnn-affine"):
        got = common.chapter_cell("rectify", cell, profile)
        if got is not None:
            m = got[0]
            out[f"{rectify_label(cell)}, {m['steps']:,} steps: rotation slope {m['rectification']['slope']:+.2f}"] = got[1]
    return out


def r180_key_numbers(stats: dict[int, dict[str, float]]) -> dict[str, str]:
    """The numbers the R180 prose quotes (strings), from :func:`~stnbook.table1.report.pose_by_class`."""
    axial = [s["axial"] for s in stats.values()]
    axes = [abs(s["axis_deg"]) for s in stats.values()]
    return {"r180_one_pose_max": f"{max(s['resultant'] for s in stats.values()):.2f}",
            "r180_axial_min": f"{min(axial):.2f}", "r180_axial_max": f"{max(axial):.2f}",
            "r180_input_axial_max": f"{max(s['input_axial'] for s in stats.values()):.2f}",
            "r180_axis_max": f"{max(axes):.0f}"}


def r180_pose(profile: str, cell: str = "R180-st-fcn-affine"):
    """(HTML table, figure, key numbers) of the output pose per class for an R180 transformer, or None
    without an artifact."""
    got = common.chapter_cell("rectify", cell, profile)
    if got is None:
        return None
    metrics, _, analysis = got
    data = test_set("R180", len(analysis["theta"]))
    stats = pose_by_class(analysis["theta"], data)
    body = [[c, f"{s['resultant']:.2f}", f"{s['axial']:.2f}", f"{s['axis_deg']:+.0f}", f"{s['input_axial']:.2f}"]
            for c, s in stats.items()]
    table = html_table(["digit", "concentration on one pose", "on one pose or its opposite (axial)",
                        "that axis (deg)", "axial concentration of the inputs"], body,
                       caption=f"{rectify_label(cell)}: {metrics['test_error']:.2f}% test error; 1 = every output "
                               "in one pose, 0 = no preferred pose")
    return table, plot_pose_by_class(analysis["theta"], data), r180_key_numbers(stats)
