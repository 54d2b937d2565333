"""Tables and figures of the distorted-MNIST chapter, computed from experiment artifacts.

The paper's numbers (Table 1 and the TC text of Sec. 4.1) are kept here only to be printed beside ours,
never as results.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import matplotlib.pyplot as plt
import torch

from stnbook import artifacts as common
from stnbook.experiments import load_results
from stnbook.figures import COLORS, draw_outline, html_table, imshow
from stnbook.glance import Artifacts, duration, table1_best_runs
from stnbook.memo import remember_analysis
from stnbook.paths import load_mnist
from stnbook.table1.pnoise import (
    CNN_CORNER_STDS,
    P_CORNER_STD,
    PNOISE_CNN_MODELS,
    PNOISE_MODELS,
    corner_std_of,
    milder_test_set,
)
from stnlib.data.distortions import DISTORTIONS, fixed_test_set
from stnlib.geometry import sampling_outline
from stnlib.transforms import decompose_affine

ROWS = [("fcn", None), ("cnn", None), ("fcn", "affine"), ("fcn", "projective"), ("fcn", "tps"),
        ("cnn", "affine"), ("cnn", "projective"), ("cnn", "tps")]
COLUMNS = ("R", "RTS", "P", "E", "TC")
PAPER_TABLE1 = {  # % test error; TC from the text (ST-FCN / ST-CNN there are affine)
    ("fcn", None): [2.1, 5.2, 3.1, 3.2, 13.2], ("cnn", None): [1.2, 0.8, 1.5, 1.4, 3.5],
    ("fcn", "affine"): [1.2, 0.8, 1.5, 2.7, 2.0], ("fcn", "projective"): [1.3, 0.9, 1.4, 2.6, None],
    ("fcn", "tps"): [1.1, 0.8, 1.4, 2.4, None], ("cnn", "affine"): [0.7, 0.5, 0.8, 1.2, 1.7],
    ("cnn", "projective"): [0.8, 0.6, 0.8, 1.3, None], ("cnn", "tps"): [0.7, 0.5, 0.8, 1.1, None],
}
SMOKE_CELLS = ["R-cnn", "R-st-cnn-affine", "RTS-cnn", "RTS-st-cnn-affine", "E-st-cnn-affine", "E-st-cnn-tps"]


SHORT = {"affine": "Aff", "projective": "Proj", "tps": "TPS"}


def row_name(arch: str, transform: str | None) -> str:
    """The paper's row label, e.g. "ST-CNN Aff"."""
    return arch.upper() if transform is None else f"ST-{arch.upper()} {SHORT[transform]}"


def cell_id(dist: str, arch: str, transform: str | None) -> str:
    return f"{dist}-{arch}" if transform is None else f"{dist}-st-{arch}-{transform}"


def chapter_results(profile: str) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile): the committed full run, or :data:`SMOKE_CELLS` trained now (smoke)."""
    return common.chapter_results("table1", profile, SMOKE_CELLS)


def chapter_cell(cell: str, profile: str):
    """(metrics, model, analysis) of one Table 1 cell, or None with a note when it has no artifact."""
    return common.chapter_cell("table1", cell, profile)


def figure_st_predictions(profile: str, kinds: Sequence[str], families: Sequence[str], n: int = 5) -> list:
    """:func:`plot_st_predictions` for every distortion in ``kinds`` and ST-CNN family that has an artifact."""
    figs = []
    for kind in kinds:
        entries = {}
        for tf in families:
            got = chapter_cell(f"{kind}-st-cnn-{tf}", profile)
            if got is not None:
                entries[f"ST-CNN {tf}"] = got[1:]
        if entries:
            fig = plot_st_predictions(kind, entries, n)
            fig.suptitle(kind, y=1.01)
            figs.append(fig)
    return figs


def figure_error_by_rotation(profile: str):
    """% test error against the applied R rotation, CNN vs ST-CNN affine (full fixed test set)."""
    data = test_set("R")
    curves = {}
    for label, cell in [("CNN", "R-cnn"), ("ST-CNN affine", "R-st-cnn-affine")]:
        got = chapter_cell(cell, profile)
        if got is None:
            continue
        pred = got[2]["pred"].long()
        correct = pred == data["y"][: len(pred)]
        curves[label] = error_by_bins(data["params"]["angle_deg"][: len(pred)], correct, list(range(-90, 91, 15)))
    return plot_error_by_bins(curves, "applied rotation (deg)") if curves else None


def trained_explorer(profile: str, cell: str = "RTS-st-cnn-affine", index: int = 0):
    """A :class:`~stnbook.widgets.ThetaExplorer` on a test digit, starting at the theta the trained ST predicted,
    that shows the trained classifier's reading of every perturbed output."""
    from stnbook.widgets import KernelOnly, ThetaExplorer, static_build

    if static_build():
        return KernelOnly("ipywidgets sliders that perturb the trained transformer's theta")
    got = chapter_cell(cell, profile)
    if got is None:
        return None
    _, model, analysis = got
    kind = cell.split("-")[0]
    # the stored theta belongs to the full fixed test set's image ``index`` (a smaller n draws other distortions)
    explorer = ThetaExplorer(test_set(kind)["x"][index], "affine", describe=model_describer(model))
    explorer.set_values(decompose_affine(analysis["theta"][index]))
    return explorer


def st_vs_plain(results: dict[str, dict]) -> list[dict]:
    """Per distortion and classifier (FCN, CNN) that has both: the best ST model against the plain model, as
    ``{"distortion", "arch", "transform", "st_error", "plain_error", "better"}`` (``better``: the ST model has the
    lower error, the paper's ordering)."""
    out = []
    for d in COLUMNS:
        for arch in ("fcn", "cnn"):
            plain = results.get(cell_id(d, arch, None))
            sts = [(tf, results[cell_id(d, arch, tf)]) for tf in ("affine", "projective", "tps")
                   if cell_id(d, arch, tf) in results]
            if plain and sts:
                tf, best = min(sts, key=lambda t: t[1]["test_error"])
                out.append({"distortion": d, "arch": arch, "transform": tf, "st_error": best["test_error"],
                            "plain_error": plain["test_error"], "better": best["test_error"] < plain["test_error"]})
    return out


def ordering_exceptions(results: dict[str, dict]) -> str:
    """One sentence on the columns where the best transformer model is not below the plain one
    (:func:`st_vs_plain`), each with both runs' errors, sizes and profiles, and whether they differ in size (more
    than 1.5x in parameters).

    Examples:
        >>> run = lambda e, n, p: {"test_error": e, "params": n, "profile": p}
        >>> ordering_exceptions({"TC-cnn": run(0.9, 396_000, "adam-400k-warmup"),
        ...                      "TC-st-cnn-affine": run(0.96, 148_000, "adam")})  # doctest: +NORMALIZE_WHITESPACE
        'The exception: on TC the plain CNN has 0.90% (396k parameters, adam-400k-warmup) and the best transformer
        model, the ST-CNN Aff, 0.96% (148k parameters, adam), models of different sizes.'
        >>> ordering_exceptions({"TC-cnn": run(1.0, 1, "a"), "TC-st-cnn-affine": run(0.5, 1, "a")})
        'In every column the best transformer model has the lower error.'
    """
    bad = [v for v in st_vs_plain(results) if not v["better"]]
    if not bad:
        return "In every column the best transformer model has the lower error."
    parts = []
    for v in bad:
        plain = results[cell_id(v["distortion"], v["arch"], None)]
        st = results[cell_id(v["distortion"], v["arch"], v["transform"])]
        size = lambda m: f"{m['params'] / 1000:.0f}k parameters, {m.get('profile', '?')}"
        apart = max(plain["params"], st["params"]) > 1.5 * min(plain["params"], st["params"])
        parts.append(f"on {v['distortion']} the plain {v['arch'].upper()} has {plain['test_error']:.2f}% "
                     f"({size(plain)}) and the best transformer model, the {row_name(v['arch'], v['transform'])}, "
                     f"{st['test_error']:.2f}% ({size(st)})" + (", models of different sizes" if apart else ""))
    return ("The exception: " if len(bad) == 1 else "The exceptions: ") + "; ".join(parts) + "."


def st_vs_plain_html(results: dict[str, dict]) -> str:
    """HTML table of :func:`st_vs_plain`: per distortion and classifier, the best ST model against the plain one."""
    rows = [[c["distortion"], c["arch"].upper(), row_name(c["arch"], c["transform"]), f"{c['st_error']:.2f}",
             f"{c['plain_error']:.2f}", "better" if c["better"] else "not better"] for c in st_vs_plain(results)]
    return html_table(["distortion", "classifier", "best transformer model", "its % error", "plain % error",
                       "transformer model"], rows, escape=True, row_headers=True)


def table1_html(results: dict[str, dict], profiles: bool = False) -> str:
    """Paper vs ours for every Table 1 cell and the TC row, with each cell's compute (with ``profiles``, also the
    profile each run comes from and a check mark where ours is within 1.5x of the paper's error)."""
    head = "".join(f"<th>{d} paper</th><th>{d} ours</th>" for d in COLUMNS)
    rows = []
    for arch, tf in ROWS:
        tds = []
        for k, d in enumerate(COLUMNS):
            paper = PAPER_TABLE1[(arch, tf)][k]
            m = results.get(cell_id(d, arch, tf))
            extra = "" if not profiles or m is None else (
                f", {html.escape(str(m.get('profile', '?')))}"
                + (" &#10003;" if paper is not None and within(m["test_error"], paper) else ""))
            ours = "&ndash;" if m is None else (
                f"<b>{m['test_error']:.2f}</b><br><small>{m['params'] / 1000:.0f}k p, "
                f"{duration(m['wall_time_s'])}{extra}</small>")
            tds.append(f"<td>{'&ndash;' if paper is None else paper}</td><td>{ours}</td>")
        rows.append(f"<tr><th>{row_name(arch, tf)}</th>{''.join(tds)}</tr>")
    return (f"<table class='stn-table'><tr><th>% test error</th>{head}</tr>{''.join(rows)}</table>")


def best_results() -> dict[str, dict]:
    """Every Table 1 cell's committed run with the most training (steps x batch; on a tie, the later profile of
    :data:`stnbook.glance.PROFILES`, so the paper's 400k parameters before 150k), each with its ``profile``: the
    runs the landing page quotes."""
    return table1_best_runs(Artifacts())


def best_key_numbers(best: dict[str, dict], prefix: str = "best") -> dict[str, str]:
    """Keys ``<prefix>_*`` of the table of each cell's most-trained run: cells with a paper number (``total``), of
    them run (``compared``) and within 1.5x of the paper (``within``), the median of ours / paper
    (``median_ratio``), the paper's ordering (``better`` of ``comparisons``, :func:`st_vs_plain`) and the
    profiles the runs come from (``profiles``, with counts).

    Examples:
        >>> k = best_key_numbers({"R-fcn": {"test_error": 2.0, "profile": "adam"},
        ...                       "R-st-fcn-tps": {"test_error": 1.0, "profile": "adam-400k"}}, prefix="b")
        >>> k["b_total"], k["b_compared"], k["b_within"], k["b_better"], k["b_comparisons"], k["b_profiles"]
        ('36', '2', '2', '1', '1', 'adam 1, adam-400k 1')
    """
    total = sum(p is not None for p in _paper_by_cell().values())
    pairs = [(o, p) for _, o, p in gaps(best)]
    ratios = sorted(o / p for o, p in pairs)
    verdicts = st_vs_plain(best)
    counts: dict[str, int] = {}
    for m in best.values():
        counts[m.get("profile", "?")] = counts.get(m.get("profile", "?"), 0) + 1
    return {f"{prefix}_total": str(total), f"{prefix}_compared": str(len(pairs)),
            f"{prefix}_within": str(sum(within(o, p) for o, p in pairs)),
            f"{prefix}_median_ratio": f"{ratios[len(ratios) // 2]:.1f}" if ratios else "n/a",
            f"{prefix}_better": str(sum(v["better"] for v in verdicts)), f"{prefix}_comparisons": str(len(verdicts)),
            f"{prefix}_profiles": ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))}


def long_results() -> dict[str, dict]:
    """The committed runs of the "long" profile (4x the full profile's steps; the RTS column's cells)."""
    return load_results("table1", "long")


def full_results() -> dict[str, dict]:
    """The committed runs of the "full" profile (whatever profile the chapter runs in)."""
    return load_results("table1", "full")


def _paper_by_cell() -> dict[str, float | None]:
    return {cell_id(d, arch, tf): PAPER_TABLE1[(arch, tf)][k] for arch, tf in ROWS for k, d in enumerate(COLUMNS)}


def _cell_name(cell: str) -> str:
    dist, rest = cell.split("-", 1)
    parts = rest.split("-")
    return f"{dist} {row_name(parts[1], parts[2]) if parts[0] == 'st' else row_name(parts[0], None)}"


def long_table_html(full: dict[str, dict], long: dict[str, dict]) -> str:
    """Per long-profile cell: paper, ours in the full profile and in the long profile, with their compute."""
    return common.profiles_html(full, long, _paper_by_cell(), _cell_name)


def long_gaps_html(full: dict[str, dict], long: dict[str, dict]) -> str:
    """HTML table, per long-profile cell: ours in the full and the long profile, and the gap to the paper in each."""
    return common.profile_gaps_html(full, long, _paper_by_cell(), _cell_name)


def plot_eval_curves(long: dict[str, dict]):
    """Test error against step for each long run (log scale), the paper's number dotted."""
    return common.plot_eval_curves(long, _paper_by_cell(), _cell_name, log=True)


def adam_results() -> dict[str, dict]:
    """The committed runs of the "adam" profile (60,000 Adam steps at batch 128, 150k parameters per model)."""
    return load_results("table1", "adam")


def within(ours: float, paper: float, factor: float = 1.5) -> bool:
    """Whether our error is at most ``factor`` times the paper's (the reproduction's target for a cell)."""
    return ours <= factor * paper


def _sizes_table_html(base: dict[str, dict], runs: dict[str, dict], labels: tuple[str, str], widths: bool) -> str:
    """Per cell of ``runs``: the paper, ours in ``base`` and in ``runs`` (compute, parameters and, with ``widths``,
    the classifier's width under each), a check mark where ours is within 1.5x of the paper."""
    paper = _paper_by_cell()

    def note(m: dict) -> str:
        ref = paper.get(m["cell"])
        mark = "" if ref is None else (" &#10003; within 1.5x" if within(m["test_error"], ref) else "")
        width = f", classifier width {m['width']}" if widths and m.get("width") is not None else ""
        return f"<br><small>{m['params'] / 1000:.0f}k parameters{width}{mark}</small>"

    return common.profiles_html(base, runs, paper, _cell_name, note=note, labels=labels)


def adam_table_html(full: dict[str, dict], adam: dict[str, dict]) -> str:
    """Per adam-profile cell: the paper, ours in the full and in the adam profile (compute and parameters under
    each), a check mark where ours is within 1.5x of the paper."""
    return _sizes_table_html(full, adam, ("full", "adam"), widths=False)


def adam_key_numbers(full: dict[str, dict], adam: dict[str, dict]) -> dict[str, str]:
    """The numbers the adam section quotes (keys ``adam_*``): finished cells (``cells``) of the table's
    (``of``); of those with a paper number (``compared``), how many are within 1.5x of it in the adam profile
    (``within``) and how many the same cells were in the full profile (``full_within``); the median of
    ours / paper (``median_ratio``, and ``full_median_ratio`` for the same cells); the paper's ordering checked
    on the adam runs (``better`` of ``comparisons``, :func:`st_vs_plain`); the cells not finished yet
    (``missing``: each row with its columns, e.g. "CNN (R, RTS)", or "none"); the finished CNN and ST-CNN cells
    with their error and its ratio to the paper's (``cnn_rows``, or "none yet").

    Examples:
        >>> k = adam_key_numbers({"R-fcn": {"test_error": 9.0}}, {"R-fcn": {"test_error": 3.0}})
        >>> k["adam_cells"], k["adam_within"], k["adam_full_within"], k["adam_median_ratio"], k["adam_full_median_ratio"]
        ('1', '1', '0', '1.4', '4.3')
        >>> print(adam_key_numbers({}, {"R-st-cnn-affine": {"test_error": 0.63}})["adam_cnn_rows"])
        R ST-CNN Aff 0.63% (0.90x the paper's 0.7%)
    """
    from stnbook.experiments import get_cells

    paper = _paper_by_cell()
    cells = [c.id for c in get_cells("table1")]
    pairs = [(c, adam[c]["test_error"], paper[c]) for c in cells if c in adam and paper.get(c) is not None]
    ratios = sorted(o / p for _, o, p in pairs)
    full_ratios = sorted(full[c]["test_error"] / p for c, _, p in pairs if c in full)
    verdicts = st_vs_plain(adam)
    missing = []
    for arch, tf in ROWS:
        cols = [d for d in COLUMNS if (c := cell_id(d, arch, tf)) in cells and c not in adam]
        if cols:
            missing.append(f"{row_name(arch, tf)} ({', '.join(cols)})")
    return {"adam_cells": str(sum(c in adam for c in cells)), "adam_of": str(len(cells)),
            "adam_compared": str(len(pairs)), "adam_within": str(sum(within(o, p) for _, o, p in pairs)),
            "adam_full_within": str(sum(within(full[c]["test_error"], p) for c, _, p in pairs if c in full)),
            "adam_median_ratio": f"{ratios[len(ratios) // 2]:.1f}" if ratios else "n/a",
            "adam_full_median_ratio": f"{full_ratios[len(full_ratios) // 2]:.1f}" if full_ratios else "n/a",
            "adam_better": str(sum(v["better"] for v in verdicts)), "adam_comparisons": str(len(verdicts)),
            "adam_missing": "; ".join(missing) if missing else "none",
            "adam_cnn_rows": "; ".join(
                f"{d} {row_name(arch, tf)} {adam[c]['test_error']:.2f}%"
                + (f" ({adam[c]['test_error'] / paper[c]:.2f}x the paper's {paper[c]:g}%)" if paper.get(c) else "")
                for d in COLUMNS for arch, tf in ROWS
                if arch == "cnn" and (c := cell_id(d, arch, tf)) in adam) or "none yet"}


def paper_errors() -> dict[str, float | None]:
    """The paper's % test error by cell id (None where the paper gives none)."""
    return dict(_paper_by_cell())


def ratio_key_numbers(results: dict[str, dict], prefix: str = "adam") -> dict[str, str]:
    """Per column d of Table 1: ``<prefix>_ratio_<d>_fcn`` and ``<prefix>_ratio_<d>_st_fcn`` (ours / paper of the FCN
    and of the ST-FCN affine, projective and TPS, as "1.25x, 0.98x, 1.19x"; "n/a" where none ran), and
    ``<prefix>_err_<cell>`` (ours, %, dashes as underscores) for every cell of ``results``.

    Examples:
        >>> k = ratio_key_numbers({"R-st-fcn-affine": {"test_error": 1.5}, "R-st-fcn-tps": {"test_error": 1.1}}, "a")
        >>> k["a_ratio_R_st_fcn"], k["a_ratio_R_fcn"], k["a_err_R_st_fcn_tps"]
        ('1.25x, 1.00x', 'n/a', '1.10')
    """
    paper = _paper_by_cell()

    def ratios(cells: list[str]) -> str:
        return ", ".join(f"{results[c]['test_error'] / paper[c]:.2f}x" for c in cells if c in results and paper.get(c)) or "n/a"

    out = {}
    for d in COLUMNS:
        out[f"{prefix}_ratio_{d}_fcn"] = ratios([cell_id(d, "fcn", None)])
        out[f"{prefix}_ratio_{d}_st_fcn"] = ratios([cell_id(d, "fcn", tf) for tf in ("affine", "projective", "tps")])
    for c, m in results.items():
        out[f"{prefix}_err_{c.replace('-', '_')}"] = f"{m['test_error']:.2f}"
    return out


# ---- the paper's model size for the fully connected rows ----------------------------------------------------

WIDE_PROFILE = "adam-400k"


def wide_results() -> dict[str, dict]:
    """The committed runs of the "adam-400k" profile (the adam recipe at 400k parameters, fully connected rows)."""
    return load_results("table1", WIDE_PROFILE)


def wide_table_html(adam: dict[str, dict], wide: dict[str, dict]) -> str:
    """Per adam-400k cell: the paper, ours at 150k (adam) and at 400k parameters, a check mark within 1.5x."""
    return _sizes_table_html(adam, wide, ("150k (adam)", "400k (adam-400k)"), widths=True)


def wide_key_numbers(adam: dict[str, dict], wide: dict[str, dict], prefix: str = "wide") -> dict[str, str]:
    """The numbers the 400k section quotes (keys ``<prefix>_*``): cells run at 400k (``cells``), of those with a
    paper number (``compared``) how many are within 1.5x of it at 400k (``within``) and at 150k (``adam_within``),
    each cell's error at 150k and at 400k (``rows``), the median of 400k / 150k error (``median_gain``), the cells
    still above 1.5x at 400k (``outside``), and the ST-FCN cells of the table that are within 1.5x at the size
    this chapter trains them at, 400k where it ran and 150k elsewhere (``st_fcn_within`` of ``st_fcn_cells``).

    Examples:
        >>> k = wide_key_numbers({"TC-st-fcn-affine": {"test_error": 4.8}, "R-st-fcn-affine": {"test_error": 1.5}},
        ...                      {"TC-st-fcn-affine": {"test_error": 2.4}}, prefix="w")
        >>> k["w_cells"], k["w_within"], k["w_adam_within"], k["w_median_gain"], k["w_st_fcn_within"], k["w_st_fcn_cells"]
        ('1', '1', '0', '0.50', '2', '2')
        >>> k["w_rows"]
        'TC ST-FCN Aff 4.80% at 150k, 2.40% at 400k (paper 2%)'
    """
    paper = _paper_by_cell()
    cells = [c for c in wide if paper.get(c) is not None]
    gains = sorted(wide[c]["test_error"] / adam[c]["test_error"] for c in wide if c in adam and adam[c]["test_error"] > 0)
    rows = [f"{_cell_name(c)} " + (f"{adam[c]['test_error']:.2f}% at 150k, " if c in adam else "")
            + f"{wide[c]['test_error']:.2f}% at 400k" + (f" (paper {paper[c]:g}%)" if paper.get(c) is not None else "")
            for c in wide]
    outside = [f"{_cell_name(c)} ({wide[c]['test_error'] / paper[c]:.2f}x)" for c in cells
               if not within(wide[c]["test_error"], paper[c])]
    st_fcn = {c: (wide.get(c) or adam.get(c)) for c, p in paper.items() if "-st-fcn-" in c and p is not None}
    st_fcn = {c: m for c, m in st_fcn.items() if m is not None}
    return {f"{prefix}_cells": str(len(wide)), f"{prefix}_compared": str(len(cells)),
            f"{prefix}_within": str(sum(within(wide[c]["test_error"], paper[c]) for c in cells)),
            f"{prefix}_adam_within": str(sum(within(adam[c]["test_error"], paper[c]) for c in cells if c in adam)),
            f"{prefix}_rows": "; ".join(rows) or "none yet",
            f"{prefix}_median_gain": f"{gains[len(gains) // 2]:.2f}" if gains else "n/a",
            f"{prefix}_outside": ", ".join(outside) or "none",
            f"{prefix}_st_fcn_within": str(sum(within(m["test_error"], paper[c]) for c, m in st_fcn.items())),
            f"{prefix}_st_fcn_cells": str(len(st_fcn))}


# ---- what the P column's data implies -----------------------------------------------------------------------

@lru_cache(maxsize=8)
def ink_kept(kind: str = "P", n: int | None = None, corner_std: float | None = None) -> torch.Tensor:
    """(n,) the share of each fixed test digit's ink that survives its distortion: the distorted image warped
    back with the generator's own (known) transformation, its ink summed and divided by the clean digit's.
    Parts moved off the canvas are lost; a digit squeezed into a sliver comes back blurred but keeps roughly its ink
    sum, so this counts what left the canvas, not what became unreadable. Projective distortions ("P") only; with
    ``corner_std`` (px), the P test set with its corner moves shrunk to that noise (:func:`p_test_set`). Computed
    once per arguments in a process (several tables read it); treat it as read-only.

    Examples:
        >>> kept = ink_kept("P", n=200)
        >>> kept.shape, bool((kept > 0.5).float().mean() > 0.9)
        (torch.Size([200]), True)
    """
    if kind != "P":
        raise ValueError(f"ink_kept undoes projective distortions only (kind 'P'), got {kind!r}")
    from stnlib.analysis import warp
    from stnlib.data.distortions import as_image_batch

    test = test_set(kind, n) if corner_std is None else p_test_set(corner_std, n)
    inverse = torch.linalg.inv(test["matrix"])  # digit -> canvas, so the warp reads the canvas at each digit point
    inverse = inverse / inverse[:, 2:3, 2:3]
    undone = warp(test["x"], inverse.reshape(-1, 9)[:, :8].float(), "projective")
    clean = as_image_batch(load_mnist("test")[0][:len(test["y"])]).float()
    return undone.sum((1, 2, 3)) / clean.sum((1, 2, 3)).clamp_min(1e-6)


def severity_rows(wrong: dict[str, torch.Tensor], kept: torch.Tensor, drops: Sequence[int] = (1, 5, 10)) -> list[dict]:
    """Per model (``wrong``: name -> (n,) bool, misclassified test images), its % error on all test images
    (``all``) and, for each d in ``drops``, on the images left when the d% that keep least of their digit
    (``kept``, :func:`ink_kept`) are left out (``without[d]``), and the share of its errors among those d%
    (``share[d]``, %).

    Examples:
        >>> rows = severity_rows({"m": torch.tensor([True, False, False, False])}, torch.tensor([0.1, 1.0, 1.0, 0.9]),
        ...                      drops=(25,))
        >>> rows[0]["all"], rows[0]["without"][25], rows[0]["share"][25]
        (25.0, 0.0, 100.0)
    """
    order = kept.argsort()
    out = []
    for name, w in wrong.items():
        if w.shape != kept.shape:
            raise ValueError(f"{name}: expected one verdict per test image ({tuple(kept.shape)}), got {tuple(w.shape)}")
        w = w.float()
        row = {"name": name, "all": 100 * w.mean().item(), "without": {}, "share": {}}
        for d in drops:
            k = round(len(w) * d / 100)
            row["without"][d] = 100 * w[order[k:]].mean().item()
            row["share"][d] = 100 * w[order[:k]].sum().item() / max(w.sum().item(), 1.0)
        out.append(row)
    return out


def _severity_name(name: str) -> tuple[str, str]:
    """("P-st-fcn-affine, 400k") -> ("P-st-fcn-affine", "P ST-FCN Aff, 400k"): the cell id and the name shown."""
    cell, _, extra = name.partition(", ")
    return cell, _cell_name(cell) + (f", {extra}" if extra else "")


def severity_html(rows: list[dict], kept: torch.Tensor) -> str:
    """HTML: per model of :func:`severity_rows` (named by cell id, optionally followed by ", <what>", e.g.
    "P-fcn, 150k"), the paper's error, ours on all images and without the d% that keep least of their digit (the
    share of its errors in those d% below)."""
    paper = _paper_by_cell()
    drops = list(rows[0]["without"]) if rows else []
    order = kept.sort().values
    heads = ["% test error", "paper", "ours, all"] + [
        f"without the {d}% least kept (digits keeping &lt; {100 * order[round(len(order) * d / 100)].item():.0f}% of their ink)"
        for d in drops]
    body = []
    for r in rows:
        cell, shown = _severity_name(r["name"])
        body.append([html.escape(shown), "&ndash;" if paper.get(cell) is None else f"{paper[cell]:g}", f"<b>{r['all']:.2f}</b>"]
                    + [f"<b>{r['without'][d]:.2f}</b><br><small>{r['share'][d]:.0f}% of its errors left out</small>"
                       for d in drops])
    return html_table(heads, body)


def severity_key_numbers(rows: list[dict], kept: torch.Tensor, prefix: str = "psev") -> dict[str, str]:
    """Keys ``<prefix>_*``: the share of P test digits that keep less than half (``half``) and less than 90% of their
    ink (``ninety``, % of images), and for the best model (lowest error; ``best``, its name as shown) its error on all
    images (``best_all``), without the largest drop (``best_without``, with ``drop`` the %), that error over the
    paper's (``best_ratio``) and the share of its errors in the images left out (``best_share``).

    Examples:
        >>> rows = severity_rows({"P-fcn, 150k": torch.tensor([True, False, False, True])},
        ...                      torch.tensor([0.1, 1.0, 1.0, 0.9]), drops=(25,))
        >>> k = severity_key_numbers(rows, torch.tensor([0.1, 1.0, 1.0, 0.9]), prefix="s")
        >>> k["s_best"], k["s_best_without"], k["s_best_ratio"], k["s_best_share"]
        ('P FCN, 150k', '33.33', '10.8', '50')
    """
    best = min(rows, key=lambda r: r["all"])
    d = max(best["without"])
    cell, shown = _severity_name(best["name"])
    ref = _paper_by_cell().get(cell)
    return {f"{prefix}_half": f"{100 * (kept < 0.5).float().mean().item():.1f}",
            f"{prefix}_ninety": f"{100 * (kept < 0.9).float().mean().item():.1f}",
            f"{prefix}_best": shown, f"{prefix}_best_all": f"{best['all']:.2f}", f"{prefix}_drop": str(d),
            f"{prefix}_best_without": f"{best['without'][d]:.2f}",
            f"{prefix}_best_ratio": "n/a" if not ref else f"{best['without'][d] / ref:.1f}",
            f"{prefix}_best_share": f"{best['share'][d]:.0f}"}


# ---- a milder P: the corner noise the paper's errors imply --------------------------------------------------

@lru_cache(maxsize=8)
def p_test_set(corner_std: float, n: int | None = None) -> dict:
    """The fixed P test set with its corner moves shrunk to ``corner_std`` px (the P column's own set at 5 px);
    built once per (corner_std, n) in a process. Treat it as read-only."""
    if float(corner_std) == P_CORNER_STD:
        return test_set("P", n)
    x, y = load_mnist("test")
    return milder_test_set(corner_std, x, y, n=n)


def _pnoise_name(model: str) -> str:
    """The row name of a P cell's model, e.g. "st-fcn-affine" -> "ST-FCN Aff"."""
    return _cell_name(f"P-{model}").split(" ", 1)[1]


def pnoise_curves(profile: str = "adam", root=None) -> dict[str, list[tuple[float, float]]]:
    """Per model of :data:`PNOISE_MODELS` and :data:`PNOISE_CNN_MODELS`: ``[(corner noise in px, % test error)]``
    by increasing noise, from the committed runs of the corner-noise experiment (``pnoise``) and the P column's own
    cell of the same profile (5 px); models with no run are left out."""
    milder = load_results("pnoise", profile, root)
    own = load_results("table1", profile, root)
    out = {}
    for model in PNOISE_MODELS + PNOISE_CNN_MODELS:
        pts = [(corner_std_of(c), m["test_error"]) for c, m in milder.items() if c.partition("px-")[2] == model]
        if f"P-{model}" in own:
            pts.append((P_CORNER_STD, own[f"P-{model}"]["test_error"]))
        if pts:
            out[model] = sorted(pts)
    return out


def pnoise_provenance(profile: str = "adam") -> str:
    """One sentence naming the command, profile, hardware and total time behind the corner-noise runs."""
    return common.provenance(load_results("pnoise", profile), "pnoise")


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """The piecewise-linear curve through ``points`` (sorted by x) at ``x``; None outside their range.

    Examples:
        >>> interpolate([(2.0, 3.0), (4.0, 7.0)], 3.0), interpolate([(2.0, 3.0), (4.0, 7.0)], 5.0)
        (5.0, None)
    """
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[0][1] if len(points) == 1 and points[0][0] == x else None


def crossing(points: Sequence[tuple[float, float]], level: float) -> float | None:
    """The smallest x at which the piecewise-linear curve through ``points`` (sorted by x) reaches ``level`` from
    below; None when it never does within their range.

    Examples:
        >>> crossing([(2.0, 2.0), (3.0, 4.0), (5.0, 11.0)], 3.1), crossing([(2.0, 4.0), (3.0, 5.0)], 3.1)
        (2.55, None)
    """
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 <= level <= y1 and y1 > y0:
            return x0 + (x1 - x0) * (level - y0) / (y1 - y0)
    return None


def pnoise_rows(curves: dict[str, list[tuple[float, float]]], n: int | None = None) -> list[dict]:
    """Per corner noise with a run: ``sigma``, the share of test digits losing more than a tenth of their ink
    (``ink_lost``, %, :func:`ink_kept`) and each model's % test error (``errors``, by model; None without a run)."""
    sigmas = sorted({s for pts in curves.values() for s, _ in pts})
    return [{"sigma": s, "ink_lost": 100 * (ink_kept("P", n, corner_std=s) < 0.9).float().mean().item(),
             "errors": {m: dict(pts).get(s) for m, pts in curves.items()}} for s in sigmas]


def pnoise_html(rows: list[dict]) -> str:
    """HTML: per corner noise, the digits losing ink and each model's error beside the paper's (its P column)."""
    paper = _paper_by_cell()
    models = list(rows[0]["errors"]) if rows else []
    heads = ["corner noise (px)", "test digits losing &gt; 10% of their ink"] + [
        f"{_pnoise_name(m)} % error<br><small>paper: {paper[f'P-{m}']:g}</small>" for m in models]
    body = [[f"{r['sigma']:g}" + (" (the P column)" if r["sigma"] == P_CORNER_STD else ""),
             f"{r['ink_lost']:.1f}%"]
            + ["&ndash;" if r["errors"][m] is None else f"<b>{r['errors'][m]:.2f}</b>" for m in models] for r in rows]
    return html_table(heads, body)


def pnoise_key_numbers(curves: dict[str, list[tuple[float, float]]], prefix: str = "pn") -> dict[str, str]:
    """Keys ``<prefix>_*``: the corner noise at which our plain FCN's P error reaches the paper's (``fcn_sigma``,
    px, linear between runs; "n/a" outside them), the ST-FCN's error there (``st_at``, ``st_at_ratio`` its ratio to
    the paper's P ST-FCN), the noise at which the ST-FCN reaches the paper's error (``st_sigma``) and 1.5x it
    (``st_within_sigma``), the largest noise at which both are within 1.5x of the paper's (``both_within_sigma``;
    below it, as far as the runs go, both are), each model's error at the smallest noise run (``<model>_min``, with
    ``min_sigma``) and the noises run other than the P column's own 5 px (``sigmas``).

    Examples:
        >>> k = pnoise_key_numbers({"fcn": [(2.0, 2.5), (3.0, 3.7), (5.0, 11.0)],
        ...                         "st-fcn-affine": [(2.0, 1.4), (3.0, 2.0), (5.0, 3.8)]}, prefix="p")
        >>> k["p_fcn_sigma"], k["p_st_at"], k["p_st_at_ratio"], k["p_st_sigma"], k["p_st_within_sigma"], k["p_sigmas"]
        ('2.5', '1.70', '1.1', '2.2', '3.3', '2 and 3')
        >>> k["p_both_within_sigma"]  # the FCN reaches 1.5 x 3.1% at 3.26 px, the ST-FCN 1.5 x 1.5% at 3.28 px
        '3.3'
    """
    paper = _paper_by_cell()
    fcn, st = curves.get("fcn", []), curves.get("st-fcn-affine", [])
    at = crossing(fcn, paper["P-fcn"]) if fcn else None
    st_at = interpolate(st, at) if (st and at is not None) else None
    st_meets = crossing(st, paper["P-st-fcn-affine"]) if st else None
    st_ok = crossing(st, 1.5 * paper["P-st-fcn-affine"]) if st else None
    fcn_ok = crossing(fcn, 1.5 * paper["P-fcn"]) if fcn else None
    sigmas = sorted({s for pts in curves.values() for s, _ in pts})
    names = [f"{s:g}" for s in sigmas if s != P_CORNER_STD]  # the noises other than the P column's own
    out = {f"{prefix}_fcn_sigma": "n/a" if at is None else f"{at:.1f}",
           f"{prefix}_st_at": "n/a" if st_at is None else f"{st_at:.2f}",
           f"{prefix}_st_at_ratio": "n/a" if st_at is None else f"{st_at / paper['P-st-fcn-affine']:.1f}",
           f"{prefix}_st_sigma": "n/a" if st_meets is None else f"{st_meets:.1f}",
           f"{prefix}_st_within_sigma": "n/a" if st_ok is None else f"{st_ok:.1f}",
           f"{prefix}_both_within_sigma": "n/a" if None in (st_ok, fcn_ok) else f"{min(st_ok, fcn_ok):.1f}",
           f"{prefix}_sigmas": (", ".join(names[:-1]) + " and " + names[-1]) if len(names) > 1 else "".join(names),
           f"{prefix}_min_sigma": f"{sigmas[0]:g}" if sigmas else "n/a"}
    for model, pts in (("fcn", fcn), ("st_fcn", st)):
        out[f"{prefix}_{model}_min"] = f"{pts[0][1]:.2f}" if pts else "n/a"
    return out


def pnoise_conv_sentence(curves: dict[str, list[tuple[float, float]]], hours: str = "n/a") -> str:
    """One or two sentences on the convolutional P cells at less corner noise (:data:`CNN_CORNER_STDS`): each
    finished cell's error beside the paper's P error of the same model and its own at 5 px; the cells with no
    finished run, with what a convolutional P cell took at 5 px (``hours``). Plain text.

    Examples:
        >>> pnoise_conv_sentence({"cnn": [(3.5, 1.2), (5.0, 3.54)]}, "2.1 to 2.6")  # doctest: +NORMALIZE_WHITESPACE
        'At 3.5 px the plain CNN reaches 1.20% (paper 1.5%, 0.8x; 3.54% at 5 px). The affine ST-CNN at 3.5 px has no
        finished run yet (at 5 px a convolutional P cell took 2.1 to 2.6 hours on one CPU thread).'
        >>> pnoise_conv_sentence({})  # doctest: +ELLIPSIS
        'The plain CNN at 3.5 px and the affine ST-CNN at 3.5 px have no finished run yet (at 5 px ... n/a hours ...).'
    """
    paper = _paper_by_cell()
    out, missing = [], []
    for std in CNN_CORNER_STDS:
        done = []
        for model in PNOISE_CNN_MODELS:
            pts = dict(curves.get(model, []))
            name = {"cnn": "plain CNN", "st-cnn-affine": "affine ST-CNN"}.get(model, _pnoise_name(model))
            ref = paper[f"P-{model}"]
            if std in pts:
                own = f"; {pts[P_CORNER_STD]:.2f}% at {P_CORNER_STD:g} px" if P_CORNER_STD in pts else ""
                done.append(f"the {name} reaches {pts[std]:.2f}% (paper {ref:g}%, {pts[std] / ref:.1f}x{own})")
            else:
                missing.append((std, name))
        if done:
            out.append(f"At {std:g} px " + " and ".join(done) + ".")
    if missing:
        what = " and the ".join(f"{name} at {std:g} px" for std, name in missing)
        out.append(f"The {what} {'have' if len(missing) > 1 else 'has'} no finished run yet (at {P_CORNER_STD:g} px "
                   f"a convolutional P cell took {hours} hours on one CPU thread).")
    return " ".join(out)


def plot_pnoise(curves: dict[str, list[tuple[float, float]]], n: int = 6, pool: int = 1000):
    """Left: at each corner noise of ``curves``, the same ``n`` P test digits: those of the first ``pool`` whose
    corners move furthest (the largest corner move at 5 px); right: each model's % test error against the corner
    noise, with the paper's P error of the same model (dashed) and 1.5x it (dotted)."""
    sigmas = sorted({s for pts in curves.values() for s, _ in pts})
    if not sigmas:
        return None
    paper = _paper_by_cell()
    side = 0.62  # inches per digit
    height = max(side * len(sigmas), 2.4) + 0.75
    fig = plt.figure(figsize=(2 * n * side + 1.3, height))
    grid = fig.add_gridspec(len(sigmas), n + 1, width_ratios=[1] * n + [n * 1.1], wspace=0.06, hspace=0.06)
    moved = test_set("P", pool)["params"]["corner_offset"].norm(dim=-1).amax(1)
    show = moved.argsort(descending=True)[:n]
    for i, s in enumerate(sigmas):
        x = p_test_set(s, pool)["x"][show]
        for j in range(len(show)):
            ax = fig.add_subplot(grid[i, j])
            imshow(ax, x[j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{s:g} px", fontsize=9)
    ax = fig.add_subplot(grid[:, n])
    for k, (model, pts) in enumerate(curves.items()):
        color = COLORS[k % len(COLORS)]
        ax.plot(*zip(*pts), marker="o", color=color, label=f"ours, {_pnoise_name(model)}")
        ref = paper[f"P-{model}"]
        ax.axhline(ref, color=color, ls="--", lw=0.9, label=f"paper, {_pnoise_name(model)}")
        ax.axhline(1.5 * ref, color=color, ls=":", lw=0.9)
    ax.set_xlabel("corner noise (px, standard deviation)")
    ax.set_ylabel("% test error")
    ax.set_xticks(sigmas)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_label_position("right")
    ax.yaxis.tick_right()
    ax.legend(fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.05, right=0.91, top=1 - 0.1 / height, bottom=0.55 / height)
    return fig


# ---- what the unfinished cells would cost -------------------------------------------------------------------

def _on_gpu(segment: dict) -> bool:
    return str((segment.get("hardware") or {}).get("device", "cpu")).startswith("cuda")


def _seconds_per_step(runs: Sequence[dict], gpu: bool) -> float | None:
    """Wall seconds per step over the compute segments of ``runs`` on a GPU (``gpu``) or on a CPU thread."""
    wall = steps = 0.0
    for m in runs:
        for sg in m.get("segments") or []:
            if _on_gpu(sg) == gpu and sg["to_step"] > sg["from_step"]:
                wall += sg["wall_time_s"]
                steps += sg["to_step"] - sg["from_step"]
    return wall / steps if steps else None


def remaining_rows(profile: str = "adam", seed: int = 0, root=None, cells: Sequence[str] | None = None) -> list[dict]:
    """Every Table 1 cell of ``profile`` (one ``seed``; only ``cells`` when given) without an artifact: where it
    stands (``step`` of ``of``) and what its remaining steps would cost, estimated from the measured compute
    segments of the profile's finished runs (any seed) of the same kind (plain or ST, fully connected or
    convolutional) on the same canvas (``basis``): one CPU thread (``cpu_hours``) and one GPU shared with the
    other runs of a batch (``gpu_minutes``, None when no such run was measured). With no run on the same canvas
    the nearest smaller canvas's cost is scaled by the ratio of pixels (``basis`` says so). ``root``: the results
    folder (default the repository's). Raises ValueError for an unknown cell id."""
    from stnbook.experiments import cell_status, get_cells

    every = get_cells("table1")
    unknown = sorted(set(cells or ()) - {c.id for c in every})
    if unknown:
        raise ValueError(f"unknown Table 1 cells {unknown}; expected ids such as 'R-st-cnn-tps'")
    done = [m for s in SEEDS for m in load_results("table1", profile, root=root, seed=s).values()]
    canvas = {c.id: DISTORTIONS[c.task].canvas for c in every}

    def kind(cell: str) -> str:
        return ("st-" if "-st-" in cell else "") + ("cnn" if "cnn" in cell else "fcn")

    out = []
    for c in every:
        if cells is not None and c.id not in cells:
            continue
        st = cell_status(c, profile, root=root, seed=seed)
        if st["state"] == "finished":
            continue
        same = [m for m in done if kind(m["cell"]) == kind(c.id)]
        sizes = sorted({canvas[m["cell"]] for m in same if canvas[m["cell"]] <= canvas[c.id]})
        row = {"cell": c.id, "seed": seed, "step": st["step"] or 0, "of": st["of"], "cpu_hours": None,
               "gpu_minutes": None, "basis": ""}
        if sizes:
            ref = sizes[-1]
            basis = [m for m in same if canvas[m["cell"]] == ref]
            scale = (canvas[c.id] / ref) ** 2
            left = st["of"] - row["step"]
            cpu, gpu = _seconds_per_step(basis, False), _seconds_per_step(basis, True)
            row["cpu_hours"] = None if cpu is None else cpu * scale * left / 3600
            row["gpu_minutes"] = None if gpu is None else gpu * scale * left / 60
            names = sorted({_cell_name(m["cell"]) for m in basis})
            cpus = sorted({common.machine_name(sg.get("hardware") or {})
                           for m in basis for sg in m.get("segments") or [] if not _on_gpu(sg)})
            row["basis"] = (", ".join(names) + (f" (CPU: {', '.join(cpus)})" if cpus else "")
                            + ("" if scale == 1 else f", x{scale:.1f} for the larger canvas"))
        out.append(row)
    return out


def remaining_html(rows: list[dict]) -> str:
    """HTML: per unfinished cell (:func:`remaining_rows`), where it stands and its estimated compute."""
    body = [[html.escape(_cell_name(r["cell"])), str(r["seed"]),
             "not started" if not r["step"] else f"step {r['step']:,} of {r['of']:,}",
             "&ndash;" if r["cpu_hours"] is None else f"{r['cpu_hours']:.1f}",
             "&ndash;" if r["gpu_minutes"] is None else f"{r['gpu_minutes']:.0f}", html.escape(r["basis"])]
            for r in rows]
    return html_table(["cell", "seed", "where it stands", "CPU hours left (one thread)",
                       "GPU minutes left (one GPU shared by all)", "estimated from the measured steps of"], body)


def remaining_key_numbers(rows: list[dict], prefix: str = "left") -> dict[str, str]:
    """Keys ``<prefix>_*``: unfinished cells (``cells``), their total estimated one-thread CPU hours (``cpu_hours``), and
    the longest GPU estimate (``gpu_minutes``: the GPU estimates were measured with many runs sharing one GPU, so
    this is about how long all of them would take side by side), over ``gpu_cells`` cells with one.

    Examples:
        >>> k = remaining_key_numbers([{"cpu_hours": 2.0, "gpu_minutes": 7.0}, {"cpu_hours": 1.5, "gpu_minutes": None}])
        >>> k["left_cells"], k["left_cpu_hours"], k["left_gpu_minutes"], k["left_gpu_cells"]
        ('2', '3.5', '7', '1')
        >>> remaining_key_numbers([])["left_cpu_hours"]  # nothing left
        '0.0'
        >>> remaining_key_numbers([{"cpu_hours": None, "gpu_minutes": None}])["left_cpu_hours"]  # left, not measured
        'n/a'
    """
    cpu = [r["cpu_hours"] for r in rows if r["cpu_hours"] is not None]
    gpu = [r["gpu_minutes"] for r in rows if r["gpu_minutes"] is not None]
    return {f"{prefix}_cells": str(len(rows)), f"{prefix}_cpu_hours": f"{sum(cpu):.1f}" if cpu or not rows else "n/a",
            f"{prefix}_gpu_minutes": f"{max(gpu, default=0):.0f}" if gpu or not rows else "n/a",
            f"{prefix}_gpu_cells": str(len(gpu))}


def remaining_sentence(rows: list[dict], what: str) -> str:
    """One sentence for the chapter on what ``rows`` (:func:`remaining_rows`) still cost, ``what`` naming them.

    Examples:
        >>> remaining_sentence([{"cpu_hours": 2.0, "gpu_minutes": 7.0}, {"cpu_hours": 1.5, "gpu_minutes": None}],
        ...                    "cells of seed 0")
        '2 cells of seed 0 remain: about 3.5 hours of one CPU thread, or about 7 minutes side by side on one GPU.'
        >>> remaining_sentence([{"cpu_hours": 1.0, "gpu_minutes": None}], "runs of seeds 1 and 2")
        'One of the runs of seeds 1 and 2 remains: about 1.0 hours of one CPU thread.'
        >>> remaining_sentence([], "cells of seed 0")
        'All the cells of seed 0 have finished.'
    """
    if not rows:
        return f"All the {what} have finished."
    k = remaining_key_numbers(rows, prefix="k")
    head = f"{len(rows)} {what} remain" if len(rows) > 1 else f"One of the {what} remains"
    cost = "" if k["k_cpu_hours"] == "n/a" else f": about {k['k_cpu_hours']} hours of one CPU thread"
    gpu = "" if k["k_gpu_cells"] == "0" else f", or about {k['k_gpu_minutes']} minutes side by side on one GPU"
    return head + cost + (gpu if cost else "") + "."


# ---- seeds ------------------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)
# the rows of R and RTS whose mean and spread over SEEDS the reproduction wants: the CNN and every ST-CNN
SEED_WANTED_CELLS = tuple(cell_id(d, "cnn", t) for d in ("R", "RTS") for t in (None, "affine", "projective", "tps"))


def seed_results(profile: str = "adam", seeds: Sequence[int] = SEEDS) -> dict[int, dict[str, dict]]:
    """The finished Table 1 cells of ``profile`` per seed (``{seed: {cell: metrics}}``)."""
    return {s: load_results("table1", profile, seed=s) for s in seeds}


def seed_rows(by_seed: dict[int, dict[str, dict]], cells: Sequence[str] = SEED_WANTED_CELLS) -> list[dict]:
    """Per cell, the paper's Table 1 error and ours per finished seed (:func:`stnbook.artifacts.seed_rows`)."""
    return common.seed_rows(by_seed, cells, _paper_by_cell())


def seed_table_html(rows: list[dict], seeds: Sequence[int] = SEEDS) -> str:
    """HTML: per cell, the paper, ours per seed, mean +- standard deviation (:func:`stnbook.artifacts.seed_table_html`)."""
    return common.seed_table_html(rows, seeds, _cell_name)


def seed_ordering(by_seed: dict[int, dict[str, dict]], columns: Sequence[str] = ("R", "RTS")) -> list[dict]:
    """The paper's ordering per seed, column and transformation: each ST-CNN below the plain CNN of its column and
    seed (both finished), as ``{"seed", "column", "transform", "st", "plain", "better"}``."""
    out = []
    for s, r in by_seed.items():
        for d in columns:
            plain = r.get(cell_id(d, "cnn", None))
            for tf in SHORT:
                st = r.get(cell_id(d, "cnn", tf))
                if st is not None and plain is not None:
                    out.append({"seed": s, "column": d, "transform": tf, "st": st["test_error"],
                                "plain": plain["test_error"], "better": st["test_error"] < plain["test_error"]})
    return out


def seed_key_numbers(by_seed: dict[int, dict[str, dict]], prefix: str = "seeds") -> dict[str, str]:
    """The numbers the seeds section quotes (keys ``<prefix>_*``): each cell's mean +- std over its finished seeds
    with the paper's number (``rows``), how many of the cells have every seed (``complete`` of ``cells``), how many
    of those cells' means are within 1.5x of the paper (``within``), the ordering checked per seed, column and
    transformation (``better`` of ``comparisons``, :func:`seed_ordering`) and the largest spread between a cell's seeds in points (``max_range``).

    Examples:
        >>> k = seed_key_numbers({0: {"R-cnn": {"test_error": 1.0}, "R-st-cnn-affine": {"test_error": 0.8}},
        ...                       1: {"R-cnn": {"test_error": 1.2}}}, prefix="s")
        >>> k["s_complete"], k["s_better"], k["s_comparisons"], k["s_max_range"]
        ('1', '1', '1', '0.20')
        >>> k["s_rows"].split("; ")[0]
        'R CNN 1.10 ± 0.14% (2 seeds, paper 1.2%)'
    """
    rows = seed_rows(by_seed)
    order = seed_ordering(by_seed)
    done = [r for r in rows if r["mean"] is not None]
    complete = [r for r in rows if len(r["errors"]) == len(by_seed)]

    def text(r: dict) -> str:
        n = len(r["errors"])
        spread = "" if r["std"] is None else f" ± {r['std']:.2f}"
        return f"{_cell_name(r['cell'])} {r['mean']:.2f}{spread}% ({n} seed{'s' if n > 1 else ''}, paper {r['paper']:g}%)"

    ranges = [r["max"] - r["min"] for r in done if len(r["errors"]) > 1]
    return {f"{prefix}_rows": "; ".join(text(r) for r in done) or "none yet",
            f"{prefix}_complete": str(len(complete)),
            f"{prefix}_cells": str(len(rows)),
            f"{prefix}_within": str(sum(within(r["mean"], r["paper"]) for r in complete if r["paper"] is not None)),
            f"{prefix}_better": str(sum(o["better"] for o in order)), f"{prefix}_comparisons": str(len(order)),
            f"{prefix}_max_range": f"{max(ranges):.2f}" if ranges else "n/a"}


def seeds_at_paper(rows: list[dict]) -> str:
    """Per cell with finished seeds (:func:`seed_rows`) and a paper error: how many seeds are at or below the
    paper's error, and the best seed.

    Examples:
        >>> seeds_at_paper([{"cell": "RTS-st-cnn-affine", "paper": 0.5, "errors": {0: 0.65, 1: 0.55}},
        ...                 {"cell": "RTS-cnn", "paper": 0.8, "errors": {}}])
        "RTS ST-CNN Aff: 0 of 2 seeds at or below the paper's 0.5% (best 0.55%)"
    """
    parts = []
    for r in rows:
        if r["errors"] and r["paper"] is not None:
            errs = list(r["errors"].values())
            met = sum(e <= r["paper"] for e in errs)
            parts.append(f"{_cell_name(r['cell'])}: {met} of {len(errs)} seed{'s' if len(errs) > 1 else ''} at or "
                         f"below the paper's {r['paper']:g}% (best {min(errs):.2f}%)")
    return "; ".join(parts) or "no seed has finished"


def plot_ratio_to_paper(profiles: dict[str, dict[str, dict]]):
    """Ours / the paper's error per cell (log scale), one marker per profile (``{label: results}``), cells
    ordered as in Table 1 and limited to those of the last profile; the 1.5x target shaded."""
    paper = _paper_by_cell()
    last = list(profiles.values())[-1]
    cells = [cell_id(d, a, t) for d in COLUMNS for a, t in ROWS
             if cell_id(d, a, t) in last and paper.get(cell_id(d, a, t)) is not None]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 0.24 * len(cells) + 1.2))
    for k, (label, res) in enumerate(profiles.items()):
        pts = [(res[c]["test_error"] / paper[c], i) for i, c in enumerate(cells) if c in res]
        if pts:
            ax.plot(*zip(*pts), ls="none", marker="o" if k == len(profiles) - 1 else "s", ms=5,
                    color=COLORS[k % len(COLORS)], label=label)
    ax.axvspan(0.1, 1.5, color="0.92", zorder=0)
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.axvline(1.5, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(range(len(cells)), [_cell_name(c) for c in cells], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(0.5, max(20.0, max(r[c]["test_error"] / paper[c] for r in profiles.values() for c in cells if c in r) * 1.2))
    ax.set_xlabel("our % error / the paper's (log scale; shaded: within 1.5x)")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def provenance(results: dict[str, dict]) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``."""
    return common.provenance(results, "table1")


def gaps(results: dict[str, dict]) -> list[tuple[str, float, float]]:
    """(cell, ours, paper) for every cell with both numbers, worst gap first."""
    out = []
    for arch, tf in ROWS:
        for k, d in enumerate(COLUMNS):
            paper = PAPER_TABLE1[(arch, tf)][k]
            m = results.get(cell_id(d, arch, tf))
            if paper is not None and m is not None:
                out.append((cell_id(d, arch, tf), m["test_error"], paper))
    return sorted(out, key=lambda t: t[1] - t[2], reverse=True)


@lru_cache(maxsize=8)
def test_set(kind: str, n: int | None = None) -> dict:
    """The fixed test set of a distortion (the one every model was scored on); built once per (kind, n)
    in a process, since several figures of the chapter read the same set. Treat it as read-only."""
    x, y = load_mnist("test")
    return fixed_test_set(kind, x, y, n=n)


def plot_distortions(kinds: Sequence[str] = COLUMNS, n: int = 8):
    """The first ``n`` fixed test images of each distortion, one row each."""
    fig, axes = plt.subplots(len(kinds), n, figsize=(n * 1.0, len(kinds) * 1.1), squeeze=False)
    for r, kind in enumerate(kinds):
        data = test_set(kind, n)
        for c in range(n):
            imshow(axes[r, c], data["x"][c])
        axes[r, 0].set_ylabel(kind, rotation=0, labelpad=18, fontsize=10)
    fig.tight_layout()
    return fig


def plot_st_predictions(kind: str, entries: dict[str, tuple], n: int = 5):
    """For one distortion: each model's predicted sampling region on the first ``n`` test inputs, and its output.

    Args:
        entries: label -> (model, analysis) from :func:`chapter_cell`.
    """
    data = test_set(kind, n)
    fig, axes = plt.subplots(2 * len(entries), n, figsize=(n * 1.15, 2.3 * len(entries)), squeeze=False)
    for r, (label, (model, analysis)) in enumerate(entries.items()):
        tf = model.st.transform
        with torch.no_grad():
            warped, theta = model.transform_input(data["x"])
            pred = model(data["x"]).argmax(1)
        for c in range(n):
            imshow(axes[2 * r, c], data["x"][c])
            draw_outline(axes[2 * r, c], sampling_outline(theta[c], tf, data["x"].shape[-2:]), COLORS[0])
            ok = "ok" if pred[c] == data["y"][c] else "wrong"
            imshow(axes[2 * r + 1, c], warped[c], f"pred {pred[c].item()} ({ok})")
        axes[2 * r, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


def error_by_bins(values: torch.Tensor, correct: torch.Tensor, edges: Sequence[float]) -> tuple[list[float], list[float]]:
    """Bin centres and % error of the samples whose ``values`` fall in each [edge_i, edge_i+1)."""
    centres, errors = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (values >= lo) & (values < hi)
        if mask.any():
            centres.append((lo + hi) / 2)
            errors.append(100 * (1 - correct[mask].float().mean().item()))
    return centres, errors


def plot_error_by_bins(curves: dict[str, tuple[list[float], list[float]]], xlabel: str, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.0))
    for k, (label, (x, e)) in enumerate(curves.items()):
        ax.plot(x, e, "o-", color=COLORS[k], label=label)
    ax.set(xlabel=xlabel, ylabel="% test error")
    ax.legend()
    return ax


def model_describer(model):
    """Callback for :class:`stnbook.widgets.ThetaExplorer`: the trained classifier's reading of the warped digit."""

    def describe(theta: torch.Tensor, warped: torch.Tensor) -> str:
        with torch.no_grad():
            logits = model.classify(warped[None])
            p = logits.softmax(1)[0]
        top = p.argmax().item()
        return f"classifier says {top} (p = {p[top]:.2f})"

    return describe


__all__ = ["PAPER_TABLE1", "SMOKE_CELLS", "adam_key_numbers", "adam_results", "adam_table_html", "chapter_cell",
           "chapter_results", "error_by_bins", "full_results", "gaps",
           "long_gaps_html", "long_results", "long_table_html", "model_describer", "plot_distortions",
           "plot_error_by_bins", "plot_eval_curves", "plot_ratio_to_paper", "plot_st_predictions", "provenance", "shortfall_key_numbers",
           "st_vs_plain", "st_vs_plain_html", "table1_html", "test_set", "within"]


def static_trained_explorer(profile: str, cell: str = "RTS-st-cnn-affine", n: int = 16):
    """The kernel-free gallery of a trained transformer on the first ``n`` fixed test images: each image's
    predicted sampling region and output, and the classifier's reading (works in the static book)."""
    from stnbook.web import static_model_explorer

    got = chapter_cell(cell, profile)
    if got is None:
        return None
    data = test_set(cell.split("-")[0], n)
    return static_model_explorer(got[1], data["x"], data["y"], title=f"{cell}: what the trained transformer does")


def shortfall_key_numbers(results: dict[str, dict]) -> dict[str, str]:
    """How far the reproduction falls short of the paper, as the numbers the chapter's summary quotes (keys
    ``table1_*``; "n/a" where there is nothing to compare): cells above the paper's error (``above``) of those
    compared (``compared``), the median and the worst gap in points (``median_gap``; ``worst_cell``,
    ``worst_gap``), the range of the ST-CNN cells' error over the paper's (``st_cnn_min``, ``st_cnn_max``), and in
    how many of the :func:`st_vs_plain` comparisons the transformer model is better (``better``, ``comparisons``)."""
    g = gaps(results)
    cnn = sorted(o / p for c, o, p in g if "-st-cnn-" in c)
    verdicts = st_vs_plain(results)
    out = dict.fromkeys(["table1_above", "table1_compared", "table1_median_gap", "table1_worst_cell",
                         "table1_worst_gap", "table1_st_cnn_min", "table1_st_cnn_max"], "n/a")
    if g:
        diffs = sorted(ours - paper for _, ours, paper in g)
        out.update(table1_above=str(sum(ours > paper for _, ours, paper in g)), table1_compared=str(len(g)),
                   table1_median_gap=f"{diffs[len(diffs) // 2]:+.2f}", table1_worst_cell=_cell_name(g[0][0]),
                   table1_worst_gap=f"{g[0][1] - g[0][2]:+.2f}")
    if cnn:
        out.update(table1_st_cnn_min=f"{cnn[0]:.1f}", table1_st_cnn_max=f"{cnn[-1]:.1f}")
    out.update(table1_better=str(sum(c["better"] for c in verdicts)), table1_comparisons=str(len(verdicts)))
    return out


# ---- what stays outside 1.5x, and why -------------------------------------------------------------------

TC_SHIFT_EDGES = (0, 4, 8, 12, 17)  # px from the canvas centre to the digit's, largest axis (at most 16 on TC)
TC_CLUTTER_EDGES = (0, 1, 2, 3, 7)  # clutter patches on the digit's box: none, 1, 2, 3 or more (of six)
UNDERFIT = 0.9  # training error at least this fraction of the test error: the model underfits


def clutter_on_digit(box: torch.Tensor, clutter_pos: torch.Tensor, clutter_size: torch.Tensor) -> torch.Tensor:
    """(N,) how many of each image's clutter patches overlap its digit's box by at least one pixel.

    Args:
        box: (N, 4) the digit's box (x0, y0, x1, y1) in canvas pixels, pixel centres at integers
            (:func:`stnlib.data.distortions.digit_box`).
        clutter_pos: (N, K, 2) each patch's top-left pixel (x, y); clutter_size: (N,) the patches' side.

    Examples:
        >>> box = torch.tensor([[-0.5, -0.5, 27.5, 27.5]], dtype=torch.float64)  # a digit at the top left
        >>> pos = torch.tensor([[[22, 0], [28, 0], [0, 30], [27, 27]]])  # overlaps, just right of it, below, corner
        >>> clutter_on_digit(box, pos, torch.tensor([6])).tolist()
        [2]
    """
    first = torch.round(box[:, None, :2] + 0.5).long()  # the box's first and last pixel (the box comes from a
    last = torch.round(box[:, None, 2:] - 0.5).long()  # matrix inverse, so its edges are only nearly half-integers)
    pos = clutter_pos.long()
    overlap = (pos <= last) & (pos + clutter_size.long()[:, None, None] - 1 >= first)
    return overlap.all(dim=-1).sum(dim=-1)


def train_error_at_end(metrics: dict, last: int = 1_000) -> float | None:
    """% training error over a run's last ``last`` steps: the mean of its logged training errors (each the mean
    over its logging interval) after step ``steps - last``; None without a log.

    Examples:
        >>> m = {"steps": 3000, "history": [{"step": s, "error": e} for s, e in [(1000, 9.0), (2000, 4.0), (3000, 3.0)]]}
        >>> train_error_at_end(m), train_error_at_end(m, last=2000)
        (3.0, 3.5)
    """
    errs = [h["error"] for h in metrics.get("history") or [] if h["step"] > metrics["steps"] - last and "error" in h]
    return sum(errs) / len(errs) if errs else None


def tc_failure(profile: str) -> dict | None:
    """Where the TC CNN's and ST-CNN affine's test errors fall (all fixed TC test images their ``pred`` covers):
    ``curves`` {label: {"shift": (centres, % errors), "clutter": (...)}} by the digit's offset from the canvas
    centre (:data:`TC_SHIFT_EDGES`) and by the clutter patches on its box (:data:`TC_CLUTTER_EDGES`),
    ``test`` and ``train`` (:func:`train_error_at_end`) {label: % error}; None when neither model has an artifact."""
    data = test_set("TC")
    shift = data["params"]["translation"].abs().amax(dim=1)
    clutter = clutter_on_digit(data["box"], data["params"]["clutter_pos"], data["params"]["clutter_size"])
    out: dict = {"curves": {}, "test": {}, "train": {}}
    for label, cell in [("CNN", "TC-cnn"), ("ST-CNN affine", "TC-st-cnn-affine")]:
        got = chapter_cell(cell, profile)
        if got is None:
            continue
        metrics, _, analysis = got
        n = len(analysis["pred"])
        correct = analysis["pred"].long() == data["y"][:n]
        out["curves"][label] = {"shift": error_by_bins(shift[:n], correct, TC_SHIFT_EDGES),
                                "clutter": error_by_bins(clutter[:n], correct, TC_CLUTTER_EDGES)}
        out["test"][label] = metrics["test_error"]
        out["train"][label] = train_error_at_end(metrics)
    return out if out["curves"] else None


def plot_tc_failure(failure: dict):
    """Two panels of :func:`tc_failure`: % test error by the digit's offset and by the clutter on it."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    plot_error_by_bins({label: c["shift"] for label, c in failure["curves"].items()},
                       "digit's offset from the canvas centre (px, largest axis)", ax=axes[0])
    # one tick per clutter bin (0, 1, 2, 3+) rather than at the bins' centres
    place = {label: ([sum(e < x for e in TC_CLUTTER_EDGES) - 1 for x in c["clutter"][0]], c["clutter"][1])
             for label, c in failure["curves"].items()}
    plot_error_by_bins(place, "clutter patches on the digit's box", ax=axes[1])
    axes[1].set_xticks(range(len(TC_CLUTTER_EDGES) - 1),
                       [str(e) for e in TC_CLUTTER_EDGES[:-2]] + [f"{TC_CLUTTER_EDGES[-2]}+"])
    for ax in axes:
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def tc_failure_key_numbers(failure: dict | None, prefix: str = "tcf") -> dict[str, str]:
    """Keys ``<prefix>_*`` of :func:`tc_failure` for the chapter ("n/a" where a model or a bin is missing): per
    model (``cnn``, ``st``) the test and end-of-training errors, the error of the central and outermost offset
    bins (``centre``, ``edge``) and of the digits without and with the most clutter (``clean``, ``busy``), and
    ``verdict``, a sentence on whether the CNN underfits (:data:`UNDERFIT`).

    Examples:
        >>> f = {"curves": {"CNN": {"shift": ([2, 14], [12.0, 9.0]), "clutter": ([0.5, 5.0], [8.0, 11.0])}},
        ...      "test": {"CNN": 10.5}, "train": {"CNN": 10.3}}
        >>> k = tc_failure_key_numbers(f, prefix="t")
        >>> k["t_cnn_centre"], k["t_cnn_busy"], k["t_st_test"]
        ('12.0', '11.0', 'n/a')
        >>> k["t_verdict"]
        'Its training error over its last 1,000 steps (10.3%) is as high as its test error (10.5%): it underfits.'
    """
    out = {}
    for key, label in (("cnn", "CNN"), ("st", "ST-CNN affine")):
        c = (failure or {}).get("curves", {}).get(label)
        tr = (failure or {}).get("train", {}).get(label)
        te = (failure or {}).get("test", {}).get(label)
        out.update({f"{prefix}_{key}_test": "n/a" if te is None else f"{te:.2f}",
                    f"{prefix}_{key}_train": "n/a" if tr is None else f"{tr:.2f}",
                    f"{prefix}_{key}_centre": f"{c['shift'][1][0]:.1f}" if c and c["shift"][1] else "n/a",
                    f"{prefix}_{key}_edge": f"{c['shift'][1][-1]:.1f}" if c and c["shift"][1] else "n/a",
                    f"{prefix}_{key}_clean": f"{c['clutter'][1][0]:.1f}" if c and c["clutter"][1] else "n/a",
                    f"{prefix}_{key}_busy": f"{c['clutter'][1][-1]:.1f}" if c and c["clutter"][1] else "n/a"})
    tr, te = (failure or {}).get("train", {}).get("CNN"), (failure or {}).get("test", {}).get("CNN")
    if tr is None or te is None:
        verdict = "Its training error was not logged."
    else:
        state = ("is as high as its test error", "it underfits") if tr >= UNDERFIT * te else \
            ("is below its test error", "it does not simply underfit")
        verdict = f"Its training error over its last 1,000 steps ({tr:.1f}%) {state[0]} ({te:.1f}%): {state[1]}."
    out[f"{prefix}_verdict"] = verdict
    return out


def _multiply_adds(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolution and linear layers for one input of ``shape`` (C, H, W).

    Examples:
        >>> _multiply_adds(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)), (3, 2, 2))
        60
    """
    total = 0

    def count(mod, inputs, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    finally:
        for h in hooks:
            h.remove()
    return total


def _at_budget_cpu_hours(metrics: dict, budget: int) -> tuple[float, float] | None:
    """(estimated one-thread CPU hours, multiply-add ratio) of ``metrics``' run remade at ``budget`` parameters with
    the same steps: its measured CPU seconds per step x its steps x the ratio of multiply-adds per image (the
    larger model's over its own); None without CPU segments."""
    from stnbook.table1.experiment import rebuild
    from stnlib.models import ModelConfig, build_model

    per_step = _seconds_per_step([metrics], gpu=False)
    if per_step is None:
        return None
    cfg = ModelConfig.from_dict(metrics["model_config"])
    shape = (cfg.in_channels, *cfg.in_size)
    ours = _multiply_adds(rebuild(metrics), shape)
    bigger = _multiply_adds(build_model(replace(cfg, width=None, param_budget=budget)), shape)
    return per_step * metrics["steps"] * bigger / ours / 3600, bigger / ours


def _paper_images_cpu_hours(metrics: dict) -> tuple[float, float] | None:
    """(estimated one-thread CPU hours, ratio of training images) of ``metrics``' run trained on as many images
    as the paper's schedule (the ``paper`` profile's steps x batch): its measured CPU seconds per image x that
    number; None without CPU segments or when the run saw that many images already."""
    from stnbook.table1.experiment import PROFILES

    per_step = _seconds_per_step([metrics], gpu=False)
    images = metrics["steps"] * metrics.get("batch_size", 0)
    target = PROFILES["paper"].steps * PROFILES["paper"].batch_size
    if per_step is None or not images or images >= target:
        return None
    return per_step * metrics["steps"] * target / images / 3600, target / images


PAPER_SIZE_PROFILE = "adam-400k-warmup"
"""The profile that trains a cell at the paper's size: the adam recipe at 400k parameters with a 2,000-step
learning-rate warm-up, without which Adam's first steps switch off many units for good (the plain CNN on TC
trains no further than chance; :mod:`stnbook.table1.units` counts them)."""


def outside_rows(best: dict[str, dict], by_seed: dict[int, dict[str, dict]] | None = None,
                 factor: float = 1.5, progress: dict[str, dict] | None = None) -> list[dict]:
    """Every cell of ``best`` (:func:`best_results`) above ``factor`` times the paper's error, worst ratio first:
    ``cell``, ``ours``, ``paper``, ``ratio``, ``profile``, ``params``, ``train`` (:func:`train_error_at_end`),
    ``seeds`` ((mean, std, n) over the adam profile's finished seeds when there are several, else None),
    ``late_drop`` (points the test error fell over the run's last 20,000 steps, None without evaluations there)
    and ``lever``: "data" (the P column, see its section), "capacity" (it underfits below the paper's size;
    ``estimate`` = :func:`_at_budget_cpu_hours` at 400k parameters, ``wide_profile`` = :data:`PAPER_SIZE_PROFILE`),
    "steps" (it underfits at the paper's size; ``estimate`` = :func:`_paper_images_cpu_hours`, None once it has
    seen the paper's number of training images) or "other" (its training error is below its test error); a "capacity" row also has ``progress``: its
    unfinished run at 400k parameters (:func:`paper_progress` of its ``wide_profile``, read from ``progress``,
    default: the committed checkpoints), or None when none has started, and ``same_step``: this cell's own error
    at that run's latest evaluation step (None where it has none). ``by_seed``: :func:`seed_results` when
    the caller has it already (default: loaded here)."""
    from stnbook.table1.experiment import PAPER_SIZE_BUDGET

    by_seed = seed_results("adam") if by_seed is None else by_seed
    out = []
    for cell, ours, paper in gaps(best):
        if ours <= factor * paper:
            continue
        m = best[cell]
        train = train_error_at_end(m)
        spread = seed_rows(by_seed, [cell])[0]
        seeds = (spread["mean"], spread["std"], len(spread["errors"])) if len(spread["errors"]) > 1 else None
        evals = {e["step"]: e["error"] for e in m.get("eval_history") or []}
        late = evals.get(m["steps"] - 20_000)
        row = {"cell": cell, "ours": ours, "paper": paper, "ratio": ours / paper, "profile": m.get("profile", "?"),
               "params": m.get("params"), "train": train, "seeds": seeds, "estimate": None,
               "late_drop": None if late is None or m["steps"] not in evals else late - evals[m["steps"]]}
        if cell.startswith("P-"):
            row["lever"] = "data"
        elif train is not None and train >= UNDERFIT * ours:
            big = (m.get("params") or 0) >= 0.75 * PAPER_SIZE_BUDGET
            row["lever"] = "steps" if big else "capacity"
            row["estimate"] = _paper_images_cpu_hours(m) if big else _at_budget_cpu_hours(m, PAPER_SIZE_BUDGET)
            if not big:
                row["wide_profile"] = PAPER_SIZE_PROFILE
                started = (paper_progress([cell], profile=row["wide_profile"]) if progress is None
                           else progress).get(cell)
                row["progress"] = started if started and started["state"] == "in progress" else None
                latest = row["progress"]["eval_history"][-1:] if row["progress"] else []
                row["same_step"] = evals.get(latest[0]["step"]) if latest else None
        else:
            row["lever"] = "other"
        out.append(row)
    return sorted(out, key=lambda r: r["ratio"], reverse=True)


def _lever_html(r: dict) -> str:
    train = "n/a" if r["train"] is None else f"{r['train']:.2f}%"
    drop = "" if r["late_drop"] is None else (f"; test error {'fell' if r['late_drop'] >= 0 else 'rose'} "
                                              f"{abs(r['late_drop']):.2f} points over the last 20,000 steps")
    if r["lever"] == "data":
        return (f"mostly the data (&ldquo;What the P column's data implies&rdquo; and &ldquo;How much milder?&rdquo;); "
                f"training error {train}")
    if r["lever"] == "capacity":
        est = r["estimate"]
        cost = ("" if est is None else f", about {est[0]:.0f} CPU-hours on one thread (this run's time x{est[1]:.1f}, "
                f"the ratio of multiply-adds per image)")
        text = (f"underfits (training error {train}{drop}): the paper's size, <code>python -m stnbook run table1 "
                f"--profile {r['wide_profile']} --cells {html.escape(r['cell'])}</code>{cost}")
        run = r.get("progress")
        if run:
            secs = sum(sg["wall_time_s"] for sg in run["segments"])
            latest = ("" if run["error"] is None else
                      f", {run['error']:.2f}% at its latest evaluation (step {run['eval_history'][-1]['step']:,}"
                      + ("" if r.get("same_step") is None else
                         f"; the {html.escape(r['profile'])} run had {r['same_step']:.2f}% there") + ")")
            left = ("" if not run["step"] else f"; at its measured {secs / run['step']:.2f} s per step, about "
                    f"{secs / run['step'] * (run['of'] - run['step']) / 3600:.1f} CPU-hours left")
            text += (f". Under way: step {run['step']:,} of {run['of']:,}{latest}{left}; the same command "
                     f"continues it from its checkpoint")
        return text
    if r["lever"] == "steps":
        est = r["estimate"]
        if est is None:
            return (f"underfits at the paper's size after the paper's number of training images (training error "
                    f"{train}{drop}): a wider model or a longer schedule than the paper's; not run")
        return (f"underfits at the paper's size (training error {train}{drop}): the paper's number of training "
                f"images, <code>python -m stnbook run table1 --profile adam-400k-warmup-long --cells "
                f"{html.escape(r['cell'])}</code>, about {est[0]:.1f} CPU-hours on one thread (this run's time "
                f"x{est[1]:.1f})")
    return (f"its training error ({train}) is well below its test error, so more capacity alone is unlikely to "
            f"close it; not investigated")


def outside_html(rows: list[dict]) -> str:
    """HTML: per cell of :func:`outside_rows`, its error, the paper's, its seeds and what would close it."""
    body = []
    for r in rows:
        seeds = "&ndash;" if r["seeds"] is None else f"{r['seeds'][0]:.2f} &plusmn; {r['seeds'][1]:.2f} ({r['seeds'][2]})"
        body.append([html.escape(_cell_name(r["cell"])), f"{r['paper']:g}",
                     f"{r['ours']:.2f} <small>({html.escape(r['profile'])}, {(r['params'] or 0) / 1000:.0f}k)</small>",
                     f"{r['ratio']:.2f}x", seeds, _lever_html(r)])
    return html_table(["cell", "paper", "ours (profile, parameters)", "x paper", "seeds: mean &plusmn; std (n)",
                       "what would close it, by our runs"], body)


# ---- rectification: did the transformer undo the distortion? ------------------------------------------

@torch.no_grad()
def implied_on_test(model, kind: str, n: int | None = None) -> tuple[dict, dict]:
    """(the similarity implied by the model's theta on the first ``n`` fixed test images of ``kind``, the
    test set): rotation_deg, scale, translation per image."""
    from stnlib.analysis import implied_similarity

    data = test_set(kind, n)
    model.eval()
    thetas = [model.transform_input(data["x"][i:i + 1000])[1] for i in range(0, len(data["y"]), 1000)]
    return implied_similarity(torch.cat(thetas), model.st.transform), data


def rectification_rows(profile: str, cells: Sequence[str], n: int | None = None) -> list[dict]:
    """Per R/RTS transformer cell with an artifact: the rotation fit (and the scale fit on RTS) of its
    implied similarity against the applied distortion, on the first ``n`` test images (all by default). On all of
    them, computed once per set of artifacts (:mod:`stnbook.memo`; the smoke profile's every time)."""
    return remember_analysis("table1", f"rectification-{profile}", lambda: _rectification_rows(profile, cells, n),
                             args=[profile, list(cells), n], keep=profile != "smoke" and n is None)


def _rectification_rows(profile: str, cells: Sequence[str], n: int | None) -> list[dict]:
    from stnlib.analysis import rectification

    rows = []
    for cell in cells:
        got = chapter_cell(cell, profile)
        if got is None:
            continue
        metrics, model, _ = got
        kind = cell.split("-")[0]
        sim, data = implied_on_test(model, kind, n)
        row = {"cell": cell, "name": _cell_name(cell), "error": metrics["test_error"],
               "rotation": rectification(data["params"]["angle_deg"], sim["rotation_deg"])}
        if kind == "RTS":
            # a transformer that undoes the scale samples a region whose size follows the digit's size
            row["scale"] = rectification(data["params"]["scale"], sim["scale"])
        rows.append(row)
    return rows


def rectification_html(rows: list[dict]) -> str:
    """HTML table of :func:`rectification_rows`: r and slope per cell; |slope| in [0.8, 1.2] with |r| >= 0.9
    (the transformer undoes the rotation) in bold."""
    def fit(f):
        if f is None:
            return "&ndash;", "&ndash;"
        strong = rectifies(f)
        slope = f"{f['slope']:+.2f}"
        return f"{f['r']:+.2f}", f"<b>{slope}</b>" if strong else slope
    body = [[r["name"], f"{r['error']:.2f}", *fit(r["rotation"]), *fit(r.get("scale"))] for r in rows]
    return html_table(["cell", "% error", "rotation: r", "rotation: slope", "scale: r", "scale: slope"], body)


def rectifies(fit: dict | None) -> bool:
    """The rectification target: |r| >= 0.9 and |slope| in [0.8, 1.2]."""
    return fit is not None and abs(fit["r"]) >= 0.9 and 0.8 <= abs(fit["slope"]) <= 1.2


def rectification_key_numbers(rows: list[dict], prefix: str) -> dict[str, str]:
    """Numbers a chapter quotes about :func:`rectification_rows` (keys ``<prefix>_*``): transformers measured
    (``n``), meeting the rotation target (``met``), the one with the largest rotation slope on R (``best``, its
    ``best_slope``, ``best_r``) and the range of the RTS scale slopes (``scale_min``, ``scale_max``).

    Examples:
        >>> rows = [{"cell": "R-st-fcn-affine", "name": "R ST-FCN Aff", "rotation": {"r": -0.95, "slope": -0.9}},
        ...         {"cell": "RTS-st-fcn-tps", "name": "RTS ST-FCN TPS", "rotation": {"r": -0.5, "slope": -0.3},
        ...          "scale": {"r": 0.8, "slope": 0.6}}]
        >>> k = rectification_key_numbers(rows, "a")
        >>> k["a_n"], k["a_met"], k["a_best"], k["a_best_slope"], k["a_scale_min"]
        ('2', '1', 'R ST-FCN Aff', '0.90', '0.60')
    """
    r_rows = [r for r in rows if r["cell"].startswith("R-")]
    best = max(r_rows, key=lambda r: abs(r["rotation"]["slope"]), default=None)
    scales = sorted(r["scale"]["slope"] for r in rows if r.get("scale"))
    return {f"{prefix}_n": str(len(rows)), f"{prefix}_met": str(sum(rectifies(r["rotation"]) for r in rows)),
            f"{prefix}_best": "n/a" if best is None else best["name"],
            f"{prefix}_best_slope": "n/a" if best is None else f"{abs(best['rotation']['slope']):.2f}",
            f"{prefix}_best_r": "n/a" if best is None else f"{abs(best['rotation']['r']):.2f}",
            f"{prefix}_scale_min": f"{scales[0]:.2f}" if scales else "n/a",
            f"{prefix}_scale_max": f"{scales[-1]:.2f}" if scales else "n/a"}


def rectification_compared(rows: dict[str, list[dict]]) -> str:
    """For each cell measured under every label of ``rows`` (``{label: rectification_rows(...)}``, e.g. two model
    sizes), its rotation slope and |r| (and scale slope on RTS) under each label, in the order of the labels.

    Examples:
        >>> big = [{"cell": "R-st-cnn-affine", "name": "R ST-CNN Aff", "rotation": {"r": -0.84, "slope": -0.55}}]
        >>> small = [{"cell": "R-st-cnn-affine", "name": "R ST-CNN Aff", "rotation": {"r": -0.85, "slope": -0.6}},
        ...          {"cell": "R-st-fcn-affine", "name": "R ST-FCN Aff", "rotation": {"r": -0.7, "slope": -0.4}}]
        >>> rectification_compared({"400k": big, "150k": small})
        'R ST-CNN Aff: rotation slope 0.55 (|r| 0.84) at 400k against 0.60 (|r| 0.85) at 150k'
    """
    labels = list(rows)
    by_label = {label: {r["cell"]: r for r in rs} for label, rs in rows.items()}
    cells = [r["cell"] for r in rows[labels[0]] if all(r["cell"] in by_label[k] for k in labels)] if labels else []
    parts = []
    for cell in cells:
        got = [by_label[k][cell] for k in labels]
        rot = " against ".join(f"{abs(r['rotation']['slope']):.2f} (|r| {abs(r['rotation']['r']):.2f}) at {k}"
                               for k, r in zip(labels, got))
        text = f"{got[0]['name']}: rotation slope {rot}"
        if all(r.get("scale") for r in got):
            text += ", scale slope " + " against ".join(f"{r['scale']['slope']:.2f}" for r in got)
        parts.append(text)
    return "; ".join(parts) or "no cell has been measured under every label"


def figure_rectified(model, kind: str = "R", n: int = 8, title: str = ""):
    """Test inputs (top) and the transformer's outputs (bottom), with the applied angle and the rotation the
    transformer's theta implies printed: outputs come out upright when the two cancel."""
    sim, data = implied_on_test(model, kind, n)
    with torch.no_grad():
        warped, _ = model.transform_input(data["x"])
    fig, axes = plt.subplots(2, n, figsize=(n * 1.1, 2.6))
    for c in range(n):
        imshow(axes[0, c], data["x"][c], f"{data['params']['angle_deg'][c]:+.0f}\N{DEGREE SIGN}", )
        imshow(axes[1, c], warped[c], f"{sim['rotation_deg'][c]:+.0f}\N{DEGREE SIGN}")
    axes[0, 0].set_ylabel("input\n(applied)", fontsize=8)
    axes[1, 0].set_ylabel("output\n(theta)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_rectification_over_training(runs: dict[str, dict], ax=None):
    """|slope| of the rotation fit at every evaluation of each run (the rectify experiment's probe)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for k, (label, m) in enumerate(runs.items()):
        pts = [(e["step"], abs(e["rect_slope"])) for e in m["eval_history"] if "rect_slope" in e]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=COLORS[k % len(COLORS)], label=label)
    ax.axhspan(0.8, 1.2, color="0.9", zorder=0, label="undone (|slope| 0.8-1.2)")
    ax.set(xlabel="training step", ylabel="|slope| of implied vs applied rotation", ylim=(0, 1.3))
    ax.legend(fontsize=7)
    return ax


def pose_by_class(theta: torch.Tensor, data: dict) -> dict[int, dict[str, float]]:
    """R180: the orientation each output digit ends up in (applied angle + the rotation theta implies; 0 =
    the pose the transformer maps every input to), per class, as circular statistics: ``resultant`` (1 = every
    output in one pose, 0 = no preferred pose) and ``mean_deg``; ``axial`` the same for the doubled angles (1 =
    every output in one pose *or its opposite*, 180 degrees away), ``axis_deg`` that axis; and, for comparison,
    ``input_axial``, the axial concentration of the inputs themselves (near 0: they are uniformly rotated)."""
    from stnlib.analysis import implied_similarity

    rot = implied_similarity(theta)["rotation_deg"].double()
    n = len(rot)
    applied = torch.deg2rad(data["params"]["angle_deg"][:n].double())
    pose = applied + torch.deg2rad(rot)

    def circ(a: torch.Tensor) -> tuple[float, float]:
        s, c = torch.sin(a).mean(), torch.cos(a).mean()
        return float(torch.hypot(s, c)), float(torch.rad2deg(torch.atan2(s, c)))

    out = {}
    for c in range(10):
        sel = data["y"][:n] == c
        r1, m1 = circ(pose[sel])
        r2, m2 = circ(2 * pose[sel])
        out[c] = {"resultant": r1, "mean_deg": m1, "axial": r2, "axis_deg": m2 / 2,
                  "input_axial": circ(2 * applied[sel])[0]}
    return out


def plot_pose_by_class(theta: torch.Tensor, data: dict, bins: int = 36):
    """Per class, the histogram of the output orientation (see :func:`pose_by_class`)."""
    from stnlib.analysis import implied_similarity

    rot = implied_similarity(theta)["rotation_deg"]
    pose = (data["params"]["angle_deg"][: len(rot)].float() + rot + 180) % 360 - 180
    fig, axes = plt.subplots(2, 5, figsize=(10, 3.6), sharex=True)
    for c, ax in enumerate(axes.flat):
        ax.hist(pose[data["y"][: len(rot)] == c], bins=bins, range=(-180, 180), color=COLORS[2])
        ax.set_title(f"digit {c}", fontsize=9)
        ax.set_yticks([])
    for ax in axes[1]:
        ax.set_xlabel("output pose (deg)", fontsize=8)
    fig.tight_layout()
    return fig


# ---- the paper's schedule -------------------------------------------------------------------------------

def paper_progress(cells: Sequence[str] | None = None, profile: str = "paper") -> dict[str, dict]:
    """Each cell's state in ``profile`` (default: the paper's schedule): finished (its metrics) or in progress
    (step, eval history and compute segments read from its committed checkpoint); cells not started are left
    out."""
    import json

    from stnbook.experiments import artifact_dir, get_cells, get_profile, run_dir_of
    from stnlib.io import safe_torch_load

    steps = get_profile("table1", profile).steps
    out = {}
    for cell in get_cells("table1", list(cells) if cells else None):
        done = artifact_dir(cell, profile) / "metrics.json"
        ckpt = run_dir_of(cell, profile) / "checkpoint.pt"
        if done.exists():
            m = json.loads(done.read_text())
            out[cell.id] = {"state": "finished", "step": m["steps"], "of": steps, "eval_history": m["eval_history"],
                            "segments": m.get("segments", []), "error": m["test_error"]}
        elif ckpt.exists():
            st = safe_torch_load(ckpt, map_location="cpu")
            evals = st["eval_history"]
            out[cell.id] = {"state": "in progress", "step": int(st["step"]), "of": steps, "eval_history": evals,
                            "segments": st.get("segments", []), "error": evals[-1]["error"] if evals else None}
    return out


def paper_progress_key_numbers(progress: dict[str, dict]) -> dict[str, str]:
    """The numbers the paper-schedule section quotes (keys ``paper_*``): runs started (``cells``) and finished
    (``finished``), the fewest and most steps reached (``min_step``, ``max_step``), and the evaluations at which an
    ST-CNN and the CNN of its column were both evaluated (``comparisons``), with how many had the ST-CNN lower
    (``st_below``).

    Examples:
        >>> ev = lambda *e: [{"step": 10_000 * (k + 1), "error": v} for k, v in enumerate(e)]
        >>> k = paper_progress_key_numbers({
        ...     "R-cnn": {"state": "in progress", "step": 30_000, "eval_history": ev(3.0, 2.0, 1.5)},
        ...     "R-st-cnn-affine": {"state": "in progress", "step": 20_000, "eval_history": ev(2.0, 2.5)}})
        >>> k["paper_comparisons"], k["paper_st_below"], k["paper_min_step"], k["paper_max_step"]
        ('2', '1', '20,000', '30,000')
    """
    comparisons = below = 0
    for c, p in progress.items():
        dist, _, rest = c.partition("-")
        if not rest.startswith("st-cnn-") or f"{dist}-cnn" not in progress:
            continue
        plain = {e["step"]: e["error"] for e in progress[f"{dist}-cnn"]["eval_history"]}
        for e in p["eval_history"]:
            if e["step"] in plain:
                comparisons += 1
                below += e["error"] < plain[e["step"]]
    steps = [p["step"] for p in progress.values()]
    return {"paper_cells": str(len(progress)), "paper_finished": str(sum(p["state"] == "finished" for p in progress.values())),
            "paper_min_step": f"{min(steps):,}" if steps else "0", "paper_max_step": f"{max(steps):,}" if steps else "0",
            "paper_comparisons": str(comparisons), "paper_st_below": str(below)}


def _segments_text(segments: list[dict]) -> str:
    parts = []
    for sg in segments:
        hw = sg.get("hardware") or {}
        where = hw.get("cuda_device") or hw.get("cpu_model") or "?"
        parts.append(f"{sg['to_step'] - sg['from_step']:,} steps in {sg['wall_time_s'] / 60:.0f} min on {where}")
    return "; ".join(parts)


def paper_progress_html(progress: dict[str, dict]) -> str:
    """HTML table: paper vs our latest evaluation per paper-profile cell, with its progress and compute."""
    paper = _paper_by_cell()
    body = [[_cell_name(c), paper.get(c, "&ndash;"), "&ndash;" if p["error"] is None else f"<b>{p['error']:.2f}</b>",
             f"{p['step']:,} of {p['of']:,}" + (" (finished)" if p["state"] == "finished" else ""),
             _segments_text(p["segments"])] for c, p in progress.items()]
    return html_table(["cell", "paper % error", "ours, latest evaluation", "steps", "compute"], body)


def plot_paper_progress(progress: dict[str, dict]):
    """Test error at every evaluation of the paper-profile runs (log scale), the paper's number dotted."""
    paper = _paper_by_cell()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for k, (c, p) in enumerate(progress.items()):
        pts = [(e["step"], e["error"]) for e in p["eval_history"]]
        if not pts:
            continue
        color = COLORS[k % len(COLORS)]
        ax.plot(*zip(*pts), marker="o", ms=3, color=color, label=_cell_name(c))
        if paper.get(c) is not None:
            ax.axhline(paper[c], color=color, ls=":", lw=1)
    ax.axvline(50_000, color="0.6", lw=0.8)
    ax.text(50_500, ax.get_ylim()[1] * 0.9, "lr / 10", fontsize=7, color="0.4")
    ax.set(xlabel="SGD step (batch 256)", ylabel="% test error", yscale="log", xlim=(0, 150_000))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
