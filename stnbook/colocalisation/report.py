"""Tables and figures of the co-localisation chapter (paper A.2), computed from the artifacts of the
"colocalisation" experiment.

The paper's numbers (appendix A.2: 100% of the T images and 75-93% of the TC images localised, IoU > 0.5) are kept
here only to be printed beside ours, never as results.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.colocalisation.experiment import (
    DIGITS,
    ENCODER_CELL,
    EXPERIMENT,
    VARIANTS,
    CoLocalisationConfig,
    cell_id,
    loss_at,
    predicted_boxes,
    problem,
    true_theta,
)
from stnbook.experiments import load_results
from stnbook.figures import COLORS, imshow, set_view

PAPER_SUCCESS = {"T": "100", "TC": "75&ndash;93"}  # % of images with IoU > 0.5; TC: the range over digit classes
SMOKE_CELLS = [ENCODER_CELL, "T-1", "TC-1"]
TRUE, FOUND = "#3cb44b", "#ff2bd6"  # true box green, predicted box magenta


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile they come from). "artifacts": the committed full run; "smoke": train
    :data:`SMOKE_CELLS` now (the encoder, then T and TC of digit 1, which find that encoder under the same
    ignored ``results/runs`` root)."""
    return common.chapter_results(EXPERIMENT, profile, SMOKE_CELLS)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one cell, or None with a note when it has no artifact."""
    return common.chapter_cell(EXPERIMENT, cell, profile)


def provenance(results: dict[str, dict]) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``."""
    return common.provenance(results, EXPERIMENT)


def encoder_line(results: dict[str, dict]) -> str:
    m = results.get(ENCODER_CELL)
    if m is None:
        return "[no encoder artifact]"
    return (f"embedding CNN e(): {m['params']:,} parameters, {m['test_error']:.2f}% error on {m['test_size']:,} "
            f"MNIST test digits after {m['steps']} steps at batch {m['batch_size']} ({m['wall_time_s']:.0f} s)")


def success_html(results: dict[str, dict]) -> str:
    """Per digit: the paper's and our % of images localised (IoU > 0.5) for T and TC, with our mean IoU."""
    head = "".join(f"<th>{v} paper</th><th>{v} ours</th>" for v in VARIANTS)
    rows = []
    for d in DIGITS:
        tds = []
        for v in VARIANTS:
            m = results.get(cell_id(v, d))
            ours = "&ndash;" if m is None else f"<b>{m['success']:.0f}</b><br><small>IoU {m['mean_iou']:.2f}</small>"
            tds.append(f"<td>{PAPER_SUCCESS[v]}</td><td>{ours}</td>")
        rows.append(f"<tr><th>{d}</th>{''.join(tds)}</tr>")
    return (f"<table class='stn-table'><tr><th>% localised (IoU &gt; 0.5)</th>{head}</tr>{''.join(rows)}</table>")


def summary(results: dict[str, dict]) -> list[str]:
    """Per variant: mean success over the classes run, beside the paper's."""
    lines = []
    for v in VARIANTS:
        ms = [results[cell_id(v, d)] for d in DIGITS if cell_id(v, d) in results]
        if ms:
            mean = sum(m["success"] for m in ms) / len(ms)
            lo, hi = min(m["success"] for m in ms), max(m["success"] for m in ms)
            lines.append(f"{v}: {len(ms)} classes, {mean:.1f}% localised on average (range {lo:.0f}-{hi:.0f}%); "
                         f"paper: {PAPER_SUCCESS[v].replace('&ndash;', '-')}%")
    return lines


def full_results() -> dict[str, dict]:
    """The committed full run (whatever profile the chapter runs in)."""
    return load_results(EXPERIMENT, "full")


def replicate_results() -> dict[str, dict]:
    """The committed replicate run (the full budget with another seed, encoder included)."""
    return load_results(EXPERIMENT, "replicate")


def seeds_html(results: dict[str, dict], replicate: dict[str, dict]) -> str:
    """Per digit and variant: % of images localised in the full run and in the replicate, with their seeds."""
    if not replicate:
        return "<p>No replicate artifacts.</p>"
    seeds = [next(m["seed"] for c, m in r.items() if c != ENCODER_CELL) for r in (results, replicate)]
    head = "".join(f"<th>{v}, seed {seeds[0]}</th><th>{v}, seed {seeds[1]}</th>" for v in VARIANTS)
    rows = []
    for d in DIGITS:
        tds = []
        for v in VARIANTS:
            for r in (results, replicate):
                m = r.get(cell_id(v, d))
                tds.append("<td>&ndash;</td>" if m is None else f"<td>{m['success']:.0f}</td>")
        rows.append(f"<tr><th>{d}</th>{''.join(tds)}</tr>")
    means = []
    for v in VARIANTS:
        for r in (results, replicate):
            ms = [r[cell_id(v, d)]["success"] for d in DIGITS if cell_id(v, d) in r]
            means.append(f"<td><b>{sum(ms) / len(ms):.1f}</b></td>" if ms else "<td>&ndash;</td>")
    rows.append(f"<tr><th>mean</th>{''.join(means)}</tr>")
    return f"<table class='stn-table'><tr><th>% localised</th>{head}</tr>{''.join(rows)}</table>"


def loss_html(results: dict[str, dict]) -> str:
    """The triplet loss at the solution training found, at the true boxes and at the identity (whole canvas)."""
    rows = []
    for v in VARIANTS:
        for d in DIGITS:
            m = results.get(cell_id(v, d))
            if m is None:
                continue
            verdict = "truth lower" if m["loss_true"] < m["loss_learned"] else "found lower"
            rows.append(f"<tr><th>{html.escape(cell_id(v, d))}</th><td>{m['loss_learned']:.3f}</td>"
                        f"<td>{m['loss_true']:.3f}</td><td>{m['loss_identity']:.3f}</td><td>{verdict}</td></tr>")
    return ("<table class='stn-table'><tr><th>problem</th><th>loss at the boxes found</th><th>at the true boxes</th>"
            "<th>at the identity</th><th></th></tr>" + "".join(rows) + "</table>")


def embedding_scale_html(profile: str, cells) -> str:
    """For a few problems, the loss at the true boxes and at the windows training found, on unit-length
    embeddings (as trained) and on the raw activations of the same CNN (computed now from the artifacts)."""
    rows = []
    for c in cells:
        got = chapter_cell(c, profile)
        if got is None:
            continue
        metrics, model, analysis = got
        x = problem(model.config)["x"]
        truth = true_theta(analysis["box"], model.config.canvas)
        vals = [loss_at(model, x, th, normalize=norm) for norm in (True, False) for th in (analysis["theta"], truth)]
        rows.append(f"<tr><th>{html.escape(c)}</th>" + "".join(f"<td>{v:.3g}</td>" for v in vals) + "</tr>")
    return ("<table class='stn-table'><tr><th>problem</th><th>unit length: found</th><th>unit length: true</th>"
            "<th>raw: found</th><th>raw: true</th></tr>" + "".join(rows) + "</table>")


def loss_verdict(results: dict[str, dict]) -> str:
    ms = [m for m in results.values() if "loss_true" in m]
    if not ms:
        return ""
    lower = sum(m["loss_true"] < m["loss_learned"] for m in ms)
    return (f"the true boxes have a lower loss than the solution found in {lower} of {len(ms)} problems "
            f"(mean {sum(m['loss_true'] for m in ms) / len(ms):.3f} vs "
            f"{sum(m['loss_learned'] for m in ms) / len(ms):.3f})")


def closing(results: dict[str, dict]) -> str:
    """The closing note in Markdown, computed from the artifacts: success per variant beside the paper's, the
    encoder, and whether the objective or the optimisation is to blame."""
    if not any(k != ENCODER_CELL for k in results):
        return "No co-localisation artifacts: nothing to conclude."
    lines = [f"- {line}" for line in summary(results)]
    lines.append(f"- {encoder_line(results)}")
    lines.append(f"- {loss_verdict(results)}: where the truth is lower, the objective is right and the optimisation "
                 "missed; where it is not, the objective itself prefers what training found.")
    return "\n".join(lines)


def _draw_box(ax, box, color, lw=1.4, alpha=1.0):
    x0, y0, x1, y1 = [float(v) for v in box]
    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=color, lw=lw, alpha=alpha)


def plot_problems(digit: int = 1, n: int = 6):
    """The first ``n`` images of the T and TC problems of ``digit``, each with its true box (green)."""
    fig, axes = plt.subplots(len(VARIANTS), n, figsize=(1.3 * n, 1.4 * len(VARIANTS)), squeeze=False)
    for r, v in enumerate(VARIANTS):
        p = problem(CoLocalisationConfig(digit=digit, variant=v))
        for j in range(n):
            imshow(axes[r, j], p["x"][j])
            _draw_box(axes[r, j], p["box"][j], TRUE)
        axes[r, 0].set_ylabel(v, rotation=0, labelpad=14)
    fig.tight_layout()
    return fig


def plot_found(model, analysis: dict, cell: str, n: int = 8):
    """``n`` images of a problem with the true box (green) and the window found (magenta; off the plot when it is
    far larger than the canvas), its IoU and scale s (1 = the whole canvas), and the crops."""
    cfg = model.config
    x = problem(cfg)["x"][:n]
    with torch.no_grad():
        crops, _ = model(x)
    found = predicted_boxes(analysis["theta"][:n], cfg.canvas)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.8), squeeze=False)
    for j in range(n):
        imshow(axes[0, j], x[j], f"IoU {analysis['iou'][j]:.2f}, s = {analysis['theta'][j, 0]:.2g}")
        _draw_box(axes[0, j], analysis["box"][j], TRUE)
        _draw_box(axes[0, j], found[j], FOUND)
        set_view(axes[0, j], (cfg.canvas, cfg.canvas), margin=0.08)
        imshow(axes[1, j], crops[j])
    axes[0, 0].set_ylabel(cell, fontsize=9)
    axes[1, 0].set_ylabel("crop", fontsize=9)
    fig.tight_layout()
    return fig


def figure_found(profile: str, cells, n: int = 8) -> list:
    return common.cell_figures(EXPERIMENT, profile, cells, lambda c, m, model, a: plot_found(model, a, c, n))


def plot_trajectory(model, analysis: dict, metrics: dict, cell: str, n: int = 4):
    """Boxes over training on ``n`` images (light to dark: early to late; green: the true box), and the % of
    images localised after each recorded step."""
    cfg = model.config
    x = problem(cfg)["x"][:n]
    steps, traj = analysis["trajectory_steps"], analysis["trajectory"]
    steps = torch.cat([steps, torch.tensor([metrics["steps"]])])
    traj = torch.cat([traj, analysis["theta"][None]])
    success = list(analysis["trajectory_success"].tolist()) + [metrics["success"]]
    fig, axes = plt.subplots(1, n + 1, figsize=(2.2 * (n + 1), 2.5), squeeze=False)
    cmap = plt.get_cmap("plasma")
    for j in range(n):
        ax = axes[0, j]
        imshow(ax, x[j])
        boxes = predicted_boxes(traj[:, j], cfg.canvas)
        for k, b in enumerate(boxes):
            _draw_box(ax, b, cmap(0.15 + 0.8 * k / max(1, len(boxes) - 1)), lw=0.9)
        _draw_box(ax, analysis["box"][j], TRUE, lw=1.6)
        # show the canvas plus whatever the windows covered outside it (at most one canvas on each side)
        reach = float(torch.cat([-0.5 - boxes[:, :2].flatten(), boxes[:, 2:].flatten() - cfg.canvas + 0.5]).max())
        set_view(ax, (cfg.canvas, cfg.canvas), margin=min(1.0, max(0.05, reach / cfg.canvas + 0.03)))
    ax = axes[0, n]
    ax.plot(steps.tolist(), success, "o-", color=COLORS[2], ms=3)
    ax.set(xscale="symlog", xlabel="step", ylabel="% localised", ylim=(-3, 103), title=cell)
    fig.tight_layout()
    return fig


def figure_trajectory(profile: str, cells, n: int = 4) -> list:
    return common.cell_figures(EXPERIMENT, profile, cells, lambda c, m, model, a: plot_trajectory(model, a, m, c, n))


__all__ = ["PAPER_SUCCESS", "SMOKE_CELLS", "chapter_cell", "chapter_results", "closing", "embedding_scale_html",
           "encoder_line", "figure_found", "figure_trajectory", "full_results", "loss_html", "loss_verdict",
           "plot_found", "plot_problems", "plot_trajectory", "provenance", "replicate_results", "seeds_html",
           "success_html", "summary"]
