"""Figures and tables of the cost chapter, from the benchmark artifacts in results/bench/ and the Table 1 runs."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt

from stnbook.figures import COLORS, html_table
from stnbook.paths import results_dir

PAPER_CLAIM = ("ST-CNN Multi is 'only 6% slower (forward and backward pass) than the CNN' (SVHN, GPU); the module is "
               "'computationally very fast' with 'very little time overhead'.")


def load_bench(name: str) -> dict | None:
    """A benchmark artifact (e.g. "sampler-cpu"), or None with a note saying which command makes it."""
    path = results_dir() / "bench" / f"{name}.json"
    if not path.exists():
        what = name.split("-")[0]
        print(f"[no {path.name} yet: `python -m stnbook.cost.bench {what}` makes it]")
        return None
    return json.loads(path.read_text())


def note(result: dict) -> str:
    """The source line under a table or figure, as HTML."""
    return f"<p><small>Source: {provenance(result)}</small></p>"


def provenance(result: dict) -> str:
    hw = result["hardware"]
    where = (f"{hw['cuda_device']} (torch {hw.get('torch_version')})" if hw.get("cuda_device") else
             f"{hw.get('cpu_model', '?')} x{hw.get('cpu_count')}, {hw.get('torch_threads')} thread(s), "
             f"torch {hw.get('torch_version')}")
    return f"<code>{result['command']}</code>, {where}, {result['finished']}; medians of interleaved rounds."


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
    """HTML table of images/s per path and shape (forward / forward + backward)."""
    rows = result["rows"]
    paths = list(rows[0]["forward_images_per_s"])
    body = [[f"{r['channels']}ch {r['side']}px"]
            + [f"{r['forward_images_per_s'][p]:,.0f} / {r['forward_backward_images_per_s'][p]:,.0f}" for p in paths]
            for r in rows]
    return html_table(["shape"] + [f"{p}<br><small>fwd / fwd+bwd, img/s</small>" for p in paths], body)


def overhead_table(result: dict) -> str:
    """HTML table: training-step time of each ST model relative to its plain classifier."""
    body = [[f"{r['setup']} {'x'.join(map(str, r['input']))}", k, f"{ms:.1f}", f"{r['ratio_vs_plain'][k]:.2f}x",
             f"{r['params'][k]:,}"] for r in result["rows"] for k, ms in r["step_ms"].items()]
    return html_table(["input", "model", "step (ms)", "vs plain", "parameters"], body)


def step_table(cpu: dict, gpu: dict | None = None) -> str:
    """Speed-up of each candidate over fp32 eager, per model (CPU), with the GPU's best beside it."""
    cands = list(cpu["rows"][0]["speedup_vs_fp32_eager"])[1:]
    gpu_rows = {r["model"]: r for r in (gpu or {}).get("rows", [])}
    header = ["model", "fp32 step (ms)"] + cands + (["GPU: fp32 step (ms)", "GPU: bf16 autocast"] if gpu else [])
    body = []
    for r in cpu["rows"]:
        sp = r["speedup_vs_fp32_eager"]
        best = max(cands, key=lambda c: sp.get(c, 0))
        cells = [f"<b>{sp[c]:.2f}x</b>" if c == best else f"{sp[c]:.2f}x" for c in cands]
        extra = []
        if gpu:
            g = gpu_rows.get(r["model"])
            extra = ["&ndash;", "&ndash;"] if g is None else [
                f"{g['ms_per_step_of_128']['fp32 eager (baseline)']:.1f}", f"{g['speedup_vs_fp32_eager']['bf16 autocast']:.2f}x"]
        body.append([r["model"], f"{r['ms_per_step_of_128']['fp32 eager (baseline)']:.1f}", *cells, *extra])
    return html_table(header, body)


def adopted_speedups(cpu: dict) -> dict[str, float]:
    """Speed-up of the trainer's default (:func:`~stnlib.train.fast_settings`: channels-last + bf16 for
    convolutional models, fp32 for fully connected ones) over fp32 eager, per model of the step benchmark."""
    out = {}
    for r in cpu["rows"]:
        fcn_only = "FCN" in r["model"] and "CNN" not in r["model"]
        out[r["model"]] = 1.0 if fcn_only else r["speedup_vs_fp32_eager"]["channels-last + bf16"]
    return out


def floor_table(result: dict) -> str:
    """HTML table: ST-CNN step, CNN step, the floor and its parts, and the two ratios, per canvas."""
    parts = ["classifier incl. input gradient", "localisation net", "grid generator + sampler", "Adam update"]
    body = [[f"{r['setup']} {r['input'][1]}px", f"{r['ms']['ST-CNN step']:.1f}", f"{r['ms']['CNN step']:.1f}",
             " + ".join(f"{r['ms'][p]:.1f}" for p in parts) + f" = {r['floor_ms']:.1f}",
             f"{r['st_over_floor']:.2f}x", f"{r['st_over_cnn']:.2f}x"] for r in result["rows"]]
    return html_table(["canvas", "ST-CNN step (ms)", "CNN step (ms)", "floor (ms): " + " + ".join(parts),
                       "ST-CNN / floor", "ST-CNN / CNN"], body)


def precision_check(fp32: dict[int, dict[str, dict]], bf16: dict[int, dict[str, dict]]) -> tuple[str, dict]:
    """HTML table of test errors per seed under fp32 and bf16 + channels-last, and the summary per cell:
    mean and spread of each, and whether the difference of the means is within the seed spread."""
    import statistics

    cells = sorted({c for runs in (fp32, bf16) for per in runs.values() for c in per})
    body, summary = [], {}
    for c in cells:
        a = [fp32[s][c]["test_error"] for s in sorted(fp32) if c in fp32[s]]
        b = [bf16[s][c]["test_error"] for s in sorted(bf16) if c in bf16[s]]
        if not a or not b:
            continue
        sd = max(statistics.pstdev(a), statistics.pstdev(b), 1e-9) if len(a) > 1 and len(b) > 1 else float("nan")
        diff = statistics.mean(b) - statistics.mean(a)
        summary[c] = {"fp32": a, "bf16": b, "diff": diff, "seed_sd": sd, "within_noise": abs(diff) <= 2 * sd}
        body.append([c, ", ".join(f"{v:.2f}" for v in a), ", ".join(f"{v:.2f}" for v in b),
                     f"{diff:+.2f}", f"{sd:.2f}", "yes" if summary[c]["within_noise"] else "no"])
    table = html_table(["cell", "fp32 eager: % error per seed", "bf16 + channels-last", "difference of means",
                        "seed s.d.", "within 2 s.d.?"], body)
    return table, summary


def plot_breakdown(result: dict, device: str = "CPU"):
    """Where an ST-CNN training step's time goes."""
    parts = result["ms"]
    fig, ax = plt.subplots(figsize=(7, 1.8))
    left = 0.0
    for k, (name, ms) in enumerate(parts.items()):
        ax.barh(0, ms, left=left, color=COLORS[k % len(COLORS)], label=f"{name} ({ms:.1f} ms)")
        left += ms
    ax.set_yticks([])
    ax.set_xlabel("ms per training step")
    ax.set_title(f"{result['model']}, {device}")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    fig.tight_layout()
    return fig


def time_to_error(metrics: dict) -> list[tuple[int, float, float]]:
    """(step, test error %, approximate training seconds) from a run's evaluation history.

    Seconds are the run's wall time scaled by step / total steps (evaluations included, spread evenly).
    """
    total = metrics["steps"]
    return [(e["step"], e["error"], metrics["wall_time_s"] * e["step"] / total) for e in metrics["eval_history"]]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _verdict(ratio: float | None, device: str) -> str:
    if ratio is None:
        return "not measured"
    if ratio <= 1.06:
        return f"on the {device} the transformer costs no more than the paper's 6%"
    return f"on the {device} the transformer costs {100 * (ratio - 1):.0f}% more, well above the paper's 6%"


def key_numbers(b: dict[str, dict | None]) -> dict[str, str]:
    """The numbers the chapter's prose quotes, as strings, computed from the benchmark artifacts ``b``."""
    import statistics

    out: dict[str, str] = {}
    step = b.get("step-cpu")
    conv = [r["speedup_vs_fp32_eager"]["channels-last + bf16"] for r in (step or {}).get("rows", [])
            if "CNN" in r["model"] or "birds" in r["model"]]
    out["conv_speedup_min"] = _fmt(min(conv)) if conv else "n/a"
    out["conv_speedup_max"] = _fmt(max(conv)) if conv else "n/a"
    out["conv_speedup_median"] = _fmt(statistics.median(conv)) if conv else "n/a"
    proc = (step or {}).get("processes")
    out["proc_ratio"] = _fmt(proc["ratio_two_processes_vs_two_threads"]) if proc else "n/a"
    out["proc_model"] = proc["model"] if proc else "n/a"
    out["proc_two_single"] = f"{proc['two_single_thread_processes_steps_per_s']:.1f}" if proc else "n/a"
    out["proc_one_double"] = f"{proc['one_two_thread_process_steps_per_s']:.1f}" if proc else "n/a"
    floor = {r["setup"]: r for r in (b.get("floor-cpu") or {}).get("rows", [])}
    gpu = {r["setup"]: r for r in (b.get("overhead-cuda") or {}).get("rows", [])}
    for setup in ("R", "RTS", "TC"):
        cpu_ratio = floor[setup]["st_over_cnn"] if setup in floor else None
        gpu_ratio = gpu[setup]["ratio_vs_plain"].get("ST-CNN affine") if setup in gpu else None
        k = setup.lower()
        out[f"{k}_st_over_cnn"] = _fmt(cpu_ratio)
        out[f"gpu_{k}_st_over_cnn"] = _fmt(gpu_ratio)
        out[f"{k}_verdict"] = f"{_verdict(cpu_ratio, 'CPU')}; {_verdict(gpu_ratio, 'GPU')}"
    out["floor_max"] = _fmt(max(r["st_over_floor"] for r in floor.values())) if floor else "n/a"
    fcn = [r["ratio_vs_plain"]["ST-FCN affine"] for r in (b.get("overhead-cpu") or {}).get("rows", [])
           if "ST-FCN affine" in r["ratio_vs_plain"]]
    out["fcn_overhead_min"] = _fmt(min(fcn)) if fcn else "n/a"
    out["fcn_overhead_max"] = _fmt(max(fcn)) if fcn else "n/a"
    return out


def precision_runs(cells: tuple[str, ...] = ("RTS-st-cnn-affine", "R-st-fcn-affine"),
                   seeds: tuple[int, ...] = (0, 1, 2)) -> tuple[dict, dict]:
    """{seed: {cell: metrics}} of the check-fp32 and check-bf16 profiles (committed artifacts; seeds missing left out)."""
    from stnbook.experiments import load_results

    def load(profile: str) -> dict:
        out = {}
        for seed in seeds:
            got = {c: m for c, m in load_results("table1", profile, seed=seed).items() if c in cells}
            if got:
                out[seed] = got
        return out

    return load("check-fp32"), load("check-bf16")


def time_to_accuracy_runs() -> dict[str, dict]:
    """The RTS ST-CNN runs whose evaluation history the chapter's time-to-accuracy lists read, by label."""
    from stnbook.experiments import get_cells, load_cell

    cell = get_cells("table1", ["RTS-st-cnn-affine"])[0]
    runs = {}
    for label, profile, seed in [("full profile, fp32, seed 0", "full", 0),
                                 ("long profile, bf16 + channels-last, seed 1 (3-4 jobs sharing the 2 cores)", "long", 1),
                                 ("long profile, bf16 + channels-last, seed 2 (at most one other job)", "long", 2)]:
        try:
            metrics, _, _ = load_cell(cell, profile, seed=seed)
        except FileNotFoundError:
            continue
        runs[label] = metrics
    return runs
