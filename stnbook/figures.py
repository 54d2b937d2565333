"""Figures for the book: sampling grids over inputs, sampled regions, outputs and d(output)/d(theta).

Everything takes tensors and returns matplotlib Figures; nothing here computes what it draws
(that lives in the rest of stnlib), so a figure can always be regenerated from the numbers.

Chapters call :func:`setup_book_figures` once, after ``%matplotlib inline``: readable font sizes and
figures rendered at twice their resolution (sharp on high-DPI screens, in Jupyter and in the book).
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch

from stnlib.analysis import warp
from stnlib.coords import ALIGN_CORNERS, normalized_to_pixel
from stnlib.geometry import sampling_outline
from stnlib.sampler import bilinear_sample
from stnlib.transforms import Transform, get_transform

COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0")

BOOK_RC = {
    "figure.dpi": 100,  # one inch of figure is 100 CSS pixels on the page (the PNG holds twice that: retina)
    "savefig.dpi": 200,  # figures saved to files: the same 2x resolution
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}
"""matplotlib settings of the book's figures: no text under 9 pt, 2x resolution for files."""

RETINA_SCALE = 2
"""How many PNG pixels a figure has per CSS pixel it is displayed at."""


def retina_png(fig) -> tuple[str, dict[str, int]] | None:
    """A Figure as IPython's ``image/png`` output: (base64 PNG at twice ``fig.dpi``, {"width": CSS pixels}).

    Like IPython's own "retina" format, but the output states only the width: the book (Sphinx) writes the
    stated size into the image's ``style``, and a fixed height would squash the figure on a narrow screen,
    where the theme shrinks the width to fit. Returns None for an empty figure (nothing is displayed).
    """
    from IPython.core.pylabtools import print_figure

    data = print_figure(fig, fmt="retina", base64=False)
    if data is None:
        return None
    data = compact_png(data)
    ihdr = data.index(b"IHDR")
    width = struct.unpack(">i", data[ihdr + 4:ihdr + 8])[0]
    return base64.b64encode(data).decode("ascii"), {"width": width // RETINA_SCALE}


def compact_png(data: bytes) -> bytes:
    """The same picture in fewer bytes, losslessly: an opaque RGBA image (every matplotlib figure on its white
    background) is stored as RGB, one with at most 256 colours (line plots, heat maps) as a palette image, and the
    encoder's compression is maximal. Returns ``data`` itself when that is smaller.

    Examples:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGBA", (64, 32), (255, 255, 255, 255)).save(buf, "PNG")
        >>> out = compact_png(buf.getvalue())
        >>> Image.open(io.BytesIO(out)).mode, len(out) <= len(buf.getvalue())
        ('P', True)
    """
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    if image.mode == "RGB" and image.getcolors(256) is not None:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue() if out.tell() < len(data) else data


def setup_book_figures(retina: bool = True) -> None:
    """Set up a chapter's figures: :data:`BOOK_RC` font sizes and dpi, and (in IPython) retina PNG output.

    Call it once at the top of a chapter, after ``%matplotlib inline``: figures then display at
    ``figure.dpi`` CSS pixels per inch from a PNG with twice as many pixels, sharp on high-DPI screens in
    Jupyter, Colab and the built book alike. Outside IPython only the matplotlib settings change.

    Args:
        retina: register :func:`retina_png` as IPython's PNG formatter for Figures.
    """
    matplotlib.rcParams.update(BOOK_RC)
    if not retina:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing displays figures
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(matplotlib.figure.Figure, retina_png)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]], caption: str | None = None,
               escape: bool = False, row_headers: bool = False) -> str:
    """A book table as HTML (class ``stn-table``), rendered the same in Jupyter and the static book: a Markdown
    pipe table displayed as output reaches the page as raw text (myst-nb renders ``text/markdown`` outputs as
    CommonMark, which has no tables). Cells are inserted as given (they may hold markup) unless ``escape``;
    with ``row_headers`` each row's first cell is a header cell.

    Examples:
        >>> html_table(["a", "b"], [[1, 2]])
        "<table class='stn-table'><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
        >>> html_table(["model", "% error"], [["a < b", ""]], escape=True, row_headers=True)
        "<table class='stn-table'><tr><th>model</th><th>% error</th></tr><tr><th>a &lt; b</th><td></td></tr></table>"
    """
    import html

    text = (lambda v: html.escape(str(v))) if escape else str
    cap = f"<caption>{text(caption)}</caption>" if caption else ""
    head = "<tr>" + "".join(f"<th>{text(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<th>{text(c)}</th>" if row_headers and i == 0 else f"<td>{text(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table class='stn-table'>{cap}{head}{body}</table>"


def as_image(t: torch.Tensor):
    """(C, H, W), (H, W) or (1, C, H, W) tensor -> numpy array for imshow (H, W) or (H, W, 3)."""
    t = t.detach().float().cpu()
    while t.dim() > 3:
        t = t[0]
    if t.dim() == 3:
        t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0).clamp(0, 1)
    return t.numpy()


def imshow(ax, image: torch.Tensor, title: str | None = None, cmap: str = "gray", vmin: float | None = 0.0,
           vmax: float | None = None, fontsize: float = 9):
    """Show an image with pixel centres at integer coordinates (matches :func:`stnlib.normalized_to_pixel`).

    Returns the ``AxesImage`` (for a colour bar).
    """
    im = ax.imshow(as_image(image), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    return im


def draw_outline(ax, poly: torch.Tensor, color: str = COLORS[0], lw: float = 1.5, label: str | None = None) -> None:
    """Draw a (P, 2) pixel-coordinate polygon from :func:`stnlib.geometry.sampling_outline`."""
    p = poly.detach().cpu()
    ax.plot(p[:, 0], p[:, 1], color=color, lw=lw, label=label)


def draw_grid(ax, grid: torch.Tensor, in_size: Sequence[int], every: int = 3, color: str = "#00b4ff",
              align_corners: bool = ALIGN_CORNERS) -> None:
    """Draw a (H', W', 2) normalised sampling grid on an input of size (H, W): every ``every``-th row/column."""
    pix = normalized_to_pixel(grid.detach().cpu(), in_size, align_corners)
    rows = list(range(0, pix.shape[0], every)) + ([pix.shape[0] - 1] if (pix.shape[0] - 1) % every else [])
    cols = list(range(0, pix.shape[1], every)) + ([pix.shape[1] - 1] if (pix.shape[1] - 1) % every else [])
    for i in rows:
        ax.plot(pix[i, :, 0], pix[i, :, 1], color=color, lw=0.6, alpha=0.9)
    for j in cols:
        ax.plot(pix[:, j, 0], pix[:, j, 1], color=color, lw=0.6, alpha=0.9)
    ax.scatter(pix[rows][:, cols, 0].flatten(), pix[rows][:, cols, 1].flatten(), s=3, color=color, zorder=3)


def set_view(ax, in_size: Sequence[int], margin: float = 0.35) -> None:
    """Show the input frame plus a margin, so grids that leave the image stay visible."""
    h, w = in_size
    ax.set_xlim(-0.5 - margin * w, w - 0.5 + margin * w)
    ax.set_ylim(h - 0.5 + margin * h, -0.5 - margin * h)
    ax.add_patch(matplotlib.patches.Rectangle((-0.5, -0.5), w, h, fill=False, ec="0.6", lw=0.8, ls="--"))


def plot_anatomy(image: torch.Tensor, theta: torch.Tensor, transform: str | Transform = "affine",
                 out_size: Sequence[int] | None = None, every: int = 3, fig=None, title: str | None = None):
    """The three parts of a spatial transformer for one image (paper Fig. 2-3).

    Left: the input U with the sampling grid T_theta(G) the grid generator produced (every point is
    where one output pixel reads). Right: the sampler's output V. Sized to stay legible on a phone:
    4.4 inches (440 px in the book) with 11 pt titles, still about 12 px text when a 400 px wide screen
    shrinks it to 350 px.

    Args:
        image: (C, H, W) input.
        theta: (P,) parameters of ``transform``.
        out_size: (H', W') of the output; default the input size.
    """
    tf = get_transform(transform)
    in_size = tuple(image.shape[-2:])
    size = tuple(out_size) if out_size is not None else in_size
    theta = theta.reshape(1, -1).to(image.dtype)
    grid = tf.grid(theta, size)[0]
    out = bilinear_sample(image[None], grid[None])[0]
    if fig is None:
        fig = plt.figure(figsize=(4.4, 2.7))
    ax_in, ax_out = fig.subplots(1, 2)
    imshow(ax_in, image, "input $U$ with the grid\n$\\mathcal{T}_\\theta(G)$ (blue)", fontsize=11)
    draw_grid(ax_in, grid, in_size, every)
    draw_outline(ax_in, sampling_outline(theta[0], tf, in_size), COLORS[0])
    set_view(ax_in, in_size)
    imshow(ax_out, out, f"output $V$\n({size[0]} x {size[1]})", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_families(image: torch.Tensor, thetas: dict[str, torch.Tensor], out_size: Sequence[int] | None = None):
    """One column per transformation family: input with its grid (top), output (bottom)."""
    n = len(thetas)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.9), squeeze=False)
    in_size = tuple(image.shape[-2:])
    for k, (name, theta) in enumerate(thetas.items()):
        tf = get_transform(name)
        size = tuple(out_size) if out_size is not None else in_size
        th = theta.reshape(1, -1).to(image.dtype)
        imshow(axes[0, k], image, f"{name}\n{tf.num_params} parameters", fontsize=10)
        draw_grid(axes[0, k], tf.grid(th, size)[0], in_size, every=3)
        draw_outline(axes[0, k], sampling_outline(th[0], tf, in_size), COLORS[0])
        set_view(axes[0, k], in_size)
        imshow(axes[1, k], warp(image[None], th, tf, size)[0], "output", fontsize=10)
    fig.tight_layout()
    return fig


def plot_jacobian(jac: torch.Tensor, names: Sequence[str], ncols: int = 3, shared: bool = False):
    r"""Show d(output)/d(theta_k) images (P, C, H, W) in a grid, each with a colour bar.

    Blue is negative, red positive, white zero: every panel's scale is symmetric about zero, over
    ``[-m, m]`` with ``m`` the panel's largest magnitude (``shared``: the largest over all panels).

    Args:
        jac: (P, C, H, W) from :func:`stnlib.analysis.theta_jacobian`.
        names: P parameter names for the titles (may hold mathtext, e.g. ``$\theta_{13}$`` as a raw string).
        ncols: panels per row.
        shared: one scale for all panels instead of one per panel.
    """
    p = jac.shape[0]
    ncols = max(1, min(int(ncols), p))
    nrows = -(-p // ncols)
    top = float(jac.abs().max()) or 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.15 * ncols, 2.05 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= p:  # an unused slot of the last row
            fig.delaxes(ax)
            continue
        lim = top if shared else (float(jac[k].abs().max()) or 1.0)
        name = str(names[k])
        symbol = name[1:-1] if len(name) > 1 and name[0] == name[-1] == "$" else f"\\mathrm{{{name}}}"
        im = imshow(ax, jac[k], f"$\\partial V / \\partial {symbol}$", cmap="RdBu_r", vmin=-lim, vmax=lim, fontsize=10)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, ticks=[-lim, 0.0, lim])
        bar.ax.set_yticklabels([f"\u2212{lim:.2g}", "0", f"{lim:.2g}"])
        bar.ax.tick_params(labelsize=9)
    fig.tight_layout()
    return fig


def figure_to_png(fig, dpi: int = 80) -> bytes:
    """Render a Figure to PNG bytes and close it (for ipywidgets.Image and static exports)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
