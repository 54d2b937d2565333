"""Tables and figures of the birds chapter (paper Table 3), computed from the artifacts of the "birds" experiment.

The paper's CUB-200-2011 numbers (Table 3) are kept here only to be printed beside ours, on a different data set,
never as results.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.birds.data import PartsSpec, crop_contains, low_res, parts_test_set
from stnbook.birds.experiment import SPEC, TRANSFORMERS
from stnbook.figures import COLORS, draw_outline, imshow
from stnbook.memo import remember_analysis
from stnbook.paths import results_dir
from stnlib.geometry import sampling_outline

EXPERIMENT = "birds"
CELLS = list(TRANSFORMERS)  # cnn, 1xst, 2xst, 4xst
# Table 3 of the paper: % accuracy on CUB-200-2011 (200 species, 5,994 training / 5,794 test images).
PAPER_TABLE3 = [
    ("Cimpoi et al. (2015)", "", 66.7), ("Zhang et al. (2014)", "", 74.9), ("Branson et al. (2014)", "", 75.7),
    ("Lin et al. (2015)", "", 80.9), ("Simon & Rodner (2015)", "", 81.0),
    ("CNN (Inception-BN, ImageNet-pretrained)", "224", 82.3), ("2xST-CNN", "224", 83.1),
    ("2xST-CNN", "448", 83.9), ("4xST-CNN", "448", 84.1),
]


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or every cell trained now with the smoke budget."""
    return common.chapter_results(EXPERIMENT, profile)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one cell, or None with a note when it has no artifact."""
    return common.chapter_cell(EXPERIMENT, cell, profile)


def proxy_test_set(n: int, spec: PartsSpec = SPEC) -> dict:
    """The first ``n`` images of the fixed test set every model was scored on (n <= 256, one chunk)."""
    return parts_test_set(spec, n)


def label(m: dict) -> str:
    return m["model"]


# ---- tables ---------------------------------------------------------------------------------------

def accuracy_html(results: dict[str, dict]) -> str:
    """Our accuracy on the proxy (with per-part accuracy, parameters, time) beside the paper's Table 3 on CUB."""
    rows = []
    for cid in CELLS:
        m = results.get(cid)
        if m is None:
            rows.append(f"<tr><th>{cid}</th><td colspan=5>&ndash; (no artifact)</td></tr>")
            continue
        rows.append(f"<tr><th>{html.escape(label(m))}</th><td><b>{m['accuracy']:.1f}</b></td>"
                    f"<td>{m['head_accuracy']:.1f}</td><td>{m['body_accuracy']:.1f}</td>"
                    f"<td>{m['params'] / 1000:.0f}k</td><td>{m['wall_time_s'] / 60:.1f} min</td></tr>")
    ours = ("<table class='stn-table'><caption>Ours: synthetic fine-grained proxy, 16 classes (chance 6.25%), "
            f"{next(iter(results.values()))['test_size'] if results else '?'} fixed test images</caption>"
            "<tr><th>model</th><th>% accuracy</th><th>% head texture right</th><th>% body texture right</th>"
            "<th>parameters</th><th>training time</th></tr>" + "".join(rows) + "</table>")
    paper_rows = "".join(f"<tr><th>{html.escape(n)}</th><td>{px or '&ndash;'}</td><td>{acc}</td></tr>"
                         for n, px, acc in PAPER_TABLE3)
    paper = ("<table class='stn-table'><caption>Paper, Table 3: CUB-200-2011, 200 classes &mdash; a different data "
             "set, for reference only</caption><tr><th>model</th><th>input px</th><th>% accuracy</th></tr>"
             + paper_rows + "</table>")
    return f"<div style='display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start'>{ours}{paper}</div>"


def specialisation(results: dict[str, dict]) -> list[dict]:
    """One row per transformer of every ST model: % of test images whose crop holds the head, the body, neither."""
    out = []
    for cid in CELLS:
        m = results.get(cid)
        for k, h in enumerate((m or {}).get("hits", [])):
            out.append({"model": label(m), "st": k + 1, **h})
    return out


def specialisation_html(results: dict[str, dict]) -> str:
    """:func:`specialisation` as HTML, with each transformer's :func:`role`."""
    rows = "".join(
        f"<tr><th>{html.escape(r['model'])}</th><td style='color:{COLORS[r['st'] - 1]}'><b>ST{r['st']}</b></td>"
        f"<td>{r['head']:.1f}</td><td>{r['body']:.1f}</td><td>{r['neither']:.1f}</td><td>{role(r)}</td></tr>"
        for r in specialisation(results))
    return ("<table class='stn-table'><tr><th>model</th><th>transformer</th><th>% crops on the head</th>"
            "<th>% crops on the body</th><th>% on neither</th><th>role</th></tr>" + rows + "</table>")


def role(hits: dict, ratio: float = 4.0, floor: float = 5.0) -> str:
    """"head" or "body" when a transformer's crop holds that part at least ``ratio`` times as often as the other
    (and in at least ``floor``% of images), "neither" when it rarely holds either, else "mixed".

    Examples:
        >>> role({"head": 41.0, "body": 0.0}), role({"head": 2.0, "body": 1.0}), role({"head": 30.0, "body": 20.0})
        ('head', 'neither', 'mixed')
    """
    h, b = hits["head"], hits["body"]
    if max(h, b) < floor:
        return "neither"
    if h >= ratio * b:
        return "head"
    if b >= ratio * h:
        return "body"
    return "mixed"


def part_coverage(profile: str) -> dict[str, dict[str, float]]:
    """Per ST model: % of test images in which *some* crop holds the head, the body, and both.

    Computed from the theta stored in each artifact and the regenerated fixed test set (only its part centres
    are used), once per set of artifacts (:mod:`stnbook.memo`; the smoke profile's every time).
    """
    return remember_analysis(EXPERIMENT, f"part-coverage-{profile}", lambda: _part_coverage(profile), args=[profile],
                             keep=profile != "smoke")


def _part_coverage(profile: str) -> dict[str, dict[str, float]]:
    found = {}
    for cid in CELLS[1:]:
        got = chapter_cell(cid, profile)
        if got is None:
            continue
        theta, scale = got[2]["theta"], got[1].scale
        parts = parts_test_set(SPEC, len(theta))["parts"]
        hit = crop_contains(theta, parts, scale).any(1).float()  # (T, 2): head, body held by some crop
        found[cid] = {"head": 100 * hit[:, 0].mean().item(), "body": 100 * hit[:, 1].mean().item(),
                      "both": 100 * hit.prod(1).mean().item()}
    return found


def specialisation_key_numbers(results: dict[str, dict], coverage: dict[str, dict] | None = None) -> dict[str, str]:
    """Per ST model ``<cell>`` (1xst, 2xst, 4xst), the numbers the chapter's text quotes (keys ``birds_*``; "n/a"
    where missing): ``roles_<cell>``, each transformer's :func:`role` (e.g. "ST1 head, ST2 body"), and, given
    :func:`part_coverage`, ``cover_<cell>_head``, ``_body``, ``_both``: % of test images in which some crop holds
    the head, the body, both."""
    out = {}
    for cid in CELLS[1:]:
        hits = (results.get(cid) or {}).get("hits")
        out[f"birds_roles_{cid}"] = ", ".join(f"ST{k + 1} {role(h)}" for k, h in enumerate(hits)) if hits else "n/a"
        c = (coverage or {}).get(cid)
        for part in ("head", "body", "both"):
            out[f"birds_cover_{cid}_{part}"] = "n/a" if c is None else f"{c[part]:.0f}"
    return out


def closing_key_numbers(results: dict[str, dict], chance: float = 100 / SPEC.num_classes) -> dict[str, str]:
    """The numbers of the chapter's verdicts (keys ``birds_*``; "n/a" where a model is missing), computed from the
    artifacts: per model ``<cell>``, ``acc_<cell>`` (% accuracy) and ``x_chance_<cell>`` (times chance); the
    one-part ceiling (``one_part``: % of a model that reads one part perfectly and guesses the other) and the
    1xST-CNN against it (``1xst_part``: % of its part read right; ``1xst_expected``: the accuracy that implies);
    ``order`` (our models, worst to best) and ``4xst_vs_2xst`` (the 4xST-CNN against the 2xST-CNN, and whether
    that is the paper's order); for the 2xST- and 4xST-CNN, the training error at 3/4 of the steps and at the end
    (``train_<cell>_late``, ``train_<cell>_end``) with ``train_<cell>_trend`` (still improving or not)."""
    acc = {cid: results[cid]["accuracy"] for cid in CELLS if cid in results}
    out = {"birds_one_part": f"{100 / SPEC.num_attributes:.0f}"}
    for cid in CELLS:
        out[f"birds_acc_{cid}"] = f"{acc[cid]:.1f}" if cid in acc else "n/a"
        out[f"birds_x_chance_{cid}"] = f"{acc[cid] / chance:.1f}" if cid in acc else "n/a"
    one = results.get("1xst")
    part = None if one is None else max(one["head_accuracy"], one["body_accuracy"])
    out["birds_1xst_part"] = "n/a" if part is None else f"{part:.0f}"
    out["birds_1xst_expected"] = "n/a" if part is None else f"{part / SPEC.num_attributes:.1f}"
    out["birds_order"] = " < ".join(label(results[c]) for c in sorted(acc, key=acc.get)) or "n/a"
    if "2xst" in acc and "4xst" in acc:
        gap = acc["4xst"] - acc["2xst"]
        out["birds_4xst_vs_2xst"] = (f"{-gap:.1f} points below the 2xST-CNN, unlike the paper" if gap < 0
                                     else f"{gap:.1f} points above the 2xST-CNN, as in the paper")
    else:
        out["birds_4xst_vs_2xst"] = "n/a"
    for cid in ("2xst", "4xst"):
        history = (results.get(cid) or {}).get("history")
        if not history:
            out.update({f"birds_train_{cid}_{k}": "n/a" for k in ("late", "end", "trend")})
            continue
        late, end = history[len(history) * 3 // 4]["error"], history[-1]["error"]
        out[f"birds_train_{cid}_late"], out[f"birds_train_{cid}_end"] = f"{late:.0f}", f"{end:.0f}"
        out[f"birds_train_{cid}_trend"] = ("still improving: a longer run would score higher" if end < late - 2
                                           else "no longer improving by more than 2 points")
    return out


def compute_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The measured cost of a training step, as the numbers the chapter's text quotes (keys ``birds_bench_*`` and
    ``birds_cost_*``; "n/a" without a benchmark): batch, CPU and threads; per model timed (``full``: the CNN on the
    whole image, ``st``: the 2xST-CNN on it, ``low``: the CNN on the low-resolution view) its label and the median
    and fastest ms per step; the 2xST-CNN's crop size; and the 2xST-CNN's step over the full-resolution CNN's (by
    medians, ``ratio``, and by the fastest rounds, ``ratio_fastest``) and over the low-resolution CNN's."""
    keys = ["birds_bench_batch", "birds_bench_cpu", "birds_bench_threads", "birds_bench_crop", "birds_cost_ratio",
            "birds_cost_ratio_fastest", "birds_cost_ratio_low"]
    keys += [f"birds_bench_{k}_{f}" for k in ("full", "st", "low") for f in ("label", "median", "fastest")]
    out = dict.fromkeys(keys, "n/a")
    m = results.get("2xst")
    if not m or "benchmark" not in m:
        return out
    b, hw = m["benchmark"], m["hardware"]
    timed = {"full": b["cnn_full"], "st": b["2xst_full"], "low": b["cnn_low"]}
    threads = hw.get("torch_threads")
    out.update(birds_bench_batch=str(m.get("benchmark_batch_size", "n/a")), birds_bench_cpu=hw.get("cpu_model", "n/a"),
               birds_bench_threads="n/a" if threads is None else f"{threads} thread{'s' if threads != 1 else ''}",
               birds_bench_crop=str(timed["st"]["config"]["crop"]))
    for k, t in timed.items():
        out.update({f"birds_bench_{k}_label": t["label"], f"birds_bench_{k}_median": f"{t['median_s'] * 1000:.0f}",
                    f"birds_bench_{k}_fastest": f"{t['min_s'] * 1000:.0f}"})
    st, hi, lo = timed["st"], timed["full"], timed["low"]
    out.update(birds_cost_ratio=f"{st['median_s'] / hi['median_s']:.2f}",
               birds_cost_ratio_fastest=f"{st['min_s'] / hi['min_s']:.2f}",
               birds_cost_ratio_low=f"{st['median_s'] / lo['median_s']:.1f}")
    return out


def provenance(results: dict[str, dict]) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``."""
    return common.provenance(results, EXPERIMENT)


def plot_dataset(n: int = 6, spec: PartsSpec = SPEC):
    """Test images at full resolution with the true head (+) and body (x) centres, and the CNN's low-resolution view."""
    data = proxy_test_set(n, spec)
    view = low_res(data["x"], spec.period) / 255
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.0), squeeze=False)
    for i in range(n):
        imshow(axes[0, i], data["x"][i].float() / 255, f"class {data['y'][i].item()} "
               f"(h{data['head_attr'][i].item()}, b{data['body_attr'][i].item()})")
        p = (data["parts"][i] + 1) * spec.size / 2 - 0.5
        axes[0, i].plot(p[0, 0], p[0, 1], "w+", ms=9, mew=2)
        axes[0, i].plot(p[1, 0], p[1, 1], "wx", ms=8, mew=2)
        imshow(axes[1, i], view[i])
    axes[0, 0].set_ylabel(f"{spec.size} px", fontsize=9)
    axes[1, 0].set_ylabel(f"{spec.low_res} px view", fontsize=9)
    fig.tight_layout()
    return fig


def plot_crops(profile: str, cells: list[str] = ("1xst", "2xst", "4xst"), n: int = 6):
    """For each ST model: its crops drawn on the first ``n`` test images, one colour per transformer, and the crops."""
    entries = [(cid, got) for cid in cells if (got := chapter_cell(cid, profile)) is not None]
    if not entries:
        return None
    data = proxy_test_set(n)
    rows = sum(1 + got[1].config.num_transformers for _, got in entries)
    fig, axes = plt.subplots(rows, n, figsize=(1.55 * n, 1.6 * rows), squeeze=False)
    r = 0
    for cid, (metrics, model, _) in entries:
        with torch.no_grad():
            crops, theta = model.attend(data["x"])
            pred = model(data["x"])[0].argmax(1)
        s = model.scale
        for i in range(n):
            ok = "ok" if pred[i] == data["y"][i] else "wrong"
            imshow(axes[r, i], data["x"][i].float() / 255, f"{ok}")
            for k in range(theta.shape[1]):
                box = sampling_outline(torch.cat([torch.tensor([s]), theta[i, k]]), "attention", data["x"].shape[-2:])
                draw_outline(axes[r, i], box, COLORS[k], lw=1.8)
            for k in range(theta.shape[1]):
                imshow(axes[r + 1 + k, i], crops[i, k])
                for side in axes[r + 1 + k, i].spines.values():
                    side.set_edgecolor(COLORS[k])
                    side.set_linewidth(2.5)
        for i in range(n):  # outlines may leave the image: keep the axes on the image
            axes[r, i].set(xlim=(-0.5, data["x"].shape[-1] - 0.5), ylim=(data["x"].shape[-2] - 0.5, -0.5))
        axes[r, 0].set_ylabel(metrics["model"].split()[0], fontsize=9)
        for k in range(theta.shape[1]):
            axes[r + 1 + k, 0].set_ylabel(f"ST{k + 1} crop", fontsize=8, color=COLORS[k])
        r += 1 + theta.shape[1]
    fig.tight_layout()
    return fig


def plot_emergence(results: dict[str, dict]):
    """% of training images whose crop holds the head (solid) and the body (dashed), per transformer, over training."""
    models = [results[c] for c in CELLS if c in results and results[c].get("hits")]
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.2), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], models):
        steps = [h["step"] for h in m["history"]]
        for k in range(len(m["hits"])):
            ax.plot(steps, [h[f"st{k + 1}_head"] for h in m["history"]], color=COLORS[k], label=f"ST{k + 1} head")
            ax.plot(steps, [h[f"st{k + 1}_body"] for h in m["history"]], color=COLORS[k], ls="--",
                    label=f"ST{k + 1} body")
        ax.set(title=label(m), xlabel="training step", ylim=(0, 100))
        ax.legend(fontsize=7, ncol=2)
    axes[0, 0].set_ylabel("% of the step's images")
    fig.tight_layout()
    return fig


def plot_learning_curves(results: dict[str, dict]):
    """Training error (mean over each logging interval) of every model against the step."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k, cid in enumerate(CELLS):
        m = results.get(cid)
        if m:
            ax.plot([h["step"] for h in m["history"]], [h["error"] for h in m["history"]], color=COLORS[k], label=label(m))
    ax.axhline(100 * 15 / 16, color="0.5", ls=":", lw=1, label="chance")
    ax.set(xlabel="training step", ylabel="% training error", ylim=(0, 100))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def artifact_folder() -> Path:
    return results_dir() / EXPERIMENT / "full"


__all__ = ["PAPER_TABLE3", "CELLS", "chapter_results", "chapter_cell", "proxy_test_set", "accuracy_html", "specialisation",
           "specialisation_html", "role", "part_coverage", "specialisation_key_numbers", "closing_key_numbers",
           "compute_key_numbers", "provenance", "plot_dataset", "plot_crops", "plot_emergence", "plot_learning_curves",
           "artifact_folder"]
