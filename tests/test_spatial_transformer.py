"""The SpatialTransformer module, its parallel form, and the geometry helpers."""

import pytest
import torch
from torch import nn

from stnlib import ParallelSpatialTransformers, SpatialTransformer, available_transforms, get_transform
from stnlib.geometry import box_iou, compose, polygon_box, sampling_outline, to_matrix

FAMILIES_2D = [n for n in available_transforms() if get_transform(n).ndim == 2]


def loc_net(channels: int, size: tuple[int, int]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size[0] * size[1], 16), nn.ReLU())


@pytest.mark.parametrize("name", FAMILIES_2D)
@pytest.mark.parametrize("size", [(28, 28), (42, 30)])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_initialised_st_is_identity_at_step_0(name, size, channels):
    st = SpatialTransformer(loc_net(channels, size), name)
    x = torch.rand(4, channels, *size)
    out, theta = st(x)
    assert theta.shape == (4, get_transform(name).num_params)
    torch.testing.assert_close(theta, get_transform(name).identity().repeat(4, 1), rtol=0, atol=0)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    assert torch.count_nonzero(st.head.weight) == 0


def test_st_output_size_and_gradients_reach_the_localisation_net():
    st = SpatialTransformer(loc_net(1, (28, 28)), "attention", out_size=(14, 10))
    x = torch.rand(3, 1, 28, 28)
    out, theta = st(x)
    assert out.shape == (3, 1, 14, 10)
    out.square().sum().backward()
    # Weights are zero at init, so d/dW = (d/dtheta) * features must be non-zero for learning to start.
    assert st.head.weight.grad.abs().sum() > 0 and st.head.bias.grad.abs().sum() > 0


def test_st_samples_a_separate_source():
    st = SpatialTransformer(loc_net(1, (14, 14)), "attention", out_size=(28, 28))
    x_small, x_big = torch.rand(2, 1, 14, 14), torch.rand(2, 1, 28, 28)
    out, _ = st(x_small, source=x_big)
    torch.testing.assert_close(out, x_big, rtol=0, atol=1e-5)


def test_st_3d():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6 * 7 * 8, 8))
    st = SpatialTransformer(net, "affine3d", out_size=(3, 4, 5))
    out, theta = st(torch.rand(2, 1, 6, 7, 8))
    assert out.shape == (2, 1, 3, 4, 5) and theta.shape == (2, 12)


def test_st_errors_are_clear():
    with pytest.raises(ValueError, match="loc_features"):
        SpatialTransformer(nn.Flatten(), "affine")
    st = SpatialTransformer(nn.Flatten(), "affine", loc_features=16)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        st(torch.rand(2, 16))
    with pytest.raises(ValueError, match="positive"):
        SpatialTransformer(nn.Flatten(), "affine", out_size=(0, 4), loc_features=16)
    # a diverged localisation net is reported, not silently sampled
    st = SpatialTransformer(loc_net(1, (4, 4)), "affine")
    with torch.no_grad():
        st.head.bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        st(torch.rand(1, 1, 4, 4))


@pytest.mark.parametrize("size", [(42, 42), (30, 24)])
def test_parallel_transformers(size):
    n = 2
    init = torch.tensor([[0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    pst = ParallelSpatialTransformers(loc_net(2, size), n, "attention", out_size=(size[0] // 2, size[1] // 2), init=init)
    x = torch.rand(3, 2, *size)
    out, theta = pst(x)
    assert out.shape == (3, n, 2, size[0] // 2, size[1] // 2) and theta.shape == (3, n, 3)
    torch.testing.assert_close(theta, init.expand(3, n, 3))
    # each slice equals a single transformer with that theta
    single = SpatialTransformer(loc_net(2, size), "attention", out_size=(size[0] // 2, size[1] // 2))
    for k in range(n):
        torch.testing.assert_close(out[:, k], single.sample(x, theta[:, k]))
    # identity init gives the input in every slot
    ident = ParallelSpatialTransformers(loc_net(2, size), 3, "affine")
    out, _ = ident(x)
    torch.testing.assert_close(out, x[:, None].expand(3, 3, *x.shape[1:]), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"init must have shape \(2, 3\)"):
        ParallelSpatialTransformers(loc_net(2, size), 2, "attention", init=torch.zeros(3, 3))


def test_parallel_transformers_with_separate_localisation_nets():
    size, n = (30, 24), 2
    init = torch.tensor([[0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    pst = ParallelSpatialTransformers([loc_net(2, size) for _ in range(n)], n, "attention", init=init)
    x = torch.rand(3, 2, *size)
    out, theta = pst(x)
    assert out.shape == (3, n, 2, *size) and not pst.shared
    torch.testing.assert_close(theta, init.expand(3, n, 3))
    # transformer k's theta depends on net k only: perturb net 1's head and only theta[:, 1] moves
    with torch.no_grad():
        pst.heads[1].weight.normal_()
    _, moved = pst(x)
    torch.testing.assert_close(moved[:, 0], theta[:, 0], rtol=0, atol=0)
    assert not torch.allclose(moved[:, 1], theta[:, 1])
    moved.sum().backward()
    assert float(pst.loc_net[0][1].weight.grad.abs().sum()) == 0 and float(pst.loc_net[1][1].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="expected 2 \\(one per transformer\\), got 3"):
        ParallelSpatialTransformers([loc_net(2, size) for _ in range(3)], n, "attention")


def test_sampling_outline_of_identity_is_the_image_border():
    for name in FAMILIES_2D:
        poly = sampling_outline(get_transform(name).identity(), name, (28, 42))
        box = polygon_box(poly)
        torch.testing.assert_close(box, torch.tensor([-0.5, -0.5, 41.5, 27.5]), rtol=0, atol=1e-4)
        torch.testing.assert_close(poly[0], poly[-1])


def test_outline_of_a_crop_contains_what_it_samples():
    theta = torch.tensor([[0.25, 0.5, -0.5]])
    box = polygon_box(sampling_outline(theta, "attention", 40))[0]
    # centre (0.5, -0.5) normalised = pixel (29.5, 9.5); half-width 0.25 of 40 px = 5 px
    torch.testing.assert_close(box, torch.tensor([24.5, 4.5, 34.5, 14.5]))
    assert box_iou(box, box).item() == pytest.approx(1.0)
    assert box_iou(box, box + torch.tensor([10.0, 0, 10, 0])).item() == 0.0


def test_compose_undoes_a_known_distortion():
    # distortion: rotate by 30 degrees and shrink; a perfect ST applies the inverse warp
    a = torch.tensor(0.5236)
    dist = torch.tensor([[[torch.cos(a), -torch.sin(a), 0.1], [torch.sin(a), torch.cos(a), -0.2], [0, 0, 1]]]) * \
        torch.tensor([1.2, 1.2, 1.0]).view(1, 1, 3).transpose(1, 2).expand(1, 3, 3).transpose(1, 2)
    dist[0, 2] = torch.tensor([0.0, 0.0, 1.0])
    st = torch.linalg.inv(dist)
    torch.testing.assert_close(compose(st, dist), torch.eye(3)[None], rtol=0, atol=1e-5)
    m = to_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0, 0.1, 0]]), "projective")
    assert m.shape == (1, 3, 3) and m[0, 2, 0].item() == pytest.approx(0.1)
    with pytest.raises(NotImplementedError, match="tps"):
        to_matrix(get_transform("tps").identity()[None], "tps")
