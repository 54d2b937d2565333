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
    localisation_scores,
    loss_at,
    predicted_boxes,
    problem,
    trajectory,
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


def encoder_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The embedding CNN's numbers for the chapter's text (keys ``coloc_enc_*``; "n/a" without its artifact):
    parameters, % test error on MNIST, test digits, training steps, batch and seconds."""
    m = results.get(ENCODER_CELL)
    keys = ["params", "error", "test", "steps", "batch", "seconds"]
    if m is None:
        return {f"coloc_enc_{k}": "n/a" for k in keys}
    values = [f"{m['params']:,}", f"{m['test_error']:.2f}", f"{m['test_size']:,}", f"{m['steps']:,}",
              f"{m['batch_size']}", f"{m['wall_time_s']:.0f}"]
    return {f"coloc_enc_{k}": v for k, v in zip(keys, values)}


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


def success_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """Per variant ``v`` (t, tc), the numbers the chapter's text quotes about ``results`` (keys ``coloc_run_<v>_*``;
    "n/a" where no class was run): how many classes were run (``classes``, e.g. "10 classes"), the mean % of images
    localised over them (``mean``) and its range over the classes (``range``, e.g. "0-100")."""
    out = {}
    for v in VARIANTS:
        k = f"coloc_run_{v.lower()}"
        ms = [results[cell_id(v, d)]["success"] for d in DIGITS if cell_id(v, d) in results]
        out[f"{k}_classes"] = f"{len(ms)} class{'es' if len(ms) > 1 else ''}" if ms else "n/a"
        out[f"{k}_mean"] = f"{sum(ms) / len(ms):.1f}" if ms else "n/a"
        out[f"{k}_range"] = f"{min(ms):.0f}-{max(ms):.0f}" if ms else "n/a"
    return out


def full_results() -> dict[str, dict]:
    """The committed full run (whatever profile the chapter runs in)."""
    return load_results(EXPERIMENT, "full")


SEEDS = (0, 1, 2)  # the full profile's seeds with committed artifacts (each with its own encoder)


def seed_results(seeds=SEEDS) -> dict[int, dict[str, dict]]:
    """The committed full runs by seed (seeds without artifacts left out)."""
    runs = {s: load_results(EXPERIMENT, "full", seed=s) for s in seeds}
    return {s: r for s, r in runs.items() if r}


def seeds_html(runs: dict[int, dict[str, dict]]) -> str:
    """Per digit and variant: % of images localised with each seed, and the mean over the classes per seed."""
    if len(runs) < 2:
        return "<p>Fewer than two seeds have artifacts.</p>"
    seeds = sorted(runs)
    head = "".join(f"<th>{v}, seed {s}</th>" for v in VARIANTS for s in seeds)
    rows = []
    for d in DIGITS:
        tds = []
        for v in VARIANTS:
            for s in seeds:
                m = runs[s].get(cell_id(v, d))
                tds.append("<td>&ndash;</td>" if m is None else f"<td>{m['success']:.0f}</td>")
        rows.append(f"<tr><th>{d}</th>{''.join(tds)}</tr>")
    means = []
    for v in VARIANTS:
        for s in seeds:
            ms = [runs[s][cell_id(v, d)]["success"] for d in DIGITS if cell_id(v, d) in runs[s]]
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


def loss_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The loss comparison's numbers for the chapter's text (keys ``coloc_loss_*``; "n/a" without problems): in how
    many problems the true boxes have a lower loss than the windows training found (``truth_lower``) of how many
    (``problems``), and the mean loss at the true boxes and at the windows found (``true``, ``found``)."""
    ms = [m for m in results.values() if "loss_true" in m]
    if not ms:
        return dict.fromkeys(["coloc_loss_truth_lower", "coloc_loss_problems", "coloc_loss_true", "coloc_loss_found"],
                             "n/a")
    return {"coloc_loss_truth_lower": str(sum(m["loss_true"] < m["loss_learned"] for m in ms)),
            "coloc_loss_problems": str(len(ms)),
            "coloc_loss_true": f"{sum(m['loss_true'] for m in ms) / len(ms):.3f}",
            "coloc_loss_found": f"{sum(m['loss_learned'] for m in ms) / len(ms):.3f}"}


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


def showcase_cells(results: dict[str, dict]) -> list[str]:
    """The problems the chapter's figures show: the best- and the worst-localised T problem and the best TC one
    (the lowest digit among ties); the smoke profile's cells when those are all there is."""
    def pick(variant: str, best: bool) -> str | None:
        got = [(m["success"], -d if best else d, cell_id(variant, d)) for d in DIGITS
               if (m := results.get(cell_id(variant, d))) is not None]
        return (max(got) if best else min(got))[2] if got else None
    picks = [pick("T", True), pick("T", False), pick("TC", True)]
    return list(dict.fromkeys(c for c in picks if c is not None))


def figure_found(profile: str, cells, n: int = 8) -> list:
    return common.cell_figures(EXPERIMENT, profile, cells, lambda c, m, model, a: plot_found(model, a, c, n))


def plot_trajectory(model, analysis: dict, metrics: dict, cell: str, n: int = 4):
    """Boxes over training on ``n`` images (light to dark: early to late; green: the true box), and the % of
    images localised after each recorded step."""
    cfg = model.config
    x = problem(cfg)["x"][:n]
    steps, traj = trajectory(analysis)
    steps = torch.cat([steps, torch.tensor([metrics["steps"]])])
    traj = torch.cat([traj, analysis["theta"][None]])
    success = [localisation_scores(t, analysis["box"], cfg.canvas)["success"] for t in traj]
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


__all__ = ["PAPER_SUCCESS", "SMOKE_CELLS", "chapter_cell", "chapter_results", "embedding_scale_html",
           "encoder_key_numbers", "figure_found", "figure_trajectory", "full_results", "loss_html", "loss_key_numbers",
           "plot_found", "plot_problems", "showcase_cells", "plot_trajectory", "provenance", "SEEDS", "seed_results", "seeds_html",
           "success_html", "success_key_numbers"]
