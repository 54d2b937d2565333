"""Known geometric answers for every registered transformation family and the sampler."""

import math

import pytest
import torch
import torch.nn.functional as F

import stnlib
from stnlib import available_transforms, bilinear_sample, get_transform, trilinear_sample
from stnlib.coords import base_grid, normalized_to_pixel, pixel_to_normalized

FAMILIES_2D = [n for n in available_transforms() if get_transform(n).ndim == 2]


def test_registry_has_the_paper_families():
    assert set(available_transforms()) >= {"affine", "attention", "projective", "tps", "affine3d"}
    assert {n: get_transform(n).num_params for n in ["affine", "attention", "projective", "tps", "affine3d"]} == {
        "affine": 6, "attention": 3, "projective": 8, "tps": 32, "affine3d": 12}
    assert stnlib.ALIGN_CORNERS is False


@pytest.mark.parametrize("name", available_transforms())
def test_identity_is_1d_float_of_num_params(name):
    t = get_transform(name)
    ident = t.identity()
    assert ident.dim() == 1 and ident.numel() == t.num_params and ident.dtype == torch.float32


@pytest.mark.parametrize("name", FAMILIES_2D)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(28, 28), (13, 42)])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_theta_returns_the_input(name, align_corners, size, channels):
    t = get_transform(name)
    x = torch.rand(2, channels, *size, dtype=torch.float64)
    theta = t.identity().double().repeat(2, 1)
    out = bilinear_sample(x, t.grid(theta, size, align_corners), align_corners)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, rtol=0, atol=1e-10)
    # float32: the same, up to float32 rounding of the grid
    out32 = bilinear_sample(x.float(), t.grid(theta.float(), size, align_corners), align_corners)
    torch.testing.assert_close(out32, x.float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(6, 7, 8), (4, 4, 4)])
def test_identity_affine3d_returns_the_volume(align_corners, size):
    t = get_transform("affine3d")
    v = torch.rand(2, 2, *size, dtype=torch.float64)
    grid = t.grid(t.identity().double().repeat(2, 1), size, align_corners)
    assert grid.shape == (2, *size, 3)
    torch.testing.assert_close(trilinear_sample(v, grid, align_corners), v, rtol=0, atol=1e-10)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(5, 7), (28, 28)])
def test_affine_grid_matches_torch(align_corners, size):
    theta = torch.randn(4, 6, dtype=torch.float64)
    ours = get_transform("affine").grid(theta, size, align_corners)
    ref = F.affine_grid(theta.view(-1, 2, 3), (4, 1, *size), align_corners=align_corners)
    torch.testing.assert_close(ours, ref)


def test_affine3d_grid_matches_torch():
    theta = torch.randn(3, 12, dtype=torch.float64)
    ours = get_transform("affine3d").grid(theta, (4, 5, 6))
    ref = F.affine_grid(theta.view(-1, 3, 4), (3, 1, 4, 5, 6), align_corners=stnlib.ALIGN_CORNERS)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("size", [10, 28])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_exact_90_degree_rotation_equals_rot90(size, k):
    # Output point (x, y) reads input point R(x, y). Image rows grow downward, so rotating the
    # content counter-clockwise by 90 degrees (torch.rot90, k=1) reads input (x_s, y_s) = (-y, x).
    a = math.pi / 2 * k
    c, s = round(math.cos(a)), round(math.sin(a))
    theta = torch.tensor([[c, -s, 0.0, s, c, 0.0]], dtype=torch.float64)
    x = torch.rand(1, 2, size, size, dtype=torch.float64)
    out = bilinear_sample(x, get_transform("affine").grid(theta, size))
    torch.testing.assert_close(out, torch.rot90(x, k, dims=(2, 3)), rtol=0, atol=1e-10)


def test_projective_with_affine_bottom_row_equals_affine():
    aff = torch.randn(5, 6, dtype=torch.float64) * 0.3 + torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64)
    proj = torch.cat([aff, torch.zeros(5, 2, dtype=torch.float64)], dim=1)
    for size in [(9, 11), (28, 28)]:
        torch.testing.assert_close(get_transform("projective").grid(proj, size), get_transform("affine").grid(aff, size))


def test_projective_perspective_divides():
    # h7 = 0.5: the point x_t = 1 has w = 1.5, so x_s = 1 / 1.5.
    theta = torch.tensor([[1.0, 0, 0, 0, 1, 0, 0.5, 0]], dtype=torch.float64)
    pts = get_transform("projective").transform_points(theta, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(pts, torch.tensor([[[1 / 1.5, 0.0]]], dtype=torch.float64))


def test_projective_horizon_is_finite():
    theta = torch.tensor([[1.0, 0, 0, 0, 1, 0, 1.0, 0]])  # w = 1 + x vanishes at x = -1
    grid = get_transform("projective").grid(theta, (8, 9), align_corners=True)
    assert torch.isfinite(grid).all()


@pytest.mark.parametrize("grid_size", [3, 4])
def test_tps_without_bending_equals_affine(grid_size):
    tps = get_transform("tps", grid_size=grid_size)
    aff = torch.tensor([[0.9, -0.2, 0.1, 0.3, 1.1, -0.05], [0.6, 0.0, 0.2, 0.0, 0.6, 0.3]], dtype=torch.float64)
    ctrl = tps.identity().double().view(-1, 2)
    theta = get_transform("affine").transform_points(aff, ctrl).reshape(2, -1)  # control points moved affinely
    for size in [(12, 12), (28, 20)]:
        torch.testing.assert_close(tps.grid(theta, size), get_transform("affine").grid(aff, size), rtol=0, atol=1e-8)


def test_tps_interpolates_its_control_points():
    tps = get_transform("tps")
    theta = tps.identity().double()[None] + 0.1 * torch.randn(1, 32, dtype=torch.float64)
    ctrl = tps.identity().double().view(-1, 2)
    torch.testing.assert_close(tps.transform_points(theta, ctrl), theta.view(1, -1, 2), rtol=0, atol=1e-8)


def test_attention_is_scale_and_translation():
    theta = torch.tensor([[0.5, 0.2, -0.3]], dtype=torch.float64)
    aff = torch.tensor([[0.5, 0.0, 0.2, 0.0, 0.5, -0.3]], dtype=torch.float64)
    torch.testing.assert_close(get_transform("attention").grid(theta, 14), get_transform("affine").grid(aff, 14))
    fixed = get_transform("attention", scale=0.5)
    assert fixed.num_params == 2
    torch.testing.assert_close(fixed.grid(theta[:, 1:], 14), get_transform("affine").grid(aff, 14))


def test_attention_downsampling_crop_reads_the_right_pixels():
    # A centred half-size crop sampled at half resolution reads exactly 2x2 block corners... with
    # align_corners=False, output pixel centres land between input pixel centres: each output pixel
    # is the mean of a 2x2 block of the central region.
    x = torch.arange(64.0, dtype=torch.float64).reshape(1, 1, 8, 8)
    theta = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64)
    out = bilinear_sample(x, get_transform("attention").grid(theta, (2, 2)))
    expected = F.avg_pool2d(x[:, :, 2:6, 2:6], 2)
    torch.testing.assert_close(out, expected)


def eq5_reference(u: torch.Tensor, grid: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Eq. 5 written out pixel by pixel: V = sum_nm U_nm max(0, 1-|x_s-m|) max(0, 1-|y_s-n|)."""
    b, c, h, w = u.shape
    ho, wo = grid.shape[1:3]
    out = torch.zeros(b, c, ho, wo, dtype=u.dtype)
    for bi in range(b):
        for i in range(ho):
            for j in range(wo):
                xs, ys = grid[bi, i, j].tolist()
                # normalised -> pixel units (m, n index columns and rows)
                if align_corners:
                    px, py = (xs + 1) * (w - 1) / 2, (ys + 1) * (h - 1) / 2
                else:
                    px, py = ((xs + 1) * w - 1) / 2, ((ys + 1) * h - 1) / 2
                acc = torch.zeros(c, dtype=u.dtype)
                for n in range(h):
                    ky = max(0.0, 1 - abs(py - n))
                    if ky == 0:
                        continue
                    for m in range(w):
                        kx = max(0.0, 1 - abs(px - m))
                        if kx:
                            acc += u[bi, :, n, m] * kx * ky
                out[bi, :, i, j] = acc
    return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_sampler_agrees_with_per_pixel_eq5(align_corners):
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 2, 6, 7, generator=g, dtype=torch.float64)
    theta = torch.tensor([[0.8, 0.3, 0.1, -0.2, 0.9, -0.15], [1.3, 0.0, 0.4, 0.1, -1.1, 0.0]], dtype=torch.float64)
    grid = get_transform("affine").grid(theta, (5, 4), align_corners)  # some points fall outside: zeros
    torch.testing.assert_close(bilinear_sample(u, grid, align_corners), eq5_reference(u, grid, align_corners))


@pytest.mark.parametrize("name", FAMILIES_2D)
def test_gradcheck_wrt_theta_and_image(name):
    t = get_transform(name)
    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 2, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    # Random, non-degenerate theta near the identity keeps sample points off pixel edges (where
    # the bilinear kernel has kinks and finite differences disagree with the sub-gradient).
    theta = (t.identity().double() + 0.05 * torch.randn(2, t.num_params, generator=g, dtype=torch.float64))
    theta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda th, im: bilinear_sample(im, t.grid(th, (5, 4))), (theta, u))


def test_gradcheck_trilinear_affine3d():
    t = get_transform("affine3d")
    g = torch.Generator().manual_seed(2)
    v = torch.rand(1, 1, 4, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    theta = (t.identity().double() + 0.05 * torch.randn(1, 12, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda th, im: trilinear_sample(im, t.grid(th, (3, 3, 3))), (theta, v))


def test_pixel_conversion_round_trip_and_corners():
    pts = torch.rand(10, 2) * 2 - 1
    for ac in (False, True):
        torch.testing.assert_close(pixel_to_normalized(normalized_to_pixel(pts, (28, 42), ac), (28, 42), ac), pts)
    # align_corners=False: -1/+1 are the outer pixel edges; True: the corner pixel centres
    assert normalized_to_pixel(torch.tensor([-1.0, 1.0]), (10, 20), False).tolist() == [-0.5, 9.5]
    assert normalized_to_pixel(torch.tensor([-1.0, 1.0]), (10, 20), True).tolist() == [0.0, 9.0]
    g = base_grid((3, 5), align_corners=False)
    assert normalized_to_pixel(g, (3, 5))[2, 4].tolist() == pytest.approx([4.0, 2.0])


@pytest.mark.parametrize("name", available_transforms())
def test_bad_theta_raises(name):
    t = get_transform(name)
    size = (4, 4, 4) if t.ndim == 3 else (4, 4)
    with pytest.raises(ValueError, match=rf"\(B, {t.num_params}\)"):
        t.grid(torch.zeros(2, t.num_params + 1), size)
    with pytest.raises(ValueError, match=rf"\(B, {t.num_params}\)"):
        t.grid(torch.zeros(t.num_params), size)
    bad = t.identity().repeat(3, 1)
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf.*rows \\[1\\]"):
        t.grid(bad, size)
    bad[1, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        t.grid(bad, size)
    with pytest.raises(ValueError, match="positive"):
        t.grid(t.identity()[None], tuple(0 for _ in size))
    with pytest.raises(ValueError, match="entries"):
        t.grid(t.identity()[None], (4,) * (t.ndim + 1))


def test_unknown_transform_and_bad_sampler_inputs():
    with pytest.raises(ValueError, match="unknown transform 'similarity'.*affine"):
        get_transform("similarity")
    g = base_grid((4, 4))[None]
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        bilinear_sample(torch.rand(4, 4), g)
    with pytest.raises(ValueError, match=r"\(B, H', W', 2\)"):
        bilinear_sample(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4, 3))
    with pytest.raises(ValueError, match="batch size"):
        bilinear_sample(torch.rand(2, 1, 4, 4), g)
    with pytest.raises(ValueError, match="floating-point"):
        bilinear_sample(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), g)
    with pytest.raises(ValueError, match="padding"):
        bilinear_sample(torch.rand(1, 1, 4, 4), g, padding="wrap")
