"""Tables, figures and the quoted numbers of the chapter on transformers inside the CNN, from the depth artifacts.

The paper claims the module "can be inserted at any point in an existing CNN" and uses that in its SVHN model
(transformers before several convolutional layers) and its bird model (transformers in parallel); it reports no
comparison of placements on one task. What is compared here: the Table 1 CNN with one affine transformer at the
input, after its first block or after its second, or at the input and after the first block, at one parameter count.
"""

from __future__ import annotations

import html
from dataclasses import replace

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.depth.experiment import ANALYSIS_SIZE, EXPERIMENT, MODELS, PROFILES, SMOKE_CELLS, TASKS, model_config
from stnbook.figures import COLORS, draw_outline, html_table, imshow, set_view
from stnbook.paths import load_mnist
from stnlib.data.distortions import fixed_test_set
from stnlib.models import count_parameters
from stnlib.models_depth import build_depth_model

SITE_NAMES = {"input": "at the input", "block1": "after block 1", "block2": "after block 2"}
SITE_COLORS = {"input": COLORS[0], "block1": COLORS[2], "block2": COLORS[3]}


def label(name: str) -> str:
    """The model's name from a cell name of :data:`MODELS` or a cell id.

    Examples:
        >>> label("st-block1"), label("TC-st-multi"), label("RTS-cnn")
        ('ST after block 1', 'ST at the input and after block 1', 'CNN')
    """
    name = name.split("-", 1)[1] if name.split("-", 1)[0] in TASKS else name
    sites = MODELS[name]
    return "CNN" if not sites else "ST " + " and ".join(SITE_NAMES[s] for s in sites)


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or the RTS column (:data:`SMOKE_CELLS`) trained now with
    the smoke budget."""
    return common.chapter_results(EXPERIMENT, profile, SMOKE_CELLS)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one cell, or None with a note saying which command makes it."""
    return common.chapter_cell(EXPERIMENT, cell, profile)


def missing_note(results: dict[str, dict], source: str) -> str:
    """Which cells have no artifact and the command that makes them (:func:`stnbook.artifacts.missing_note`)."""
    return common.missing_note(EXPERIMENT, [f"{t}-{m}" for t in TASKS for m in MODELS], results, source)


# ---- the models (no artifact needed) -------------------------------------------------------------------------------

def models_html() -> str:
    """Per model: where its transformers sit (with the map each acts on) and, per column, the CNN's width, the
    localisation parameters and all parameters, built from the cells' configurations."""
    rows = []
    for name, sites in MODELS.items():
        row = [html.escape(label(name))]
        built = {t: build_depth_model(model_config(t, name)) for t in TASKS}
        m = built[TASKS[0]]
        row.append("&ndash;" if not sites else "; ".join(
            f"{html.escape(SITE_NAMES[s])}: {m.map_sizes[s][0]}x{m.map_sizes[s][1]}"
            f"{' image' if s == 'input' else ' map'}" for s in sites))
        for t in TASKS:
            b = built[t]
            loc = sum(p.numel() for p in b.localisation_parameters())
            row += [f"{b.width}", f"{loc:,}" if loc else "&ndash;", f"{count_parameters(b):,}"]
        rows.append(row)
    head = ["model", f"transformers (on {TASKS[0]}: the size of what each samples)"]
    for t in TASKS:
        head += [f"{t}: width", f"{t}: localisation parameters", f"{t}: all parameters"]
    return html_table(head, rows, row_headers=True)


# ---- numbers --------------------------------------------------------------------------------------------------------

FEATURE_MAP_MODELS = [name for name, sites in MODELS.items() if any(s != "input" for s in sites)]
"""The models with a transformer on a feature map (after block 1 or 2)."""


def key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The numbers the chapter's prose quotes, as short strings ("n/a" for every one whose run is missing). Per column
    ``t`` and model: its error, step cost relative to the CNN (e.g. ``1.12x``), whether it ``beats`` or ``does not beat`` the CNN
    (``{t}_{model}_vs_cnn``) and, per feature-map transformer, how well it follows the digit (``{t}_{model}_follow``);
    per column the best model (``best_{t}``, ``best_{t}_error``), how many placements beat the CNN
    (``{t}_beats_cnn``) and whether the best feature-map transformer model beats it (``{t}_feature_map_vs_cnn``);
    the full profile's budget (``full_*``).

    Examples:
        >>> key_numbers({})["RTS_st_block1_error"], key_numbers({})["best_RTS"], key_numbers({})["TC_beats_cnn"]
        ('n/a', 'n/a', 'n/a')
        >>> run = {"steps": 10, "batch_size": 8, "step_cost": {"relative": 1.0}}
        >>> n = key_numbers({"TC-cnn": {**run, "test_error": 3.0}, "TC-st-block2": {**run, "test_error": 2.5,
        ...                  "sites": {"block2": {"follow": 0.8}}}})
        >>> n["TC_st_block2_vs_cnn"], n["TC_beats_cnn"], n["TC_feature_map_vs_cnn"], n["TC_st_block2_follow"]
        ('beats', '1 of 1', 'beats', '0.80')
    """
    out = {}
    for t in TASKS:
        cnn = results.get(f"{t}-cnn")
        for name in MODELS:
            m = results.get(f"{t}-{name}")
            key = f"{t}_{name.replace('-', '_')}"
            out[f"{key}_error"] = "n/a" if m is None else f"{m['test_error']:.2f}"
            out[f"{key}_cost"] = "n/a" if m is None else f"{m['step_cost']['relative']:.2f}x"
            if name == "cnn":
                continue
            out[f"{key}_vs_cnn"] = ("n/a" if m is None or cnn is None
                                    else "beats" if m["test_error"] < cnn["test_error"] else "does not beat")
            if name in FEATURE_MAP_MODELS:
                site = next(s for s in MODELS[name] if s != "input")
                out[f"{key}_follow"] = "n/a" if m is None else f"{m['sites'][site]['follow']:.2f}"
        have = {n: results[f"{t}-{n}"]["test_error"] for n in MODELS if f"{t}-{n}" in results}
        best = min(have, key=have.get, default=None)
        out[f"best_{t}"] = "n/a" if best is None else label(best)
        out[f"best_{t}_error"] = "n/a" if best is None else f"{have[best]:.2f}"
        others = [n for n in have if n != "cnn"]
        out[f"{t}_beats_cnn"] = ("n/a" if cnn is None or not others else
                                 f"{sum(have[n] < cnn['test_error'] for n in others)} of {len(others)}")
        maps = [have[n] for n in FEATURE_MAP_MODELS if n in have]
        out[f"{t}_feature_map_vs_cnn"] = ("n/a" if cnn is None or not maps
                                          else "beats" if min(maps) < cnn["test_error"] else "does not beat")
    m = next(iter(results.values()), None)
    out["budget"] = "n/a" if m is None else f"{m['steps']:,} steps at batch {m['batch_size']}"
    out.update(common.budget_numbers(PROFILES["full"]))
    return out


def results_html(results: dict[str, dict]) -> str:
    """Per model and column: % test error (the column's best in bold) and the cost of a training step relative to
    the plain CNN's (measured in one process, at the training batch size)."""
    best = {t: min((m["test_error"] for c, m in results.items() if c.startswith(f"{t}-")), default=None) for t in TASKS}
    rows = []
    for name in MODELS:
        row = [html.escape(label(name))]
        for t in TASKS:
            m = results.get(f"{t}-{name}")
            if m is None:
                row += ["&ndash;", "&ndash;"]
                continue
            err = f"{m['test_error']:.2f}"
            row += [f"<b>{err}</b>" if m["test_error"] == best[t] else err, f"{m['step_cost']['relative']:.2f}x"]
        rows.append(row)
    head = ["model"] + [h for t in TASKS for h in (f"{t}: % test error", f"{t}: step cost / CNN")]
    m = next(iter(results.values()), None)
    caption = "no artifacts yet" if m is None else (
        f"{m['steps']:,} steps at batch {m['batch_size']}; {m['test_size']:,} fixed test images per column; step "
        f"cost: median of timed steps at batch {m['step_cost']['batch_size']}, {m['step_cost']['precision']}, "
        f"{m['step_cost']['threads']} thread(s)")
    return html_table(head, rows, caption=caption, row_headers=True)


def sites_html(results: dict[str, dict]) -> str:
    """Per transformer of every finished model: the mean size of what it samples (1: its whole map), how far its
    region's centre moves from the map's centre (input pixels), and how well that centre follows the digit."""
    rows = []
    for t in TASKS:
        for name in MODELS:
            m = results.get(f"{t}-{name}")
            for s in MODELS[name] if m is not None else ():
                v = m["sites"][s]
                rows.append([html.escape(f"{t}, {label(name)}"), html.escape(SITE_NAMES[s]), f"{v['scale']:.2f}",
                             f"{v['shift_px']:.1f}", f"{v['follow']:.2f}"])
    return html_table(["model", "transformer", "size sampled (1: whole map)", "centre moved (input px)",
                       "follows the digit (correlation)"], rows,
                      caption=f"on the first {ANALYSIS_SIZE:,} test images", row_headers=True)


# ---- figures --------------------------------------------------------------------------------------------------------

def examples(task: str, n: int) -> dict:
    """The first ``n`` images of ``task``'s fixed test set (the same whatever the set's size)."""
    x, y = load_mnist("test")
    return fixed_test_set(task, x, y, n=n)


def plot_data(n: int = 6):
    """The first ``n`` test images of each column's fixed test set (RTS: 42x42, TC: 60x60), with the box of each
    digit's 28x28 frame (red; cut at the canvas)."""
    fig, axes = plt.subplots(len(TASKS), n, figsize=(1.3 * n + 0.6, 1.45 * len(TASKS) + 0.2), squeeze=False)
    for r, t in enumerate(TASKS):
        data = examples(t, n)
        for c in range(n):
            imshow(axes[r, c], data["x"][c], str(int(data["y"][c])), vmax=1, fontsize=8)
            x0, y0, x1, y1 = data["box"][c].tolist()
            axes[r, c].plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=COLORS[0], lw=0.8)
            size = data["x"].shape[-1]
            axes[r, c].set(xlim=(-0.5, size - 0.5), ylim=(size - 0.5, -0.5))
        axes[r, 0].set_ylabel(f"{t}, {data['x'].shape[-1]}x{data['x'].shape[-1]}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_box_mapping(task: str = "RTS", scale: float = 0.5, shift: tuple[float, float] = (0.3, 0.2),
                     index: int = 0):
    """How a region of a feature map lands on the image, for a hand-set theta (no training): one panel per
    feature-map site of the plain CNN of ``task``, the transformer's box (``scale``, ``shift`` in the map's
    normalised coordinates) mapped onto a test image (solid), the input pixels its sampling points sit over (dots,
    one per output pixel), and how far one map pixel sees around its centre (dashed: the box grown by half the
    receptive field)."""
    cfg = model_config(task, "cnn")
    model = build_depth_model(replace(cfg, sites=("block1", "block2")))
    theta = torch.tensor([[scale, 0.0, shift[0], 0.0, scale, shift[1]]])
    image = examples(task, index + 1)["x"][index]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    for ax, site in zip(axes, ("block1", "block2")):
        thetas = {s: theta if s == site else model.st[s].transform.identity()[None] for s in model.st}
        h, w = model.map_sizes[site]
        ys, xs = torch.meshgrid((2 * torch.arange(h) + 1) / h - 1, (2 * torch.arange(w) + 1) / w - 1, indexing="ij")
        dots = model.input_points(thetas, site, torch.stack([xs.flatten(), ys.flatten()], 1))[0]
        box = model.input_outline(thetas, site)[0]
        half = model.receptive_field(site) / 2
        grow = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * half
        imshow(ax, image, f"{SITE_NAMES[site]}: a {h}x{w} map (stride {model.strides[site]})", vmax=1, fontsize=8)
        ax.scatter(dots[:, 0], dots[:, 1], s=2, color=SITE_COLORS[site])
        draw_outline(ax, box, color=SITE_COLORS[site], lw=1.2)
        draw_outline(ax, box + grow, color=SITE_COLORS[site], lw=0.8)
        ax.lines[-1].set_linestyle("--")
        set_view(ax, image.shape[-2:], margin=0.3)
    fig.tight_layout()
    return fig


def plot_sampled_regions(profile: str, task: str = "RTS", n: int = 5):
    """One row per transformer model: test images of ``task`` with the region each of its transformers samples
    mapped back onto the input (:meth:`~stnlib.models_depth.DepthSTClassifier.input_outline`; a feature-map
    transformer's outline joins the centres of the input pixels its sampling points sit over, its receptive field
    reaches further); dashed grey: the map's frame at the identity. None without any artifact."""
    got = {name: g for name in MODELS if name != "cnn" and (g := chapter_cell(f"{task}-{name}", profile)) is not None}
    if not got:
        return None
    data = examples(task, n)
    size = tuple(data["x"].shape[-2:])
    fig, axes = plt.subplots(len(got), n, figsize=(1.45 * n + 1.2, 1.55 * len(got) + 0.4), squeeze=False)
    for r, (name, (_, model, _)) in enumerate(got.items()):
        with torch.no_grad():
            logits, thetas = model.forward_with_thetas(data["x"])
        ident = {s: model.st[s].transform.identity().expand(n, -1) for s in model.st}
        for c in range(n):
            ax = axes[r, c]
            ok = "ok" if logits[c].argmax() == data["y"][c] else "wrong"
            imshow(ax, data["x"][c], f"{int(logits[c].argmax())} ({ok})", vmax=1, fontsize=7)
            for s in model.st:
                if s != "input":
                    draw_outline(ax, model.input_outline(ident, s)[c], color="0.6", lw=0.7)
                draw_outline(ax, model.input_outline(thetas, s)[c], color=SITE_COLORS[s], lw=1.2,
                             label=SITE_NAMES[s] if c == 0 else None)
            set_view(ax, size, margin=0.25)
        axes[r, 0].set_ylabel(label(name), fontsize=7)
        axes[r, 0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(-0.05, -0.02), frameon=False, ncol=2)
    fig.suptitle(f"{task} test images: where each transformer samples, mapped onto the input", fontsize=9)
    fig.tight_layout()
    return fig


def plot_feature_maps(profile: str, task: str = "RTS", name: str = "st-block1", index: int = 0, channels: int = 6):
    """One test image through a feature-map transformer model: the first ``channels`` channels of the map the
    transformer acts on (top) and of what it samples from them (bottom). None without the artifact."""
    got = chapter_cell(f"{task}-{name}", profile)
    if got is None:
        return None
    _, model, _ = got
    site = [s for s in MODELS[name] if s != "input"][0]
    x = examples(task, index + 1)["x"][index:index + 1]
    captured = {}
    hook = model.st[site].register_forward_hook(lambda mod, args, out: captured.update(inp=args[0], out=out[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    k = min(channels, captured["inp"].shape[1])
    fig, axes = plt.subplots(2, k + 1, figsize=(1.3 * (k + 1), 2.9), squeeze=False)
    imshow(axes[0, 0], x[0], "input", vmax=1, fontsize=7)
    axes[1, 0].axis("off")
    for j in range(k):
        top = float(captured["inp"][0, j].max().clamp_min(1e-6))
        imshow(axes[0, j + 1], captured["inp"][0, j], f"channel {j}", vmax=top, fontsize=7)
        imshow(axes[1, j + 1], captured["out"][0, j], None, vmax=top, fontsize=7)
    axes[0, 1].set_ylabel("map", fontsize=7)
    axes[1, 1].set_ylabel("sampled", fontsize=7)
    fig.suptitle(f"{label(name)} on {task}: the feature map and the transformer's output", fontsize=9)
    fig.tight_layout()
    return fig


def plot_eval_curves(results: dict[str, dict], task: str = "RTS"):
    """Test error at every evaluation of each run of ``task`` (chance dashed)."""
    runs = {c: m for c, m in results.items() if c.startswith(f"{task}-")}
    return common.plot_eval_curves(runs, {}, label, chance=90.0)


def provenance(results: dict[str, dict]) -> str:
    return common.provenance(results, EXPERIMENT)
