"""Interactive theta explorers for Jupyter (ipywidgets), built on the library's own grid generators and sampler.

The explorer redraws into an ``ipywidgets.Image`` from slider callbacks rather than using
``interact``/``Output``: executing ``interact`` cells can stall nbclient (papermill, the book
build; jupyter/nbclient#312), and an Image widget needs no output capture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from stnbook.figures import figure_to_png, plot_anatomy
from stnlib.transforms import get_transform
from stnlib.transforms.affine import affine_from_params, decompose_affine

SLIDERS = {  # name: (min, max, step, default)
    "rotation_deg": (-180.0, 180.0, 1.0, 0.0),
    "scale_x": (0.2, 2.0, 0.01, 1.0),
    "scale_y": (0.2, 2.0, 0.01, 1.0),
    "shear": (-1.0, 1.0, 0.01, 0.0),
    "tx": (-1.0, 1.0, 0.01, 0.0),
    "ty": (-1.0, 1.0, 0.01, 0.0),
}
PERSPECTIVE = {"p1": (-0.8, 0.8, 0.01, 0.0), "p2": (-0.8, 0.8, 0.01, 0.0)}


def theta_from_controls(values: dict[str, float], transform: str = "affine") -> torch.Tensor:
    """Build a (P,) theta of ``transform`` from slider values (see :data:`SLIDERS`).

    affine: :func:`stnlib.transforms.affine.affine_from_params`; attention: scale = mean of the two
    scales, translation; projective: the affine part plus the perspective row (p1, p2); tps: the
    affine part applied to the control points, each then pushed outward by ``bend`` times its
    distance from the centre (a barrel/pincushion bend).

    Examples:
        >>> theta_from_controls({"rotation_deg": 90.0}).round(decimals=6).tolist()
        [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]
    """
    v = {k: spec[3] for k, spec in {**SLIDERS, **PERSPECTIVE, "bend": (0, 0, 0, 0.0)}.items()}
    v.update(values)
    aff = affine_from_params(v["rotation_deg"], v["scale_x"], v["scale_y"], v["shear"], v["tx"], v["ty"])
    if transform == "affine":
        return aff
    if transform == "attention":
        return torch.tensor([(v["scale_x"] + v["scale_y"]) / 2, v["tx"], v["ty"]])
    if transform == "projective":
        return torch.cat([aff, torch.tensor([v["p1"], v["p2"]])])
    if transform == "tps":
        tps = get_transform("tps")
        ctrl = tps.identity().view(-1, 2)
        r2 = (ctrl ** 2).sum(1, keepdim=True)
        bent = ctrl * (1 + v["bend"] * (r2 - r2.mean()))
        return get_transform("affine").transform_points(aff[None], bent)[0].flatten()
    raise ValueError(f"theta explorer supports affine, attention, projective and tps, not {transform!r}")


class ThetaExplorer:
    """Sliders for rotation, scale, shear and translation, the six raw affine numbers, and a live figure.

    Moving a slider rebuilds theta, runs the library's grid generator and sampler, and redraws the
    input with its sampling grid next to the output. Editing a raw affine number updates the
    readable sliders (QR decomposition) and vice versa.

    Args:
        image: (C, H, W) input image (float, [0, 1]).
        transform: "affine" (default), "attention", "projective" (adds two perspective sliders) or
            "tps" (adds a bend slider).
        out_size: output size; default the input's.
        describe: optional callback ``(theta, output) -> str`` whose text (HTML) is shown under the
            figure, e.g. a trained classifier's prediction for the warped digit.
    """

    def __init__(self, image: torch.Tensor, transform: str = "affine", out_size: Sequence[int] | None = None,
                 describe: Callable[[torch.Tensor, torch.Tensor], str] | None = None):
        import ipywidgets as W

        if image.dim() != 3:
            raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
        self.image = image.float()
        self.transform = transform
        self.out_size = out_size
        self.describe = describe
        specs = dict(SLIDERS)
        if transform == "projective":
            specs.update(PERSPECTIVE)
        if transform == "tps":
            specs["bend"] = (-1.0, 1.0, 0.02, 0.0)
        self.sliders = {name: W.FloatSlider(value=d, min=lo, max=hi, step=st, description=name, continuous_update=True,
                                            readout_format=".2f", layout=W.Layout(width="320px"))
                        for name, (lo, hi, st, d) in specs.items()}
        labels = ["t11", "t12", "t13", "t21", "t22", "t23"]
        self.raw = [W.FloatText(value=v, description=n, step=0.05, layout=W.Layout(width="150px"))
                    for n, v in zip(labels, affine_from_params().tolist())]
        self.figure = W.Image(format="png")
        self.info = W.HTML()
        self._syncing = False
        for s in self.sliders.values():
            s.observe(self._on_slider, names="value")
        for r in self.raw:
            r.observe(self._on_raw, names="value")
        reset = W.Button(description="identity")
        reset.on_click(lambda _: self.set_values({k: spec[3] for k, spec in specs.items()}))
        raw_box = W.VBox([W.HTML("<b>raw affine theta</b>"), W.GridBox(self.raw, layout=W.Layout(
            grid_template_columns="repeat(3, 160px)"))])
        self.widget = W.VBox([W.HBox([W.VBox(list(self.sliders.values()) + [reset]), raw_box]), self.figure, self.info])
        self.redraw()

    @property
    def values(self) -> dict[str, float]:
        return {k: s.value for k, s in self.sliders.items()}

    @property
    def theta(self) -> torch.Tensor:
        return theta_from_controls(self.values, self.transform)

    def set_values(self, values: dict[str, float]) -> None:
        """Move sliders programmatically (one redraw)."""
        self._syncing = True
        try:
            for k, v in values.items():
                self.sliders[k].value = v
        finally:
            self._syncing = False
        self._sync_raw()
        self.redraw()

    def _sync_raw(self) -> None:
        aff = affine_from_params(*(self.values[k] for k in SLIDERS))
        self._syncing = True
        try:
            for r, v in zip(self.raw, aff.tolist()):
                r.value = round(v, 4)
        finally:
            self._syncing = False

    def _on_slider(self, change) -> None:
        if self._syncing:
            return
        self._sync_raw()
        self.redraw()

    def _on_raw(self, change) -> None:
        if self._syncing:
            return
        d = decompose_affine(torch.tensor([r.value for r in self.raw]))
        self._syncing = True
        try:
            for k, v in d.items():
                s = self.sliders[k]
                s.value = min(max(v, s.min), s.max)
        finally:
            self._syncing = False
        self.redraw()

    def redraw(self) -> None:
        theta = self.theta
        fig = plt.figure(figsize=(6.4, 3.2))
        plot_anatomy(self.image, theta, self.transform, self.out_size, fig=fig)
        self.figure.value = figure_to_png(fig)
        text = "theta = [" + ", ".join(f"{v:.3f}" for v in theta.tolist()) + "]"
        if self.describe is not None:
            from stnlib.analysis import warp

            out = warp(self.image[None], theta[None], self.transform, self.out_size)[0]
            text += "<br>" + self.describe(theta, out)
        self.info.value = f"<code>{text}</code>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


STATIC_BUILD_ENV = "STNBOOK_STATIC_BUILD"
"""Set by the book's Sphinx extension (:func:`stnbook.web.setup`) for the kernels that execute the chapters while
the HTML book is built: a page has no kernel, so the ipywidgets explorers are left out of it."""


def static_build() -> bool:
    """Whether this kernel executes a chapter for the static HTML book (no kernel will be there to run sliders)."""
    return os.environ.get(STATIC_BUILD_ENV) == "1"


class KernelOnly:
    """What a kernel-driven explorer shows in the static book: one line saying where it runs."""

    def __init__(self, what: str = "ipywidgets sliders driving stnlib itself"):
        self.what = what

    def _repr_html_(self) -> str:
        return (f"<p class='stn-kernel-only'><em>Run this chapter in Jupyter to get {self.what} here; the "
                "explorer below computes the same warp in this page.</em></p>")

    def __repr__(self) -> str:
        return f"KernelOnly({self.what!r})"


def theta_explorer(image: torch.Tensor, transform: str = "affine", out_size: Sequence[int] | None = None,
                   describe: Callable[[torch.Tensor, torch.Tensor], str] | None = None) -> ThetaExplorer | KernelOnly:
    """One line for a chapter: ``theta_explorer(digit)`` shows the live explorer (see :class:`ThetaExplorer`);
    while the static book is built (:func:`static_build`), a :class:`KernelOnly` note instead."""
    if static_build():
        return KernelOnly()
    return ThetaExplorer(image, transform, out_size, describe)
