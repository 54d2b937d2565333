"""Tables and figures of the rectify experiment (shown in the distorted-MNIST chapter), from its artifacts."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.figures import html_table, imshow
from stnbook.table1.report import (
    PAPER_TABLE1,
    cell_id,
    implied_on_test,
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
    from stnbook.table1.units import load_run
    from stnlib.analysis import rectification

    got = load_run(cell, "paper")
    if got is None:
        return None
    model, run = got
    sim, data = implied_on_test(model, "R")
    return {"step": run["step"], "error": run["error"],
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
        # the paper-schedule run at its latest state, signed as measured
        "rect_paper_step": "n/a" if paper_rect is None else f"{paper_rect['step']:,}",
        "rect_paper_slope": "n/a" if paper_rect is None else f"{paper_rect['rotation']['slope']:+.2f}",
        "rect_paper_r": "n/a" if paper_rect is None else f"{paper_rect['rotation']['r']:+.2f}",
        "rect_paper_error": "n/a" if paper_rect is None or paper_rect["error"] is None else f"{paper_rect['error']:.2f}",
    }


VARIANT_PROFILES = ("full", "loclr3", "loclr10", "narrow")  # the recipe, and what was changed in it


def variant_progress(cell: str = "R-st-cnn-affine", profiles=VARIANT_PROFILES) -> dict[str, dict]:
    """Per rectify profile with an artifact or a checkpoint of ``cell``: its description, state, step reached and
    eval history (test error, rotation slope and r on the probe's 1,000 test images at every evaluation)."""
    import json

    from stnbook.experiments import artifact_dir, get_cells, get_profile, run_dir_of
    from stnlib.io import safe_torch_load

    c = get_cells("rectify", [cell])[0]
    out = {}
    for name in profiles:
        prof = get_profile("rectify", name)
        done, ckpt = artifact_dir(c, name) / "metrics.json", run_dir_of(c, name) / "checkpoint.pt"
        if done.exists():
            m = json.loads(done.read_text())
            state, step, evals = "finished", m["steps"], m["eval_history"]
        elif ckpt.exists():
            st = safe_torch_load(ckpt, map_location="cpu")
            state, step, evals = "stopped", int(st["step"]), st["eval_history"]
        else:
            continue
        out[name] = {"description": prof.description, "state": state, "step": step, "of": prof.steps,
                     "evals": [e for e in evals if "rect_slope" in e],
                     "final": ({"rectification": m["rectification"], "test_error": m["test_error"]}
                               if state == "finished" else None)}
    return out


def variants_html(progress: dict[str, dict], at: tuple[int, ...] = (5_000, 10_000, 15_000, 30_000, 60_000)) -> str:
    """HTML table: per variant, the rotation slope (and test error) at the same steps of training."""
    body = []
    for name, p in progress.items():
        by_step = {e["step"]: e for e in p["evals"]}
        cells = [f"{by_step[s]['rect_slope']:+.2f} ({by_step[s]['error']:.2f}%)" if s in by_step else "&ndash;"
                 for s in at]
        body.append([name, p["description"], *cells, f"{p['step']:,} of {p['of']:,}"])
    return html_table(["profile", "what changes", *(f"step {s:,}" for s in at), "trained"], body)


def plot_variants(progress: dict[str, dict], ax=None):
    """Rotation slope over training per variant (magnitude; 1 = the whole rotation undone)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.0))
    for name, p in progress.items():
        pts = [(e["step"], abs(e["rect_slope"])) for e in p["evals"]]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=name)
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0)
    ax.set(xlabel="Adam step (batch 128)", ylabel="|rotation slope|", ylim=(0, 1.25))
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax


def variant_key_numbers(progress: dict[str, dict], step: int = 15_000) -> dict[str, str]:
    """|slope| of each variant at ``step`` (keys ``rect_var_<profile>``; "n/a" where it did not get there), and
    the best of them."""
    out, best = {}, None
    for name in VARIANT_PROFILES:
        e = next((e for e in progress.get(name, {}).get("evals", []) if e["step"] == step), None)
        out[f"rect_var_{name}"] = "n/a" if e is None else f"{abs(e['rect_slope']):.2f}"
        if e is not None and (best is None or abs(e["rect_slope"]) > best[1]):
            best = (name, abs(e["rect_slope"]))
    out["rect_var_step"] = f"{step:,}"
    out["rect_var_best"] = "n/a" if best is None else best[0]
    # the narrow classifier against the recipe, at the evaluations both reached
    full = {e["step"]: e for e in progress.get("full", {}).get("evals", [])}
    both = [(e, full[e["step"]]) for e in progress.get("narrow", {}).get("evals", []) if e["step"] in full]
    out["rect_var_narrow_more"] = str(sum(abs(n["rect_slope"]) > abs(f["rect_slope"]) for n, f in both))
    out["rect_var_narrow_worse"] = str(sum(n["error"] > f["error"] for n, f in both))
    out["rect_var_common"] = str(len(both))
    # both finished: the fit on the whole test set (10,000 images) at the end of training
    fin = {name: progress[name]["final"] for name in ("narrow", "full") if progress.get(name, {}).get("final")}
    for name in ("narrow", "full"):
        f = fin.get(name)
        out[f"rect_var_final_{name}"] = "n/a" if f is None else \
            f"{abs(f['rectification']['slope']):.2f} (r {abs(f['rectification']['r']):.2f}, {f['test_error']:.2f}% error)"
    out["rect_var_final_cmp"] = "n/a" if len(fin) < 2 else (
        "higher" if abs(fin["narrow"]["rectification"]["slope"]) > abs(fin["full"]["rectification"]["slope"]) else "lower")
    return out


def rectify_models(profile: str) -> dict[str, object]:
    """The trained R transformers of the rectify experiment, by label (those with an artifact)."""
    out = {}
    for cell in ("R-st-fcn-affine", "R-st-cnn-affine"):
        got = common.chapter_cell("rectify", cell, profile)
        if got is not None:
            m = got[0]
            out[f"{rectify_label(cell)}, {m['steps']:,} steps: rotation slope {m['rectification']['slope']:+.2f}"] = got[1]
    return out


def r180_key_numbers(stats: dict[int, dict[str, float]], prefix: str = "r180") -> dict[str, str]:
    """The numbers the R180 prose quotes (strings, keys starting with ``prefix``), from
    :func:`~stnbook.table1.report.pose_by_class`."""
    axial = [s["axial"] for s in stats.values()]
    axes = [abs(s["axis_deg"]) for s in stats.values()]
    one = [s["resultant"] for s in stats.values()]
    return {f"{prefix}_one_pose_max": f"{max(one):.2f}", f"{prefix}_one_pose_min": f"{min(one):.2f}",
            f"{prefix}_pose_max": f"{max(abs(s['mean_deg']) for s in stats.values()):.0f}",
            f"{prefix}_axial_min": f"{min(axial):.2f}", f"{prefix}_axial_max": f"{max(axial):.2f}",
            f"{prefix}_input_axial_max": f"{max(s['input_axial'] for s in stats.values()):.2f}",
            f"{prefix}_axis_max": f"{max(axes):.0f}"}


def r180_pose(profile: str, cell: str = "R180-st-fcn-affine", prefix: str = "r180"):
    """(HTML table, figure, key numbers with ``prefix``) of the output pose per class for an R180 transformer,
    or None without an artifact."""
    got = common.chapter_cell("rectify", cell, profile)
    if got is None:
        return None
    metrics, _, analysis = got
    data = test_set("R180", len(analysis["theta"]))
    stats = pose_by_class(analysis["theta"], data)
    body = [[c, f"{s['resultant']:.2f}", f"{s['mean_deg']:+.0f}", f"{s['axial']:.2f}", f"{s['axis_deg']:+.0f}",
             f"{s['input_axial']:.2f}"] for c, s in stats.items()]
    table = html_table(["digit", "concentration on one pose", "that pose (deg)", "on one pose or its opposite (axial)",
                        "that axis (deg)", "axial concentration of the inputs"], body,
                       caption=f"{rectify_label(cell)}: {metrics['test_error']:.2f}% test error; 1 = every output "
                               "in one pose, 0 = no preferred pose")
    return table, plot_pose_by_class(analysis["theta"], data), r180_key_numbers(stats, prefix)


def training_snapshots(profile: str, cell: str = "R-st-fcn-affine") -> dict | None:
    """The transformer over training, from the artifact's records (:class:`~stnbook.rectify.experiment.ThetaSnapshots`):
    ``{"steps", "x" (N, 1, 28, 28) test inputs, "angles" (N,), "outputs" (S, N, 1, 28, 28), "rotation" (S, N)}``;
    None (with a note) when the artifact has none."""
    from stnlib.analysis import rotation_deg, warp

    got = common.chapter_cell("rectify", cell, profile)
    if got is None:
        return None
    snaps = sorted(got[2].get("records", {}).get("snapshots", []), key=lambda s: s["step"])
    if not snaps:
        print(f"[{cell} has no training snapshots: `python -m stnbook run rectify --profile {profile} --cells {cell} "
              "--force` records them]")
        return None
    n = snaps[0]["theta"].shape[0]
    data = test_set("R", n)
    outputs = torch.stack([warp(data["x"], s["theta"].float(), "affine") for s in snaps])
    return {"steps": [s["step"] for s in snaps], "x": data["x"], "angles": data["params"]["angle_deg"][:n],
            "outputs": outputs, "rotation": torch.stack([rotation_deg(s["theta"].float()) for s in snaps]),
            "label": rectify_label(cell)}


def plot_training_strip(snap: dict, columns: int = 10):
    """Rows: the inputs, then the transformer's outputs at each recorded step (the implied rotation printed)."""
    steps, n = snap["steps"], min(columns, snap["x"].shape[0])
    fig, axes = plt.subplots(len(steps) + 1, n, figsize=(0.72 * n + 0.9, 0.74 * (len(steps) + 1)))
    for c in range(n):
        imshow(axes[0, c], snap["x"][c], f"{float(snap['angles'][c]):+.0f}\N{DEGREE SIGN}")
        for r in range(len(steps)):
            imshow(axes[r + 1, c], snap["outputs"][r, c], f"{float(snap['rotation'][r, c]):+.0f}\N{DEGREE SIGN}")
    axes[0, 0].set_ylabel("input", fontsize=7, rotation=0, ha="right", va="center")
    for r, s in enumerate(steps):
        axes[r + 1, 0].set_ylabel(f"step {s:,}", fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.title.set_fontsize(6)
    fig.tight_layout(pad=0.2, h_pad=0.1, w_pad=0.1)
    return fig


def training_animation_html(snap: dict, digits: int = 6, zoom: int = 2, ms_per_frame: int = 900) -> str:
    """The same snapshots as an animated GIF in the page: one frame per recorded step, the first ``digits``
    inputs on the left half of each tile and the transformer's output on the right, the step written above."""
    import base64
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    n = min(int(digits), snap["x"].shape[0])
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    tile, gap, head = 28 * zoom, 6, 22

    def to_img(t):
        a = (t[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
        return Image.fromarray(a).resize((tile, tile), Image.NEAREST)

    width = cols * (2 * tile + 3 * gap)
    height = head + rows * (tile + gap)
    frames = []
    for k, step in enumerate(snap["steps"]):
        frame = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(frame)
        draw.text((gap, 4), f"training step {step:,}  (each pair: input, output)", fill=0)
        for i in range(n):
            r, c = divmod(i, cols)
            x0, y0 = c * (2 * tile + 3 * gap) + gap, head + r * (tile + gap)
            frame.paste(to_img(snap["x"][i]), (x0, y0))
            frame.paste(to_img(snap["outputs"][k, i]), (x0 + tile + gap // 2, y0))
        frames.append(frame)
    buf = io.BytesIO()
    durations = [ms_per_frame] * (len(frames) - 1) + [3 * ms_per_frame]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    data = base64.b64encode(buf.getvalue()).decode()
    alt = (f"Animation: {n} rotated test digits and the {snap['label']}'s outputs at training steps "
           + ", ".join(f"{s:,}" for s in snap["steps"]))
    return (f'<img class="stn-animation" src="data:image/gif;base64,{data}" alt="{alt}" '
            f'width="{2 * width}" height="{2 * height}" style="max-width: 100%; height: auto; '
            f'image-rendering: pixelated;">')


def snapshot_numbers(snap: dict | None) -> dict[str, str]:
    """What the training snapshots show, as the chapter's glue strings: the mean |rotation| the transformer
    applies at the last snapshot, and the mean deviation of the digits from upright (applied angle plus implied
    rotation; 0 is upright) in the inputs and in the outputs at the end, over the snapshot digits ("n/a" for
    every key without snapshots)."""
    keys = ("snap_digits", "snap_points", "snap_last", "snap_turn_end", "snap_pose_start", "snap_pose_end")
    if snap is None:
        return dict.fromkeys(keys, "n/a")
    pose = snap["angles"][None].float() + snap["rotation"]
    return {"snap_digits": f"{snap['x'].shape[0]}", "snap_points": f"{len(snap['steps'])}",
            "snap_last": f"{snap['steps'][-1]:,}",
            "snap_turn_end": f"{float(snap['rotation'][-1].abs().mean()):.0f}",
            "snap_pose_start": f"{float(pose[0].abs().mean()):.0f}",
            "snap_pose_end": f"{float(pose[-1].abs().mean()):.0f}"}


# the distortion curriculum (profile "ramp") against the recipe without it (profile "full"), same cells and budget
RAMP_CELLS = ("R-st-fcn-affine", "R-st-cnn-affine", "R180-st-fcn-affine", "R180-st-cnn-affine")
RAMP_PROFILES = ("full", "ramp")


def rectified(fit: dict) -> bool:
    """The target for a transformer that undoes the rotation: |r| >= 0.9 and |slope| in [0.8, 1.2]."""
    return abs(fit["r"]) >= 0.9 and 0.8 <= abs(fit["slope"]) <= 1.2


def ramp_results(cells=RAMP_CELLS, profiles=RAMP_PROFILES) -> dict[str, dict[str, dict]]:
    """{cell: {profile: metrics}} of the committed rectify artifacts with and without the distortion ramp
    (cells and profiles without an artifact are left out)."""
    from stnbook.experiments import load_results

    by_profile = {p: load_results("rectify", p) for p in profiles}
    out = {}
    for c in cells:
        got = {p: by_profile[p][c] for p in profiles if c in by_profile[p]}
        if got:
            out[c] = got
    return out


def ramp_html(results: dict[str, dict[str, dict]]) -> str:
    """HTML table: per cell and profile, test error and the rotation fit on the whole test set (slope, r,
    intercept: the pose the outputs settle in), the target met or not, and the compute."""
    body = []
    for c, runs in results.items():
        for p, m in runs.items():
            fit = m["rectification"]
            body.append([rectify_label(c), p, f"{m['test_error']:.2f}", f"{fit['slope']:+.2f}", f"{fit['r']:+.2f}",
                         f"{fit['intercept']:+.1f}", "yes" if rectified(fit) else "no", f"{m['steps']:,}",
                         f"{m['wall_time_s'] / 60:.1f} min"])
    return html_table(["cell", "profile", "% error", "rotation slope", "r", "intercept (deg)", "undone?", "steps",
                       "wall time (1 CPU thread)"], body,
                      caption="undone: |r| >= 0.9 and |slope| in [0.8, 1.2]; the intercept is the rotation left on an "
                              "upright input")


def plot_ramp_over_training(results: dict[str, dict[str, dict]], ax=None):
    """|rotation slope| at every evaluation (probe: 1,000 test images), solid with the ramp, dashed without;
    the shaded band is the target, the span where the rotations grow is marked."""
    from stnbook.experiments import get_profile

    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 3.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (c, runs) in enumerate(results.items()):
        for p, m in runs.items():
            pts = [(0, 0.0)] + [(e["step"], abs(e["rect_slope"])) for e in m["eval_history"] if "rect_slope" in e]
            ax.plot(*zip(*pts), marker="o", ms=3, color=colors[k % len(colors)], ls="-" if p == "ramp" else "--",
                    label=f"{rectify_label(c)}, {p}")
    start, end = get_profile("rectify", "ramp").ramp_steps("R-st-cnn-affine")
    ax.axvspan(start, end, color="#fde9c9", zorder=0, label="ramp: rotations growing")
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0, label="undone (|slope| 0.8-1.2)")
    ax.set(xlabel="Adam step (batch 128)", ylabel="|rotation slope|", ylim=(0, 1.3))
    ax.legend(fontsize=6.5, ncol=2)
    ax.figure.tight_layout()
    return ax


def ramp_key_numbers(results: dict[str, dict[str, dict]]) -> dict[str, str]:
    """The numbers the curriculum's prose quotes (keys ``ramp_<arch>_<what>``, and ``noramp_<arch>_<what>`` for the
    full profile, for the R cells; ``..._met`` "meets" / "does not meet" the target; "n/a" where a run is missing)."""
    from stnbook.experiments import get_profile

    out = {}
    for arch in ("fcn", "cnn"):
        for p in RAMP_PROFILES:
            m = results.get(f"R-st-{arch}-affine", {}).get(p)
            fit = None if m is None else m["rectification"]
            pre = f"{'noramp' if p == 'full' else p}_{arch}"
            out[f"{pre}_slope"] = "n/a" if m is None else f"{abs(fit['slope']):.2f}"
            out[f"{pre}_r"] = "n/a" if m is None else f"{abs(fit['r']):.2f}"
            out[f"{pre}_error"] = "n/a" if m is None else f"{m['test_error']:.2f}"
            out[f"{pre}_intercept"] = "n/a" if m is None else f"{abs(fit['intercept']):.0f}"
            out[f"{pre}_sd"] = "n/a" if m is None else f"{fit['residual_sd']:.0f}"
            out[f"{pre}_met"] = "n/a" if m is None else ("meets" if rectified(fit) else "does not meet")
        m = results.get(f"R-st-{arch}-affine", {}).get("ramp")
        out[f"ramp_{arch}_minutes"] = "n/a" if m is None else f"{m['wall_time_s'] / 60:.0f}"
    m = results.get("R-st-cnn-affine", {}).get("ramp")
    out["ramp_cnn_vs_paper"] = "n/a" if m is None else f"{m['test_error'] / PAPER_R_ST_CNN:.1f}"
    start, end = get_profile("rectify", "ramp").ramp_steps("R-st-cnn-affine")
    out["ramp_start"], out["ramp_end"] = f"{start:,}", f"{end:,}"
    for arch in ("fcn", "cnn"):
        m = results.get(f"R180-st-{arch}-affine", {}).get("ramp")
        out[f"r180_ramp_{arch}_slope"] = "n/a" if m is None else f"{abs(m['rectification']['slope']):.2f}"
        out[f"r180_ramp_{arch}_r"] = "n/a" if m is None else f"{abs(m['rectification']['r']):.2f}"
        out[f"r180_ramp_{arch}_error"] = "n/a" if m is None else f"{m['test_error']:.2f}"
        m = results.get(f"R180-st-{arch}-affine", {}).get("full")
        out[f"r180_noramp_{arch}_error"] = "n/a" if m is None else f"{m['test_error']:.2f}"
    return out


def ramp_seed_numbers(cells=("R-st-fcn-affine", "R-st-cnn-affine"), seeds=(0, 1, 2), profile: str = "ramp",
                      prefix: str = "ramp") -> dict[str, str]:
    """The curriculum's runs (rectify ``profile``) of ``cells`` with every seed that has an artifact: keys
    ``<prefix>_<arch>_seed_fits`` (each seed's |slope| and |r|), ``<prefix>_<arch>_seed_errors`` and
    ``<prefix>_<arch>_seeds_met`` ("k of n" seeds meeting the target); "n/a" without runs."""
    from stnbook.experiments import load_results

    runs = {s: load_results("rectify", profile, seed=s) for s in seeds}
    out = {}
    for cell in cells:
        arch = cell.split("-")[2]
        got = [(s, r[cell]) for s, r in runs.items() if cell in r]
        out[f"{prefix}_{arch}_seed_fits"] = ", ".join(
            f"{abs(m['rectification']['slope']):.2f} (r {abs(m['rectification']['r']):.2f}, seed {s})" for s, m in got) or "n/a"
        out[f"{prefix}_{arch}_seed_errors"] = ", ".join(f"{m['test_error']:.2f}%" for _, m in got) or "n/a"
        out[f"{prefix}_{arch}_seeds_met"] = (f"{sum(rectified(m['rectification']) for _, m in got)} of {len(got)}"
                                             if got else "n/a")
    return out


# the curriculum at two model sizes: the R column's budget (profile "ramp", 42k parameters) and the Table 1 adam
# profile's (profile "ramp-150k", 150k), where the wider classifier can absorb more of the rotation itself
SIZE_PROFILES = ("ramp", "ramp-150k")
SIZE_CELLS = ("R-st-fcn-affine", "R-st-cnn-affine")


def size_progress(cells=SIZE_CELLS, profiles=SIZE_PROFILES) -> dict[str, dict[str, dict]]:
    """{cell: {profile: progress}} of the curriculum's runs at each model size (artifact or checkpoint; see
    :func:`variant_progress`), each with its model's ``params``; runs with neither are left out."""
    from stnbook.experiments import cell_model, get_cells, get_profile
    from stnlib.models import build_model

    out = {}
    for cell in cells:
        got = variant_progress(cell, profiles)
        c = get_cells("rectify", [cell])[0]
        for name, p in got.items():
            p["params"] = sum(t.numel() for t in build_model(cell_model(c, get_profile("rectify", name))).parameters())
        if got:
            out[cell] = got
    return out


def size_html(progress: dict[str, dict[str, dict]], at: tuple[int, ...] = (5_000, 15_000, 25_000, 40_000, 60_000)) -> str:
    """HTML table: per cell and model size, the probe's rotation slope (and test error) at the same steps, and the
    fit on the whole test set once the run has finished."""
    body = []
    for cell, runs in progress.items():
        for name, p in runs.items():
            by_step = {e["step"]: e for e in p["evals"]}
            f = p["final"]
            body.append([rectify_label(cell), f"{p['params'] / 1000:.0f}k ({name})",
                         *(f"{by_step[s]['rect_slope']:+.2f} ({by_step[s]['error']:.2f}%)" if s in by_step else "&ndash;"
                           for s in at),
                         f"{p['step']:,} of {p['of']:,}",
                         "&ndash;" if f is None else
                         f"{f['rectification']['slope']:+.2f} (r {f['rectification']['r']:+.2f}, "
                         f"{f['test_error']:.2f}%): {'yes' if rectified(f['rectification']) else 'no'}"])
    return html_table(["cell", "parameters (profile)", *(f"step {s:,}" for s in at), "trained",
                       "whole test set at the end: slope (r, % error): undone?"], body,
                      caption="rotation slope on the probe's 1,000 test images (test error on all 10,000) at each "
                              "evaluation; undone: |r| >= 0.9 and |slope| in [0.8, 1.2]")


def plot_size_over_training(progress: dict[str, dict[str, dict]], ax=None):
    """|rotation slope| over training per cell, solid at the R column's budget, dotted at 150k parameters."""
    from stnbook.experiments import get_profile

    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 3.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (cell, runs) in enumerate(progress.items()):
        for name, p in runs.items():
            pts = [(0, 0.0)] + [(e["step"], abs(e["rect_slope"])) for e in p["evals"]]
            ax.plot(*zip(*pts), marker="o", ms=3, color=colors[k % len(colors)], ls=":" if name == "ramp-150k" else "-",
                    label=f"{rectify_label(cell)}, {p['params'] / 1000:.0f}k")
    start, end = get_profile("rectify", "ramp").ramp_steps("R-st-cnn-affine")
    ax.axvspan(start, end, color="#fde9c9", zorder=0, label="rotations growing")
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0, label="undone (|slope| 0.8-1.2)")
    ax.set(xlabel="Adam step (batch 128)", ylabel="|rotation slope|", ylim=(0, 1.3))
    ax.legend(fontsize=6.5, ncol=2)
    ax.figure.tight_layout()
    return ax


def size_key_numbers(progress: dict[str, dict[str, dict]]) -> dict[str, str]:
    """What the prose says of each R transformer trained with the curriculum at 150k parameters, against the same
    cell at the R column's budget (keys ``size_<arch>``): its fit on the whole test set once finished, or the
    probe's slope at the latest evaluation both sizes reached while it trains."""
    out = {}
    for arch in ("fcn", "cnn"):
        runs = progress.get(f"R-st-{arch}-affine", {})
        big, small = runs.get("ramp-150k"), runs.get("ramp")
        if big is None:
            out[f"size_{arch}"] = "has not been trained at 150k parameters"
        elif big["final"] is not None:
            f = big["final"]
            said = (f"{'meets' if rectified(f['rectification']) else 'does not meet'} the target at 150k parameters: "
                    f"slope {abs(f['rectification']['slope']):.2f} (r {abs(f['rectification']['r']):.2f}) at "
                    f"{f['test_error']:.2f}% test error")
            if small is not None and small["final"] is not None:
                s = small["final"]
                said += (f", against {abs(s['rectification']['slope']):.2f} (r {abs(s['rectification']['r']):.2f}) at "
                         f"{s['test_error']:.2f}% with {small['params'] / 1000:.0f}k")
            out[f"size_{arch}"] = said
        else:
            theirs = {e["step"]: e for e in ([] if small is None else small["evals"])}
            common_steps = [e for e in big["evals"] if e["step"] in theirs]
            said = f"has trained {big['step']:,} of its {big['of']:,} steps at 150k parameters"
            if common_steps:
                e = common_steps[-1]
                t = theirs[e["step"]]
                said += (f"; at step {e['step']:,} its slope on the probe's images is {abs(e['rect_slope']):.2f} at "
                         f"{e['error']:.2f}% test error, against {abs(t['rect_slope']):.2f} at {t['error']:.2f}% with "
                         f"{small['params'] / 1000:.0f}k at the same step")
            out[f"size_{arch}"] = said
    return out


def size_adam_errors() -> dict[str, str]:
    """Test error of the R ST-FCN and ST-CNN affine of Table 1's adam profile (the same size and recipe, without
    the curriculum), keys ``size_<arch>_adam_error``; "n/a" where a run is missing."""
    from stnbook.experiments import load_results

    adam = load_results("table1", "adam")
    return {f"size_{arch}_adam_error": f"{adam[c]['test_error']:.2f}" if c in adam else "n/a"
            for arch, c in (("fcn", "R-st-fcn-affine"), ("cnn", "R-st-cnn-affine"))}
