"""The online book: theta explorers that run in the page, the landing and conventions figures, and offline web assets.

A static HTML book has no kernel, so ipywidgets sliders there render but do nothing. The explorers
here emit HTML plus the script ``book/_static/stn/explorer.js``, which re-implements the grid
generator and the sampler in the browser with stnlib's conventions (:mod:`stnlib.coords`:
normalised (x, y) coordinates, ``align_corners=False``, output -> input grids; :mod:`stnlib.sampler`:
the bilinear kernel of Eq. 5 with zeros outside), so what a reader sees while dragging a slider is
what :func:`stnlib.analysis.warp` computes, to float rounding (tests/test_web.py checks it in node).
The output is self-contained (image, theta and script inline): it works in the built book, in
Jupyter and in Colab, with no server and no CDN.

The book loads RequireJS, the ipywidgets embed manager and MathJax from ``book/_static/stn/vendor``
(``_config.yml``: ``nb_ipywidgets_js``, ``mathjax_path``) instead of public CDNs;
``python -m stnbook.web vendor`` puts them there: ``npm ci`` from the checkout's ``package.json`` and
``package-lock.json`` (versions and integrity pinned there), then the files the pages need are copied;
``scripts/setup.sh`` runs it.

The module is also a small Sphinx extension (``_config.yml``: ``sphinx.extra_extensions``) that drops
a duplicate inline script sphinx-thebe adds to every page (a console error otherwise).

Command line::

    python -m stnbook.web vendor     # npm ci + copy the web assets into book/_static/stn/vendor (idempotent)
    python -m stnbook.web check      # exit 1 if they are missing or stale
    python -m stnbook.web figures    # redraw the committed landing-page figure (book/_static/stn/figures)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

import torch

from stnbook.paths import project_root
from stnlib.coords import ALIGN_CORNERS, linspace_centres, normalized_to_pixel
from stnlib.transforms import Transform, get_transform

JS_FAMILIES = ("affine", "attention", "projective", "tps")


def static_dir() -> Path:
    """``book/_static/stn`` of this checkout: the explorer script, its vendored libraries and figures."""
    return project_root() / "book" / "_static" / "stn"


def explorer_js() -> str:
    """The source of the in-page explorer (``book/_static/stn/explorer.js``)."""
    path = static_dir() / "explorer.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the static explorer needs the STN Book checkout "
                                "(set STNBOOK_ROOT to it when running elsewhere)")
    return path.read_text()


# ---------------------------------------------------------------------------------------------- explorers

def _family(transform: str | Transform) -> tuple[str, dict]:
    tf = get_transform(transform)
    if tf.name not in JS_FAMILIES or (tf.name == "attention" and getattr(tf, "scale", None) is not None):
        raise ValueError(f"the in-page explorer supports {', '.join(JS_FAMILIES)} (attention with free scale), "
                         f"not {tf.name!r}" + (" with a fixed scale" if tf.name == "attention" else ""))
    extra = {"tps_grid_size": tf.grid_size} if tf.name == "tps" else {}
    return tf.name, extra


def _encode_image(image: torch.Tensor) -> tuple[str, tuple[int, int, int]]:
    """(C, H, W) or (H, W) float image -> base64 of its float32 values (little-endian, C-order) and (C, H, W)."""
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) or (H, W) tensor, got {shape}")
    img = image.detach().float().cpu()
    if img.dim() == 2:
        img = img[None]
    if img.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels, got {img.shape[0]}")
    data = img.contiguous().numpy().astype("<f4").tobytes()
    return base64.b64encode(data).decode("ascii"), tuple(img.shape)


def _theta_list(theta: torch.Tensor | Sequence[float] | None, transform: str | Transform) -> list[float] | None:
    if theta is None:
        return None
    tf = get_transform(transform)
    t = torch.as_tensor(theta, dtype=torch.float32).reshape(-1)
    if t.numel() != tf.num_params:
        raise ValueError(f"{tf.name} theta must have {tf.num_params} numbers, got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("theta must be finite")
    return [float(v) for v in t.tolist()]


class StaticExplorer:
    """An in-page explorer: ``_repr_html_`` gives a self-contained ``<div>`` with its data and script.

    Attributes:
        config: the JSON the script reads (image as base64 float32, sizes, family, theta(s)).
    """

    def __init__(self, config: dict):
        self.config = config

    @property
    def element_id(self) -> str:
        """A stable id derived from the content, so rebuilding the book gives identical pages."""
        digest = hashlib.sha1(json.dumps(self.config, sort_keys=True).encode()).hexdigest()
        return f"stn-explorer-{digest[:12]}"

    def html(self, include_script: bool = True) -> str:
        """The markup; without ``include_script`` the page must load ``_static/stn/explorer.js`` itself."""
        data = json.dumps(self.config, separators=(",", ":")).replace("</", "<\\/")
        noscript = "<noscript>This explorer needs JavaScript.</noscript>"
        out = (f'<div class="stn-explorer" id="{self.element_id}">'
               f'<script type="application/json" class="stn-config">{data}</script>{noscript}</div>')
        if include_script:
            js = explorer_js().replace("</script", "<\\/script")
            out += (f"<script>{js}\n;(function (s) {{ if (s && window.STNExplorer) "
                    f"{{ window.STNExplorer.mount(s.previousElementSibling); }} }})(document.currentScript);</script>")
        return out

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        n = len(self.config.get("items", [None]))
        return (f"StaticExplorer({self.config['transform']}, {self.config['height']}x{self.config['width']} -> "
                f"{self.config['out_height']}x{self.config['out_width']}, {n} item{'s' if n > 1 else ''})")


def static_theta_explorer(image: torch.Tensor, transform: str | Transform = "affine",
                          theta: torch.Tensor | Sequence[float] | None = None,
                          out_size: Sequence[int] | int | None = None, title: str | None = None,
                          zoom: int | None = None) -> StaticExplorer:
    """A theta explorer computed in the reader's browser: display it as a cell's last expression.

    Affine: sliders for rotation, scale, shear and translation (built as in
    :func:`stnlib.transforms.affine.affine_from_params`) and the six raw numbers, editable; attention:
    scale and translation sliders. Projective: drag the four corners of the sampled region (theta is the
    homography mapping the output square onto them, :func:`~stnlib.transforms.projective.homography_from_points`).
    TPS: drag the control points (theta is their source positions). The page shows the sampling grid
    over the image and the sampled output, both recomputed on every move with stnlib's conventions
    (``align_corners=False`` only, the library default).

    Args:
        image: (C, H, W) or (H, W) float image in [0, 1], C = 1 or 3.
        transform: "affine", "attention", "projective" or "tps" (any grid size), or such a Transform.
        theta: starting parameters (default the identity); "reset" returns to them.
        out_size: (H', W') of the output, default the image size.
        title: a caption above the explorer.
        zoom: screen pixels per image pixel (default: about 170 px for the image).

    Examples:
        >>> ex = static_theta_explorer(torch.zeros(1, 28, 28), "tps")
        >>> ex
        StaticExplorer(tps, 28x28 -> 28x28, 1 item)
        >>> ex.config["theta"] is None, ex.config["tps_grid_size"]
        (True, 4)
    """
    if ALIGN_CORNERS is not False:  # the script implements the library's one convention
        raise RuntimeError("the in-page explorer implements align_corners=False only")
    name, extra = _family(transform)
    data, (c, h, w) = _encode_image(image)
    oh, ow = (h, w) if out_size is None else ((out_size, out_size) if isinstance(out_size, int) else tuple(out_size))
    config = {"version": 1, "mode": "theta", "transform": name, "channels": c, "height": h, "width": w,
              "out_height": int(oh), "out_width": int(ow), "image": data, "theta": _theta_list(theta, transform),
              **extra}
    if title:
        config["title"] = title
    if zoom:
        config["zoom"] = int(zoom)
    return StaticExplorer(config)


def static_prediction_explorer(images: torch.Tensor, thetas: torch.Tensor, transform: str | Transform = "affine",
                               notes: Sequence[str] | None = None, out_size: Sequence[int] | int | None = None,
                               title: str | None = None) -> StaticExplorer:
    """Precomputed results in the page: a slider picks a test image, the page draws the sampling grid of the
    theta a trained transformer predicted for it and warps it (same code as :func:`static_theta_explorer`).

    Args:
        images: (N, C, H, W) images in [0, 1].
        thetas: (N, P) predicted parameters of ``transform``.
        notes: one line of text per image (e.g. "label 7, classifier says 7 (p = 0.98)").
        out_size: the transformer's output size, default the image size.
        title: a caption above the explorer.

    Examples:
        >>> ex = static_prediction_explorer(torch.zeros(2, 1, 8, 8), torch.eye(2, 3).flatten()[None].repeat(2, 1),
        ...                                 notes=["a", "b"])
        >>> len(ex.config["items"]), ex.config["items"][1]["note"]
        (2, 'b')
    """
    name, extra = _family(transform)
    if images.dim() != 4 or thetas.dim() != 2 or images.shape[0] != thetas.shape[0]:
        raise ValueError(f"images must be (N, C, H, W) and thetas (N, P) with the same N, got "
                         f"{tuple(images.shape)} and {tuple(thetas.shape)}")
    if notes is not None and len(notes) != images.shape[0]:
        raise ValueError(f"notes must have one entry per image ({images.shape[0]}), got {len(notes)}")
    items = []
    for k in range(images.shape[0]):
        data, (c, h, w) = _encode_image(images[k])
        item = {"image": data, "theta": _theta_list(thetas[k], transform)}
        if notes is not None:
            item["note"] = str(notes[k])
        items.append(item)
    oh, ow = (h, w) if out_size is None else ((out_size, out_size) if isinstance(out_size, int) else tuple(out_size))
    config = {"version": 1, "mode": "gallery", "transform": name, "channels": c, "height": h, "width": w,
              "out_height": int(oh), "out_width": int(ow), "items": items, **extra}
    if title:
        config["title"] = title
    return StaticExplorer(config)


@torch.no_grad()
def static_model_explorer(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                          title: str | None = None) -> StaticExplorer:
    """:func:`static_prediction_explorer` for a trained :class:`stnlib.models.STClassifier` on some test images:
    each image's predicted theta and sampled output, and the classifier's reading of it.

    Args:
        model: an STClassifier with one spatial transformer (``model.st``), in eval mode.
        images: (N, C, H, W) inputs as the model takes them (raw, background 0).
        labels: (N,) true classes, shown beside the prediction.
    """
    if getattr(model, "st", None) is None or not hasattr(model.st, "transform"):
        raise ValueError("static_model_explorer needs a model with one spatial transformer (model.st)")
    warped, theta = model.transform_input(images)
    if theta is None or theta.dim() != 2:
        raise ValueError("static_model_explorer shows one transformer's theta per image")
    probs = model(images).softmax(1)
    notes = []
    for k in range(images.shape[0]):
        top = int(probs[k].argmax())
        label = "" if labels is None else f"label {int(labels[k])}, "
        notes.append(f"{label}classifier says {top} (p = {float(probs[k, top]):.2f})")
    return static_prediction_explorer(images, theta, model.st.transform, notes, tuple(warped.shape[-2:]), title)


# ---------------------------------------------------------------------------------------------- figures

def plot_three_parts(image: torch.Tensor, theta: torch.Tensor | None = None, transform: str | Transform = "affine"):
    """The paper's Fig. 2, drawn by the library: localisation net -> theta -> grid generator -> sampler.

    The input U (with the sampling grid T_theta(G) that the grid generator made from theta, and the
    sampled region), the three parts as boxes with theta's numbers, and the sampler's output V.

    Args:
        image: (C, H, W) input in [0, 1].
        theta: (P,) parameters (default: a 30 degree turn and a 0.7 crop).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    from stnbook.figures import COLORS, draw_grid, draw_outline, imshow, set_view
    from stnlib.analysis import warp
    from stnlib.geometry import sampling_outline
    from stnlib.transforms.affine import affine_from_params

    tf = get_transform(transform)
    if theta is None:
        theta = affine_from_params(rotation_deg=30, scale_x=0.7, scale_y=0.7, tx=0.1, ty=-0.05)
    theta = torch.as_tensor(theta, dtype=torch.float32).reshape(1, -1)
    in_size = tuple(image.shape[-2:])
    grid = tf.grid(theta, in_size)[0]
    out = warp(image[None].float(), theta, tf)[0]

    fig = plt.figure(figsize=(9.0, 3.9))
    ax_u = fig.add_axes((0.02, 0.05, 0.27, 0.6))
    ax_v = fig.add_axes((0.78, 0.12, 0.2, 0.5))
    imshow(ax_u, image)
    draw_grid(ax_u, grid, in_size, every=3)
    draw_outline(ax_u, sampling_outline(theta[0], tf, in_size), COLORS[0])
    set_view(ax_u, in_size)
    ax_u.set_title("input U", fontsize=10)
    imshow(ax_v, out)
    ax_v.set_title("output V", fontsize=10)

    box = dict(boxstyle="round,pad=0.45", fc="#eef5ff", ec="#4363d8", lw=1.2)
    nums = ", ".join(f"{v:.2f}" for v in theta[0].tolist())
    fig.text(0.46, 0.8, "1. localisation net\n$\\theta = f_{loc}(U)$", ha="center", va="center", fontsize=9.5, bbox=box)
    fig.text(0.46, 0.6, f"$\\theta$ = [{nums}]", ha="center", va="center", fontsize=8.5, family="monospace")
    fig.text(0.46, 0.4, "2. grid generator\n$(x^s, y^s) = \\mathcal{T}_\\theta(x^t, y^t)$", ha="center",
             va="center", fontsize=9.5, bbox=box)
    fig.text(0.46, 0.1, "3. sampler (Eq. 5)\nbilinear, zeros outside", ha="center", va="center", fontsize=9.5,
             bbox=box)

    def arrow(p, q, color="#333", style="-|>", rad=0.0):
        fig.add_artist(FancyArrowPatch(p, q, transform=fig.transFigure, arrowstyle=style, mutation_scale=12,
                                       color=color, lw=1.3, connectionstyle=f"arc3,rad={rad}"))

    arrow((0.2, 0.69), (0.37, 0.8), rad=-0.2)  # U -> localisation net
    arrow((0.46, 0.72), (0.46, 0.64))  # -> theta
    arrow((0.46, 0.56), (0.46, 0.49))  # theta -> grid generator
    arrow((0.37, 0.4), (0.27, 0.4), color="#00b4ff")  # grid generator -> grid drawn on U
    arrow((0.27, 0.16), (0.37, 0.12))  # U sampled at the grid -> sampler
    arrow((0.56, 0.12), (0.77, 0.3))  # sampler -> V
    fig.text(0.31, 0.44, "$\\mathcal{T}_\\theta(G)$", color="#0088cc", fontsize=9, ha="center")
    fig.suptitle("A spatial transformer (Jaderberg et al. 2015, Fig. 2), computed by stnlib", fontsize=10.5, y=0.98)
    return fig


def plot_pixel_conventions(n: int = 4):
    """Where pixel centres sit in normalised coordinates, for ``align_corners`` False (stnlib) and True.

    One row of ``n`` pixels per panel: grey cells are pixels, dots their centres, labelled with their
    normalised x; the -1 and +1 marks show what the ends of the range mean under each convention.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(7.0, 2.9))
    for ax, ac in zip(axes, (False, True)):
        centres = linspace_centres(n, ac).tolist()
        for i in range(n):
            ax.add_patch(plt.Rectangle((i - 0.5, -0.5), 1, 1, fc="0.85" if i % 2 else "0.7", ec="0.4"))
        ax.scatter(range(n), [0] * n, color="#e6194b", zorder=3, s=18)
        for i, c in enumerate(centres):
            ax.text(i, 0.12, f"{c:+.2f}", ha="center", va="bottom", fontsize=9)
        for v in (-1.0, 1.0):  # where -1 and +1 fall, in pixel units (centres at integers)
            px = float(normalized_to_pixel(torch.tensor([[v, 0.0]]), (1, n), ac)[0, 0])
            ax.axvline(px, color="#4363d8", lw=2)
            ax.text(px + 0.06 * v * -1, -0.72, f"{v:+.0f}", color="#4363d8", ha="left" if v < 0 else "right",
                    va="top", fontsize=10)
        ax.set_xlim(-1.1, n - 0.4)
        ax.set_ylim(-1.1, 0.75)
        ax.axis("off")
        ax.set_title(f"align_corners={ac}" + (" (stnlib): -1 and +1 are the outer pixel edges" if not ac else
                                               ": -1 and +1 are the corner pixel centres"), fontsize=9.5, loc="left")
    fig.tight_layout()
    return fig


def plot_theta_direction(image: torch.Tensor, examples: dict[str, dict] | None = None):
    """What an affine theta does on screen: for each example, theta's grid over the input and the output.

    Args:
        image: (C, H, W) input in [0, 1].
        examples: title -> keyword arguments of :func:`~stnlib.transforms.affine.affine_from_params`
            (default: identity, rotation +30, tx +0.5, scale 0.5).
    """
    import matplotlib.pyplot as plt

    from stnbook.figures import COLORS, draw_grid, draw_outline, imshow, set_view
    from stnlib.analysis import warp
    from stnlib.geometry import sampling_outline
    from stnlib.transforms.affine import affine_from_params

    examples = examples or {"identity": {}, "rotation_deg = +30": {"rotation_deg": 30},
                            "tx = +0.5": {"tx": 0.5}, "scale = 0.5": {"scale_x": 0.5, "scale_y": 0.5}}
    tf = get_transform("affine")
    in_size = tuple(image.shape[-2:])
    fig, axes = plt.subplots(2, len(examples), figsize=(2.2 * len(examples), 4.6), squeeze=False)
    for k, (name, kw) in enumerate(examples.items()):
        theta = affine_from_params(**kw)[None]
        imshow(axes[0, k], image, f"{name}\ngrid over input U")
        draw_grid(axes[0, k], tf.grid(theta, in_size)[0], in_size, every=3)
        draw_outline(axes[0, k], sampling_outline(theta[0], tf, in_size), COLORS[0])
        set_view(axes[0, k], in_size)
        imshow(axes[1, k], warp(image[None].float(), theta)[0], "output V")
    fig.tight_layout()
    return fig


def write_figures(dest: Path | None = None, dpi: int = 110) -> list[Path]:
    """Redraw the committed figures of the landing page (MNIST test digit 0) into ``book/_static/stn/figures``."""
    import matplotlib

    matplotlib.use("Agg")
    from stnbook.paths import load_mnist

    dest = Path(dest) if dest is not None else static_dir() / "figures"
    dest.mkdir(parents=True, exist_ok=True)
    images, _ = load_mnist("test")
    fig = plot_three_parts(images[0].float().div(255)[None])
    path = dest / "three_parts.png"
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [path]


# ---------------------------------------------------------------------------------------------- web assets

# The npm packages the book serves itself (what myst-nb and Sphinx would otherwise load from CDNs) are pinned in
# the checkout's package.json and package-lock.json (versions and integrity hashes) and installed with `npm ci`;
# VENDOR says which of their files the pages need. files: (pattern inside the package, destination folder under
# vendor/); patterns use fnmatch. requirejs 2.3.4 is myst-nb's default require.js, html-manager 1.0.6 myst-nb 1.4's
# embed manager (ipywidgets 8), mathjax 3.2.2 Sphinx 7's MathJax 3 component (tex-mml-chtml).
VENDOR: dict[str, dict] = {
    "requirejs": {"files": [("require.js", "")]},
    "@jupyter-widgets/html-manager": {
        # the AMD bundle and the icon fonts its CSS refers to (same folder)
        "files": [("dist/embed-amd.js", "html-manager"), ("dist/*.woff2", "html-manager"),
                  ("dist/*.woff", "html-manager"), ("dist/*.ttf", "html-manager"),
                  ("dist/*.eot", "html-manager"), ("dist/*.svg", "html-manager"),
                  ("LICENSE", "html-manager")],
    },
    "mathjax": {
        # the combined component plus what it loads on demand (TeX extensions, fonts, menu, accessibility)
        "files": [("es5/tex-mml-chtml.js", "mathjax"), ("es5/input/*", "mathjax/input"),
                  ("es5/output/chtml/*", "mathjax/output/chtml"), ("es5/output/chtml.js", "mathjax/output"),
                  ("es5/ui/*", "mathjax/ui"), ("es5/a11y/*", "mathjax/a11y"),
                  ("es5/sre/*", "mathjax/sre"), ("es5/adaptors/*", "mathjax/adaptors"),
                  ("LICENSE", "mathjax")],
    },
    "onnxruntime-web": {
        # the WebAssembly-only build (global `ort`), its module loader and the SIMD binary it fetches (14 MB)
        "files": [("dist/ort.wasm.min.js", "onnxruntime-web"), ("dist/ort-wasm-simd-threaded.mjs", "onnxruntime-web"),
                  ("dist/ort-wasm-simd-threaded.wasm", "onnxruntime-web"), ("LICENSE", "onnxruntime-web")],
    },
}
# The files the built pages reference (relative to vendor/): what `check_vendored` verifies.
VENDOR_ENTRY_POINTS = ("require.js", "html-manager/embed-amd.js", "mathjax/tex-mml-chtml.js",
                       "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
                       "onnxruntime-web/ort.wasm.min.js", "onnxruntime-web/ort-wasm-simd-threaded.mjs",
                       "onnxruntime-web/ort-wasm-simd-threaded.wasm")


def vendor_dir() -> Path:
    """Where the vendored web assets live (git-ignored): ``book/_static/stn/vendor``."""
    return static_dir() / "vendor"


def lockfile() -> Path:
    """The checkout's ``package-lock.json`` (the pins of every web asset)."""
    return project_root() / "package-lock.json"


def _stamp() -> str:
    return hashlib.sha256(lockfile().read_bytes()).hexdigest()


def check_vendored(dest: Path | None = None) -> list[str]:
    """The entry points of :data:`VENDOR_ENTRY_POINTS` missing under ``dest`` (empty when all are there and
    were copied from the current lockfile's packages)."""
    dest = Path(dest) if dest is not None else vendor_dir()
    missing = [p for p in VENDOR_ENTRY_POINTS if not (dest / p).is_file()]
    stamp = dest / "LOCKFILE.sha256"
    if not stamp.is_file() or stamp.read_text() != _stamp():
        missing.append("LOCKFILE.sha256 (package-lock.json changed, or never vendored)")
    return missing


def _copy_files(package_dir: Path, files: list[tuple[str, str]], dest: Path) -> int:
    count = 0
    for path in sorted(package_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(package_dir).as_posix()
        for pattern, folder in files:
            if not fnmatch(name, pattern):
                continue
            # keep the path below the pattern's fixed prefix ("es5/input/tex/x.js" -> "tex/x.js")
            fixed = pattern.split("*")[0] if "*" in pattern else pattern
            prefix = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
            rel = Path(name[len(prefix) + 1:] if prefix else name)
            target = dest / folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            count += 1
            break
    return count


def vendor_web_assets(dest: Path | None = None, npm: str = "npm", force: bool = False, quiet: bool = False) -> Path:
    """Put the web assets the pages need under ``dest``: ``npm ci`` (the lockfile's versions, integrity
    checked by npm) into the checkout's ``node_modules``, then the files of :data:`VENDOR` copied (idempotent:
    a second call with the same lockfile returns at once).

    Raises:
        RuntimeError: npm is missing or fails, or an entry point is missing afterwards.
    """
    dest = Path(dest) if dest is not None else vendor_dir()
    if not force and not check_vendored(dest):
        if not quiet:
            print(f"web assets already in place ({dest})")
        return dest
    exe = shutil.which(npm)
    if exe is None:
        raise RuntimeError(f"{npm!r} not found: install Node.js/npm (Debian: apt-get install npm) to fetch the web "
                           "assets the book serves (RequireJS, the ipywidgets embed manager, MathJax)")
    root = project_root()
    proc = subprocess.run([exe, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                          capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {root}:\n{proc.stderr[-2000:]}")
    tmp_dest = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp_dest, ignore_errors=True)
    tmp_dest.mkdir(parents=True)
    for name, spec in VENDOR.items():
        n = _copy_files(root / "node_modules" / name, spec["files"], tmp_dest)
        if not quiet:
            print(f"vendored {name}: {n} files")
    (tmp_dest / "LOCKFILE.sha256").write_text(_stamp())
    gitignore = dest / ".gitignore"
    keep = gitignore.read_text() if gitignore.is_file() else None
    shutil.rmtree(dest, ignore_errors=True)
    tmp_dest.rename(dest)
    if keep is not None:
        gitignore.write_text(keep)
    missing = check_vendored(dest)
    if missing:
        raise RuntimeError(f"vendoring left out {missing}")
    return dest


__all__ = ["StaticExplorer", "static_theta_explorer", "static_prediction_explorer", "static_model_explorer",
           "plot_three_parts", "plot_pixel_conventions", "plot_theta_direction", "write_figures", "explorer_js",
           "static_dir", "VENDOR", "vendor_web_assets", "check_vendored", "vendor_dir", "lockfile", "setup"]


# ---------------------------------------------------------------------------------------------- Sphinx hook

def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of identical ``<script>`` entries: sphinx-thebe 0.3.1 under Sphinx 7.4 adds its inline
    ``const THEBE_JS_URL = ...`` twice (once with filename None, once with ""), and the second declaration is a
    SyntaxError on every page."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        name = getattr(js, "filename", js) or ""  # the same inline script comes as filename None and as ""
        key = (str(name), json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _drop_mathjax_without_math(app, pagename, templatename, context, doctree) -> None:
    """Leave MathJax (1.2 MB of script, and the fonts it fetches) out of pages with no formula: myst-nb asks Sphinx to
    put it on every page, in case a notebook output holds math."""
    from docutils import nodes

    scripts = context.get("script_files")
    if doctree is None or not isinstance(scripts, list):
        return
    if any(True for _ in doctree.findall(nodes.math)) or any(True for _ in doctree.findall(nodes.math_block)):
        return
    if "\\(" in context.get("body", "") or "$$" in context.get("body", ""):  # raw HTML output with TeX in it
        return
    context["script_files"] = [js for js in scripts if "mathjax" not in str(getattr(js, "filename", js) or "").lower()]


def setup(app) -> dict:
    """Sphinx extension entry point (``_config.yml``: ``sphinx.extra_extensions: [stnbook.web]``).

    Also marks the kernels that execute the chapters (they inherit this process's environment) as a static build
    (:func:`stnbook.widgets.static_build`): the pages get the in-page explorers, not ipywidgets no kernel runs.
    """
    import os

    from stnbook.widgets import STATIC_BUILD_ENV

    os.environ[STATIC_BUILD_ENV] = "1"
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)  # after the handlers that add scripts
    app.connect("html-page-context", _drop_mathjax_without_math, priority=901)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stnbook.web", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("vendor", help="npm ci, then copy the web assets into book/_static/stn/vendor")
    v.add_argument("--dest", type=Path, default=None)
    v.add_argument("--force", action="store_true", help="fetch again even if the pins are in place")
    v.add_argument("--quiet", action="store_true")
    sub.add_parser("check", help="exit 1 if the vendored web assets are missing or stale")
    f = sub.add_parser("figures", help="redraw the landing-page figure into book/_static/stn/figures")
    f.add_argument("--dest", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.action == "vendor":
        try:
            vendor_web_assets(args.dest, force=args.force, quiet=args.quiet)
        except RuntimeError as e:
            print(f"stnbook.web vendor: {e}", file=sys.stderr)
            return 1
        return 0
    if args.action == "check":
        missing = check_vendored()
        print("web assets in place" if not missing else f"missing: {', '.join(missing)}; "
              "run `python -m stnbook.web vendor`")
        return 1 if missing else 0
    for p in write_figures(args.dest):
        print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
