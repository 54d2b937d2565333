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
    offset_landscape,
    predicted_boxes,
    problem,
    trajectory,
    true_theta,
    window_offsets,
)
from stnbook.experiments import load_results
from stnbook.figures import COLORS, html_table, imshow, set_view
from stnbook.memo import remember_analysis

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
    return columns_html({f"seed {s}": runs[s] for s in sorted(runs)})


def columns_html(columns: dict[str, dict[str, dict]], variants=VARIANTS) -> str:
    """Per digit and variant (of ``variants``): % of images localised in each of ``columns`` (label -> results), and
    the mean over the classes of each column (over the classes it has)."""
    head = "".join(f"<th>{v}, {html.escape(label)}</th>" for v in variants for label in columns)
    rows = []
    for d in DIGITS:
        tds = []
        for v in variants:
            for results in columns.values():
                m = results.get(cell_id(v, d))
                tds.append("<td>&ndash;</td>" if m is None else f"<td>{m['success']:.0f}</td>")
        rows.append(f"<tr><th>{d}</th>{''.join(tds)}</tr>")
    means = []
    for v in variants:
        for results in columns.values():
            ms = [results[cell_id(v, d)]["success"] for d in DIGITS if cell_id(v, d) in results]
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


def failure_causes(columns: dict[str, dict[str, dict]], variant: str = "T", prefix: str = "coloc_cause",
                   failed: float = 50.0) -> dict[str, str]:
    """Among the problems of ``columns`` (every column, e.g. every seed of a profile) that localise fewer than
    ``failed`` % of their images: in how many the true boxes have the lower loss (``<prefix>_optimisation``: the
    objective is right, training did not get there) and in how many the windows found have (``<prefix>_objective``:
    the objective itself prefers them), of ``<prefix>_failed``.

    Examples:
        >>> cols = {"a, seed 0": {"T-0": {"success": 10.0, "loss_true": 0.1, "loss_learned": 0.2},
        ...                       "T-1": {"success": 20.0, "loss_true": 0.3, "loss_learned": 0.1},
        ...                       "T-2": {"success": 90.0, "loss_true": 0.3, "loss_learned": 0.1}}}
        >>> failure_causes(cols)
        {'coloc_cause_failed': '2', 'coloc_cause_optimisation': '1', 'coloc_cause_objective': '1'}
    """
    bad = [m for results in columns.values() for c, m in results.items()
           if c.startswith(f"{variant}-") and "loss_true" in m and m["success"] < failed]
    return {f"{prefix}_failed": str(len(bad)),
            f"{prefix}_optimisation": str(sum(m["loss_true"] < m["loss_learned"] for m in bad)),
            f"{prefix}_objective": str(sum(m["loss_true"] >= m["loss_learned"] for m in bad))}


# ---- the common offset ----------------------------------------------------------------------------------------------

FAILED = 50.0  # a problem with fewer % of its images localised than this counts as failed in the offset analysis
OFF_CENTRE_PX = 7.0  # a quarter of the digit's side: a common offset longer than this counts as off centre


def offset_summary(analysis: dict, canvas: int) -> dict[str, float]:
    """The windows' offsets from their digits (:func:`~stnbook.colocalisation.experiment.window_offsets`) at the end
    of training: the common offset (mean over the images, x and y, px), its length, the spread across the images
    (the per-axis standard deviations, averaged) and the windows' mean side in px."""
    off = window_offsets(analysis["theta"], analysis["box"], canvas)
    mean = off.mean(0)
    return {"dx": mean[0].item(), "dy": mean[1].item(), "length": mean.norm().item(),
            "spread": off.std(0).mean().item(), "side": canvas * analysis["theta"][:, 0].float().mean().item()}


def offsets(profile: str, cells) -> dict[str, dict]:
    """:func:`offset_summary` and the % localised of each of ``cells`` with an artifact in ``profile``."""
    out = {}
    for c in cells:
        got = chapter_cell(c, profile)
        if got is not None:
            metrics, model, analysis = got
            out[c] = {"success": metrics["success"], **offset_summary(analysis, model.config.canvas)}
    return out


def offsets_html(found: dict[str, dict]) -> str:
    """Per problem: % localised, the common offset of the windows from the digits (x, y and its length), how much
    the offsets differ between the images, and the windows' side."""
    rows = [[html.escape(c), f"{o['success']:.0f}", f"{o['dx']:+.1f}, {o['dy']:+.1f}", f"<b>{o['length']:.1f}</b>",
             f"{o['spread']:.1f}", f"{o['side']:.0f}"] for c, o in found.items()]
    return html_table(["problem", "% localised", "common offset x, y (px)", "its length (px)",
                       "spread across images (px)", "window side (px)"], rows, row_headers=True)


def side_key_numbers(found: dict[str, dict], prefix: str = "coloc_side") -> dict[str, str]:
    """The windows' sides (px) of :func:`offsets`' problems: ``<prefix>_min``, ``<prefix>_max`` over every problem
    and ``<prefix>_failed`` (mean over those under :data:`FAILED` % localised); "n/a" where there are none.

    Examples:
        >>> side_key_numbers({"T-0": {"success": 100.0, "side": 28.4}, "T-1": {"success": 10.0, "side": 36.0},
        ...                   "T-2": {"success": 20.0, "side": 34.0}})
        {'coloc_side_min': '28', 'coloc_side_max': '36', 'coloc_side_failed': '35'}
    """
    sides = [o["side"] for o in found.values()]
    failed = [o["side"] for o in found.values() if o["success"] < FAILED]
    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
    return {f"{prefix}_min": fmt(min(sides, default=None)), f"{prefix}_max": fmt(max(sides, default=None)),
            f"{prefix}_failed": fmt(sum(failed) / len(failed) if failed else None)}


def offset_key_numbers(found: dict[str, dict]) -> dict[str, str]:
    """Numbers for the offset paragraph (keys ``coloc_off_*``; "n/a" without failed problems): how many problems
    failed (under :data:`FAILED` % localised) and how many of them frame every digit alike but off centre (a common
    offset longer than :data:`OFF_CENTRE_PX` px, images spread less than half that); the mean offset length and
    spread of the failed problems, and the mean offset length of the others.

    Examples:
        >>> found = {"T-0": {"success": 0.0, "length": 14.0, "spread": 1.5},
        ...          "T-6": {"success": 99.0, "length": 5.9, "spread": 1.2}}
        >>> k = offset_key_numbers(found)
        >>> k["coloc_off_failed"], k["coloc_off_consistent"], k["coloc_off_failed_length"], k["coloc_off_ok_length"]
        ('1', '1', '14.0', '5.9')
    """
    keys = ["failed", "consistent", "failed_length", "failed_spread", "ok_length", "problems"]
    failed = [o for o in found.values() if o["success"] < FAILED]
    ok = [o for o in found.values() if o["success"] >= FAILED]
    if not failed:
        return {f"coloc_off_{k}": "n/a" for k in keys}
    consistent = [o for o in failed if o["length"] > OFF_CENTRE_PX and o["spread"] < OFF_CENTRE_PX / 2]
    mean = lambda os, k: f"{sum(o[k] for o in os) / len(os):.1f}" if os else "n/a"  # noqa: E731
    return {"coloc_off_failed": str(len(failed)), "coloc_off_consistent": str(len(consistent)),
            "coloc_off_failed_length": mean(failed, "length"), "coloc_off_failed_spread": mean(failed, "spread"),
            "coloc_off_ok_length": mean(ok, "length"), "coloc_off_problems": str(len(found))}


def plot_offset_history(profile: str, cells):
    """Left: the length of the windows' common offset from the digits over training, one line per problem (red:
    failed, green: localised); right: how much the offsets differ between the images. Dashed lines: the end of the
    whole-canvas phase and of the shrinking phase of the scale curriculum."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    bounds = None
    for c in cells:
        got = chapter_cell(c, profile)
        if got is None:
            continue
        metrics, model, analysis = got
        steps, traj = trajectory(analysis)
        steps = torch.cat([steps, torch.tensor([metrics["steps"]])])
        off = window_offsets(torch.cat([traj, analysis["theta"][None]]), analysis["box"], model.config.canvas)
        color = COLORS[1] if metrics["success"] >= FAILED else COLORS[0]
        axes[0].plot(steps.tolist(), off.mean(1).norm(dim=-1).tolist(), color=color, lw=1.2, alpha=0.8)
        axes[1].plot(steps.tolist(), off.std(1).mean(-1).tolist(), color=color, lw=1.2, alpha=0.8)
        axes[0].annotate(c, (steps[-1].item(), off[-1].mean(0).norm().item()), fontsize=7, color=color,
                         xytext=(3, 0), textcoords="offset points", va="center")
        bounds = (round(model.config.hold * metrics["steps"]), round(model.config.anneal_end * metrics["steps"]))
    for ax, label in zip(axes, ["common offset of the windows (px)", "spread across the images (px)"]):
        if bounds is not None:
            for b in bounds:
                ax.axvline(b, color="0.5", ls="--", lw=0.8)
        ax.set(xscale="symlog", xlabel="step", ylabel=label, ylim=(0, None), xlim=(0, None))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


LANDSCAPE_OFFSETS = (-12, -9, -6, -3, 0, 3, 6, 9, 12)


def landscapes(profile: str, cell: str, offsets=LANDSCAPE_OFFSETS, draws: int = 4) -> dict | None:
    """The loss of one problem when every window is the true box moved by a common offset
    (:func:`~stnbook.colocalisation.experiment.offset_landscape`), with each embedding, and the common offset
    training ended at; None without the cell's artifact. Computed once per set of artifacts (:mod:`stnbook.memo`;
    the smoke profile's every time)."""
    return remember_analysis(EXPERIMENT, f"landscape-{profile}-{cell}",
                             lambda: _landscapes(profile, cell, offsets, draws),
                             args=[profile, cell, list(offsets), draws], keep=profile != "smoke")


def _landscapes(profile: str, cell: str, offsets, draws: int) -> dict | None:
    got = chapter_cell(cell, profile)
    if got is None:
        return None
    metrics, model, analysis = got
    x = problem(model.config)["x"]
    maps = {kind: offset_landscape(model, x, analysis["box"], offsets, kind=kind, draws=draws)
            for kind in ("features", "logits")}
    return {"cell": cell, "offsets": list(offsets), "maps": maps, "trained": model.config.embedding,
            "found": offset_summary(analysis, model.config.canvas)}


def landscape_key_numbers(land: dict | None) -> dict[str, str]:
    """Per embedding (keys ``coloc_land_<kind>_*``): the loss at the truth, the lowest loss on the grid and where
    it lies ("the truth" or the offset, x and y in px), and the cell shown; "n/a" without a landscape.

    Examples:
        >>> m = torch.tensor([[0.3, 0.2, 0.3], [0.3, 0.25, 0.3], [0.4, 0.4, 0.4]])
        >>> k = landscape_key_numbers({"cell": "T-0", "offsets": [-4, 0, 4], "maps": {"features": m, "logits": m.T}})
        >>> k["coloc_land_features_at"], k["coloc_land_logits_at"], k["coloc_land_features_truth"]
        ('an offset of (+0, -4) px', 'an offset of (-4, +0) px', '0.250')
    """
    out = {"coloc_land_cell": "n/a" if land is None else land["cell"]}
    for kind in ("features", "logits"):
        keys = [f"coloc_land_{kind}_{k}" for k in ("truth", "min", "at")]
        if land is None:
            out.update(dict.fromkeys(keys, "n/a"))
            continue
        m, offs = land["maps"][kind], land["offsets"]
        i, j = divmod(int(m.argmin()), m.shape[1])
        centre = offs.index(0)
        at = "the truth" if (i, j) == (centre, centre) else f"an offset of ({offs[j]:+d}, {offs[i]:+d}) px"
        out.update(zip(keys, [f"{m[centre, centre]:.3f}", f"{m.min():.3f}", at]))
    return out


def plot_landscapes(land: dict | None):
    """Heat maps of :func:`landscapes`: the loss against the common offset (x right, y down, px) with each
    embedding; a circle at the truth (0, 0), a cross at the common offset training ended at, a dot at the minimum."""
    if land is None:
        return None
    offs = land["offsets"]
    half = (offs[1] - offs[0]) / 2
    extent = (offs[0] - half, offs[-1] + half, offs[-1] + half, offs[0] - half)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for ax, kind in zip(axes, ("features", "logits")):
        m = land["maps"][kind]
        im = ax.imshow(m.numpy(), extent=extent, cmap="viridis")
        fig.colorbar(im, ax=ax, shrink=0.85, label="loss")
        i, j = divmod(int(m.argmin()), m.shape[1])
        ax.plot(0, 0, "o", mfc="none", mec="white", ms=11, mew=1.6)
        ax.plot(offs[j], offs[i], ".", color="white", ms=8)
        f = land["found"]
        if max(abs(f["dx"]), abs(f["dy"])) <= offs[-1] + half:
            ax.plot(f["dx"], f["dy"], "x", color=COLORS[0], ms=10, mew=2)
        trained = " (trained with)" if kind == land["trained"] else ""
        ax.set(title=f"{land['cell']}: e() = {kind}{trained}", xlabel="common offset x (px)",
               ylabel="common offset y (px)")
    fig.tight_layout()
    return fig


# ---- two embeddings -------------------------------------------------------------------------------------------------

TWO_STAGE = "two-stage"  # the profile with two embeddings (features while the window is large, then logits)


SEARCH = "search"  # two embeddings, and the search for a common shift of the windows where the curriculum ends
FIXED = "fixed-scale"  # the search profile with the window's scale kept at the digit's size after the curriculum
WIDE = "wide-search"  # the fixed-scale profile with a search twice as wide
TRAINED_FIXED = "trained-fixed"  # the fixed-scale profile with a well-trained encoder (about 1% error)
WINDOW_SEARCH = "window-search"  # the windows found by search first, taught to the net, then the hinge loss
NO_DIGIT_SEARCH = "no-digit-search"  # the window-search profile with an embedding CNN that has a "no digit" class
NO_DIGIT_ENCODER = "no-digit-encoder"  # the profile of that CNN
NO_DIGIT_LONG = "no-digit-long"  # the no-digit-search profile taught the windows for 300 of 600 steps
PROFILE_KEYS = {TWO_STAGE: "ts", SEARCH: "se", FIXED: "fx", WIDE: "ws", TRAINED_FIXED: "tf", WINDOW_SEARCH: "wsr",
                NO_DIGIT_SEARCH: "nd", NO_DIGIT_LONG: "ndl"}
"""The method profiles the chapter compares and the short names of their glue keys (``coloc_<short>_*``)."""


def method_columns() -> dict[str, dict[str, dict]]:
    """The committed runs the method comparison shows (whatever the chapter's profile): the features embedding
    (full profile, seed 0) and every seed of the two-stage and search profiles that has artifacts."""
    cols = {"features, seed 0": load_results(EXPERIMENT, "full")}
    for prof in (TWO_STAGE, SEARCH):
        cols.update(profile_columns(prof))
    return cols


def profile_columns(profile: str) -> dict[str, dict[str, dict]]:
    """Every seed of ``profile`` that has artifacts, as columns ``"<profile>, seed <k>"`` for :func:`columns_html`."""
    return {f"{profile}, seed {s}": r for s in SEEDS if (r := load_results(EXPERIMENT, profile, seed=s))}


def scale_columns() -> dict[str, dict[str, dict]]:
    """The columns of the fixed-scale comparison: every seed of the search, fixed-scale, wide-search and
    trained-fixed profiles."""
    return {**profile_columns(SEARCH), **profile_columns(FIXED), **profile_columns(WIDE), **profile_columns(TRAINED_FIXED)}


def window_columns() -> dict[str, dict[str, dict]]:
    """The columns of the window-search comparison: seed 0 of the fixed-scale, trained-fixed and window-search
    profiles (the last two share the 10-epoch encoder)."""
    cols = {}
    for prof in (FIXED, TRAINED_FIXED, WINDOW_SEARCH):
        if results := load_results(EXPERIMENT, prof):
            cols[f"{prof}, seed 0"] = results
    return cols


def no_digit_columns() -> dict[str, dict[str, dict]]:
    """The columns of the no-digit comparison: seed 0 of the window-search and no-digit-search profiles and every
    seed of the no-digit-long profile."""
    cols = {}
    for prof in (WINDOW_SEARCH, NO_DIGIT_SEARCH):
        if results := load_results(EXPERIMENT, prof):
            cols[f"{prof}, seed 0"] = results
    return {**cols, **profile_columns(NO_DIGIT_LONG)}


def no_digit_encoder_key_numbers(seeds=SEEDS) -> dict[str, str]:
    """The no-digit embedding CNNs' numbers (keys ``coloc_ndenc_*``): % MNIST test error per seed that has one
    (``_errors``), its training steps and batch, and how many "no digit" windows it was trained on (``_crops``,
    from :func:`~stnbook.colocalisation.experiment.background_crops` of the training split, the first seed's)."""
    from stnbook.colocalisation.experiment import background_crops
    from stnbook.paths import load_mnist

    encs = {s: m for s in seeds if (m := load_results(EXPERIMENT, NO_DIGIT_ENCODER, seed=s).get(ENCODER_CELL))}
    if not encs:
        return {f"coloc_ndenc_{k}": "n/a" for k in ("errors", "steps", "batch", "crops")}
    first = min(encs)
    return {"coloc_ndenc_errors": ", ".join(f"{m['test_error']:.2f}% (seed {s})" for s, m in encs.items()),
            "coloc_ndenc_steps": f"{encs[first]['steps']:,}", "coloc_ndenc_batch": str(encs[first]["batch_size"]),
            "coloc_ndenc_crops": f"{len(background_crops(*load_mnist('train'), seed=first)):,}"}


def seeds_text(columns: dict[str, dict[str, dict]], profile: str) -> str:
    """A sentence on every seed of ``profile`` in ``columns`` (:func:`seed_key_numbers`): the mean % localised of
    each seed, the problems that localise every image or 75%, and the classes short of 75% in every seed or in
    some; with fewer than two seeds, which seeds have artifacts.

    Examples:
        >>> cols = {"p, seed 0": {"T-1": {"success": 100.0}, "TC-1": {"success": 80.0}},
        ...         "p, seed 1": {"T-1": {"success": 99.0}, "TC-1": {"success": 70.0}}}
        >>> print(seeds_text(cols, "p"))  # doctest: +NORMALIZE_WHITESPACE
        Over 2 seeds, each with its own embedding CNN, the mean % localised is 100.0% (seed 0), 99.0% (seed 1) on
        the plain canvases and 80.0% (seed 0), 70.0% (seed 1) on the cluttered ones; 1 of 2 plain-canvas runs
        localise every image, 2 of 2 reach 75%, and 1 of 2 cluttered runs reach 75%. Short of 75% in every seed:
        none (T), none (TC); in some seeds: none (T), TC-1 (seed 1) (TC).
        >>> seeds_text({"p, seed 0": {}}, "p")
        'Only seed 0 has been run.'
    """
    k = seed_key_numbers(columns, profile, "s")
    seeds = sorted(seed_columns(columns, profile))
    if len(seeds) < 2:
        return f"Only seed {seeds[0]} has been run." if seeds else "No seed has been run."
    return (f"Over {len(seeds)} seeds, each with its own embedding CNN, the mean % localised is {k['s_t_means']} on the "
            f"plain canvases and {k['s_tc_means']} on the cluttered ones; {k['s_t_all']} plain-canvas runs localise "
            f"every image, {k['s_t_target']} reach 75%, and "
            f"{k['s_tc_target']} cluttered runs reach 75%. Short of 75% in every seed: {k['s_t_short_always']} (T), "
            f"{k['s_tc_short_always']} (TC); in some seeds: {k['s_t_short_some']} (T), {k['s_tc_short_some']} (TC).")


def window_key_numbers(results: dict[str, dict], prefix: str = "coloc_wsr", target: float = 75.0) -> dict[str, str]:
    """Numbers for the window-search text (keys ``<prefix>_*``): per variant the problems run (``<v>_n``), those
    with every image localised (``<v>_all``), those at ``target`` % or more (``<v>_target``, the paper's lowest TC
    class), the others by name (``<v>_short``, or "none"), and of those how many end with a lower loss than at the
    true boxes (``<v>_short_objective``: the objective itself prefers what was found).

    Examples:
        >>> r = {"TC-0": {"success": 99.0, "loss_learned": 0.2, "loss_true": 0.1},
        ...      "TC-2": {"success": 3.0, "loss_learned": 0.1, "loss_true": 0.4}, "T-1": {"success": 100.0}}
        >>> k = window_key_numbers(r)
        >>> k["coloc_wsr_tc_n"], k["coloc_wsr_tc_target"], k["coloc_wsr_tc_short"], k["coloc_wsr_tc_short_objective"]
        ('2', '1', 'TC-2 (3%)', '1')
        >>> k["coloc_wsr_t_all"], k["coloc_wsr_t_short"]
        ('1', 'none')
    """
    out = {}
    for v in VARIANTS:
        got = {d: results[cell_id(v, d)] for d in DIGITS if cell_id(v, d) in results}
        short = {d: m for d, m in got.items() if m["success"] < target}
        k = f"{prefix}_{v.lower()}"
        out[f"{k}_n"] = str(len(got))
        out[f"{k}_all"] = str(sum(m["success"] >= 100.0 for m in got.values()))
        out[f"{k}_target"] = str(len(got) - len(short))
        out[f"{k}_short"] = ", ".join(f"{v}-{d} ({m['success']:.0f}%)" for d, m in short.items()) or "none"
        out[f"{k}_short_objective"] = str(sum(m["loss_learned"] < m["loss_true"] for m in short.values()))
    return out


def seed_columns(columns: dict[str, dict[str, dict]], profile: str) -> dict[int, dict[str, dict]]:
    """The columns of ``profile`` (labelled ``"<profile>, seed <k>"``, as :func:`profile_columns` makes them), by seed."""
    return {int(label.rsplit(" ", 1)[1]): r for label, r in columns.items() if label.startswith(f"{profile}, seed ")}


def seed_key_numbers(columns: dict[str, dict[str, dict]], profile: str, prefix: str, target: float = 75.0) -> dict[str, str]:
    """Numbers for the text on every seed of ``profile`` (columns labelled ``"<profile>, seed <k>"``, as
    :func:`profile_columns` makes them; keys ``<prefix>_*``): the seeds run (``_seeds``), per variant the mean %
    localised of each seed (``<v>_means``), the problems over all seeds that localise every image (``<v>_all``) and
    ``target`` % or more (``<v>_target``, "k of n"), and the classes short of ``target`` in every seed
    (``<v>_short_always``, or "none") and in some seeds only (``<v>_short_some``).

    Examples:
        >>> cols = {"ws, seed 0": {"TC-1": {"success": 40.0}, "TC-2": {"success": 90.0}, "T-1": {"success": 100.0}},
        ...         "ws, seed 1": {"TC-1": {"success": 50.0}, "TC-2": {"success": 70.0}, "T-1": {"success": 99.0}},
        ...         "other, seed 0": {"TC-1": {"success": 100.0}}}
        >>> k = seed_key_numbers(cols, "ws", "p")
        >>> k["p_seeds"], k["p_tc_means"], k["p_tc_target"], k["p_tc_short_always"], k["p_tc_short_some"]
        ('2', '65.0% (seed 0), 60.0% (seed 1)', '1 of 4', 'TC-1', 'TC-2 (seed 1)')
        >>> k["p_t_all"], k["p_t_target"]
        ('1 of 2', '2 of 2')
    """
    seeds = seed_columns(columns, profile)
    out = {f"{prefix}_seeds": str(len(seeds))}
    for v in VARIANTS:
        k = f"{prefix}_{v.lower()}"
        means = [(s, _variant_mean(r, v)) for s, r in sorted(seeds.items())]
        out[f"{k}_means"] = ", ".join(f"{m:.1f}% (seed {s})" for s, m in means if m is not None) or "n/a"
        got = [(s, d, r[cell_id(v, d)]["success"]) for s, r in sorted(seeds.items()) for d in DIGITS
               if cell_id(v, d) in r]
        out[f"{k}_all"] = f"{sum(x >= 100.0 for _, _, x in got)} of {len(got)}"
        out[f"{k}_target"] = f"{sum(x >= target for _, _, x in got)} of {len(got)}"
        always, some = [], []
        for d in DIGITS:
            short = [s for s, dd, x in got if dd == d and x < target]
            runs = [s for s, dd, _ in got if dd == d]
            if short and len(short) == len(runs):
                always.append(cell_id(v, d))
            elif short:
                some.append(f"{cell_id(v, d)} (seed {', '.join(map(str, short))})")
        out[f"{k}_short_always"] = ", ".join(always) or "none"
        out[f"{k}_short_some"] = ", ".join(some) or "none"
    return out


def _variant_mean(results: dict[str, dict], variant: str) -> float | None:
    got = [results[cell_id(variant, d)]["success"] for d in DIGITS if cell_id(variant, d) in results]
    return sum(got) / len(got) if got else None


def method_key_numbers(columns: dict[str, dict[str, dict]]) -> dict[str, str]:
    """Numbers for the comparison's text (keys ``coloc_feat_*``, ``coloc_ts_*``; "n/a" where runs are missing): the
    mean % localised per variant with features (seed 0) and two embeddings (seed 0, and every seed as a list), the
    two-stage classes at 90% or more, the seed-0 problems under :data:`FAILED` % (``*_failed``), and the seeds counted.

    Examples:
        >>> cols = {"features, seed 0": {"T-0": {"success": 10.0}},
        ...         "two-stage, seed 0": {"T-0": {"success": 100.0}, "T-1": {"success": 80.0}},
        ...         "two-stage, seed 1": {"T-0": {"success": 50.0}}}
        >>> k = method_key_numbers(cols)
        >>> k["coloc_feat_t_mean"], k["coloc_ts_t_mean"], k["coloc_ts_t_seeds"], k["coloc_ts_t_good"], k["coloc_ts_tc_mean"]
        ('10.0', '90.0', '90.0% (seed 0), 50.0% (seed 1)', '1 of 2', 'n/a')
        >>> k["coloc_ts_t_failed"], k["coloc_ts_tc_failed"]
        ('none', 'n/a')
    """
    feat = columns.get("features, seed 0", {})
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    out = {}
    for v in VARIANTS:
        out[f"coloc_feat_{v.lower()}_mean"] = fmt(_variant_mean(feat, v))
    for prof, key in PROFILE_KEYS.items():
        seeds = seed_columns(columns, prof)
        out[f"coloc_{key}_seeds_n"] = str(len(seeds))
        for v in VARIANTS:
            k = v.lower()
            out[f"coloc_{key}_{k}_mean"] = fmt(_variant_mean(seeds.get(0, {}), v))
            means = [(s, _variant_mean(r, v)) for s, r in sorted(seeds.items())]
            out[f"coloc_{key}_{k}_seeds"] = ", ".join(f"{m:.1f}% (seed {s})" for s, m in means if m is not None) or "n/a"
            got = [seeds.get(0, {})[cell_id(v, d)]["success"] for d in DIGITS if cell_id(v, d) in seeds.get(0, {})]
            out[f"coloc_{key}_{k}_good"] = f"{sum(g >= 90 for g in got)} of {len(got)}" if got else "n/a"
            failed = [f"{v}-{d}" for d in DIGITS if cell_id(v, d) in seeds.get(0, {})
                      and seeds[0][cell_id(v, d)]["success"] < FAILED]
            out[f"coloc_{key}_{k}_failed"] = (", ".join(failed) or "none") if got else "n/a"
            complete = [m for _, m in means if m is not None]
            out[f"coloc_{key}_{k}_avg"] = fmt(sum(complete) / len(complete) if complete else None)
    return out


def search_vs_two_stage(columns: dict[str, dict[str, dict]], variant: str = "T", margin: float = 10.0) -> dict[str, str]:
    """Problem by problem, the search profile against the two-stage profile of the same seed (identical until the
    search): how many problems localise at least ``margin`` points more, fewer, or about the same; keys
    ``coloc_se_vs_<variant>_{better,worse,same,pairs}`` (:func:`profile_vs`).

    Examples:
        >>> cols = {"two-stage, seed 0": {"T-0": {"success": 10.0}, "T-1": {"success": 90.0}, "T-2": {"success": 50.0}},
        ...         "search, seed 0": {"T-0": {"success": 96.0}, "T-1": {"success": 11.0}, "T-2": {"success": 52.0}}}
        >>> search_vs_two_stage(cols)
        {'coloc_se_vs_t_better': '1', 'coloc_se_vs_t_worse': '1', 'coloc_se_vs_t_same': '1', 'coloc_se_vs_t_pairs': '3'}
    """
    return profile_vs(columns, SEARCH, TWO_STAGE, variant, margin)


def profile_vs(columns: dict[str, dict[str, dict]], profile: str, base: str, variant: str = "T",
               margin: float = 10.0) -> dict[str, str]:
    """Problem by problem, ``profile`` against ``base`` on the same seed (columns as :func:`profile_columns` makes
    them): how many problems localise at least ``margin`` points more, fewer, or about the same; keys
    ``coloc_<short>_vs_<variant>_{better,worse,same,pairs}`` with ``profile``'s short name (:data:`PROFILE_KEYS`).

    Examples:
        >>> cols = {"search, seed 1": {"T-0": {"success": 10.0}}, "fixed-scale, seed 1": {"T-0": {"success": 99.0}}}
        >>> profile_vs(cols, FIXED, SEARCH)["coloc_fx_vs_t_better"]
        '1'
    """
    diffs = []
    for label, results in columns.items():
        if not label.startswith(f"{profile}, seed "):
            continue
        ref = columns.get(label.replace(profile, base, 1), {})
        diffs += [results[c]["success"] - ref[c]["success"] for c in results if c in ref and c.startswith(f"{variant}-")]
    k = f"coloc_{PROFILE_KEYS[profile]}_vs_{variant.lower()}"
    return {f"{k}_better": str(sum(d >= margin for d in diffs)), f"{k}_worse": str(sum(d <= -margin for d in diffs)),
            f"{k}_same": str(sum(abs(d) < margin for d in diffs)), f"{k}_pairs": str(len(diffs))}


def _analyses(profile: str, seeds, keep):
    """``(cell, metrics, analysis)`` of every committed problem of ``profile`` (each of ``seeds``) for which
    ``keep(cell, metrics)`` holds, its artifact verified; only ``analysis.pt`` is read, no model."""
    from stnbook.experiments import artifact_dir, get_cells, verify_artifact
    from stnlib.io import safe_torch_load

    for seed in seeds:
        for c, metrics in load_results(EXPERIMENT, profile, seed=seed).items():
            if keep(c, metrics):
                folder = artifact_dir(get_cells(EXPERIMENT, [c])[0], profile, seed=seed)
                verify_artifact(folder, metrics)
                yield c, metrics, safe_torch_load(folder / "analysis.pt")


def class_readings(profile: str = WINDOW_SEARCH, seed: int = 0, cells=None, draws: int = 8) -> dict[str, dict[str, float]]:
    """How each problem's own embedding CNN reads the crops the loss compares: per committed problem of ``profile``
    (``cells``: those only), the % of its random patches (the hinge's negatives, ``draws`` sets drawn as in
    training, :func:`~stnbook.colocalisation.experiment.loss_at`'s) that the CNN classifies as the problem's digit
    (``patches``), the same for the crops at the true boxes (``truth``), the % of images localised (``success``),
    and where the CNN has a "no digit" class, the % of random patches it puts there (``no_digit``; else None). A
    class the CNN also reads in the random patches has negatives that look like its positives. Every problem's
    readings are computed once per set of artifacts (:mod:`stnbook.memo`); a subset (``cells``), every time."""
    return remember_analysis(EXPERIMENT, f"readings-{profile}-seed{seed}",
                             lambda: _class_readings(profile, seed, cells, draws),
                             args=[profile, seed, None if cells is None else sorted(cells), draws],
                             keep=profile != "smoke" and cells is None)


def _class_readings(profile: str, seed: int, cells, draws: int) -> dict[str, dict[str, float]]:
    from stnbook.colocalisation.experiment import NO_DIGIT
    from stnbook.experiments import get_cells, load_cell
    from stnlib.data.pairs import CoLocalisationBatches

    out = {}
    for c, metrics in load_results(EXPERIMENT, profile, seed=seed).items():
        if c == ENCODER_CELL or (cells is not None and c not in cells):
            continue
        _, model, _ = load_cell(get_cells(EXPERIMENT, [c])[0], profile, seed=seed)
        data = problem(model.config)
        x, digit = data["x"], model.config.digit
        batches = CoLocalisationBatches(x, seed=0)
        with torch.no_grad():
            def read(theta):
                return model.embed(model.st.sample(x, theta), normalize=False, kind="logits").argmax(1)
            patches = torch.cat([read(batches.batch(k)[1]) for k in range(draws)])
            truth = read(true_theta(data["box"]))
        out[c] = {"patches": 100.0 * (patches == digit).float().mean().item(),
                  "truth": 100.0 * (truth == digit).float().mean().item(), "success": metrics["success"],
                  "no_digit": 100.0 * (patches == NO_DIGIT).float().mean().item()
                  if model.config.encoder_classes > NO_DIGIT else None}
    return out


def search_success(profile: str = NO_DIGIT_SEARCH, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per committed problem of a window-search ``profile`` (``seed``): the % of images the search's own windows
    localise (``search``, the windows the localisation net is taught, at the digit's size) and the % the trained
    transformer localises (``final``)."""
    from stnbook.experiments import get_cells, load_cell

    out = {}
    for c, metrics in load_results(EXPERIMENT, profile, seed=seed).items():
        if c == ENCODER_CELL:
            continue
        _, model, analysis = load_cell(get_cells(EXPERIMENT, [c])[0], profile, seed=seed)
        if not hasattr(model, "search_centres"):
            raise ValueError(f"profile {profile!r} has no window search")
        theta = torch.cat([torch.full((len(model.search_centres), 1), model.config.final_scale), model.search_centres], 1)
        out[c] = {"search": localisation_scores(theta, analysis["box"])["success"], "final": metrics["success"]}
    return out


def search_key_numbers(found: dict[str, dict[str, float]], prefix: str = "coloc_ndsearch") -> dict[str, str]:
    """Numbers for the text on :func:`search_success` (keys ``<prefix>_*``): per variant the problems whose searched
    windows localise every image (``<v>_all``, "k of n") and those the trained transformer localises every image of
    (``<v>_final_all``), and over every problem the images the transformer loses against the search (``_lost``).

    Examples:
        >>> k = search_key_numbers({"T-0": {"search": 100.0, "final": 99.0}, "TC-0": {"search": 99.0, "final": 99.0}})
        >>> k["coloc_ndsearch_t_all"], k["coloc_ndsearch_t_final_all"], k["coloc_ndsearch_tc_all"], k["coloc_ndsearch_lost"]
        ('1 of 1', '0 of 1', '0 of 1', '1')
    """
    out = {}
    for v in VARIANTS:
        got = [r for c, r in found.items() if c.startswith(f"{v}-")]
        out[f"{prefix}_{v.lower()}_all"] = f"{sum(r['search'] >= 100.0 for r in got)} of {len(got)}"
        out[f"{prefix}_{v.lower()}_final_all"] = f"{sum(r['final'] >= 100.0 for r in got)} of {len(got)}"
    out[f"{prefix}_lost"] = str(round(sum(max(r["search"] - r["final"], 0.0) for r in found.values())))  # 1% = 1 image
    return out


def blank_class(profile: str = WINDOW_SEARCH, seed: int = 0) -> str:
    """The digit the embedding CNN of ``profile``'s problems (``seed``) reads in an empty crop (the T-0
    artifact's copy of it), or "n/a" without artifacts."""
    from stnbook.experiments import get_cells, load_cell

    try:
        _, model, _ = load_cell(get_cells(EXPERIMENT, [cell_id("T", 0)])[0], profile, seed=seed)
    except FileNotFoundError:
        return "n/a"
    with torch.no_grad():
        blank = torch.zeros(1, 1, model.config.out_size, model.config.out_size)
        return str(int(model.embed(blank, normalize=False, kind="logits").argmax()))


def readings_html(readings: dict[str, dict[str, float]]) -> str:
    """:func:`class_readings` as a table, T then TC, one row per problem (with the "no digit" share where the CNN
    has that class)."""
    no_digit = any(r.get("no_digit") is not None for r in readings.values())
    rows = [[c, f"{r['success']:.0f}", f"{r['patches']:.0f}", f"{r['truth']:.0f}"]
            + ([f"{r['no_digit']:.0f}"] if no_digit else [])
            for v in VARIANTS for d in DIGITS if (r := readings.get(c := cell_id(v, d)))]
    return html_table(["problem", "% localised", "% of random patches read as the digit",
                       "% of true crops read as the digit"]
                      + (["% of random patches read as no digit"] if no_digit else []), rows, row_headers=True)


def reading_key_numbers(readings: dict[str, dict[str, float]], prefix: str = "coloc_read", share: float = 10.0,
                        target: float = 75.0) -> dict[str, str]:
    """Numbers for the text on :func:`class_readings` (keys ``<prefix>_*``): the problems whose random patches the
    CNN reads as their digit at least ``share`` % of the time (``_high``: "k", ``_high_names`` with the share),
    how many of them localise fewer than ``target`` % of their images (``_high_short``), the same for the other
    problems (``_low``, ``_low_short``), the largest share (``_max``, with its problem ``_max_cell``), and the mean %
    of random patches read as "no digit" (``_no_digit``; "n/a" for a CNN without that class).

    Examples:
        >>> r = {"T-1": {"patches": 86.0, "truth": 100.0, "success": 38.0},
        ...      "T-2": {"patches": 11.0, "truth": 98.0, "success": 90.0},
        ...      "T-3": {"patches": 4.0, "truth": 99.0, "success": 100.0}}
        >>> k = reading_key_numbers(r)
        >>> k["coloc_read_high"], k["coloc_read_high_short"], k["coloc_read_low"], k["coloc_read_low_short"]
        ('2', '1', '1', '0')
        >>> k["coloc_read_high_names"], k["coloc_read_max"], k["coloc_read_max_cell"]
        ('T-1 (86%), T-2 (11%)', '86', 'T-1')
    """
    high = {c: r for c, r in readings.items() if r["patches"] >= share}
    low = {c: r for c, r in readings.items() if r["patches"] < share}
    top = max(readings, key=lambda c: readings[c]["patches"]) if readings else None
    nd = [r["no_digit"] for r in readings.values() if r.get("no_digit") is not None]
    return {f"{prefix}_high": str(len(high)),
            f"{prefix}_high_names": ", ".join(f"{c} ({r['patches']:.0f}%)" for c, r in high.items()) or "none",
            f"{prefix}_high_short": str(sum(r["success"] < target for r in high.values())),
            f"{prefix}_low": str(len(low)), f"{prefix}_low_short": str(sum(r["success"] < target for r in low.values())),
            f"{prefix}_max": "n/a" if top is None else f"{readings[top]['patches']:.0f}",
            f"{prefix}_max_cell": top or "n/a",
            f"{prefix}_no_digit": "n/a" if not nd else f"{sum(nd) / len(nd):.0f}"}


def search_moves(seeds=SEEDS, min_px: float = 3.0) -> dict[str, str]:
    """How many problems of the committed search runs (every seed with artifacts) had their windows moved by the
    search by more than ``min_px`` pixels, per variant: keys ``coloc_se_moved_<variant>`` ("k of n"; "n/a" without
    runs)."""
    moved = {v: [] for v in VARIANTS}
    for c, _, analysis in _analyses(SEARCH, seeds, lambda c, m: c != ENCODER_CELL):
        rec = analysis.get("records", {}).get("offset_search")
        if rec is not None:
            moved[c.split("-")[0]].append(float(torch.tensor(rec["shift_px"]).norm()) > min_px)
    return {f"coloc_se_moved_{v.lower()}": f"{sum(m)} of {len(m)}" if m else "n/a" for v, m in moved.items()}


def missed_truths(profile: str, seeds=SEEDS, variant: str = "T", radius: float = 12.0, aligned_px: float = 3.5,
                  prefix: str = "coloc_missed") -> dict[str, str]:
    """The failed problems (under :data:`FAILED` % localised) of ``profile`` whose true boxes have the lower loss
    (the objective right, training short of it), over ``seeds``: how many (``<prefix>_n``), how many frame every
    digit alike (images spread less than ``aligned_px`` around their common offset: ``<prefix>_aligned``) and how
    many end further than ``radius`` px from their digits (``<prefix>_beyond``)."""
    def missed(c: str, m: dict) -> bool:
        return c.startswith(f"{variant}-") and m["success"] < FAILED and m["loss_true"] < m["loss_learned"]

    found = [offset_summary(a, CoLocalisationConfig().canvas) for _, _, a in _analyses(profile, seeds, missed)]
    return {f"{prefix}_n": str(len(found)), f"{prefix}_aligned": str(sum(o["spread"] < aligned_px for o in found)),
            f"{prefix}_beyond": str(sum(o["length"] > radius for o in found))}


FOLLOWS_PX = 5.0  # windows whose offsets from their digits spread less than this follow the digits


def spread_at(analysis: dict, step: int, canvas: int) -> float:
    """How much the windows' offsets from their digits differ across the images (px, the per-axis standard
    deviations averaged, as in :func:`offset_summary`) at the last step recorded at or before ``step``.

    Examples:
        >>> box = torch.tensor([[27.5, 27.5, 55.5, 55.5], [7.5, 7.5, 35.5, 35.5]])
        >>> still = torch.tensor([[1.0, 0.0, 0.0]] * 2)  # both windows at the canvas's centre: offsets 0 and 20 px
        >>> follows = true_theta(box)  # each window on its digit: the same offset (0) in both images
        >>> rec = {"trajectory": [{"step": 0, "theta": still}, {"step": 8, "theta": follows}]}
        >>> [round(spread_at({"records": rec, "box": box}, k, 84), 1) for k in (0, 7, 8, 100)]
        [14.1, 14.1, 0.0, 0.0]
    """
    steps, theta = trajectory(analysis)
    k = int((steps <= step).nonzero().max())
    return window_offsets(theta[k], analysis["box"], canvas).std(0).mean().item()


def hold_spreads(profile: str, seeds=(0,)) -> dict[str, dict[str, float]]:
    """Per problem of ``profile`` (over ``seeds``; key ``<cell>`` for seed 0, ``<cell>, seed k`` otherwise): the
    spread of the windows' offsets across the images at the start (``start``) and at the end of the whole-canvas
    phase of the curriculum (``hold``), and its % localised (``success``). Whether the localisation net has learned
    to move the window with the digit while the window is the whole canvas, which is what the later phases build on."""
    out = {}
    for seed in seeds:
        for c, m, a in _analyses(profile, [seed], lambda c, m: c != ENCODER_CELL):
            cfg = CoLocalisationConfig.from_dict(m["model_config"])
            hold = round(cfg.hold * m["steps"])
            key = c if seed == 0 else f"{c}, seed {seed}"
            out[key] = {"start": spread_at(a, 0, cfg.canvas), "hold": spread_at(a, max(hold - 1, 0), cfg.canvas),
                        "success": m["success"]}
    return out


def hold_key_numbers(spreads: dict[str, dict[str, float]], prefix: str = "coloc_hold") -> dict[str, str]:
    """Per variant (``<prefix>_t_*``, ``<prefix>_tc_*``): the mean spread at the start and at the end of the
    whole-canvas phase (px), and how many problems end that phase with the windows following their digits
    (spread under :data:`FOLLOWS_PX`; "k of n"); "n/a" without problems.

    Examples:
        >>> s = {"T-0": {"start": 17.0, "hold": 2.0, "success": 100.0}, "TC-0": {"start": 17.0, "hold": 16.0,
        ...      "success": 0.0}, "TC-1": {"start": 17.0, "hold": 15.0, "success": 10.0}}
        >>> hold_key_numbers(s)["coloc_hold_tc_end"], hold_key_numbers(s)["coloc_hold_tc_follow"]
        ('15.5', '0 of 2')
    """
    out = {}
    for v in VARIANTS:
        rows = [r for c, r in spreads.items() if c.split("-")[0] == v]
        p = f"{prefix}_{v.lower()}"
        if not rows:
            out.update({f"{p}_start": "n/a", f"{p}_end": "n/a", f"{p}_follow": "n/a"})
            continue
        out[f"{p}_start"] = f"{sum(r['start'] for r in rows) / len(rows):.1f}"
        out[f"{p}_end"] = f"{sum(r['hold'] for r in rows) / len(rows):.1f}"
        out[f"{p}_follow"] = f"{sum(r['hold'] < FOLLOWS_PX for r in rows)} of {len(rows)}"
    return out


def ink_share(digits=DIGITS) -> dict[int, float]:
    """Per class: the digit's share of a cluttered (TC) canvas's ink, % (the sum of the digit's pixel values over the
    sum of the canvas's, averaged over the problem's images). The T and TC problems of a class hold the same digit
    images; the T canvas has the digit's ink alone."""
    out = {}
    for d in digits:
        digit = problem(CoLocalisationConfig(digit=d, variant="T"))["x"].sum((1, 2, 3))
        canvas = problem(CoLocalisationConfig(digit=d, variant="TC"))["x"].sum((1, 2, 3))
        out[d] = 100.0 * (digit / canvas).mean().item()
    return out


def ink_key_numbers(share: dict[int, float], prefix: str = "coloc_ink") -> dict[str, str]:
    """``<prefix>_mean`` (% over the classes), ``<prefix>_min`` and ``<prefix>_min_class`` of :func:`ink_share`.

    Examples:
        >>> ink_key_numbers({0: 50.0, 1: 30.0})
        {'coloc_ink_mean': '40', 'coloc_ink_min': '30', 'coloc_ink_min_class': '1'}
    """
    low = min(share, key=share.get)
    return {f"{prefix}_mean": f"{sum(share.values()) / len(share):.0f}", f"{prefix}_min": f"{share[low]:.0f}",
            f"{prefix}_min_class": str(low)}


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


__all__ = ["FAILED", "LANDSCAPE_OFFSETS", "OFF_CENTRE_PX", "PAPER_SUCCESS", "SEEDS", "SMOKE_CELLS", "chapter_cell",
           "chapter_results", "columns_html", "embedding_scale_html", "encoder_key_numbers", "figure_found", "figure_trajectory",
           "full_results", "landscape_key_numbers", "method_columns", "method_key_numbers", "landscapes", "loss_html", "loss_key_numbers", "offset_key_numbers",
           "offset_summary", "offsets", "offsets_html", "plot_found", "plot_landscapes", "plot_offset_history",
           "plot_problems", "plot_trajectory", "provenance", "seed_columns", "seed_key_numbers", "seed_results", "seeds_html", "showcase_cells",
           "success_html", "success_key_numbers", "SEARCH", "search_moves", "search_vs_two_stage", "TWO_STAGE",
           "FIXED", "WIDE", "TRAINED_FIXED", "PROFILE_KEYS", "profile_columns", "scale_columns", "profile_vs", "side_key_numbers",
           "failure_causes", "missed_truths", "WINDOW_SEARCH", "window_columns", "window_key_numbers", "class_readings", "blank_class", "NO_DIGIT_SEARCH",
           "NO_DIGIT_ENCODER", "NO_DIGIT_LONG", "no_digit_columns", "no_digit_encoder_key_numbers", "seeds_text",
           "search_success", "search_key_numbers",
           "readings_html", "reading_key_numbers"]
