"""What every chapter's report module shares: where a chapter's numbers come from, and how to say so."""

from __future__ import annotations

from ..experiments import get_cells, load_cell, load_results, run
from ..paths import results_dir

SMOKE_ROOT = "runs"  # smoke artifacts go under results/runs/ (git-ignored)


def chapter_results(experiment: str, profile: str, smoke_cells: list[str] | None = None) -> tuple[dict[str, dict], str]:
    """(metrics by cell, profile they come from). "artifacts": the committed full run; "smoke": train
    ``smoke_cells`` (default every cell) now with the smoke budget, into the ignored ``results/runs``."""
    if profile == "artifacts":
        return load_results(experiment, "full"), "full"
    if profile != "smoke":
        raise ValueError(f"profile must be 'artifacts' or 'smoke', got {profile!r}")
    return run(experiment, "smoke", smoke_cells, progress=False, root=results_dir() / SMOKE_ROOT), "smoke"


def chapter_cell(experiment: str, cell: str, profile: str):
    """(metrics, model, analysis) of one cell for the chapter's profile, or None (with a note saying which
    command makes it) when that cell has no artifact yet."""
    c = get_cells(experiment, [cell])[0]
    prof = "full" if profile == "artifacts" else "smoke"
    try:
        return load_cell(c, "full") if profile == "artifacts" else load_cell(c, "smoke", root=results_dir() / SMOKE_ROOT)
    except FileNotFoundError:
        print(f"[{cell} has no {prof} artifact yet: `python -m stnlib.experiments run {experiment} --profile {prof} "
              f"--cells {cell}` makes it]")
        return None


def provenance(results: dict[str, dict], experiment: str) -> str:
    """One sentence naming the command, profile, hardware and total time behind ``results``."""
    if not results:
        return "No artifacts found."
    any_m = next(iter(results.values()))
    hw = any_m["hardware"]
    total = sum(m["wall_time_s"] for m in results.values())
    dates = sorted(m["finished"] for m in results.values())
    return (f"{len(results)} cells from `python -m stnlib.experiments run {experiment} --profile {any_m['profile']}` "
            f"({any_m['profile_description']}); hardware: {hw.get('cpu_model', '?')} x{hw.get('cpu_count', '?')} "
            f"({hw.get('device')}, {hw.get('torch_threads')} thread(s), torch {hw.get('torch_version')}); "
            f"total training time {total / 60:.1f} min; finished {dates[0]} to {dates[-1]}. Times were measured "
            f"while other jobs shared the cores, so they overstate what each cell costs alone.")
