"""Tables, figures and the quoted numbers of the 3D chapter (paper A.3), computed from the volume3d artifacts.

The paper gives no number for its 3D experiment, only a figure and the claim that the 3D transformer learns to
orient the volume so that its flattened projection is a digit the classifier can read; what is compared here is
ours with and without the transformer, and how much of the applied 3D rotation the transformer undoes.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.figures import COLORS, html_table, imshow, set_view
from stnbook.paths import load_mnist
from stnbook.volume3d.experiment import CELLS, EXPERIMENT, PROFILES, SPEC
from stnlib.analysis import rotation_angle_deg, volume_pose
from stnlib.data.volumes import volume_test_set
from stnlib.geometry import BOX3D_EDGES, sampling_box3d

PLAIN = {"st3d-cnn": "cnn", "st3d-fcn": "fcn"}  # each transformer model and its plain classifier


def color(cell: str) -> str:
    """The cell's colour in every figure of the chapter."""
    return COLORS[list(CELLS).index(cell) % len(COLORS)]


def label(cell: str) -> str:
    """The model's name, e.g. "3D ST-CNN"."""
    arch, tf = CELLS[cell]
    return arch.upper() if tf is None else f"3D ST-{arch.upper()}"


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or every cell trained now with the smoke budget."""
    return common.chapter_results(EXPERIMENT, profile)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one cell, or None with a note saying which command makes it."""
    return common.chapter_cell(EXPERIMENT, cell, profile)


def missing_note(results: dict[str, dict], source: str) -> str:
    """Which cells have no artifact and the command that makes them (:func:`stnbook.artifacts.missing_note`)."""
    return common.missing_note(EXPERIMENT, list(CELLS), results, source, label)


# ---- the data and the models (no artifact needed) ------------------------------------------------------------------

def plot_data(n: int = 6):
    """The first ``n`` test volumes: the three maximum-intensity projections and the flattened image (the mean over
    the depth) a plain classifier sees; the applied rotation about x, y, z above each."""
    data = examples(n)
    scale = SPEC.size / SPEC.thickness
    rows = ["front (x, y)", "top (x, z)", "side (z, y)", "flattened"]
    fig, axes = plt.subplots(4, n, figsize=(1.25 * n + 0.8, 5.4), squeeze=False)
    for c in range(n):
        views = projections(data["x"][c]) + [data["x"][c, 0].mean(0) * scale]
        angles = "/".join(f"{float(a):+.0f}" for a in data["params"]["angles_deg"][c])
        for r, v in enumerate(views):
            imshow(axes[r, c], v, f"{int(data['y'][c])}: {angles}\N{DEGREE SIGN}" if r == 0 else None,
                   vmax=None if r == 3 else 1, fontsize=8)
    for r, name in enumerate(rows):
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def plot_tilt_demo(index: int = 0, tilts=(0, 15, 30, 45, 60)):
    """One test digit facing the viewer, then tilted about the y axis by each of ``tilts`` degrees (no other
    change): seen from the top (the slab) and flattened (what a classifier reads)."""
    from stnlib.data.volumes import apply_pose

    x, y = load_mnist("test")
    n = len(tilts)
    params = {"size": torch.full((n,), SPEC.size, dtype=torch.int64),
              "angles_deg": torch.tensor([[0.0, float(t), 0.0] for t in tilts], dtype=torch.float64),
              "scale": torch.ones(n, dtype=torch.float64), "translation": torch.zeros(n, 3, dtype=torch.float64)}
    vol = apply_pose(x[index:index + 1].expand(n, 28, 28), params, SPEC)
    scale = SPEC.size / SPEC.thickness
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n + 0.6, 2.9), squeeze=False)
    for c, t in enumerate(tilts):
        imshow(axes[0, c], projections(vol[c])[1], f"tilt {t}\N{DEGREE SIGN}", vmax=1)
        imshow(axes[1, c], vol[c, 0].mean(0) * scale, vmax=None)
    axes[0, 0].set_ylabel("top (x, z)", fontsize=8)
    axes[1, 0].set_ylabel("flattened", fontsize=8)
    fig.tight_layout()
    return fig


def models_html() -> str:
    """Per cell: the model's localisation net, classifier and parameter counts, built from its configuration."""
    from stnbook.experiments import cell_model, get_cells
    from stnlib.models import count_parameters
    from stnlib.models3d import build_volume_model

    rows = []
    for cell in get_cells(EXPERIMENT):
        cfg = cell_model(cell, PROFILES["full"])
        model = build_volume_model(cfg)
        loc = sum(p.numel() for p in model.localisation_parameters())
        sees = (f"its {cfg.st_out_size[0]}^3 output, flattened" if model.st is not None
                else f"the input, flattened, average-pooled by {cfg.pool}")
        rows.append([html.escape(label(cell.id)),
                     "&ndash;" if model.st is None else f"3D {(cfg.loc_arch or cfg.arch).upper()}",
                     f"{cfg.arch.upper()}, width {model.width}, on {html.escape(sees)}",
                     f"{loc:,}" if loc else "&ndash;", f"{count_parameters(model):,}"])
    return html_table(["model", "localisation net", "classifier (on a 20 x 20 image)", "localisation parameters",
                       "all parameters"], rows, row_headers=True)


# ---- numbers --------------------------------------------------------------------------------------------------------

def number(value: float, digits: int = 0) -> str:
    """``value`` with ``digits`` decimals, never a negative zero.

    Examples:
        >>> number(0.4231, 2), number(-0.001, 2), number(-0.3)
        ('0.42', '0.00', '0')
    """
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def percent(fraction: float) -> str:
    """A fraction as a whole percentage (:func:`number`), e.g. ``percent(0.423) == "42"``."""
    return number(100 * fraction)


def key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The numbers the chapter's prose quotes, as short strings ("n/a" for every one whose run is missing): per model
    its error; per transformer model whether it ``beats`` or ``does not beat`` its plain classifier
    (``st3d_cnn_vs_cnn``, ``st3d_fcn_vs_fcn``), how much of the rotation it undoes, the rotation and tilt left, the
    spread of its output poses and how far their mean pose is from upright (``_pose``), its per-axis slopes; the
    full profile's budget (``full_*``).

    Examples:
        >>> key_numbers({})["st3d_cnn_error"], key_numbers({})["st_beats_plain"], key_numbers({})["st3d_cnn_vs_cnn"]
        ('n/a', 'n/a', 'n/a')
        >>> run = {"steps": 10, "batch_size": 8, "params": 5_000}
        >>> key_numbers({"cnn": {**run, "test_error": 9.0}, "st3d-cnn": {**run, "test_error": 9.5}})["st3d_cnn_vs_cnn"]
        'does not beat'
    """
    def get(cell, f):
        m = results.get(cell)
        return "n/a" if m is None else f(m)

    out = {f"{c.replace('-', '_')}_error": get(c, lambda m: f"{m['test_error']:.2f}") for c in CELLS}
    for c, plain in PLAIN.items():
        key = c.replace("-", "_")
        rect = lambda f: get(c, lambda m: f(m["rectification"]) if "rectification" in m else "n/a")
        out[f"{key}_vs_{plain}"] = ("n/a" if c not in results or plain not in results else "beats"
                                    if results[c]["test_error"] < results[plain]["test_error"] else "does not beat")
        out[f"{key}_undone"] = rect(lambda r: percent(r["undone"]))
        out[f"{key}_residual"] = rect(lambda r: f"{r['residual_deg']:.0f}")
        out[f"{key}_tilt"] = rect(lambda r: f"{r['residual_tilt_deg']:.0f}")
        out[f"{key}_spread"] = rect(lambda r: f"{r['spread_deg']:.0f}")
        out[f"{key}_pose"] = rect(lambda r: f"{r['pose_deg']:.0f}")
        out[f"{key}_slopes"] = rect(lambda r: ", ".join(f"{a} {number(f['slope'], 2)}" for a, f in r["axes"].items()))
    any_rect = next((m["rectification"] for m in results.values() if "rectification" in m), None)
    out["applied_deg"] = "n/a" if any_rect is None else f"{any_rect['applied_deg']:.0f}"
    out["applied_tilt"] = "n/a" if any_rect is None else f"{any_rect['applied_tilt_deg']:.0f}"
    pairs = [(st, plain) for st, plain in PLAIN.items() if st in results and plain in results]
    better = sum(results[st]["test_error"] < results[plain]["test_error"] for st, plain in pairs)
    out["st_beats_plain"] = "n/a" if not pairs else f"{better} of {len(pairs)}"
    m = next(iter(results.values()), None)
    out["budget"] = "n/a" if m is None else f"{m['steps']:,} steps at batch {m['batch_size']}"
    out["params"] = "n/a" if m is None else f"{m['params'] / 1000:.0f}k"
    out["size"] = f"{SPEC.size}"
    out.update(common.budget_numbers(PROFILES["full"]))
    return out


def results_html(results: dict[str, dict]) -> str:
    """Per model: % test error, how much of the 3D rotation its transformer undoes, parameters and compute."""
    def rect(m, f):
        return f(m["rectification"]) if "rectification" in m else "&ndash;"

    rows = []
    for c in CELLS:
        m = results.get(c)
        if m is None:
            rows.append([html.escape(label(c)), "&ndash; (no artifact)", "", "", "", "", ""])
            continue
        rows.append([html.escape(label(c)), f"<b>{m['test_error']:.2f}</b>",
                     rect(m, lambda r: f"{percent(r['undone'])}%"),
                     rect(m, lambda r: f"{r['residual_deg']:.0f} (from {r['applied_deg']:.0f})"),
                     rect(m, lambda r: f"{r['residual_tilt_deg']:.0f} (from {r['applied_tilt_deg']:.0f})"),
                     f"{m['params']:,}", f"{m['steps']:,} x {m['batch_size']}, {m['wall_time_s'] / 60:.0f} min"])
    test = (f"{next(iter(results.values()))['test_size']:,} fixed test volumes of {SPEC.size}^3 voxels" if results
            else "no artifacts yet")
    return html_table(["model", "% test error", "rotation undone", "mean rotation left (deg)",
                       "mean tilt left (deg)", "parameters", "steps x batch, time"], rows,
                      caption=f"{test}; the paper gives no number", row_headers=True)


# ---- figures --------------------------------------------------------------------------------------------------------

VIEWS = (("front (x, y)", 0, (0, 1)), ("top (x, z)", 1, (0, 2)), ("side (z, y)", 2, (2, 1)))
"""Maximum-intensity projections of a (D, H, W) volume: title, the axis the maximum runs along, and which two box
coordinates (x = 0, y = 1, z = 2) are the projection's horizontal and vertical axes."""


def projections(volume: torch.Tensor) -> list[torch.Tensor]:
    """The three maximum-intensity projections of a (1, D, H, W) or (D, H, W) volume, in :data:`VIEWS` order:
    front (H, W) seen along the depth, top (D, W) seen along y, side (H, D) seen along x."""
    v = volume.detach().float().cpu().reshape(volume.shape[-3:])
    return [v.amax(0), v.amax(1), v.amax(2).t()]


def draw_box(ax, corners: torch.Tensor, axes: tuple[int, int], color: str = COLORS[0]) -> None:
    """Draw the 12 edges of a (8, 3) :func:`~stnlib.geometry.sampling_box3d` box on a projection."""
    c = corners.detach().cpu()
    for i, j in BOX3D_EDGES:
        ax.plot([c[i, axes[0]], c[j, axes[0]]], [c[i, axes[1]], c[j, axes[1]]], color=color, lw=0.9)


def examples(n: int = 4) -> dict:
    """The first ``n`` test volumes (the test set's first volumes are the same whatever its size)."""
    x, y = load_mnist("test")
    return volume_test_set(x, y, SPEC, n=n)


def plot_examples(profile: str, cell: str = "st3d-cnn", n: int = 3):
    """Per test volume (one row): the input's three maximum-intensity projections with the box the transformer
    samples (red), its output volume's projections, the flattened 2D image its classifier sees, and the one the
    plain classifier sees; None without an artifact."""
    got = chapter_cell(cell, profile)
    if got is None:
        return None
    metrics, model, _ = got
    data = examples(n)
    with torch.no_grad():
        out, theta = model.transform_input(data["x"])
        seen = model.pool(model.project(out))
        pred = model.classify(out).argmax(1)
        plain = torch.nn.functional.avg_pool2d(model.project(data["x"]), SPEC.size // seen.shape[-1])
    boxes = sampling_box3d(theta, SPEC.size)
    pose = volume_pose(data["rotation"], theta.double())
    fig, axes = plt.subplots(n, 8, figsize=(10.4, 1.45 * n + 0.5), squeeze=False)
    for r in range(n):
        for k, (title, _, ax_pair) in enumerate(VIEWS):
            imshow(axes[r, k], projections(data["x"][r])[k], f"input, {title}" if r == 0 else None, vmax=1)
            draw_box(axes[r, k], boxes[r], ax_pair)
            set_view(axes[r, k], (SPEC.size, SPEC.size), margin=0.12)
            imshow(axes[r, 3 + k], projections(out[r])[k], f"output, {title}" if r == 0 else None, vmax=1)
        ok = "ok" if pred[r] == data["y"][r] else "wrong"
        imshow(axes[r, 6], seen[r], (f"{label(cell)} sees\n" if r == 0 else "")
               + f"{int(pred[r])} ({ok}); {float(pose['residual_deg'][r]):.0f}\N{DEGREE SIGN} left", vmax=None)
        imshow(axes[r, 7], plain[r], "the plain model sees" if r == 0 else None, vmax=None)
        angles = ", ".join(f"{float(a):+.0f}" for a in data["params"]["angles_deg"][r])
        axes[r, 0].set_ylabel(f"digit {int(data['y'][r])}\n({angles})\N{DEGREE SIGN}", fontsize=8)
    for ax in axes.flat:
        ax.title.set_fontsize(8)
    fig.suptitle(f"{label(cell)}, {metrics['steps']:,} steps: input (the red box is what the transformer samples), "
                 "output, and the flattened images", fontsize=9)
    fig.tight_layout()
    return fig


def plot_rotation(profile: str, cells=tuple(PLAIN), points: int = 1000):
    """Left three panels: per axis, the rotation the transformer implies (the rotation part of theta, as angles
    about x, y, z) against the applied one, per test volume (the first ``points`` of them, which keeps the page
    light); a transformer that undoes the rotation lies on the diagonal. Right: the rotation left in the output
    against the rotation applied (on the diagonal: untouched, at 0: the digit faces the viewer upright). None
    without any artifact."""
    got = {c: g for c in cells if (g := chapter_cell(c, profile)) is not None}
    if not got:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(11.0, 2.9))
    lim = SPEC.max_angle_deg
    for c, (_, _, analysis) in got.items():
        rotation, theta = analysis["rotation"][:points], analysis["theta"][:points]
        pose = volume_pose(rotation.double(), theta.double())
        for a in range(3):
            axes[a].scatter(analysis["angles_deg"][:points, a], pose["implied_angles_deg"][:, a], s=1.5, lw=0,
                            color=color(c), label=label(c), rasterized=True)
        axes[3].scatter(rotation_angle_deg(rotation), pose["residual_deg"], s=1.5, lw=0, color=color(c),
                        label=label(c), rasterized=True)
    for a, name in enumerate("xyz"):
        axes[a].plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, ls="--")
        axes[a].axhline(0, color="0.7", lw=0.6)
        axes[a].set(xlabel=f"applied rotation about {name} (deg)", ylabel="implied (deg)" if a == 0 else None,
                    xlim=(-lim, lim), ylim=(-1.5 * lim, 1.5 * lim))
    top = float(axes[3].get_xlim()[1])
    axes[3].plot([0, top], [0, top], color="0.5", lw=0.8, ls="--", label="untouched")
    axes[3].set(xlabel="rotation applied (deg)", ylabel="rotation left in the output (deg)", xlim=(0, top),
                ylim=(0, None))
    axes[3].legend(fontsize=7, markerscale=4)
    fig.tight_layout()
    return fig


def plot_error_by_tilt(profile: str, edges=(0, 10, 20, 30, 40, 50, 60)):
    """% test error against how far each test digit is tilted away from the viewer (the angle between its normal
    and the viewing axis), per model; None without any artifact."""
    from stnbook.table1.report import error_by_bins

    fig, ax = plt.subplots(figsize=(5.0, 3.1))
    for c in CELLS:
        got = chapter_cell(c, profile)
        if got is None:
            continue
        a = got[2]
        tilt = torch.rad2deg(torch.acos(a["rotation"][:, 2, 2].double().clamp(-1, 1)))
        ax.plot(*error_by_bins(tilt, a["pred"] == a["y"], list(edges)), "o-", color=color(c), label=label(c))
    if not ax.lines:
        plt.close(fig)
        return None
    ax.set(xlabel="tilt of the digit away from the viewer (deg)", ylabel="% test error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_undone_over_training(results: dict[str, dict]):
    """How much of the rotation each transformer undoes at every evaluation (the probe's measure on the first
    test volumes); None without a transformer run."""
    runs = {c: m for c, m in results.items() if any("undone" in e for e in m["eval_history"])}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    for c, m in runs.items():
        pts = [(e["step"], 100 * e["undone"]) for e in m["eval_history"] if "undone" in e]
        ax.plot(*zip(*pts), marker="o", ms=3, color=color(c), label=label(c))
    ax.axhline(100, color="0.6", ls="--", lw=0.8)
    ax.set(xlabel="training step", ylabel="% of the rotation undone")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_eval_curves(results: dict[str, dict]):
    """Test error at every evaluation of each run (chance dashed)."""
    return common.plot_eval_curves(results, {}, label, chance=90.0)


def provenance(results: dict[str, dict]) -> str:
    return common.provenance(results, EXPERIMENT)
