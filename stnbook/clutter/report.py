"""Tables, figures and the quoted numbers of the cluttered-MNIST chapter (60 x 60 and 100 x 100, against the
recurrent attention model), computed from the clutter artifacts."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.clutter.experiment import ATTENTION_OUT, EXPERIMENT, MODELS, PROFILES, PROTOCOLS
from stnbook.figures import COLORS, draw_outline, html_table, imshow
from stnbook.paths import load_mnist
from stnlib.data.cluttered import CLUTTER_PROTOCOLS, cluttered_test_set
from stnlib.geometry import sampling_outline

CELLS = [f"{p}-{m}" for p in PROTOCOLS for m in MODELS]

ANCHORS: dict[str, list[tuple[str, float]]] = {
    "ram60": [("RAM, 8 glimpses (Mnih et al. 2014)", 5.23), ("RAM, a later reimplementation", 2.63)],
    "ram100": [("RAM, 8 glimpses (Mnih et al. 2014)", 10.83), ("RAM, a later reimplementation", 5.9),
               ("a plain convolutional network (as quoted beside RAM)", 16.0)],
}
"""Published % test errors on the same protocols (the recurrent attention model of Mnih et al. 2014 and later
reports beside it); none of them is the STN paper's."""

NAMES = {"cnn": "CNN", "st-cnn-affine": "ST-CNN affine", "st-cnn-attention": f"ST-CNN attention ({ATTENTION_OUT}x{ATTENTION_OUT})"}


def canvas_of(cell: str) -> int:
    return CLUTTER_PROTOCOLS[cell.split("-", 1)[0]].canvas


def label(cell: str) -> str:
    """e.g. "ST-CNN affine, 100x100"."""
    protocol, model = cell.split("-", 1)
    return f"{NAMES[model]}, {canvas_of(cell)}x{canvas_of(cell)}"


def color(cell: str) -> str:
    return COLORS[list(MODELS).index(cell.split("-", 1)[1]) % len(COLORS)]


def best_on(results: dict[str, dict], protocol: str) -> str | None:
    """The cell of ``results`` with the lowest error on ``protocol``'s canvas (None without one)."""
    got = [c for c in CELLS if c.startswith(protocol + "-") and c in results]
    return min(got, key=lambda c: results[c]["test_error"], default=None)


def ram_by_cell() -> dict[str, float]:
    """RAM's published error (8 glimpses) on each cell's canvas."""
    return {c: ANCHORS[c.split("-", 1)[0]][0][1] for c in CELLS}


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or every cell trained now with the smoke budget."""
    return common.chapter_results(EXPERIMENT, profile)


def chapter_cell(cell: str, profile: str):
    return common.chapter_cell(EXPERIMENT, cell, profile)


def missing_note(results: dict[str, dict], source: str) -> str:
    """Which cells have no artifact and the command that makes them (:func:`stnbook.artifacts.missing_note`)."""
    return common.missing_note(EXPERIMENT, CELLS, results, source, label)


# ---- the protocol (no artifact needed) -----------------------------------------------------------------------------

def protocol_html() -> str:
    """The protocols side by side: canvas, clutter pieces, and the paper each comes from."""
    rows = []
    source = {"tc": "the STN paper's TC (A.4; Table 1's chapter)", "ram60": "RAM's 60x60", "ram100": "RAM's 100x100"}
    for name, s in CLUTTER_PROTOCOLS.items():
        rows.append([f"<code>{name}</code>", html.escape(source.get(name, "")), f"{s.canvas}x{s.canvas}",
                     f"{s.clutter_count}", f"{s.clutter_size}x{s.clutter_size}"])
    return html_table(["protocol", "what it is", "canvas", "clutter pieces", "piece size"], rows)


def plot_protocols(n: int = 5):
    """The first ``n`` test canvases of each protocol, the digit's 28 x 28 frame dashed, the label above."""
    x, y = load_mnist("test")
    fig, axes = plt.subplots(len(CLUTTER_PROTOCOLS), n, figsize=(1.55 * n + 0.6, 1.65 * len(CLUTTER_PROTOCOLS) + 0.2),
                             squeeze=False)
    for r, name in enumerate(CLUTTER_PROTOCOLS):
        data = cluttered_test_set(name, x, y, n=n)
        for c in range(n):
            imshow(axes[r, c], data["x"][c], f"{int(data['y'][c])}", vmax=1, fontsize=8)
            x0, y0, x1, y1 = data["box"][c].tolist()
            axes[r, c].plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=COLORS[1], lw=0.8, ls="--")
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


def plot_what_attention_reads(protocol: str = "ram100", n: int = 4):
    """Why the attention transformer must zoom: the first ``n`` test canvases of ``protocol``, what its
    ``ATTENTION_OUT``-pixel output shows at the identity (the whole canvas, shrunk), and what the same output shows
    when its window is the digit's 28 x 28 box (the attention theta of that box)."""
    from stnlib.sampler import bilinear_sample
    from stnlib.transforms import get_transform

    x, y = load_mnist("test")
    data = cluttered_test_set(protocol, x, y, n=n)
    canvas = data["x"].shape[-1]
    box = data["box"].float()
    centre = (box[:, :2] + box[:, 2:]) / 2
    theta_box = torch.cat([torch.full((n, 1), 28 / canvas), (2 * centre + 1) / canvas - 1], 1)
    attention = get_transform("attention")
    rows = [("canvas", data["x"]),
            (f"identity, {ATTENTION_OUT} px", bilinear_sample(data["x"], attention.grid(attention.identity().expand(n, 3),
                                                                                        ATTENTION_OUT))),
            (f"digit's box, {ATTENTION_OUT} px", bilinear_sample(data["x"], attention.grid(theta_box, ATTENTION_OUT)))]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n + 0.8, 1.7 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            imshow(axes[r, c], images[c], f"{int(data['y'][c])}" if r == 0 else None, vmax=1, fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def models_html() -> str:
    """Per cell: what the classifier reads, its width, the localisation net's and the whole model's parameters."""
    from stnbook.experiments import cell_model, get_cells
    from stnlib.models import build_model, count_parameters

    rows = []
    for cell in get_cells(EXPERIMENT):
        cfg = cell_model(cell, PROFILES["full"])
        model = build_model(cfg)
        loc = sum(p.numel() for p in model.localisation_parameters())
        side = cfg.in_size[0] if cfg.st_out_size is None else cfg.st_out_size[0]
        side //= cfg.st_pool if model.st is not None else 1
        rows.append([html.escape(label(cell.id)), f"{side}x{side}", f"{model.width}",
                     f"{loc:,}" if loc else "&ndash;", f"{count_parameters(model):,}"])
    return html_table(["model", "classifier reads", "classifier width", "localisation parameters", "all parameters"],
                      rows, row_headers=True)


# ---- numbers --------------------------------------------------------------------------------------------------------

def step_ms(m: dict) -> float:
    """Milliseconds of training per step of a run (wall time / steps; includes making the batches)."""
    return 1000 * m["wall_time_s"] / max(m["steps"], 1)


def key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The numbers the prose quotes, as short strings ("n/a" where a run is missing): per cell its error, step time
    and box measures; per canvas (``ram60_*``, ``ram100_*``) the best of our models (``_best``, its ``_best_error``),
    RAM's anchor (``_ram``), whether ours is ``below`` or ``above`` it (``_vs_ram``) and whether the attention
    model's step is ``faster`` or ``slower`` than the plain CNN's (``_attention_step``); the full profile's budget
    (``full_*``); and :func:`long_key_numbers` of the committed full and long runs (``long_*``).

    Examples:
        >>> key_numbers({})["ram100_st_cnn_attention_error"], key_numbers({})["ram60_cnn_ms"]
        ('n/a', 'n/a')
        >>> key_numbers({})["ram100_vs_ram"], key_numbers({})["ram100_ram"], key_numbers({})["full_epochs"]
        ('n/a', '10.83', '6.4')
    """
    out = {}
    for c in CELLS:
        key = c.replace("-", "_")
        m = results.get(c)
        out[f"{key}_error"] = "n/a" if m is None else f"{m['test_error']:.2f}"
        out[f"{key}_ms"] = "n/a" if m is None else f"{step_ms(m):.0f}"
        box = None if m is None else m.get("box")
        out[f"{key}_iou"] = "n/a" if box is None else f"{box['iou']:.2f}"
        out[f"{key}_iou_half"] = "n/a" if box is None else f"{100 * box['iou_above_half']:.0f}"
        out[f"{key}_covered"] = "n/a" if box is None else f"{100 * box['covered']:.0f}"
        out[f"{key}_side"] = "n/a" if box is None else f"{box['side_px']:.0f}"
    for p in PROTOCOLS:
        best = best_on(results, p)
        ram = ANCHORS[p][0][1]
        out[f"{p}_ram"] = f"{ram}"
        out[f"{p}_best"] = "n/a" if best is None else NAMES[best.split("-", 1)[1]]
        out[f"{p}_best_error"] = "n/a" if best is None else f"{results[best]['test_error']:.2f}"
        out[f"{p}_vs_ram"] = "n/a" if best is None else ("below" if results[best]["test_error"] < ram else "above")
        a, b = results.get(f"{p}-st-cnn-attention"), results.get(f"{p}-cnn")
        out[f"{p}_attention_step"] = ("n/a" if a is None or b is None
                                      else "faster" if step_ms(a) < step_ms(b) else "slower")
    m = next(iter(results.values()), None)
    out["budget"] = "n/a" if m is None else f"{m['steps']:,} steps at batch {m['batch_size']}"
    out["test_size"] = "n/a" if m is None else f"{m['test_size']:,}"
    out.update(common.budget_numbers(PROFILES["full"]))
    out.update(long_key_numbers(full_results(), long_results()))  # the committed long runs, whatever the profile
    return out


def results_html(results: dict[str, dict]) -> str:
    """Per canvas: the anchors, then our models: % test error, parameters, where the transformer looks, cost."""
    rows = []
    for p in PROTOCOLS:
        s = CLUTTER_PROTOCOLS[p]
        rows.append([f"<i>{s.canvas}x{s.canvas}, {s.clutter_count} pieces of {s.clutter_size}x{s.clutter_size}</i>",
                     "", "", "", "", ""])
        for name, err in ANCHORS[p]:
            rows.append([html.escape(name), f"{err}", "&ndash;", "&ndash;", "&ndash;", "(published)"])
        for c in CELLS:
            if not c.startswith(p + "-"):
                continue
            m = results.get(c)
            if m is None:
                rows.append([f"ours: {html.escape(NAMES[c.split('-', 1)[1]])}", "&ndash; (no artifact)", "", "", "", ""])
                continue
            box = m.get("box")
            rows.append([f"ours: {html.escape(NAMES[c.split('-', 1)[1]])}", f"<b>{m['test_error']:.2f}</b>",
                         f"{m['params']:,}",
                         "&ndash;" if box is None else f"{box['iou']:.2f} ({100 * box['iou_above_half']:.0f}%)",
                         f"{step_ms(m):.0f}", f"{m['steps']:,} x {m['batch_size']}, {m['wall_time_s'] / 60:.1f} min"])
    test = (f"ours on {next(iter(results.values()))['test_size']:,} fixed test canvases per size" if results
            else "no artifacts of ours yet")
    return html_table(["model", "% test error", "parameters", "box IoU with the digit (share > 0.5)",
                       "ms per training step", "steps x batch, time"], rows, caption=test, row_headers=True)


def long_results() -> dict[str, dict]:
    """The committed runs of the "long" profile (4x the full profile's steps; run for the affine ST-CNNs)."""
    from stnbook.experiments import load_results

    return load_results(EXPERIMENT, "long")


def full_results() -> dict[str, dict]:
    """The committed runs of the "full" profile (whatever profile the chapter runs in)."""
    from stnbook.experiments import load_results

    return load_results(EXPERIMENT, "full")


def plot_long_curves(long: dict[str, dict]):
    """Test error at every evaluation of each long run, RAM's error on its canvas dotted, chance dashed."""
    return common.plot_eval_curves(long, ram_by_cell(), label, log=True)


def long_html(full: dict[str, dict], long: dict[str, dict]) -> str:
    """Per long-profile cell: RAM's error on its canvas, ours in the full and in the long profile with the
    compute each used and the transformer's box IoU (share above 0.5)."""
    def note(m: dict) -> str:
        box = m.get("box")
        return "" if box is None else f"<br><small>IoU {box['iou']:.2f} ({100 * box['iou_above_half']:.0f}% > 0.5)</small>"

    return common.profiles_html(full, long, ram_by_cell(), label, note=note, ref_label="RAM (8 glimpses)")


def long_key_numbers(full: dict[str, dict], long: dict[str, dict]) -> dict[str, str]:
    """Per canvas (``long_ram60_*``, ``long_ram100_*``): the best long-profile model (``_best``), its error
    (``_error``), whether it is ``below`` or ``above`` RAM (``_vs_ram``), by how many points (``_points``), RAM's
    error divided by ours (``_ratio``), and the same against the later reimplementation of RAM (``_later``,
    ``_vs_later``); per long cell its full-profile error (``long_<cell>_full``), the mean side of its sampled
    box in pixels (``long_<cell>_side``) and the % of test canvases where that box has IoU > 0.5 with the digit's
    frame (``long_<cell>_iou_half``); the long
    profile's budget (``long_*``: steps, batch, epochs). "n/a" where a run is missing.

    Examples:
        >>> k = long_key_numbers({}, {"ram60-st-cnn-affine": {"test_error": 4.0}})
        >>> k["long_ram60_vs_ram"], k["long_ram60_points"], k["long_ram60_ratio"], k["long_ram100_error"]
        ('below', '1.23', '1.31', 'n/a')
    """
    out = {}
    for c in CELLS:
        if c in long:
            f, box, key = full.get(c), long[c].get("box"), f"long_{c.replace('-', '_')}"
            out[f"{key}_full"] = "n/a" if f is None else f"{f['test_error']:.2f}"
            out[f"{key}_side"] = "n/a" if box is None else f"{box['side_px']:.0f}"
            out[f"{key}_iou_half"] = "n/a" if box is None else f"{100 * box['iou_above_half']:.0f}"
    for p in PROTOCOLS:
        best = best_on(long, p)
        ram = ANCHORS[p][0][1]
        err = None if best is None else long[best]["test_error"]
        out[f"long_{p}_best"] = "n/a" if best is None else NAMES[best.split("-", 1)[1]]
        out[f"long_{p}_error"] = "n/a" if err is None else f"{err:.2f}"
        out[f"long_{p}_vs_ram"] = "n/a" if err is None else ("below" if err < ram else "above")
        out[f"long_{p}_points"] = "n/a" if err is None else f"{abs(ram - err):.2f}"
        out[f"long_{p}_ratio"] = "n/a" if err is None else f"{ram / err:.2f}"
        later = ANCHORS[p][1][1]  # the later reimplementation of RAM
        out[f"long_{p}_later"] = f"{later}"
        out[f"long_{p}_vs_later"] = "n/a" if err is None else ("below" if err < later else "above")
    out.update({f"long_{k.split('_', 1)[1]}": v for k, v in common.budget_numbers(PROFILES["long"]).items()})
    return out


# ---- figures --------------------------------------------------------------------------------------------------------

def plot_boxes(profile: str, protocol: str = "ram100", n: int = 6):
    """The first ``n`` test canvases of ``protocol`` with the box each transformer samples (attention red, affine
    blue) and the digit's frame dashed; below, what the attention model's classifier reads. None without the
    attention artifact."""
    got = chapter_cell(f"{protocol}-st-cnn-attention", profile)
    if got is None:
        return None
    metrics, att, _ = got
    aff = chapter_cell(f"{protocol}-st-cnn-affine", profile)
    x, y = load_mnist("test")
    data = cluttered_test_set(protocol, x, y, n=n)
    canvas = CLUTTER_PROTOCOLS[protocol].canvas
    with torch.no_grad():
        crop, theta = att.transform_input(data["x"])
        pred = att.classify(crop).argmax(1)
        aff_theta = None if aff is None else aff[1].transform_input(data["x"])[1]
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n + 0.4, 4.1), squeeze=False)
    for c in range(n):
        imshow(axes[0, c], data["x"][c], f"digit {int(data['y'][c])}", vmax=1, fontsize=8)
        x0, y0, x1, y1 = data["box"][c].tolist()
        axes[0, c].plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=COLORS[1], lw=0.8, ls="--")
        if aff_theta is not None:
            draw_outline(axes[0, c], sampling_outline(aff_theta[c], "affine", canvas), color=COLORS[2], lw=1.0)
        draw_outline(axes[0, c], sampling_outline(theta[c], "attention", canvas), color=COLORS[0], lw=1.2)
        axes[0, c].set_xlim(-0.5 - 0.1 * canvas, canvas - 0.5 + 0.1 * canvas)
        axes[0, c].set_ylim(canvas - 0.5 + 0.1 * canvas, -0.5 - 0.1 * canvas)
        ok = "ok" if pred[c] == data["y"][c] else "wrong"
        imshow(axes[1, c], crop[c], f"reads {int(pred[c])} ({ok})", vmax=1, fontsize=8)
    fig.suptitle(f"{canvas}x{canvas}, {metrics['steps']:,} steps: attention box (red), affine region (blue), digit "
                 "frame (green, dashed); below: the attention model's 32x32 input", fontsize=8)
    fig.tight_layout()
    return fig


def plot_iou(profile: str):
    """Histogram of the IoU of each transformer's box with the digit's frame over the test set; None without
    any transformer artifact."""
    fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(4.2 * len(PROTOCOLS), 2.8), squeeze=False)
    drawn = False
    for k, p in enumerate(PROTOCOLS):
        for model in ("st-cnn-attention", "st-cnn-affine"):
            got = chapter_cell(f"{p}-{model}", profile)
            if got is None:
                continue
            axes[0, k].hist(got[2]["iou"].numpy(), bins=25, range=(0, 1), alpha=0.6, color=color(f"{p}-{model}"),
                            label=NAMES[model])
            drawn = True
        axes[0, k].set(xlabel="IoU of the sampled box with the digit's frame", ylabel="test canvases",
                       title=f"{CLUTTER_PROTOCOLS[p].canvas}x{CLUTTER_PROTOCOLS[p].canvas}")
        axes[0, k].legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    return fig


def plot_eval_curves(results: dict[str, dict]):
    """Test error at every evaluation of each run (chance dashed)."""
    return common.plot_eval_curves(results, {}, label, chance=90.0)


def provenance(results: dict[str, dict]) -> str:
    return common.provenance(results, EXPERIMENT)
