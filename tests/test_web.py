"""The in-page explorer computes what stnlib computes: its JavaScript, run in node, against the library.

book/_static/stn/explorer.js re-implements the grid generator and the bilinear sampler for the
static book; these tests run it in node on several thetas, sizes and families and compare the
grids and outputs with stnlib's own to float tolerance. They also check the HTML that
stnbook.web emits and the vendoring of the web assets (offline, with a stand-in npm).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from chapters import ROOT

from stnbook import web
from stnlib.analysis import warp
from stnlib.geometry import sampling_outline
from stnlib.transforms import affine_from_params, decompose_affine, get_transform
from stnlib.transforms.projective import homography_from_points

JS = ROOT / "book" / "_static" / "stn" / "explorer.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs)")

RUNNER = r"""
const api = require(process.argv[1]);
let input = "";
process.stdin.on("data", d => input += d);
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(c => {
    const img = c.image ? api.decodeFloat32(c.image) : null;
    const opts = {gridSize: c.grid_size || 4};
    const r = {};
    if (c.op === "warp") {
      r.grid = Array.from(api.grid(c.family, c.theta, c.out[0], c.out[1], opts));
      r.output = Array.from(api.warp(img, c.shape[0], c.shape[1], c.shape[2], c.family, c.theta, c.out[0], c.out[1], opts));
      r.outline = api.outline(c.family, c.theta, c.family === "tps" ? 16 : 2, opts);
    } else if (c.op === "affine") {
      r.theta = api.affineFromParams(c.params);
      r.params = api.decomposeAffine(c.theta);
    } else if (c.op === "homography") {
      r.theta = api.homographyFromPoints(c.src, c.dst);
    } else if (c.op === "identity") {
      r.theta = api.identity(c.family, opts);
    }
    return r;
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def b64(image: torch.Tensor) -> str:
    return base64.b64encode(image.float().contiguous().numpy().astype("<f4").tobytes()).decode()


def run_js(cases: list[dict]) -> list[dict]:
    proc = subprocess.run([NODE, "-e", RUNNER, str(JS)], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def make_image(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A blob with sharp edges plus noise: bilinear errors would show on the edges."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    blob = (((xx - w * 0.4) / (0.25 * w)) ** 2 + ((yy - h * 0.55) / (0.3 * h)) ** 2 < 1).float()
    return (0.6 * blob[None] + 0.4 * torch.rand(c, h, w, generator=g)).clamp(0, 1)


def random_theta(family: str, seed: int, grid_size: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tf = get_transform(family, **({"grid_size": grid_size} if family == "tps" else {}))
    ident = tf.identity()
    scale = {"affine": 0.35, "attention": 0.3, "projective": 0.25, "tps": 0.15}[family]
    theta = ident + scale * (torch.rand(ident.shape, generator=g) * 2 - 1)
    if family == "projective":
        theta[6:] *= 0.8  # keep the horizon outside the output square
    return theta


CASES = [  # (family, theta, image (C, H, W), out size, tps grid size)
    ("affine", get_transform("affine").identity(), (1, 28, 28), (28, 28), 4),
    ("affine", affine_from_params(90.0), (1, 28, 28), (28, 28), 4),
    ("affine", affine_from_params(-37.0, 0.7, 1.3, 0.2, 0.15, -0.3), (1, 28, 28), (28, 28), 4),
    ("affine", random_theta("affine", 1), (1, 13, 17), (11, 23), 4),
    ("affine", affine_from_params(20.0, 1.8, 1.8), (3, 20, 20), (9, 9), 4),
    ("attention", torch.tensor([0.55, 0.2, -0.1]), (1, 28, 28), (14, 14), 4),
    ("projective", get_transform("projective").identity(), (1, 28, 28), (28, 28), 4),
    ("projective", random_theta("projective", 2), (1, 28, 28), (28, 28), 4),
    ("projective", random_theta("projective", 3), (1, 24, 31), (19, 26), 4),
    ("tps", get_transform("tps").identity(), (1, 28, 28), (28, 28), 4),
    ("tps", random_theta("tps", 4), (1, 28, 28), (28, 28), 4),
    ("tps", random_theta("tps", 5, grid_size=3), (1, 22, 30), (16, 21), 3),
]


@needs_node
def test_js_grid_and_warp_match_the_library_pixel_for_pixel():
    images = [make_image(*shape, seed=k) for k, (_, _, shape, _, _) in enumerate(CASES)]
    cases = [{"op": "warp", "family": fam, "theta": theta.tolist(), "image": b64(img), "shape": list(shape),
              "out": list(out), "grid_size": gs}
             for (fam, theta, shape, out, gs), img in zip(CASES, images)]
    results = run_js(cases)
    for (fam, theta, shape, out, gs), img, res in zip(CASES, images, results):
        tf = get_transform(fam, **({"grid_size": gs} if fam == "tps" else {}))
        ours_grid = tf.grid(theta[None].float(), out)[0]
        js_grid = torch.tensor(res["grid"], dtype=torch.float64).reshape(*out, 2)
        assert torch.allclose(js_grid, ours_grid.double(), atol=2e-6), (fam, (js_grid - ours_grid).abs().max())
        lib = warp(img[None], theta[None].float(), tf, out)[0]
        js = torch.tensor(res["output"], dtype=torch.float32).reshape(shape[0], *out)
        diff = (js - lib).abs().max().item()
        assert diff < 1e-5, f"{fam} {tuple(out)}: JS output differs from stnlib by {diff:.2e}"
        assert lib.abs().sum() > 0  # the comparison saw real content
        outline = torch.tensor(res["outline"][:-1], dtype=torch.float64)
        lib_norm = 2 * sampling_outline(theta.float(), tf, (1, 1))[:-1].double()  # pixels of a 1x1 image = x / 2
        assert torch.allclose(outline, lib_norm, atol=1e-5), fam


@needs_node
def test_js_rotation_by_90_degrees_is_rot90():
    digit = make_image(1, 28, 28)
    res = run_js([{"op": "warp", "family": "affine", "theta": affine_from_params(90.0).tolist(), "image": b64(digit),
                   "shape": [1, 28, 28], "out": [28, 28]}])[0]
    js = torch.tensor(res["output"]).reshape(1, 28, 28)
    assert torch.allclose(js, torch.rot90(digit, 1, dims=(1, 2)), atol=1e-5)
    assert not torch.allclose(js, digit, atol=1e-2)


@needs_node
def test_js_parameter_helpers_match_the_library():
    params = {"rotation_deg": 33.0, "scale_x": 0.8, "scale_y": 1.2, "shear": 0.15, "tx": 0.2, "ty": -0.3}
    theta = affine_from_params(**params)
    sq = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
    dst = torch.tensor([[-0.8, -0.9], [0.7, -1.1], [1.2, 0.8], [-0.9, 0.6]])
    res = run_js([
        {"op": "affine", "params": params, "theta": theta.tolist()},
        {"op": "homography", "src": sq.tolist(), "dst": dst.tolist()},
        {"op": "identity", "family": "tps", "grid_size": 4},
        {"op": "identity", "family": "projective"},
    ])
    assert np.allclose(res[0]["theta"], theta.tolist(), atol=1e-7)
    want = decompose_affine(theta)
    assert all(math.isclose(res[0]["params"][k], want[k], abs_tol=1e-6) for k in want)
    assert np.allclose(res[1]["theta"], homography_from_points(sq.double(), dst.double()).tolist(), atol=1e-9)
    assert res[2]["theta"] == get_transform("tps").identity().tolist()
    assert res[3]["theta"] == get_transform("projective").identity().tolist()


def config_of(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" class="stn-config">(.*?)</script>', html_text, re.S)
    assert m, "no config in the explorer's HTML"
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_static_explorer_html_carries_exact_image_theta_and_script():
    digit = make_image(1, 28, 28)
    theta = affine_from_params(15.0, 0.9, 0.9)
    ex = web.static_theta_explorer(digit, "affine", theta=theta, out_size=(20, 24), title="a </script> title")
    page = ex._repr_html_()
    cfg = config_of(page)
    img = np.frombuffer(base64.b64decode(cfg["image"]), dtype="<f4").reshape(1, 28, 28)
    assert np.array_equal(img, digit.numpy())  # bit for bit: the browser warps the same float32 values
    assert cfg["theta"] == theta.tolist() and (cfg["out_height"], cfg["out_width"]) == (20, 24)
    assert cfg["title"] == "a </script> title"
    assert page.count("</script>") == 2  # the config and the script; the title cannot close either early
    assert JS.read_text().splitlines()[0] in page  # the script travels with the output: no server needed
    assert "http://" not in page and "https://" not in page  # nothing from the network
    assert ex.element_id == web.static_theta_explorer(digit, "affine", theta=theta, out_size=(20, 24),
                                                      title="a </script> title").element_id


def test_static_explorer_rejects_what_the_page_cannot_draw():
    digit = torch.zeros(1, 28, 28)
    with pytest.raises(ValueError, match="affine3d"):
        web.static_theta_explorer(digit, "affine3d")
    with pytest.raises(ValueError, match="6 numbers"):
        web.static_theta_explorer(digit, "affine", theta=[1.0, 0, 0])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        web.static_theta_explorer(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="fixed scale"):
        web.static_theta_explorer(digit, get_transform("attention", scale=0.5))
    assert web.static_theta_explorer(digit, get_transform("tps", grid_size=3)).config["tps_grid_size"] == 3


def test_prediction_explorer_from_a_model():
    from stnlib.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", "affine", (28, 28))).eval()
    images, labels = make_image(1, 28, 28)[None].repeat(3, 1, 1, 1), torch.tensor([3, 1, 4])
    ex = web.static_model_explorer(model, images, labels, title="untrained")
    cfg = config_of(ex.html(include_script=False))
    assert cfg["mode"] == "gallery" and len(cfg["items"]) == 3
    assert cfg["items"][2]["note"].startswith("label 4, classifier says")
    assert cfg["items"][0]["theta"] == pytest.approx([1, 0, 0, 0, 1, 0], abs=1e-6)  # an untrained ST is the identity


def test_landing_figure_is_committed_and_drawable():
    png = ROOT / "book" / "_static" / "stn" / "figures" / "three_parts.png"
    assert png.is_file(), "run `python -m stnbook.web figures`"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = web.plot_three_parts(make_image(1, 28, 28))
    assert len(fig.axes) == 2 and fig.axes[1].images  # input and output panels, the output drawn
    plt.close(fig)
    for fig in (web.plot_pixel_conventions(4), web.plot_theta_direction(make_image(1, 28, 28))):
        assert fig.axes
        plt.close(fig)


# --------------------------------------------------------------------------------------------- vendoring

@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """A checkout with a lockfile and an `npm` whose `ci` lays out node_modules (no network)."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "package-lock.json").write_text('{"lockfileVersion": 3}')
    monkeypatch.setattr(web, "project_root", lambda: root)
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\n"
                   "[ \"$1\" = ci ] || exit 3\n"
                   "mkdir -p node_modules/pkg/dist node_modules/pkg/es5/input/tex/ext\n"
                   "echo amd > node_modules/pkg/dist/embed-amd.js\n"
                   "echo font > node_modules/pkg/dist/a.woff2\n"
                   "echo map > node_modules/pkg/dist/x.js.map\n"
                   "echo ext > node_modules/pkg/es5/input/tex/ext/a.js\n")
    npm.chmod(0o755)
    return root, npm


def test_vendoring_runs_npm_ci_and_copies_only_the_listed_files(fake_checkout, tmp_path, monkeypatch):
    root, npm = fake_checkout
    files = [("dist/embed-amd.js", "html-manager"), ("dist/*.woff2", "html-manager"), ("es5/input/*", "mathjax/input")]
    monkeypatch.setattr(web, "VENDOR", {"pkg": {"files": files}})
    monkeypatch.setattr(web, "VENDOR_ENTRY_POINTS", ("html-manager/embed-amd.js", "mathjax/input/tex/ext/a.js"))
    dest = tmp_path / "vendor"
    assert web.check_vendored(dest)  # nothing there yet
    web.vendor_web_assets(dest, npm=str(npm), quiet=True)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["LOCKFILE.sha256", "html-manager/a.woff2", "html-manager/embed-amd.js", "mathjax/input/tex/ext/a.js"]
    assert web.check_vendored(dest) == []
    npm.write_text("#!/bin/sh\nexit 9\n")  # a second call with the same lockfile must not even run npm
    web.vendor_web_assets(dest, npm=str(npm), quiet=True)
    (root / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": true}')
    assert web.check_vendored(dest)  # the pins changed: stale
    with pytest.raises(RuntimeError, match="npm ci failed"):
        web.vendor_web_assets(dest, npm=str(npm), quiet=True)  # npm runs, and fails here
    assert (dest / "html-manager" / "embed-amd.js").is_file()  # a failed update leaves the old assets


def test_the_lockfile_pins_every_vendored_package():
    import json

    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    declared = json.loads((ROOT / "package.json").read_text())["dependencies"]
    for name in web.VENDOR:
        entry = lock[f"node_modules/{name}"]
        assert entry["version"] == declared[name] and entry["integrity"].startswith("sha512-")


def test_book_config_serves_the_vendored_assets_and_no_cdn():
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert "book/_static" in cfg["html_static_path"]
    assert not (ROOT / "_static").exists(), "a root _static is injected into every page by jupyter-book 1.x"
    assert cfg["mathjax_path"] == "stn/vendor/mathjax/tex-mml-chtml.js"
    assert list(cfg["nb_ipywidgets_js"]) == ["stn/widgets-setup.js", "stn/vendor/require.js",
                                             "stn/vendor/html-manager/embed-amd.js"]
    assert (ROOT / "book" / "_static" / "stn" / "widgets-setup.js").is_file()
    for entry in (cfg["mathjax_path"], *list(cfg["nb_ipywidgets_js"])[1:]):
        assert entry.removeprefix("stn/vendor/") in web.VENDOR_ENTRY_POINTS
    assert "://" not in json.dumps(cfg["nb_ipywidgets_js"])
    if os.environ.get("CI"):  # after scripts/setup.sh the assets must be in place
        assert web.check_vendored() == []
