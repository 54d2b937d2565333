"""Distorted MNIST generators: shapes, determinism, known geometric answers, clutter and step-indexed batches."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stnlib import bilinear_sample, get_transform
from stnlib.coords import pixel_to_normalized
from stnlib.data import (
    DISTORTIONS,
    KINDS,
    DistortedMNIST,
    apply_distortion,
    digit_box,
    distortion_matrix,
    fixed_test_set,
    make_addition_batch,
    ramp_strength,
    sample_distortion,
    soften_distortion,
)
from stnlib.transforms.projective import homography_from_points, projective_points

CANVAS = {"none": 28, "R": 28, "RTS": 42, "P": 28, "E": 28, "TC": 60, "R180": 28}
MNIST_ROOT = Path(__file__).resolve().parents[1] / "data"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def square_digits(n=3, lo=8, hi=20):
    """Synthetic digits: a bright square with a textured inside (so rotations are visible), zero border."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, lo:hi, lo:hi] = torch.rand(n, 1, hi - lo, hi - lo, generator=gen(99)) * 0.5 + 0.5
    return x


def with_(params, **values):
    """A copy of ``params`` with entries set to constants (broadcast over the batch)."""
    out = {k: v.clone() for k, v in params.items()}
    for k, v in values.items():
        out[k][:] = torch.as_tensor(v, dtype=out[k].dtype)
    return out


def test_paper_constants():
    assert set(KINDS) == {"none", "R", "RTS", "P", "E", "TC", "R180"}
    assert DISTORTIONS["R"].max_angle_deg == 90 and DISTORTIONS["R180"].max_angle_deg == 180
    assert {k: s.canvas for k, s in DISTORTIONS.items()} == CANVAS
    assert DISTORTIONS["RTS"].scale_range == (0.7, 1.2) and DISTORTIONS["RTS"].max_angle_deg == 45
    assert DISTORTIONS["TC"].clutter_count == 6 and DISTORTIONS["TC"].clutter_size == 6


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtype_and_range(kind):
    x = torch.rand(5, 1, 28, 28)
    params = sample_distortion(kind, 5, gen())
    assert all(v.shape[0] == 5 for v in params.values())
    out = apply_distortion(kind, x, params)
    s = CANVAS[kind]
    assert out.shape == (5, 1, s, s) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert distortion_matrix(kind, params).shape == (5, 3, 3)
    assert digit_box(kind, params).shape == (5, 4)


@pytest.mark.parametrize("kind,canvas", [("RTS", 50), ("TC", 84), ("TC", 28)])
def test_other_canvas_sizes(kind, canvas):
    params = sample_distortion(kind, 4, gen(), canvas=canvas)
    assert apply_distortion(kind, torch.rand(4, 1, 28, 28), params).shape == (4, 1, canvas, canvas)
    # the digit frame (for RTS: scaled, before rotation) lies on the canvas
    centre = (canvas - 1) / 2 + params["translation"]
    half = 14 * params.get("scale", torch.ones(4, dtype=torch.float64))[:, None]
    assert (centre - half >= -0.5 - 1e-9).all() and (centre + half <= canvas - 0.5 + 1e-9).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown distortion"):
        sample_distortion("XYZ", 2, gen())
    with pytest.raises(ValueError, match="canvas"):
        sample_distortion("R", 2, gen(), canvas=42)
    with pytest.raises(ValueError, match="TC"):
        sample_distortion("RTS", 2, gen(), clutter=3)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        apply_distortion("R", torch.rand(2, 28, 28), sample_distortion("R", 2, gen()))
    with pytest.raises(ValueError, match="params are for"):
        apply_distortion("R", torch.rand(3, 1, 28, 28), sample_distortion("R", 2, gen()))
    with pytest.raises(ValueError, match="other digits"):
        sample_distortion("TC", 1, gen())


def test_sampled_ranges_follow_the_paper():
    n = 4000
    r = sample_distortion("R", n, gen())["angle_deg"]
    assert r.min() >= -90 and r.max() <= 90 and r.min() < -85 and r.max() > 85
    p = sample_distortion("RTS", n, gen())
    assert p["angle_deg"].abs().max() <= 45 and p["angle_deg"].abs().max() > 44
    assert p["scale"].min() >= 0.7 and p["scale"].max() <= 1.2
    half = (42 - 28 * p["scale"]) / 2
    assert (p["translation"].abs() <= half[:, None] + 1e-12).all()
    assert (p["translation"].abs() > 0.9 * half[:, None]).any()  # the whole range is used
    e = sample_distortion("E", n, gen())
    assert e["scale"].min() >= 0.75 and e["scale"].max() <= 1.0
    assert e["control_offset"].shape == (n, 16, 2) and abs(e["control_offset"].std() - 1.5) < 0.05
    pp = sample_distortion("P", n, gen())
    assert pp["corner_offset"].shape == (n, 4, 2) and abs(pp["corner_offset"].std() - 5) < 0.3
    tc = sample_distortion("TC", n, gen())
    assert torch.equal(tc["translation"], tc["translation"].round())
    assert tc["translation"].min() == -16 and tc["translation"].max() == 16
    assert tc["clutter_crop"].min() == 0 and tc["clutter_crop"].max() == 22
    assert tc["clutter_pos"].min() == 0 and tc["clutter_pos"].max() == 54


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_different_seed_different(kind):
    x = torch.rand(6, 1, 28, 28)
    a = apply_distortion(kind, x, sample_distortion(kind, 6, gen(1)))
    b = apply_distortion(kind, x, sample_distortion(kind, 6, gen(1)))
    assert torch.equal(a, b)
    if kind != "none":
        assert not torch.equal(a, apply_distortion(kind, x, sample_distortion(kind, 6, gen(2))))


@pytest.mark.parametrize("angle,k", [(90.0, 1), (-90.0, -1)])
def test_R_at_90_degrees_equals_rot90_counter_clockwise(angle, k):
    x = torch.rand(3, 1, 28, 28)
    params = with_(sample_distortion("R", 3, gen()), angle_deg=angle)
    torch.testing.assert_close(apply_distortion("R", x, params), torch.rot90(x, k, dims=(-2, -1)), rtol=0, atol=1e-5)


def test_RTS_without_rotation_and_scaling_pastes_the_digit_at_the_offset():
    x = torch.rand(2, 1, 28, 28)
    params = with_(sample_distortion("RTS", 2, gen()), angle_deg=0.0, scale=1.0, translation=[3.0, -5.0])
    out = apply_distortion("RTS", x, params)
    expected = torch.zeros(2, 1, 42, 42)
    expected[:, :, 7 - 5:35 - 5, 7 + 3:35 + 3] = x  # centred offset 7, then x + 3 (right), y - 5 (up)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(digit_box("RTS", params)[0], torch.tensor([9.5, 1.5, 37.5, 29.5], dtype=torch.float64))


def test_RTS_rotation_is_about_the_digit_centre():
    x = torch.rand(2, 1, 28, 28)
    params = with_(sample_distortion("RTS", 2, gen()), angle_deg=90.0, scale=1.0, translation=[-4.0, 6.0])
    expected = torch.zeros(2, 1, 42, 42)
    expected[:, :, 13:41, 3:31] = torch.rot90(x, 1, dims=(-2, -1))
    torch.testing.assert_close(apply_distortion("RTS", x, params), expected, rtol=0, atol=1e-5)


def test_RTS_scale_2_equals_bilinear_upsampling():
    # Scale > 1 enlarges the digit: scale 2 is 2x bilinear upsampling (align_corners=False), centre-cropped.
    x = torch.rand(2, 1, 28, 28)
    params = with_(sample_distortion("RTS", 2, gen()), angle_deg=0.0, scale=2.0, translation=[0.0, 0.0])
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(apply_distortion("RTS", x, params), up[:, :, 7:49, 7:49], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["R", "RTS", "TC"])
def test_matrix_through_the_affine_grid_reproduces_the_distortion(kind):
    x = torch.rand(4, 1, 28, 28)
    params = sample_distortion(kind, 4, gen(), **({"clutter": 0} if kind == "TC" else {}))
    mat = distortion_matrix(kind, params)
    assert torch.equal(mat[:, 2], torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(4, 3))
    grid = get_transform("affine").grid(mat[:, :2].reshape(4, 6).float(), CANVAS[kind])
    torch.testing.assert_close(bilinear_sample(x, grid), apply_distortion(kind, x, params), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["R", "RTS", "TC"])
def test_matrix_maps_the_digit_centre_to_the_frame_centre(kind):
    params = sample_distortion(kind, 8, gen(3))
    s = CANVAS[kind]
    mat = distortion_matrix(kind, params)
    centre_px = (s - 1) / 2 + params.get("translation", torch.zeros(8, 2, dtype=torch.float64))
    box = digit_box(kind, params)
    torch.testing.assert_close((box[:, :2] + box[:, 2:]) / 2, centre_px)
    q = pixel_to_normalized(centre_px, (s, s))
    p = (mat[:, :2, :2] @ q[:, :, None])[:, :, 0] + mat[:, :2, 2]
    torch.testing.assert_close(p, torch.zeros_like(p), rtol=0, atol=1e-12)


def test_P_maps_the_frame_centre_to_the_intersection_of_the_diagonals():
    params = sample_distortion("P", 8, gen(3))
    corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
    c = 13.5 + 14 * params["scale"][:, None, None] * corners + params["corner_offset"]  # moved corners, px
    # TL + t (BR - TL) = TR + u (BL - TR)
    lhs = torch.stack([c[:, 2] - c[:, 0], c[:, 1] - c[:, 3]], dim=2)
    t_u = torch.linalg.solve(lhs, c[:, 1] - c[:, 0])
    meet = c[:, 0] + t_u[:, :1] * (c[:, 2] - c[:, 0])
    q = pixel_to_normalized(meet, (28, 28))
    theta = distortion_matrix("P", params).reshape(8, 9)[:, :8]
    torch.testing.assert_close(projective_points(theta, q[:, None]), torch.zeros(8, 1, 2, dtype=torch.float64),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind,offset_key", [("P", "corner_offset"), ("E", "control_offset")])
def test_equal_offsets_translate_the_digit_in_their_direction(kind, offset_key):
    x = square_digits()
    params = with_(sample_distortion(kind, 3, gen()), scale=1.0, **{offset_key: [2.0, 3.0]})
    expected = torch.zeros_like(x)
    expected[:, :, 3:, 2:] = x[:, :, :-3, :-2]  # 2 px right, 3 px down
    torch.testing.assert_close(apply_distortion(kind, x, params), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(digit_box(kind, params)[0], torch.tensor([1.5, 2.5, 29.5, 30.5], dtype=torch.float64))


@pytest.mark.parametrize("kind,offset_key", [("P", "corner_offset"), ("E", "control_offset")])
def test_zero_offsets_are_the_plain_scaling(kind, offset_key):
    x = torch.rand(3, 1, 28, 28)
    params = with_(sample_distortion(kind, 3, gen()), **{offset_key: 0.0})
    s = params["scale"]
    expected_mat = torch.diag_embed(torch.stack([1 / s, 1 / s, torch.ones_like(s)], 1))
    torch.testing.assert_close(distortion_matrix(kind, params), expected_mat, rtol=0, atol=1e-9)
    rts = {"canvas": params["canvas"], "angle_deg": torch.zeros_like(s), "scale": s, "translation": torch.zeros(3, 2, dtype=torch.float64)}
    torch.testing.assert_close(apply_distortion(kind, x, params), apply_distortion("RTS", x, rts), rtol=0, atol=1e-4)


def test_P_box_is_the_box_of_the_moved_corners():
    params = sample_distortion("P", 16, gen())
    corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
    moved = 13.5 + 14 * params["scale"][:, None, None] * corners + params["corner_offset"]
    expected = torch.cat([moved.amin(1), moved.amax(1)], 1)
    torch.testing.assert_close(digit_box("P", params), expected)


def test_P_never_folds_the_frame_through_the_horizon():
    # The digit -> canvas map of a folded (non-convex) quad has homogeneous w of both signs on the frame;
    # about 1.5% of raw N(0, 5 px) draws do, so 3000 samples would catch a missing redraw.
    params = sample_distortion("P", 3000, gen())
    forward = torch.linalg.inv(distortion_matrix("P", params))
    corners = torch.tensor([[-1.0, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=torch.float64)
    w = (forward @ corners.t())[:, 2]
    assert ((w > 0).all(1) | (w < 0).all(1)).all()


@pytest.mark.parametrize("kind", ["RTS", "TC"])
@pytest.mark.parametrize("canvas", [None, 64])
def test_digit_box_contains_the_digit(kind, canvas):
    x = square_digits(8, lo=5, hi=23)
    params = sample_distortion(kind, 8, gen(5), canvas=canvas, **({"clutter": 0} if kind == "TC" else {}))
    out = apply_distortion(kind, x, params)
    box = digit_box(kind, params)
    for i in range(8):
        ys, xs = (out[i, 0] > 0).nonzero(as_tuple=True)
        assert len(xs) > 0
        assert xs.min() >= box[i, 0] and xs.max() <= box[i, 2] and ys.min() >= box[i, 1] and ys.max() <= box[i, 3]
    if kind == "TC":  # exact: the whole frame, 28 px wide, at the pasted place
        torch.testing.assert_close(box[:, 2:] - box[:, :2], torch.full((8, 2), 28.0, dtype=torch.float64))
        tl = params["translation"] + (params["canvas"][:, None] - 28) / 2
        torch.testing.assert_close(out[:, :, int(tl[0, 1]):int(tl[0, 1]) + 28, int(tl[0, 0]):int(tl[0, 0]) + 28][:1],
                                   x[:1], rtol=0, atol=1e-5)


def test_TC_clutter_patches_are_six_6x6_squares_at_their_positions():
    # Digit 0 is blank and every other digit is white, so image 0 shows exactly its clutter patches.
    x = torch.ones(5, 1, 28, 28)
    x[0] = 0
    params = sample_distortion("TC", 5, gen())
    assert params["clutter_index"].shape == (5, 6) and params["clutter_crop"].shape == (5, 6, 2)
    assert (params["clutter_index"] != torch.arange(5)[:, None]).all()  # never the digit itself
    out = apply_distortion("TC", x, params)
    expected = torch.zeros(60, 60)
    for px, py in params["clutter_pos"][0].tolist():
        expected[py:py + 6, px:px + 6] = 1
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-5)


def test_TC_patch_is_the_crop_of_its_source_and_never_darkens_the_digit():
    x = torch.rand(3, 1, 28, 28)
    params = sample_distortion("TC", 3, gen(), clutter=1)
    params["clutter_index"][0, 0] = 2
    params["clutter_crop"][0, 0] = torch.tensor([20, 3])  # x = 20 (column), y = 3 (row)
    params["clutter_pos"][0, 0] = torch.tensor([50, 1])
    out = apply_distortion("TC", x, params)
    plain = apply_distortion("TC", x, {**params, **{k: params[k][:, :0] for k in ("clutter_index", "clutter_crop", "clutter_pos")}})
    torch.testing.assert_close(out[0, 0, 1:7, 50:56], torch.maximum(plain[0, 0, 1:7, 50:56], x[2, 0, 3:9, 20:26]))
    assert (out >= plain).all() and (out > plain).any()


def test_TC_clutter_pool_and_exclusion():
    pool = torch.rand(50, 1, 28, 28)
    own = torch.tensor([3, 7, 7, 49])
    params = sample_distortion("TC", 4, gen(), pool_size=50, digit_index=own)
    assert (params["clutter_index"] != own[:, None]).all() and params["clutter_index"].max() < 50
    out = apply_distortion("TC", pool[own], params, clutter_images=(pool * 255).round().to(torch.uint8))
    assert out.shape == (4, 1, 60, 60)


def test_homography_from_points_maps_the_points():
    g = gen(4)
    src = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]]) + 0.2 * torch.randn(16, 4, 2, generator=g)
    dst = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]]) + 0.2 * torch.randn(16, 4, 2, generator=g)
    theta = homography_from_points(src.double(), dst.double())
    assert theta.shape == (16, 8)
    torch.testing.assert_close(projective_points(theta, src.double()), dst.double(), rtol=0, atol=1e-10)
    # an affine correspondence gives h7 = h8 = 0 and the affine parameters
    a = torch.tensor([[0.9, -0.2, 0.1], [0.3, 1.1, -0.2]], dtype=torch.float64)
    aff = src.double() @ a[:, :2].t() + a[:, 2]
    torch.testing.assert_close(homography_from_points(src.double(), aff), torch.cat([a.flatten(), torch.zeros(2, dtype=torch.float64)]).expand(16, 8))
    with pytest.raises(ValueError, match="collinear"):
        homography_from_points(torch.tensor([[0.0, 0], [1, 1], [2, 2], [0, 1]]), src[0])


def test_addition_batch_holds_two_independent_rts_digits():
    a, b = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    x, pa, pb = make_addition_batch(a, b, gen(7))
    assert x.shape == (4, 2, 42, 42)
    torch.testing.assert_close(x[:, :1], apply_distortion("RTS", a, pa), rtol=0, atol=1e-6)
    torch.testing.assert_close(x[:, 1:], apply_distortion("RTS", b, pb), rtol=0, atol=1e-6)
    assert not torch.equal(pa["angle_deg"], pb["angle_deg"])


def small_dataset(n=10):
    images = (torch.rand(n, 28, 28, generator=gen(8)) * 255).to(torch.uint8)
    return images, torch.arange(n) % 10


@pytest.mark.parametrize("kind", ["RTS", "TC"])
def test_step_indexed_batches_are_reproducible(kind):
    images, labels = small_dataset()
    data = DistortedMNIST(kind, images, labels, batch_size=4, seed=11)
    assert data.steps_per_epoch == 3
    x5, y5 = data.batch(5)
    x0, y0 = data.batch(0)
    fresh = DistortedMNIST(kind, images, labels, batch_size=4, seed=11)  # a resumed run, starting at step 5
    assert torch.equal(fresh.batch(5)[0], x5) and torch.equal(data.batch(5)[0], x5)
    assert torch.equal(y5, labels[data.indices(5)])
    assert x0.shape == (4, 1, CANVAS[kind], CANVAS[kind]) and x5.shape == (2, 1, CANVAS[kind], CANVAS[kind])
    assert not torch.equal(x0, data.batch(1)[0])
    assert not torch.equal(x0, DistortedMNIST(kind, images, labels, batch_size=4, seed=12).batch(0)[0])


def test_every_training_index_once_per_epoch():
    images, labels = small_dataset(10)
    data = DistortedMNIST("R", images, labels, batch_size=4, seed=0)
    epochs = [torch.cat([data.indices(e * 3 + i) for i in range(3)]) for e in range(3)]
    for order in epochs:
        assert torch.equal(order.sort().values, torch.arange(10))
    assert not torch.equal(epochs[0], epochs[1])
    # same images in the same place of two epochs still get different distortions (seeded by step)
    i = int((epochs[0] == epochs[1]).nonzero()[0]) if (epochs[0] == epochs[1]).any() else None
    if i is not None:
        assert not torch.equal(data.batch(i // 4)[0][i % 4], data.batch(3 + i // 4)[0][i % 4])


@pytest.mark.parametrize("kind", ["RTS", "TC"])
def test_fixed_test_set_is_bit_identical_for_a_seed(kind):
    images, labels = small_dataset(12)
    a = fixed_test_set(kind, images, labels, n=8)
    b = fixed_test_set(kind, images, labels, n=8)
    c = fixed_test_set(kind, images, labels, seed=99, n=8)
    assert a["x"].shape == (8, 1, CANVAS[kind], CANVAS[kind]) and torch.equal(a["y"], labels[:8])
    for key in ("x", "matrix", "box"):
        assert torch.equal(a[key], b[key])
        assert not torch.equal(a[key], c[key])
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    torch.testing.assert_close(a["x"], apply_distortion(kind, images[:8, None].float() / 255, a["params"],
                                                        clutter_images=images[:, None].float() / 255))


@pytest.mark.skipif(not (MNIST_ROOT / "mnist" / "t10k-images-idx3-ubyte").is_file(), reason="MNIST files not present")
def test_real_mnist_test_sets():
    from stnlib.data import load_mnist

    images, labels = load_mnist("test", root=MNIST_ROOT)
    for kind in KINDS:
        t = fixed_test_set(kind, images[:300], labels[:300])
        assert t["x"].shape == (300, 1, CANVAS[kind], CANVAS[kind]) and torch.isfinite(t["x"]).all()
        assert t["x"].min() >= 0 and t["x"].max() <= 1
        if kind == "RTS":  # the digit stays (mostly) on the canvas: its ink, scaled by s^2, is kept
            ink = images[:300].double().sum((1, 2)) / 255 * t["params"]["scale"] ** 2
            assert (t["x"].double().sum((1, 2, 3)) / ink).min() > 0.9


def test_soften_distortion_moves_every_parameter_towards_the_identity():
    p = sample_distortion("RTS", 64, gen(5))
    assert all(torch.equal(soften_distortion("RTS", p, 1.0)[k], p[k]) for k in p)
    none = soften_distortion("RTS", p, 0.0)
    assert torch.equal(none["angle_deg"], torch.zeros(64, dtype=torch.float64))
    assert torch.equal(none["scale"], torch.ones(64, dtype=torch.float64))
    assert torch.equal(none["translation"], torch.zeros(64, 2, dtype=torch.float64))
    half = soften_distortion("RTS", p, 0.5)
    torch.testing.assert_close(half["angle_deg"], p["angle_deg"] / 2)
    torch.testing.assert_close(half["scale"], p["scale"].sqrt())  # the geometric mean of scale and 1
    assert torch.equal(p["angle_deg"], sample_distortion("RTS", 64, gen(5))["angle_deg"])  # not changed in place
    # at strength 0 the digit comes out as it went in, in the middle of the canvas
    x = square_digits(2)
    q = soften_distortion("RTS", sample_distortion("RTS", 2, gen()), 0.0)
    expected = torch.zeros(2, 1, 42, 42)
    expected[:, :, 7:35, 7:35] = x
    torch.testing.assert_close(apply_distortion("RTS", x, q), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="R, R180, RTS"):
        soften_distortion("P", sample_distortion("P", 2, gen()), 0.5)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        soften_distortion("R", sample_distortion("R", 2, gen()), 1.5)


def test_ramped_batches_grow_from_upright_to_the_unramped_ones():
    images, labels = small_dataset()
    plain = DistortedMNIST("R", images, labels, batch_size=4, seed=11)
    ramped = DistortedMNIST("R", images, labels, batch_size=4, seed=11, ramp=(2, 6))
    assert [ramp_strength(t, ramped.ramp) for t in (0, 2, 3, 4, 6, 9)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    for step in (0, 1, 2):  # upright: the digits as they are
        x, y = ramped.batch(step)
        torch.testing.assert_close(x, images[ramped.indices(step)][:, None].float() / 255, rtol=0, atol=1e-5)
        assert torch.equal(y, plain.batch(step)[1])
    torch.testing.assert_close(ramped.params(4)["angle_deg"], plain.params(4)["angle_deg"] / 2)
    for step in (6, 7, 11):  # full strength: the very batches of the run without a ramp
        assert torch.equal(ramped.batch(step)[0], plain.batch(step)[0])
    assert "ramp=(2, 6)" in repr(ramped) and "ramp" not in repr(plain)
    with pytest.raises(ValueError, match="R, R180, RTS"):
        DistortedMNIST("TC", images, labels, batch_size=4, seed=0, ramp=(0, 5))
    with pytest.raises(ValueError, match="0 <= start < end"):
        DistortedMNIST("R", images, labels, batch_size=4, seed=0, ramp=(5, 5))
