"""What every chapter's report module shares: where a chapter's numbers come from, and how to say so."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt

from stnbook.experiments import get_cells, load_cell, load_results, run
from stnbook.figures import html_table
from stnbook.paths import results_dir

SMOKE_ROOT = "runs"  # smoke artifacts go under results/runs/ (git-ignored)


def chapter_results(experiment: str, profile: str, smoke_cells: list[str] | None = None) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile they come from). "artifacts": the committed full run; "smoke": train
    ``smoke_cells`` (default every cell) now with the smoke budget, into the ignored ``results/runs``."""
    if profile == "artifacts":
        return load_results(experiment, "full"), "full"
    if profile != "smoke":
        raise ValueError(f"profile must be 'artifacts' or 'smoke', got {profile!r}")
    return run(experiment, "smoke", smoke_cells, progress=False, root=results_dir() / SMOKE_ROOT), "smoke"


def budget_numbers(profile) -> dict[str, str]:
    """A profile's training budget for a chapter's text (keys ``full_steps``, ``full_batch``, ``full_epochs`` over
    the MNIST training set or the profile's subset, and ``full_test_size`` when the profile fixes one).

    Examples:
        >>> from stnbook.experiments import Profile
        >>> budget_numbers(Profile("full", steps=12_000, batch_size=128))
        {'full_steps': '12,000', 'full_batch': '128', 'full_epochs': '25.6'}
    """
    from stnlib.data.mnist import MNIST_COUNTS

    out = {"full_steps": f"{profile.steps:,}", "full_batch": f"{profile.batch_size}",
           "full_epochs": f"{round(profile.steps * profile.batch_size / (profile.train_size or MNIST_COUNTS['train']), 1):g}"}
    if profile.test_size is not None:
        out["full_test_size"] = f"{profile.test_size:,}"
    return out


def missing_note(experiment: str, cells: list[str], results: dict[str, dict], source: str,
                 label=lambda cell: cell) -> str:
    """One paragraph: which of ``cells`` have no artifact in ``results`` and the command that makes them ("" when
    none is missing); ``label`` names a cell for the reader."""
    from stnbook.experiments import get_profile

    missing = [c for c in cells if c not in results]
    if not missing:
        return ""
    command = f"python -m stnbook run {experiment} --profile full"
    return (f"No {source}-profile artifact yet for {', '.join(label(c) for c in missing)}: `{command}"
            + ("" if len(missing) == len(cells) else f" --cells {' '.join(missing)}")
            + f"` makes {'it' if len(missing) == 1 else 'them'} ({get_profile(experiment, 'full').description}).")


def chapter_cell(experiment: str, cell: str, profile: str):
    """(metrics, model, analysis) of one cell for the chapter's profile, or None (with a note saying which
    command makes it) when that cell has no artifact yet. ``profile``: "artifacts" (the committed full
    run), "smoke" (this run's smoke artifacts) or the name of another committed profile (e.g. "long")."""
    c = get_cells(experiment, [cell])[0]
    prof = {"artifacts": "full"}.get(profile, profile)
    try:
        return load_cell(c, "smoke", root=results_dir() / SMOKE_ROOT) if profile == "smoke" else load_cell(c, prof)
    except FileNotFoundError:
        print(f"[{cell} has no {prof} artifact yet: `python -m stnbook run {experiment} --profile {prof} "
              f"--cells {cell}` makes it]")
        return None


def cell_figures(experiment: str, profile: str, cells, draw: Callable) -> list:
    """``draw(cell, metrics, model, analysis)`` for each of ``cells`` that has an artifact in the chapter's
    ``profile`` (see :func:`chapter_cell`); the figures, in order."""
    figs = []
    for c in cells:
        got = chapter_cell(experiment, c, profile)
        if got is not None:
            figs.append(draw(c, *got))
    return figs


def provenance(results: dict[str, dict], experiment: str) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``; where the cells (or
    the segments of a resumed cell) ran on more than one machine, each machine with the number of cells it trained.

    Examples:
        >>> amd, xeon = {"cpu_model": "AMD EPYC", "cpu_count": 2}, {"cpu_model": "Intel(R) Xeon(R) Processor"}
        >>> m = {"profile": "adam", "profile_description": "d", "wall_time_s": 60.0, "finished": "2026-12-01",
        ...      "hardware": {**amd, "device": "cpu", "torch_threads": 1, "torch_version": "2"}}
        >>> provenance({"a": m}, "x").split("; ")[1]
        'hardware: AMD EPYC x2 (cpu, 1 thread(s), torch 2)'
        >>> later = {**m, "finished": "2026-12-02", "segments": [{"hardware": amd}, {"hardware": xeon}]}
        >>> provenance({"a": m, "b": later}, "x").split("; ")[1]
        'hardware: AMD EPYC (2 cells), Intel Xeon (1 cell) (cpu, 1 thread(s), torch 2)'
    """
    if not results:
        return "No artifacts found."
    any_m = max(results.values(), key=lambda m: m["finished"])  # the newest names the profile as it is now
    hw = any_m["hardware"]
    cells_on: dict[str, int] = {}
    for m in results.values():
        for where in dict.fromkeys(machine_name(sg.get("hardware") or {}) for sg in m.get("segments") or [m]):
            cells_on[where] = cells_on.get(where, 0) + 1
    machines = (f"{hw.get('cpu_model', '?')} x{hw.get('cpu_count', '?')}" if len(cells_on) == 1 else
                ", ".join(f"{w} ({n} cell{'s' if n > 1 else ''})" for w, n in cells_on.items()))
    total = sum(m["wall_time_s"] for m in results.values())
    dates = sorted(m["finished"] for m in results.values())
    return (f"{len(results)} cells from `python -m stnbook run {experiment} --profile {any_m['profile']}` "
            f"({any_m['profile_description']}); hardware: {machines} "
            f"({hw.get('device')}, {hw.get('torch_threads')} thread(s), torch {hw.get('torch_version')}); "
            f"total training time {total / 60:.1f} min; finished {dates[0]} to {dates[-1]}. Times were measured "
            f"while other jobs shared the cores, so they overstate what each cell costs alone.")


def profiles_html(full: dict[str, dict], long: dict[str, dict], paper: dict[str, float | None],
                  name: Callable[[str], str], note: Callable[[dict], str] = lambda m: "",
                  labels: tuple[str, str] = ("full", "long"), ref_label: str = "paper") -> str:
    """HTML: per cell of ``long``, the reference % error (``paper``, its column headed ``ref_label``), ours in
    the full and in the long profile (steps x batch and minutes below each; the two columns headed
    "ours, <label>"), plus ``note(metrics)`` (HTML) under ours."""
    rows = []
    for c, m_long in long.items():
        cols = []
        for m in (full.get(c), m_long):
            cols.append("&ndash;" if m is None else
                        f"<b>{m['test_error']:.2f}</b><br><small>{m['steps']:,} steps x {m['batch_size']}, "
                        f"{m['wall_time_s'] / 60:.1f} min</small>{note(m)}")
        ref = paper.get(c)
        rows.append(f"<tr><th>{html.escape(name(c))}</th><td>{'&ndash;' if ref is None else ref}</td>"
                    + "".join(f"<td>{v}</td>" for v in cols) + "</tr>")
    heads = "".join(f"<th>ours, {html.escape(label)}</th>" for label in labels)
    return (f"<table class='stn-table'><tr><th>% test error</th><th>{html.escape(ref_label)}</th>" + heads + "</tr>" + "".join(rows)
            + "</table>")


def profile_gaps_html(full: dict[str, dict], long: dict[str, dict], paper: dict[str, float | None],
                      name: Callable[[str], str]) -> str:
    """HTML table: per cell of ``long``, our % error in the full and the long profile, how many times the full
    profile's training examples (steps x batch) the long one saw, the paper's error and the gap to it in each."""
    rows = []
    for c, m in long.items():
        f, ref = full.get(c), paper.get(c)
        ratio = None if f is None else m["steps"] * m["batch_size"] / (f["steps"] * f["batch_size"])
        rows.append([name(c), "" if f is None else f"{f['test_error']:.2f}", f"{m['test_error']:.2f}",
                     "" if ratio is None else f"{ratio:.0f}x", "" if ref is None else f"{ref}",
                     "" if f is None or ref is None else f"{f['test_error'] - ref:+.2f}",
                     "" if ref is None else f"{m['test_error'] - ref:+.2f}"])
    return html_table(["% test error", "ours, full", "ours, long", "training examples, long / full", "paper",
                       "gap to the paper, full (points)", "gap, long (points)"], rows, escape=True, row_headers=True)


def plot_eval_curves(runs: dict[str, dict], paper: dict[str, float | None], name: Callable[[str], str],
                     chance: float | None = None, ylim: tuple[float, float] | None = None, log: bool = False):
    """Test error against step for each run (its ``eval_history``), the paper's number dotted in the same
    colour, and chance dashed. The learning rate decays to zero over each run, so a point is not what a
    shorter run would have reached."""
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(5.8, 3.3))
    for c, m in runs.items():
        ev = m["eval_history"]
        line, = ax.plot([e["step"] for e in ev], [e["error"] for e in ev], marker="o", ms=3, label=name(c))
        if paper.get(c) is not None:
            ax.axhline(paper[c], color=line.get_color(), ls=":", lw=1)
    if chance is not None:
        ax.axhline(chance, color="0.4", ls="--", lw=1, label="chance")
    batch = next(iter(runs.values()))["batch_size"]
    ax.set(xlabel=f"step (batch {batch})", ylabel="% test error (dotted: paper)")
    if log:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def machine_name(hardware: dict) -> str:
    """A run segment's machine in short: the GPU, else the CPU model without its trademark noise.

    Examples:
        >>> machine_name({"cpu_model": "Intel(R) Xeon(R) Processor"}), machine_name({"cuda_device": "NVIDIA H200"})
        ('Intel Xeon', 'NVIDIA H200')
    """
    return hardware.get("cuda_device") or (hardware.get("cpu_model") or "?").replace("(R)", "").replace(" Processor", "")


def compute_where(m: dict) -> str:
    """Where a run's steps were trained, from its compute segments: "60,000 steps on Intel Xeon" or, for a run
    continued on other hardware, each device's share ("44k on NVIDIA H200, 16k on Intel Xeon").

    Examples:
        >>> cpu = {"device": "cpu", "cpu_model": "Intel(R) Xeon(R) Processor"}
        >>> gpu = {"device": "cuda:0", "cuda_device": "NVIDIA H200"}
        >>> compute_where({"steps": 60000, "segments": [{"from_step": 0, "to_step": 60000, "hardware": cpu}]})
        '60,000 steps on Intel Xeon'
        >>> compute_where({"steps": 60000, "segments": [{"from_step": 0, "to_step": 44000, "hardware": gpu},
        ...                {"from_step": 44000, "to_step": 60000, "hardware": cpu}]})
        '44k steps on NVIDIA H200, 16k on Intel Xeon'
    """
    shares: dict[str, int] = {}
    for sg in m.get("segments") or []:
        where = machine_name(sg.get("hardware") or {})
        shares[where] = shares.get(where, 0) + sg["to_step"] - sg["from_step"]
    if not shares:
        return "" if m.get("steps") is None else f"{m['steps']:,} steps"
    if len(shares) == 1:
        where, n = next(iter(shares.items()))
        return f"{n:,} steps on {where}"
    parts = [f"{n / 1000:.0f}k" + (" steps" if k == 0 else "") + f" on {w}" for k, (w, n) in enumerate(shares.items())]
    return ", ".join(parts)


def seed_rows(by_seed: dict[int, dict[str, dict]], cells: Sequence[str], paper: dict[str, float | None]) -> list[dict]:
    """Per cell: the paper's error (from ``paper``), ours per finished seed (``errors``: {seed: %}), their mean,
    sample standard deviation (``std``, None under 2 seeds), min and max, and where each seed's run was trained
    (``where``).

    Examples:
        >>> rows = seed_rows({0: {"R-cnn": {"test_error": 1.0, "steps": 10}}, 1: {"R-cnn": {"test_error": 1.2, "steps": 10}},
        ...                   2: {}}, cells=["R-cnn"], paper={"R-cnn": 1.2})
        >>> rows[0]["errors"], round(rows[0]["mean"], 2), round(rows[0]["std"], 3), rows[0]["paper"]
        ({0: 1.0, 1: 1.2}, 1.1, 0.141, 1.2)
    """
    rows = []
    for c in cells:
        runs = {s: r[c] for s, r in by_seed.items() if c in r}
        errs = {s: m["test_error"] for s, m in runs.items()}
        vals = list(errs.values())
        mean = sum(vals) / len(vals) if vals else None
        std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
        rows.append({"cell": c, "paper": paper.get(c), "errors": errs, "mean": mean, "std": std,
                     "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                     "where": {s: compute_where(m) for s, m in runs.items()}})
    return rows


def seed_table_html(rows: list[dict], seeds: Sequence[int], name: Callable[[str], str],
                    missing: str = "not finished") -> str:
    """HTML: per cell (:func:`seed_rows`; its name from ``name``), the paper, ours per seed (where it was trained
    below each; ``missing`` where a seed has no run), mean +- standard deviation."""
    body = []
    for r in rows:
        cols = [f"<b>{r['errors'][s]:.2f}</b><br><small>{r['where'][s]}</small>" if s in r["errors"] else missing
                for s in seeds]
        stat = "&ndash;" if r["mean"] is None else (
            f"<b>{r['mean']:.2f}</b>" + ("" if r["std"] is None else f" &plusmn; {r['std']:.2f}")
            + f"<br><small>{len(r['errors'])} seed{'s' if len(r['errors']) > 1 else ''}</small>")
        body.append([html.escape(name(r["cell"])), "&ndash;" if r["paper"] is None else r["paper"], *cols, stat])
    return html_table(["% test error", "paper", *[f"seed {s}" for s in seeds], "mean &plusmn; std"], body)
