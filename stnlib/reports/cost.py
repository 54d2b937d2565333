"""Figures and tables of the cost chapter, from the benchmark artifacts in results/bench/ and the Table 1 runs."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt

from ..paths import results_dir
from ..viz import COLORS

PAPER_CLAIM = ("ST-CNN Multi is 'only 6% slower (forward and backward pass) than the CNN' (SVHN, GPU); the module is "
               "'computationally very fast' with 'very little time overhead'.")


def load_bench(name: str) -> dict | None:
    """A benchmark artifact (e.g. "sampler-cpu"), or None with a note saying which command makes it."""
    path = results_dir() / "bench" / f"{name}.json"
    if not path.exists():
        what = name.split("-")[0]
        print(f"[no {path.name} yet: `python -m stnlib.bench {what}` makes it]")
        return None
    return json.loads(path.read_text())


def provenance(result: dict) -> str:
    hw = result["hardware"]
    return (f"`{result['command']}`, {hw.get('cpu_model', hw.get('cuda_device', '?'))} x{hw.get('cpu_count')} "
            f"({hw.get('device')}, {hw.get('torch_threads')} threads, torch {hw.get('torch_version')}), {result['finished']}. "
            "Medians of interleaved rounds on a machine other jobs shared.")


def plot_sampler(result: dict):
    """Forward and forward+backward speed-up over F.affine_grid + F.grid_sample, per shape and path."""
    rows = result["rows"]
    paths = list(rows[0]["forward_speedup_vs_torch_eager"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, key, title in [(axes[0], "forward_speedup_vs_torch_eager", "forward"),
                           (axes[1], "forward_backward_speedup_vs_torch_eager", "forward + backward")]:
        width = 0.8 / len(paths)
        for k, p in enumerate(paths):
            ax.bar([i + k * width for i in range(len(rows))], [r[key][p] for r in rows], width, label=p, color=COLORS[k])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
        ax.set_xticklabels([f"{r['channels']}ch {r['side']}px" for r in rows])
        ax.set_title(f"{title}: speed-up vs torch eager")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sampler_table(result: dict) -> str:
    """Markdown table of images/s per path and shape."""
    rows = result["rows"]
    paths = list(rows[0]["forward_images_per_s"])
    head = "| shape | " + " | ".join(f"{p} fwd / fwd+bwd (img/s)" for p in paths) + " |"
    lines = [head, "|" + "---|" * (len(paths) + 1)]
    for r in rows:
        cells = [f"{r['forward_images_per_s'][p]:,.0f} / {r['forward_backward_images_per_s'][p]:,.0f}" for p in paths]
        lines.append(f"| {r['channels']}ch {r['side']}px | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead_table(result: dict) -> str:
    """Markdown table: training-step time of each ST model relative to its plain classifier."""
    lines = ["| input | model | step (ms) | vs plain | parameters |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        for k, ms in r["step_ms"].items():
            lines.append(f"| {r['setup']} {'x'.join(map(str, r['input']))} | {k} | {ms:.1f} | "
                         f"{r['ratio_vs_plain'][k]:.2f}x | {r['params'][k]:,} |")
    return "\n".join(lines)


def plot_breakdown(result: dict):
    """Where an ST-CNN training step's time goes."""
    parts = result["ms"]
    fig, ax = plt.subplots(figsize=(7, 1.8))
    left = 0.0
    for k, (name, ms) in enumerate(parts.items()):
        ax.barh(0, ms, left=left, color=COLORS[k % len(COLORS)], label=f"{name} ({ms:.1f} ms)")
        left += ms
    ax.set_yticks([])
    ax.set_xlabel("ms per training step")
    ax.set_title(result["model"])
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    fig.tight_layout()
    return fig


def time_to_error(metrics: dict) -> list[tuple[int, float, float]]:
    """(step, test error %, approximate training seconds) from a run's evaluation history.

    Seconds are the run's wall time scaled by step / total steps (evaluations included, spread evenly).
    """
    total = metrics["steps"]
    return [(e["step"], e["error"], metrics["wall_time_s"] * e["step"] / total) for e in metrics["eval_history"]]
