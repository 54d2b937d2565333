"""Tables and figures of the two-digit addition chapter (paper A.1, Table 4), computed from the artifacts of the
"addition" experiment.

The paper's numbers (Table 4) and tensorpack's (its MNIST-addition example) are kept here only to be printed beside
ours, never as results.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.addition.experiment import EXPERIMENT, FAMILIES, RECIPE_VARIANTS, addition_test_pairs, attention_split
from stnbook.experiments import get_cells, load_results
from stnbook.figures import draw_outline, html_table, imshow
from stnlib.geometry import sampling_outline

CELLS = [c.id for c in get_cells(EXPERIMENT)]
SHORT = {"affine": "Aff", "projective": "Proj", "tps": "TPS"}
# Table 4 of the paper, % error. The paper's best single ST-FCN is 18.5%; its projective and TPS entries are not
# listed here separately, so ST-FCN Proj / TPS stay empty and the best single ST-FCN gets a row of its own.
PAPER_TABLE4 = {"fcn": 47.7, "cnn": 14.7, "st-fcn-affine": 22.6, "st-fcn-projective": None, "st-fcn-tps": None,
                "2st-fcn-affine": 9.0, "2st-fcn-projective": 5.9, "2st-fcn-tps": 5.8}
PAPER_BEST_SINGLE_ST = 18.5
TENSORPACK_2ST_AFFINE = 8.8  # tensorpack's MNIST-addition example, 2 affine STs, about 300 epochs
ST1, ST2 = "#00e5ff", "#ff2bd6"  # the two transformers' colours: cyan and magenta (digits are shown red/green)


def row_name(cell: str) -> str:
    """The paper's row label of a cell id, e.g. "2xST-FCN TPS"."""
    if "-" not in cell:
        return cell.upper()
    head, arch, tf = cell.split("-")
    return f"{'2x' if head == '2st' else ''}ST-{arch.upper()} {SHORT[tf]}"


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or every cell trained now with the smoke budget."""
    return common.chapter_results(EXPERIMENT, profile)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one cell, or None with a note when it has no artifact."""
    return common.chapter_cell(EXPERIMENT, cell, profile)


def parameter_counts(results: dict[str, dict]) -> str:
    """One line per cell: its parameter count and classifier width (the budget is matched by width)."""
    return "\n".join(f"{row_name(c):18s} {results[c]['params']:>8,} parameters (classifier width {results[c]['width']})"
                     for c in CELLS if c in results)


def best_single(results: dict[str, dict]) -> dict | None:
    """Metrics of our best single-transformer ST-FCN, or None when none was run."""
    return min((results[c] for c in CELLS if c.startswith("st-") and c in results), key=lambda m: m["test_error"],
               default=None)


def table4_html(results: dict[str, dict]) -> str:
    """Paper vs ours for every row of Table 4, with our parameter count and training time and the gap to the
    paper in points, and the best single ST-FCN of each (the paper's: 18.5%) after the single ST-FCN rows."""
    rows = []

    def ours_cell(m):
        return "&ndash;" if m is None else (
            f"<b>{m['test_error']:.1f}</b><br><small>{m['params'] / 1000:.0f}k p, {m['wall_time_s']:.0f} s</small>")

    def gap_cell(m, paper):
        return "&ndash;" if m is None or paper is None else f"{m['test_error'] - paper:+.1f}"

    for c in CELLS:
        paper, m = PAPER_TABLE4[c], results.get(c)
        rows.append(f"<tr><th>{html.escape(row_name(c))}</th><td>{'&ndash;' if paper is None else paper}</td>"
                    f"<td>{ours_cell(m)}</td><td>{gap_cell(m, paper)}</td></tr>")
        if c == "st-fcn-tps":
            best = best_single(results)
            name = "" if best is None else f"<br><small>({html.escape(row_name(best['cell']))})</small>"
            rows.append(f"<tr><th>ST-FCN, best single transformer</th><td>{PAPER_BEST_SINGLE_ST}</td>"
                        f"<td>{ours_cell(best)}{name}</td><td>{gap_cell(best, PAPER_BEST_SINGLE_ST)}</td></tr>")
    return ("<table class='stn-table'><tr><th>% test error</th><th>paper</th><th>ours</th><th>gap (points)</th></tr>"
            + "".join(rows) + "</table>")


def provenance(results: dict[str, dict]) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``."""
    return common.provenance(results, EXPERIMENT)


@lru_cache(maxsize=4)
def test_pairs(n: int | None = None) -> dict:
    """The fixed test pairs (:func:`~stnbook.experiments.addition.addition_test_pairs`), built once per ``n`` in a
    process, since several tables and figures of the chapter read the same set. Treat it as read-only."""
    return addition_test_pairs(n)


def chance_error(n: int | None = None) -> float:
    """% error of always answering the most frequent sum (9) on the fixed test pairs."""
    y = test_pairs(n)["y"]
    return 100 * (1 - torch.bincount(y, minlength=19).max().item() / len(y))


def best_two(results: dict[str, dict]) -> dict | None:
    """Metrics of our best 2xST-FCN, or None when none was run."""
    return min((results[c] for c in CELLS if c.startswith("2st") and c in results), key=lambda m: m["test_error"],
               default=None)


def table4_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The numbers the chapter's text quotes about Table 4 (keys ``add_t4_*``), "n/a" where missing: the test pairs
    and chance (``pairs``, ``chance``: always answering the most frequent sum), our best model (``best``,
    ``best_error``), our best single ST-FCN (``best_single``, ``best_single_error`` and ``best_single_gap``, in
    points to the paper's best single ST-FCN) and our best 2xST-FCN (``best_2st``, ``best_2st_error``)."""
    out = dict.fromkeys(["add_t4_pairs", "add_t4_chance", "add_t4_best", "add_t4_best_error", "add_t4_best_single",
                         "add_t4_best_single_error", "add_t4_best_single_gap", "add_t4_best_2st",
                         "add_t4_best_2st_error"], "n/a")
    if not results:
        return out
    size = next(iter(results.values()))["test_size"]
    out["add_t4_pairs"], out["add_t4_chance"] = f"{size:,}", f"{chance_error(size):.1f}"
    best = min(results.values(), key=lambda m: m["test_error"])
    out["add_t4_best"], out["add_t4_best_error"] = row_name(best["cell"]), f"{best['test_error']:.1f}"
    single = best_single(results)
    if single is not None:
        out["add_t4_best_single"] = row_name(single["cell"])
        out["add_t4_best_single_error"] = f"{single['test_error']:.1f}"
        out["add_t4_best_single_gap"] = f"{single['test_error'] - PAPER_BEST_SINGLE_ST:+.1f}"
    two = best_two(results)
    if two is not None:
        out["add_t4_best_2st"], out["add_t4_best_2st_error"] = row_name(two["cell"]), f"{two['test_error']:.1f}"
    return out


def split_table(results: dict[str, dict]) -> str:
    """HTML: per transformer cell, how often each transformer prefers digit a, its mean IoU with each digit, and
    for 2xST how often the two prefer different digits; first row, two transformers at the identity (on the same
    test pairs)."""
    n = max((m["attention_split"]["split_pairs"] for m in results.values() if "attention_split" in m), default=1000)
    boxes = test_pairs(n)["box"]
    ident = attention_split(torch.tensor([[[1.0, 0, 0]] * 2] * len(boxes)), "attention", boxes)
    rows = [("identity (no attention), 2 STs", ident["prefers_a"].tolist(), ident["mean_iou"].tolist(),
             ident["split"], ident["split_covered"])]
    for c in CELLS:
        s = results.get(c, {}).get("attention_split")
        if s is not None:
            rows.append((row_name(c), s["prefers_a"], s["mean_iou"], s.get("split"), s.get("split_covered")))
    body = []
    for name, pref, iou, split, covered in rows:
        k = len(pref)
        cells = [f"ST{i + 1}: {pref[i]:.0f}%" for i in range(k)]
        ious = [f"ST{i + 1}: {iou[i][0]:.2f} / {iou[i][1]:.2f}" for i in range(k)]
        sp = "&ndash;" if split is None else f"{split:.0f}% ({covered:.0f}%)"
        body.append(f"<tr><th>{html.escape(name)}</th><td>{'<br>'.join(cells)}</td><td>{'<br>'.join(ious)}</td>"
                    f"<td>{sp}</td></tr>")
    return ("<table class='stn-table'><tr><th>model</th><th>prefers digit a</th><th>mean IoU with a / b</th>"
            "<th>the two prefer different digits (and each IoU &gt; 0.5)</th></tr>" + "".join(body) + "</table>")


def composite(x: torch.Tensor) -> torch.Tensor:
    """(2, H, W) pair -> (3, H, W) RGB: digit a red, digit b green (yellow where they overlap)."""
    return torch.stack([x[0], x[1], torch.zeros_like(x[0])]).clamp(0, 1)


def plot_pairs(n: int = 8):
    """The first ``n`` fixed test pairs: each channel on its own, and both as one RGB image (a red, b green)."""
    data = test_pairs(n)
    fig, axes = plt.subplots(3, n, figsize=(1.2 * n, 3.7), squeeze=False)
    for j in range(n):
        a, b = data["labels"][j].tolist()
        imshow(axes[0, j], data["x"][j, 0], f"a = {a}")
        imshow(axes[1, j], data["x"][j, 1], f"b = {b}")
        imshow(axes[2, j], composite(data["x"][j]), f"sum {a + b}")
    fig.tight_layout()
    return fig


def plot_split(model, n: int = 6, offset: int = 0):
    """The famous figure: for ``n`` test pairs, the input (digit a red, digit b green) with ST1's (cyan) and ST2's
    (magenta) sampled regions, and each transformer's 2-channel output below."""
    data = test_pairs(offset + n)
    x = data["x"][offset:]
    with torch.no_grad():
        warped, theta = model.transform_input(x)
        pred = model(x).argmax(1)
    tf = model.st.transform
    k = model.config.num_transformers
    fig, axes = plt.subplots(1 + k, n, figsize=(1.55 * n, 1.65 * (1 + k)), squeeze=False)
    for j in range(n):
        y = data["labels"][offset + j].tolist()
        ok = "ok" if pred[j] == data["y"][offset + j] else "wrong"
        imshow(axes[0, j], composite(x[j]), f"{y[0]}+{y[1]}: says {pred[j].item()} ({ok})")
        th = theta[j] if k > 1 else theta[j][None]
        for i, color in zip(range(k), (ST1, ST2)):
            draw_outline(axes[0, j], sampling_outline(th[i], tf, x.shape[-2:]), color)
            imshow(axes[1 + i, j], composite(warped[j, 2 * i:2 * i + 2]))
    for i, color in zip(range(k), (ST1, ST2)):
        axes[1 + i, 0].set_ylabel(f"ST{i + 1} output", color=color, fontsize=9)
    axes[0, 0].set_ylabel("input", fontsize=9)
    fig.tight_layout()
    return fig


def figure_split(profile: str, cells=None, n: int = 6):
    """:func:`plot_split` for each of ``cells`` (transformer cells; default: the 2xST-FCN of every family) that
    has an artifact."""
    def draw(cell, metrics, model, analysis):
        fig = plot_split(model, n)
        fig.suptitle(f"{row_name(cell)}: {metrics['test_error']:.1f}% test error", y=1.02, fontsize=10)
        return fig
    cells = cells if cells is not None else [f"2st-fcn-{tf}" for tf in FAMILIES]
    return common.cell_figures(EXPERIMENT, profile, cells, draw)


def figure_preference(results: dict[str, dict], profile: str):
    """For each 2xST-FCN: per test pair, IoU(a) - IoU(b) of ST1 against that of ST2. A clean split puts the points
    in the top-left and bottom-right quadrants; two transformers doing the same thing lie on the diagonal."""
    cells = [c for c in CELLS if c.startswith("2st") and c in results]
    if not cells:
        return None
    fig, axes = plt.subplots(1, len(cells), figsize=(3.2 * len(cells), 3.1), squeeze=False)
    for ax, c in zip(axes[0], cells):
        got = chapter_cell(c, profile)
        if got is None:
            continue
        iou = got[2]["iou"]
        d = iou[..., 0] - iou[..., 1]
        ax.scatter(d[:, 0], d[:, 1], s=3, alpha=0.4)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set(xlabel="ST1: IoU(a) - IoU(b)", ylabel="ST2: IoU(a) - IoU(b)", title=row_name(c),
               xlim=(-1, 1), ylim=(-1, 1))
    fig.tight_layout()
    return fig


def plot_training(results: dict[str, dict], smooth: int = 4):
    """Training cross-entropy against step (running mean over ``smooth`` logging intervals), one curve per cell,
    with the entropy of the sum's distribution: the loss of a model that has learned nothing about the digits."""
    fig, ax = plt.subplots(figsize=(5.8, 3.3))
    for c in CELLS:
        if c in results:
            h = results[c]["history"]
            loss = torch.tensor([e["loss"] for e in h])
            kernel = torch.ones(min(smooth, len(loss))) / min(smooth, len(loss))
            smoothed = torch.nn.functional.conv1d(loss[None, None], kernel[None, None])[0, 0]
            ax.plot([e["step"] for e in h][len(h) - len(smoothed):], smoothed, label=row_name(c), lw=1)
    p = torch.bincount(test_pairs()["y"], minlength=19).double()
    p = p / p.sum()
    ax.axhline(-(p[p > 0] * p[p > 0].log()).sum().item(), color="0.4", ls="--", lw=1, label="knows nothing")
    ax.set(xlabel="step", ylabel="training cross-entropy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def full_results() -> dict[str, dict]:
    """The committed runs of the "full" profile (whatever profile the chapter runs in)."""
    return load_results(EXPERIMENT, "full")


def long_results() -> dict[str, dict]:
    """The committed runs of the "long" profile (40x the full profile's pairs; five of the rows)."""
    return load_results(EXPERIMENT, "long")


def _split_note(m: dict) -> str:
    s = m.get("attention_split", {})
    return f"<br><small>split {s['split']:.0f}% ({s['split_covered']:.0f}%)</small>" if "split" in s else ""


def long_table_html(full: dict[str, dict], long: dict[str, dict]) -> str:
    """Per long-profile cell: paper, the full profile and the long profile (% error, compute, split)."""
    return common.profiles_html(full, long, PAPER_TABLE4, row_name, _split_note)


def long_gaps_html(full: dict[str, dict], long: dict[str, dict]) -> str:
    """HTML table, per long-profile cell: ours in the full and the long profile, and the gap to the paper in each."""
    return common.profile_gaps_html(full, long, PAPER_TABLE4, row_name)


def plot_eval_curves(long: dict[str, dict]):
    """Test error (first 5,000 fixed pairs) against step for each long run, with chance and the paper's number."""
    if not long:
        return None
    return common.plot_eval_curves(long, PAPER_TABLE4, row_name, chance_error(next(iter(long.values()))["test_size"]),
                                   ylim=(0, 100))


def recipe_results() -> dict[str, dict]:
    """The committed recipe comparisons (2xST-FCN affine, one profile per variant), by profile name, in the order
    of :data:`~stnbook.addition.experiment.RECIPE_VARIANTS`."""
    out = {}
    for name in RECIPE_VARIANTS:
        m = load_results(EXPERIMENT, name).get("2st-fcn-affine")
        if m is not None:
            out[name] = m
    return out


def recipe_table_html(recipe: dict[str, dict]) -> str:
    """One row per recipe variant: what differs, test error at each evaluation, parameters, time."""
    if not recipe:
        return "<p>No recipe comparisons committed yet: <code>python -m stnbook run addition --profile recipe "
        "--cells 2st-fcn-affine</code> (and the other <code>recipe-*</code> profiles) make them.</p>"
    steps = sorted({e["step"] for m in recipe.values() for e in m["eval_history"]})
    header = ["2xST-FCN affine, recipe", *[f"error at {s:,} steps %" for s in steps], "split", "parameters",
              "time"]
    rows = []
    for name, m in recipe.items():
        errs = {e["step"]: e["error"] for e in m["eval_history"]}
        split = m.get("attention_split", {})
        rows.append([("recipe" if name == "recipe" else "recipe, but " + RECIPE_VARIANTS[name]),
                     *[f"{errs[s]:.1f}" if s in errs else "" for s in steps],
                     f"{split['split']:.0f}%" if "split" in split else "", f"{m['params']:,}",
                     f"{m['wall_time_s'] / 60:.1f} min"])
    return html_table(header, rows, f"Recipe comparison at a fixed budget ({next(iter(recipe.values()))['steps']:,} "
                      "steps at batch 128, 5,000 fixed test pairs)", escape=True, row_headers=True)


def plot_recipe_curves(recipe: dict[str, dict]):
    """Test error against step for each recipe variant, with chance."""
    if not recipe:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for k, (name, m) in enumerate(recipe.items()):
        pts = [(0, chance_error(m["test_size"]))] + [(e["step"], e["error"]) for e in m["eval_history"]]
        ax.plot(*zip(*pts), marker="o", ms=3, lw=2.2 if name == "recipe" else 1.2,
                label="recipe" if name == "recipe" else RECIPE_VARIANTS[name])
    ax.axhline(chance_error(next(iter(recipe.values()))["test_size"]), color="0.5", ls=":", lw=1,
               label="always answering 9")
    ax.set(xlabel="training step", ylabel="test error (%)", ylim=(0, 100))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def paper_results() -> dict[str, dict]:
    """The committed runs of the "paper" profile (the reference reimplementation's recipe)."""
    return load_results(EXPERIMENT, "paper")


def recipe_key_numbers(recipe: dict[str, dict]) -> dict[str, str]:
    """The recipe comparison's numbers for the chapter's text (keys ``recipe_<profile>`` with ``-`` as ``_``: the
    test error at the end of each variant's run; ``recipe_steps``), "n/a" where a variant is missing; for a
    variant with a distortion curriculum also ``recipe_<profile>_upright``: its training error over the last 100
    steps before the distortions start (:func:`upright_error`); ``recipe_<profile>_first``: the error at the
    first evaluation (``recipe_first_step``)."""
    out = {"recipe_steps": f"{next(iter(recipe.values()))['steps']:,}" if recipe else "n/a"}
    first = min((m["eval_history"][0]["step"] for m in recipe.values() if m["eval_history"]), default=None)
    out["recipe_first_step"] = "n/a" if first is None else f"{first:,}"
    for name in RECIPE_VARIANTS:
        m = recipe.get(name)
        key = "recipe_" + name.replace("-", "_")
        out[key] = "n/a" if m is None else f"{m['test_error']:.1f}"
        at_first = [] if m is None else [e["error"] for e in m["eval_history"] if e["step"] == first]
        out[key + "_first"] = f"{at_first[0]:.1f}" if at_first else "n/a"
        if name.endswith("-ramp"):
            err = None if m is None else upright_error(m)
            out[key + "_upright"] = "n/a" if err is None else f"{err:.0f}"
    return out


def upright_error(metrics: dict, window: int = 100) -> float | None:
    """Mean training error (%) logged in the last ``window`` steps before a run's distortion curriculum starts (the
    digits still upright and centred); None for a run without one.

    Examples:
        >>> m = {"distortion_ramp": [100, 400], "history": [{"step": s, "error": 90 - s / 10} for s in range(25, 401, 25)]}
        >>> upright_error(m)  # steps 25..100 are before the ramp, the last 100 steps of them: 25, 50, 75, 100
        83.75
    """
    ramp = metrics.get("distortion_ramp")
    if not ramp:
        return None
    got = [h["error"] for h in metrics["history"] if ramp[0] - window < h["step"] <= ramp[0] and "error" in h]
    return sum(got) / len(got) if got else None


def paper_table_html(long: dict[str, dict], paper: dict[str, dict]) -> str:
    """Per cell of the reference-recipe runs: the paper, ours in the long profile and with the recipe."""
    return common.profiles_html(long, paper, PAPER_TABLE4, row_name, _split_note,
                                labels=("long profile", "reference recipe"))


def paper_key_numbers(paper: dict[str, dict], prefix: str = "ref") -> dict[str, str]:
    """One profile's runs' numbers for the chapter's text (default: the reference recipe's): ``<prefix>_<cell>``
    (error), ``<prefix>_steps``, ``<prefix>_minutes_<cell>``, for each two-transformer row ``<prefix>_split_<cell>``
    and ``<prefix>_split_covered_<cell>``, and ``<prefix>_split`` / ``<prefix>_split_covered`` (2xST-FCN affine);
    "n/a" where missing.

    Examples:
        >>> m = {"test_error": 12.34, "wall_time_s": 600, "steps": 150_000, "attention_split": {"split": 71.2,
        ...      "split_covered": 60.4}}
        >>> k = paper_key_numbers({"2st-fcn-affine": m}, prefix="fast")
        >>> k["fast_2st_fcn_affine"], k["fast_minutes_2st_fcn_affine"], k["fast_steps"], k["fast_split"], k["fast_fcn"]
        ('12.3', '10', '150,000', '71', 'n/a')
        >>> k["fast_split_covered_2st_fcn_affine"], k["fast_split_2st_fcn_tps"]
        ('60', 'n/a')
    """
    out = {f"{prefix}_steps": "n/a"}
    for c in CELLS:
        key = c.replace("-", "_")
        m = paper.get(c)
        out[f"{prefix}_{key}"] = "n/a" if m is None else f"{m['test_error']:.1f}"
        out[f"{prefix}_minutes_{key}"] = "n/a" if m is None else f"{m['wall_time_s'] / 60:.0f}"
        if m is not None:
            out[f"{prefix}_steps"] = f"{m['steps']:,}"
        if c.startswith("2st"):  # the split of every two-transformer row: <prefix>_split_<cell>, ..._covered_<cell>
            s = (m or {}).get("attention_split", {})
            out[f"{prefix}_split_{key}"] = f"{s['split']:.0f}" if "split" in s else "n/a"
            out[f"{prefix}_split_covered_{key}"] = f"{s['split_covered']:.0f}" if "split" in s else "n/a"
    out[f"{prefix}_split"] = out[f"{prefix}_split_2st_fcn_affine"]
    out[f"{prefix}_split_covered"] = out[f"{prefix}_split_covered_2st_fcn_affine"]
    return out


def fast_results() -> dict[str, dict]:
    """The committed runs of the "fast" profile (the reference recipe with the two changes that sped it up most)."""
    return load_results(EXPERIMENT, "fast")


def plot_profile_curves(first: dict[str, dict], second: dict[str, dict],
                        labels: tuple[str, str] = ("reference recipe", "fast profile"), cells=None):
    """Test error against step of each run of ``second`` (of ``cells`` only, when given) and of the same cell in
    ``first``, labelled by profile (``labels``), with the paper's number and chance."""
    cells = [c for c in second if cells is None or c in cells]
    if not cells:
        return None
    runs = {}
    for c in cells:
        if c in first:
            runs[(c, labels[0])] = first[c]
        runs[(c, labels[1])] = second[c]
    return common.plot_eval_curves(runs, {k: PAPER_TABLE4.get(k[0]) for k in runs}, lambda k: f"{row_name(k[0])}, {k[1]}",
                                   chance_error(second[cells[0]]["test_size"]), ylim=(0, 100))


def fast_table_html(paper: dict[str, dict], fast: dict[str, dict]) -> str:
    """Per cell of the fast profile: the paper, ours with the reference recipe and with the fast profile."""
    return common.profiles_html(paper, fast, PAPER_TABLE4, row_name, _split_note,
                                labels=("reference recipe", "fast profile"))


# ---- each transformer its own localisation net (the "separate" profile) ----------------------------------------

SEPARATE = "separate"
SEPARATE_SEEDS = (0, 1)


def separate_results(seeds: Sequence[int] = SEPARATE_SEEDS) -> dict[int, dict[str, dict]]:
    """The committed runs of the "separate" profile per seed (``{seed: {cell: metrics}}``)."""
    return {s: load_results(EXPERIMENT, SEPARATE, seed=s) for s in seeds}


def seed_table_html(by_seed: dict[int, dict[str, dict]]) -> str:
    """HTML: per row with a run in any seed, the paper, ours per seed (where it was trained), mean +- std."""
    cells = [c for c in CELLS if any(c in r for r in by_seed.values())]
    if not cells:
        return "<p>No runs of this profile committed yet.</p>"
    return common.seed_table_html(common.seed_rows(by_seed, cells, PAPER_TABLE4), list(by_seed), row_name,
                                  missing="&ndash;")


def separate_table_html(fast: dict[str, dict], sep: dict[str, dict]) -> str:
    """Per cell of the separate profile: the paper, ours with the fast profile (one shared localisation net) and
    with the separate profile (one per transformer)."""
    return common.profiles_html(fast, sep, PAPER_TABLE4, row_name, _split_note,
                                labels=("fast profile, one shared net", "separate profile"))


def transformer_rectification(analysis: dict, transform: str) -> list[dict]:
    """What each transformer of a 2xST model undoes of the digit it looks at: per transformer k, the share of
    pairs in which it prefers digit a (larger IoU, ``prefers_a`` %), and the fit of the rotation and the scale its
    theta implies (:func:`~stnlib.analysis.implied_similarity`) against those applied to the digit it prefers in
    each pair (:func:`~stnlib.analysis.rectification`: ``rotation``, ``scale``), on the pairs whose theta the
    artifact keeps. A transformer that undoes its digit's rotation has |r| and |slope| near 1, as in Table 1's
    rectification measure."""
    from stnlib.analysis import implied_similarity, rectification

    theta, iou = analysis["theta"], analysis["iou"]  # (N, K, P), (N, K, 2)
    n = len(theta)
    params = test_pairs(n)["params"]
    angle = torch.stack([params[d]["angle_deg"][:n] for d in (0, 1)], 1)
    scale = torch.stack([params[d]["scale"][:n] for d in (0, 1)], 1)
    out = []
    for k in range(theta.shape[1]):
        pick = iou[:, k].argmax(1, keepdim=True)
        sim = implied_similarity(theta[:, k], transform)
        out.append({"prefers_a": 100 * float((pick == 0).float().mean()),
                    "rotation": rectification(angle.gather(1, pick)[:, 0], sim["rotation_deg"]),
                    "scale": rectification(scale.gather(1, pick)[:, 0], sim["scale"])})
    return out


def rectification_rows(results: dict[str, dict], profile: str) -> list[dict]:
    """:func:`transformer_rectification` of every two-transformer cell of ``results`` (``profile``'s artifacts):
    ``{"cell", "error", "transformers": [...]}``."""
    rows = []
    for c in CELLS:
        if c.startswith("2st") and c in results and (got := chapter_cell(c, profile)) is not None:
            metrics, _, analysis = got
            rows.append({"cell": c, "error": metrics["test_error"],
                         "transformers": transformer_rectification(analysis, metrics["model_config"]["transform"])})
    return rows


def rectification_html(rows: list[dict]) -> str:
    """HTML: per two-transformer row and transformer, the digit it prefers and the fits of the rotation and scale
    it undoes (r, slope)."""
    body = []
    for r in rows:
        for k, t in enumerate(r["transformers"]):
            body.append([f"{row_name(r['cell'])}, ST{k + 1}", f"{t['prefers_a']:.0f}%",
                         f"{t['rotation']['r']:+.2f}", f"{t['rotation']['slope']:+.2f}",
                         f"{t['scale']['r']:+.2f}", f"{t['scale']['slope']:+.2f}"])
    return html_table(["transformer", "prefers digit a", "rotation: r", "rotation: slope", "scale: r", "scale: slope"],
                      body, escape=True, row_headers=True)


def rectification_key_numbers(rows: list[dict], prefix: str = "sep_rect") -> dict[str, str]:
    """The ranges of |r| and |slope| over every transformer of ``rows`` (keys ``<prefix>_rot_r``,
    ``<prefix>_rot_slope``, ``<prefix>_scale_r``, ``<prefix>_scale_slope``, as "lo-hi"), "n/a" without rows.

    Examples:
        >>> fit = lambda r, s: {"r": r, "slope": s}
        >>> rows = [{"transformers": [{"rotation": fit(-0.7, -0.6), "scale": fit(0.8, 0.5)},
        ...                           {"rotation": fit(-0.75, -0.7), "scale": fit(0.79, 0.52)}]}]
        >>> k = rectification_key_numbers(rows, "x")
        >>> k["x_rot_r"], k["x_rot_slope"], k["x_scale_slope"]
        ('0.70-0.75', '0.60-0.70', '0.50-0.52')
    """
    ts = [t for r in rows for t in r["transformers"]]
    out = {}
    for what in ("rotation", "scale"):
        for stat in ("r", "slope"):
            vals = sorted(abs(t[what][stat]) for t in ts)
            key = f"{prefix}_{'rot' if what == 'rotation' else what}_{stat}"
            out[key] = f"{vals[0]:.2f}-{vals[-1]:.2f}" if vals else "n/a"
    return out


def separate_key_numbers(by_seed: dict[int, dict[str, dict]], prefix: str = "sep") -> dict[str, str]:
    """The seeds' numbers for the chapter's text (keys ``<prefix>_*``): each row with two or more seeds as
    "mean ± std% (k seeds, paper p%)", two decimals (``seed_rows``); of the two-transformer runs of every seed,
    how many (``2st_runs``) and how many are at or below tensorpack's 8.8% (``below_tensorpack``) and below the
    paper's number for their row (``below_paper``); the largest of their errors (``2st_max``).

    Examples:
        >>> runs = {0: {"2st-fcn-tps": {"test_error": 5.0}, "fcn": {"test_error": 40.0}},
        ...         1: {"2st-fcn-tps": {"test_error": 7.0}}}
        >>> k = separate_key_numbers(runs, prefix="s")
        >>> k["s_seed_rows"], k["s_2st_runs"], k["s_below_tensorpack"], k["s_below_paper"], k["s_2st_max"]
        ('2xST-FCN TPS 6.00 ± 1.41% (2 seeds, paper 5.8%)', '2', '2', '1', '7.0')
    """
    rows = common.seed_rows(by_seed, CELLS, PAPER_TABLE4)
    multi = [r for r in rows if len(r["errors"]) > 1]
    texts = [f"{row_name(r['cell'])} {r['mean']:.2f} ± {r['std']:.2f}% ({len(r['errors'])} seeds"
             + (f", paper {r['paper']}%)" if r["paper"] is not None else ")") for r in multi]
    twos = [(c, m["test_error"]) for res in by_seed.values() for c, m in res.items() if c.startswith("2st")]
    return {f"{prefix}_seed_rows": "; ".join(texts) or "none yet",
            f"{prefix}_2st_runs": str(len(twos)),
            f"{prefix}_below_tensorpack": str(sum(e <= TENSORPACK_2ST_AFFINE for _, e in twos)),
            f"{prefix}_below_paper": str(sum(e < PAPER_TABLE4[c] for c, e in twos if PAPER_TABLE4.get(c) is not None)),
            f"{prefix}_2st_max": f"{max(e for _, e in twos):.1f}" if twos else "n/a"}


def summary_table_html(results: dict[str, dict], long: dict[str, dict] | None = None) -> str:
    """Table 4 beside the paper with each transformer's preference and the split, and, for the cells of ``long``
    (the long profile), its error, budget and split."""
    long = long or {}

    def split_text(s: dict) -> str:
        return f"{s['split']:.0f}% ({s['split_covered']:.0f}% with IoU > 0.5)" if "split" in s else ""

    rows = []
    for c in CELLS:
        m, g = results.get(c), long.get(c)
        if m is None:
            continue
        s = m.get("attention_split") or {}
        pref = [f"{v:.0f}%" for v in s.get("prefers_a", [])] + [""] * 2
        paper = PAPER_TABLE4[c]
        rows.append([row_name(c), "" if paper is None else str(paper), f"{m['test_error']:.1f}", pref[0], pref[1],
                     split_text(s), "" if g is None else f"{g['test_error']:.1f}",
                     "" if g is None else f"{g['steps']:,} x {g['batch_size']}, {g['wall_time_s'] / 60:.0f} min",
                     "" if g is None else split_text(g.get("attention_split") or {})])
    header = ["model", "paper %", "ours %", "ST1 prefers a", "ST2 prefers a", "STs prefer different digits",
              "long profile %", "long: steps x batch, time", "long: STs prefer different digits"]
    return html_table(header, rows, "Table 4 beside the paper, and the long profile", escape=True, row_headers=True)


def split_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """The split the chapter's text quotes (keys ``add_split_*``): the largest share of measured test pairs in
    which the two transformers of a 2xST-FCN prefer different digits (``max``, %) and how many pairs were measured
    (``pairs``); "n/a" without a 2xST-FCN."""
    twos = [results[c]["attention_split"] for c in CELLS if c.startswith("2st") and c in results]
    if not twos:
        return {"add_split_max": "n/a", "add_split_pairs": "n/a"}
    return {"add_split_max": f"{max(s['split'] for s in twos):.0f}", "add_split_pairs": f"{twos[0]['split_pairs']:,}"}


__all__ = ["CELLS", "PAPER_BEST_SINGLE_ST", "PAPER_TABLE4", "SEPARATE", "SEPARATE_SEEDS", "TENSORPACK_2ST_AFFINE",
           "best_single", "best_two", "chance_error", "chapter_cell", "chapter_results", "composite",
           "figure_preference", "figure_split", "full_results", "long_gaps_html", "long_results", "long_table_html",
           "paper_key_numbers", "paper_results", "paper_table_html", "parameter_counts", "plot_eval_curves",
           "plot_pairs", "plot_profile_curves", "plot_recipe_curves", "plot_split", "plot_training", "provenance",
           "recipe_key_numbers", "recipe_results", "recipe_table_html", "rectification_html",
           "rectification_key_numbers", "rectification_rows", "row_name", "seed_table_html",
           "separate_key_numbers", "separate_results", "separate_table_html", "split_key_numbers", "split_table", "summary_table_html",
           "table4_html", "table4_key_numbers", "test_pairs", "transformer_rectification"]
