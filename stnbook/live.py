"""Trained spatial transformers running in the static page: ONNX exports of committed models, the test digits
the page offers, and the page's markup.

``python -m stnbook.live export`` exports every model of :data:`LIVE_MODELS` from its committed artifact with
:func:`stnlib.export.export_onnx` into ``book/_static/stn/live/`` (committed), checks each file with onnxruntime
against PyTorch on rotated test digits, and writes ``manifest.json`` (source artifact and its model.pt sha256,
the ONNX file's sha256, the largest differences, opset, versions) and ``digits.json`` (the upright test digits
the page starts from). ``python -m stnbook.live check`` says whether the exports are current: an export whose
source artifact changed is stale. The page (``book/live.ipynb``) runs them with onnxruntime-web
(``_static/stn/live.js``), the WebAssembly build vendored from npm, with no CDN.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import platform
import sys
from functools import lru_cache
from pathlib import Path

import torch

from stnbook.experiments import artifact_dir, get_cells, load_cell, read_metrics
from stnbook.paths import load_mnist
from stnbook.web import static_dir
from stnlib.analysis import warp
from stnlib.export import DEFAULT_OPSET, OUTPUT_NAMES, check_onnx, export_onnx
from stnlib.io import atomic_write_text, sha256_file
from stnlib.transforms.affine import affine_from_params

# name: (experiment, profile, cell, what the page calls it)
LIVE_MODELS: dict[str, tuple[str, str, str, str]] = {
    "r-st-cnn-affine": ("rectify", "full", "R-st-cnn-affine", "ST-CNN affine, trained on R (rotated digits)"),
    "r-st-fcn-affine": ("rectify", "full", "R-st-fcn-affine", "ST-FCN affine, trained on R (rotated digits)"),
}
DIGITS_PER_CLASS = 3  # upright MNIST test digits offered by the page: the first ones of each class
CHECK_SIZE = 512  # rotated test digits on which each export is compared with PyTorch
CHECK_SEED = 0
TOLERANCE = {"logits": 1e-3, "theta": 1e-4, "output": 1e-4}  # largest accepted |ONNX - PyTorch|


def live_dir() -> Path:
    """``book/_static/stn/live``: the exported models, their manifest and the page's digits."""
    return static_dir() / "live"


@lru_cache(maxsize=2)
def check_digits(n: int = CHECK_SIZE, seed: int = CHECK_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed set of MNIST test digits turned by angles uniform in +-90 degrees (the R distortion):
    (images (n, 1, 28, 28), angles (n,) degrees, labels (n,)); built once per (n, seed) in a process, treat it
    as read-only."""
    x, y = load_mnist("test")
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(n, generator=g) * 180 - 90
    theta = torch.stack([affine_from_params(float(a)) for a in angles])
    images = x[:n].float().div(255)[:, None] if x.dim() == 3 else x[:n].float()
    return warp(images, theta, "affine"), angles, y[:n]


def page_digits() -> dict:
    """The upright test digits the page offers: the first :data:`DIGITS_PER_CLASS` of each class."""
    x, y = load_mnist("test")
    picked = [int(i) for c in range(10) for i in (y == c).nonzero().flatten()[:DIGITS_PER_CLASS]]
    images = x[picked]
    if images.dim() == 4:
        images = images[:, 0]
    if images.dtype != torch.uint8:
        images = images.mul(255).round().clamp(0, 255).to(torch.uint8)
    return {"size": 28, "labels": [int(y[i]) for i in picked], "index": picked,
            "images": [base64.b64encode(img.contiguous().numpy().tobytes()).decode() for img in images]}


def export_all(force: bool = False, quiet: bool = False) -> dict:
    """Export every model of :data:`LIVE_MODELS` that is missing or stale; write the manifest and digits.

    Returns:
        the manifest.
    """
    out = live_dir()
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest()
    x, _, _ = check_digits()
    manifest = {"command": "python -m stnbook.live export", "opset": DEFAULT_OPSET,
                "torch": torch.__version__, "python": platform.python_version(), "models": {}}
    for name, (experiment, profile, cell_id, title) in LIVE_MODELS.items():
        cell = get_cells(experiment, [cell_id])[0]
        metrics, model, _ = load_cell(cell, profile)
        source_sha = metrics["files"]["model.pt"]
        path = out / f"{name}.onnx"
        entry = old.get("models", {}).get(name)
        current = (entry is not None and entry.get("source_sha256") == source_sha and path.is_file()
                   and sha256_file(path) == entry.get("sha256"))
        if force or not current:
            if not quiet:
                print(f"exporting {name} ({experiment}/{profile}/{cell_id}) ...", flush=True)
            export_onnx(model, path, x[:2], overwrite=True)
        diffs = check_onnx(model, path, x)
        bad = {k: v for k, v in diffs.items() if v > TOLERANCE[k]}
        if bad:
            raise RuntimeError(f"{path.name} differs from PyTorch by {bad} (tolerances {TOLERANCE})")
        manifest["models"][name] = {
            "file": path.name, "title": title, "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "source": {"experiment": experiment, "profile": profile, "cell": cell_id, "seed": metrics["seed"],
                       "test_error": metrics["test_error"], "params": metrics["params"], "steps": metrics["steps"],
                       "command": metrics["command"]},
            "source_sha256": source_sha, "source_path": artifact_dir(cell, profile).as_posix().split("results/", 1)[-1],
            "in_size": list(metrics["model_config"]["in_size"]), "max_abs_diff": diffs, "check_images": len(x)}
        if not quiet:
            print(f"  {name}: {path.stat().st_size / 1e3:.0f} kB, largest |ONNX - PyTorch| on {len(x)} rotated "
                  f"test digits: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()), flush=True)
    atomic_write_text(out / "digits.json", json.dumps(page_digits(), separators=(",", ":")))
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest() -> dict:
    path = live_dir() / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RuntimeError(f"{path} is not valid JSON ({e}); run `python -m stnbook.live export --force`") from e


def stale_exports() -> list[str]:
    """Names of :data:`LIVE_MODELS` whose export is missing, altered, or made from another artifact."""
    manifest = read_manifest().get("models", {})
    stale = []
    for name, (experiment, profile, cell_id, _) in LIVE_MODELS.items():
        entry = manifest.get(name)
        path = live_dir() / f"{name}.onnx"
        folder = artifact_dir(get_cells(experiment, [cell_id])[0], profile)
        source = read_metrics(folder / "metrics.json")["files"]["model.pt"]
        if (entry is None or not path.is_file() or sha256_file(path) != entry["sha256"]
                or entry["source_sha256"] != source):
            stale.append(name)
    return stale


def onnx_outputs(name: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the committed export ``name`` with onnxruntime (CPU) on ``x``: logits, theta, output."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(live_dir() / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {"x": x.float().numpy()})
    return {k: torch.from_numpy(v) for k, v in zip(OUTPUT_NAMES, got)}


def live_model(name: str):
    """(metrics, PyTorch model) of the committed artifact a live export comes from."""
    experiment, profile, cell_id, _ = LIVE_MODELS[name]
    metrics, model, _ = load_cell(get_cells(experiment, [cell_id])[0], profile)
    return metrics, model


def plot_gallery(name: str, n: int = 8):
    """Rotated test digits through the exported model, run by onnxruntime: the input with the sampling box,
    the transformer's output, and the predicted class."""
    import matplotlib.pyplot as plt

    from stnlib.geometry import sampling_outline

    x, angles, labels = check_digits()
    x, angles, labels = x[:n], angles[:n], labels[:n]
    out = onnx_outputs(name, x)
    outline = sampling_outline(out["theta"], "affine", 28)
    fig, axes = plt.subplots(2, n, figsize=(1.25 * n, 2.9))
    for k in range(n):
        a, b = axes[0, k], axes[1, k]
        a.imshow(x[k, 0], cmap="gray", vmin=0, vmax=1)
        a.plot(outline[k, :, 0], outline[k, :, 1], color="#ff9f1c", lw=1.5)
        a.set_title(f"turned {float(angles[k]):+.0f}\u00b0", fontsize=8)
        b.imshow(out["output"][k, 0], cmap="gray", vmin=0, vmax=1)
        pred = int(out["logits"][k].argmax())
        b.set_title(f"reads {pred}" + ("" if pred == int(labels[k]) else f" (is {int(labels[k])})"), fontsize=8)
        for ax in (a, b):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(-0.5, 27.5)
            ax.set_ylim(27.5, -0.5)
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("ST output", fontsize=9)
    fig.tight_layout()
    return fig


def rectification_by_onnx(name: str) -> dict:
    """How much of the applied rotation the exported transformer undoes, measured on the onnxruntime outputs
    (:func:`stnlib.analysis.rectification` of the implied rotation against the applied angle), and the
    error of the exported classifier, on the :func:`check_digits` set."""
    from stnlib.analysis import rectification, rotation_deg

    x, angles, labels = check_digits()
    out = onnx_outputs(name, x)
    rect = rectification(angles, rotation_deg(out["theta"]))
    return {**rect, "angles": angles, "recovered": rotation_deg(out["theta"]),
            "error": 100 * float((out["logits"].argmax(1) != labels).float().mean())}


def plot_rectification(names: list[str]):
    """The implied rotation of each exported transformer against the applied angle (onnxruntime outputs)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = rectification_by_onnx(name)
        ax.scatter(r["angles"], r["recovered"], s=5, alpha=0.5, color="#1f77b4")
        line = torch.tensor([-90.0, 90.0])
        ax.plot(line, -line, color="#2ca02c", lw=1, ls="--", label="undone exactly")
        ax.plot(line, r["slope"] * line + r["intercept"], color="#d62728", lw=1.5,
                label=f"fit: slope {r['slope']:.2f}, r = {r['r']:.2f}")
        ax.set_xlabel("applied rotation (degrees)")
        ax.set_ylabel("rotation of the transformer's grid")
        ax.set_title(LIVE_MODELS[name][3].split(",")[0] + " (onnxruntime)", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


# Scoped to the demo; colours from the theme's variables so that the light and dark modes both read.
LIVE_CSS = """
.stn-live {border: 1px solid var(--pst-color-border, #ccc); border-radius: 6px; padding: 0.8em; margin: 1em 0;}
.stn-live-top {margin-bottom: 0.5em;} .stn-live select {max-width: 100%;}
.stn-live-digits {display: flex; flex-wrap: wrap; gap: 3px; margin-bottom: 0.6em;}
.stn-live-thumb {width: 30px; height: 30px; image-rendering: pixelated; cursor: pointer; border: 2px solid transparent;}
.stn-live-thumb.stn-live-picked {border-color: #ff9f1c;}
.stn-live-row {display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start;}
.stn-live figure {margin: 0; max-width: 224px;} .stn-live canvas.stn-live-input, .stn-live canvas.stn-live-output
 {width: 224px; height: 224px; max-width: 100%; image-rendering: pixelated; display: block;}
.stn-live figcaption {font-size: 0.8em; line-height: 1.3;}
.stn-live-side {flex: 1 1 200px; min-width: 180px;} .stn-live-caption {font-weight: 600; margin-bottom: 0.3em;}
.stn-live-pred {display: flex; align-items: center; gap: 0.5em; margin: 0.15em 0;}
.stn-live-class {font-size: 1.3em; font-weight: 700; width: 1.2em;}
.stn-live-track {flex: 1; height: 0.8em; background: var(--pst-color-surface, #eee); border-radius: 3px;}
.stn-live-bar {display: block; height: 100%; background: #ff9f1c; border-radius: 3px;}
.stn-live-p {width: 3.6em; text-align: right; font-variant-numeric: tabular-nums;}
.stn-live-controls {display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 0.3em 1em;
 margin-top: 0.6em;}
.stn-live-controls label {display: flex; align-items: center; gap: 0.4em;} .stn-live-controls input {flex: 1;}
.stn-live-value {width: 3.5em; font-variant-numeric: tabular-nums;}
.stn-live-buttons button {margin-right: 0.5em;} .stn-live-buttons button[aria-pressed="true"] {font-weight: 700;}
.stn-live-status {font-size: 0.85em; margin: 0.5em 0 0;} .stn-live-error {color: #d62728; font-weight: 600;}
"""


def live_page_html(static: str = "../_static/stn") -> str:
    """The page's live demo: a ``<div class="stn-live">`` that ``live.js`` fills in (model picker, digit picker,
    sliders, drawing pad, the transformer's sampling box and output, the top predictions).

    Args:
        static: URL of ``_static/stn`` relative to the page.
    """
    cfg = {"static": static, "models": [{"name": n, "title": t[3]} for n, t in LIVE_MODELS.items()]}
    data = html.escape(json.dumps(cfg), quote=True)
    note = ("This demo runs a trained network in the browser with WebAssembly. It needs JavaScript, and the page "
            "must come from a web server (a browser refuses to load WebAssembly from a file:// address).")
    return (f"<style>{LIVE_CSS}</style>"
            f'<div class="stn-live" data-stn-live="{data}"><noscript>{html.escape(note)}</noscript></div>'
            f'<script src="{static}/explorer.js"></script>'
            f'<script src="{static}/vendor/onnxruntime-web/ort.wasm.min.js"></script>'
            f'<script src="{static}/live.js"></script>')


class LiveDemo:
    """Display object for the notebook: the live demo's markup as the cell's HTML output."""

    def _repr_html_(self) -> str:
        return live_page_html()

    def __repr__(self) -> str:
        return f"LiveDemo({', '.join(LIVE_MODELS)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stnbook.live", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    e = sub.add_parser("export", help="export the live models to book/_static/stn/live (missing or stale ones)")
    e.add_argument("--force", action="store_true", help="export again even when current")
    sub.add_parser("check", help="exit 1 if an export is missing or stale")
    args = parser.parse_args(argv)
    if args.action == "export":
        export_all(force=args.force)
        return 0
    stale = stale_exports()
    print("live exports current" if not stale else f"stale or missing: {', '.join(stale)}; "
          "run `python -m stnbook.live export`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
