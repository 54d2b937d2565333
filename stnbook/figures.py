"""Figures for the book: sampling grids over inputs, sampled regions, outputs and d(output)/d(theta).

Everything takes tensors and returns matplotlib Figures; nothing here computes what it draws
(that lives in the rest of stnlib), so a figure can always be regenerated from the numbers.
"""

from __future__ import annotations

import io
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
           vmax: float | None = None) -> None:
    """Show an image with pixel centres at integer coordinates (matches :func:`stnlib.normalized_to_pixel`)."""
    ax.imshow(as_image(image), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


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
    where one output pixel reads). Right: the sampler's output V.

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
        fig = plt.figure(figsize=(6.4, 3.2))
    ax_in, ax_out = fig.subplots(1, 2)
    imshow(ax_in, image, "input U + sampling grid $T_\\theta(G)$")
    draw_grid(ax_in, grid, in_size, every)
    draw_outline(ax_in, sampling_outline(theta[0], tf, in_size), COLORS[0])
    set_view(ax_in, in_size)
    imshow(ax_out, out, f"output V ({size[0]}x{size[1]})")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_families(image: torch.Tensor, thetas: dict[str, torch.Tensor], out_size: Sequence[int] | None = None):
    """One column per transformation family: input with its grid (top), output (bottom)."""
    n = len(thetas)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 4.6), squeeze=False)
    in_size = tuple(image.shape[-2:])
    for k, (name, theta) in enumerate(thetas.items()):
        tf = get_transform(name)
        size = tuple(out_size) if out_size is not None else in_size
        th = theta.reshape(1, -1).to(image.dtype)
        imshow(axes[0, k], image, f"{name} ({tf.num_params} params)")
        draw_grid(axes[0, k], tf.grid(th, size)[0], in_size, every=3)
        draw_outline(axes[0, k], sampling_outline(th[0], tf, in_size), COLORS[0])
        set_view(axes[0, k], in_size)
        imshow(axes[1, k], warp(image[None], th, tf, size)[0], "output")
    fig.tight_layout()
    return fig


def plot_jacobian(jac: torch.Tensor, names: Sequence[str]):
    """Show d(output)/d(theta_k) images (P, C, H, W) side by side, with a shared symmetric colour scale."""
    p = jac.shape[0]
    lim = float(jac.abs().max()) or 1.0
    fig, axes = plt.subplots(1, p, figsize=(1.7 * p, 2.1), squeeze=False)
    for k in range(p):
        imshow(axes[0, k], jac[k], f"d V / d {names[k]}", cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.tight_layout()
    return fig


def figure_to_png(fig, dpi: int = 80) -> bytes:
    """Render a Figure to PNG bytes and close it (for ipywidgets.Image and static exports)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
