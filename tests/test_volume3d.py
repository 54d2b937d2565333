"""The 3D experiment (paper A.3): posed volumes, the 3D rotation measure, the volume models and the experiment."""

import math

import pytest
import torch
import torch.nn.functional as F

from stnbook.experiments import Profile, get_cells, load_cell, run_cell
from stnlib import get_transform
from stnlib.analysis import nearest_rotation, rotation_angle_deg, volume_pose, volume_rectification
from stnlib.data.volumes import (
    PAPER_SIZE,
    VolumeMNIST,
    VolumeSpec,
    apply_pose,
    extrude,
    pose_matrix,
    pose_rotation,
    sample_pose,
    volume_test_set,
)
from stnlib.geometry import sampling_box3d
from stnlib.models3d import VolumeModelConfig, VolumeSTClassifier, build_volume_model
from stnlib.train import TrainConfig, Trainer
from stnlib.transforms import rotation3d, rotation3d_angles


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def square_digits(n=3):
    """Synthetic digits: a bright textured square in the central 20 x 20 pixels, zero border."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 4:24] = torch.rand(n, 1, 20, 20, generator=gen(9)) * 0.5 + 0.5
    return x


def fixed_pose(n, size=28, angles=(0.0, 0.0, 0.0), scale=1.0):
    return {"size": torch.full((n,), size, dtype=torch.int64),
            "angles_deg": torch.tensor([angles] * n, dtype=torch.float64),
            "scale": torch.full((n,), scale, dtype=torch.float64),
            "translation": torch.zeros(n, 3, dtype=torch.float64)}


# ---- data ---------------------------------------------------------------------------------------------------------

def test_poses_have_the_documented_shapes_ranges_and_seeding():
    spec = VolumeSpec()
    p = sample_pose(500, gen(), spec)
    assert p["angles_deg"].shape == (500, 3) and p["angles_deg"].dtype == torch.float64
    assert p["angles_deg"].abs().max() <= 45 and p["angles_deg"].abs().max() > 40
    assert (p["scale"] >= 0.7).all() and (p["scale"] <= 1.2).all()
    half = (spec.size - 28 * p["scale"]) / 2  # the scaled, unrotated frame cube stays inside the volume
    assert (p["translation"].abs() <= half[:, None] + 1e-9).all()
    again, other, first = sample_pose(500, gen(), spec), sample_pose(500, gen(1), spec), sample_pose(7, gen(), spec)
    assert all(torch.equal(p[k], again[k]) and torch.equal(p[k][:7], first[k]) for k in p)
    assert not torch.equal(p["angles_deg"], other["angles_deg"])
    assert VolumeSpec(size=PAPER_SIZE).size == 60


def test_rendering_shapes_and_known_geometric_answers():
    x = square_digits(2)
    spec = VolumeSpec(size=28, scale_range=(1.0, 1.0))
    slab = extrude(x, spec.thickness)
    # the identity pose shows the extruded digit itself
    torch.testing.assert_close(apply_pose(x, fixed_pose(2), spec), slab, atol=1e-5, rtol=0)
    # +90 degrees about z turns x (right) into y (down): clockwise as displayed, torch.rot90 with k=-1
    turned = apply_pose(x, fixed_pose(2, angles=(0.0, 0.0, 90.0)), spec)
    torch.testing.assert_close(turned, torch.rot90(slab, -1, dims=(-2, -1)), atol=1e-5, rtol=0)
    # +90 degrees about y turns x into -z: the slab stands edge-on, its extent along x becomes the depth's
    edge_on = apply_pose(x, fixed_pose(2, angles=(0.0, 90.0, 0.0)), spec)
    torch.testing.assert_close(edge_on, torch.rot90(slab, 1, dims=(-3, -1)), atol=1e-5, rtol=0)
    # a posed digit keeps its ink: (image ink) x thickness x scale^3
    spec = VolumeSpec(size=36)
    p = sample_pose(2, gen(3), spec)
    v = apply_pose(x, p, spec)
    assert v.shape == (2, 1, 36, 36, 36) and v.min() >= 0 and v.max() <= 1
    expected = x.sum((1, 2, 3)) * spec.thickness * p["scale"].float() ** 3
    torch.testing.assert_close(v.sum((1, 2, 3, 4)), expected, rtol=0.02, atol=0)


def test_pose_matrix_is_the_inverse_of_the_placement():
    p = sample_pose(4, gen(2), VolumeSpec())
    m = pose_matrix(p)
    # the volume point where the digit frame's centre landed maps back to the frame's centre
    centre = 2 * p["translation"] / 40
    back = m[:, :, :3] @ centre[:, :, None] + m[:, :, 3:]
    torch.testing.assert_close(back[:, :, 0], torch.zeros(4, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(nearest_rotation(m[:, :, :3]), pose_rotation(p).transpose(1, 2))


def test_training_batches_depend_only_on_seed_and_step():
    images, labels = (torch.rand(20, 28, 28) * 255).to(torch.uint8), torch.arange(20) % 10
    spec = VolumeSpec(size=34)
    a, b = VolumeMNIST(images, labels, 8, 5, spec), VolumeMNIST(images, labels, 8, 5, spec)
    xa, ya = a.batch(4)
    xb, yb = b.batch(4)
    assert xa.shape == (8, 1, 34, 34, 34) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.batch(3)[0], xa)
    assert sorted(torch.cat([a.indices(s) for s in range(a.steps_per_epoch)]).tolist()) == list(range(20))


def test_test_set_is_fixed_and_its_first_volumes_do_not_depend_on_its_size():
    images, labels = (torch.rand(300, 28, 28) * 255).to(torch.uint8), torch.arange(300) % 10
    spec = VolumeSpec(size=34)
    small, big = volume_test_set(images, labels, spec, n=3), volume_test_set(images, labels, spec)
    assert big["x"].shape == (300, 1, 34, 34, 34) and big["rotation"].shape == (300, 3, 3)
    assert torch.equal(small["x"], big["x"][:3])
    assert all(torch.equal(small["params"][k], big["params"][k][:3]) for k in small["params"])
    assert torch.equal(volume_test_set(images, labels, spec, n=3)["x"], small["x"])
    assert not torch.equal(big["params"]["angles_deg"][:44], big["params"]["angles_deg"][256:])  # chunks differ


def test_bad_data_arguments_raise():
    with pytest.raises(ValueError, match="largest digit frame"):
        VolumeSpec(size=30)  # 28 x 1.2 does not fit
    with pytest.raises(ValueError, match="thickness"):
        VolumeSpec(thickness=0)
    with pytest.raises(ValueError, match="spec.size"):
        apply_pose(square_digits(2), sample_pose(2, gen(), VolumeSpec()), VolumeSpec(size=36))
    with pytest.raises(ValueError, match="poses but images"):
        apply_pose(square_digits(2), sample_pose(3, gen(), VolumeSpec()), VolumeSpec())
    with pytest.raises(ValueError, match="shape"):
        apply_pose(torch.rand(2, 1, 20, 20), sample_pose(2, gen(), VolumeSpec()), VolumeSpec())
    with pytest.raises(ValueError, match="non-negative"):
        sample_pose(-1, gen())


# ---- the rotation measure ------------------------------------------------------------------------------------------

def test_rotation_helpers_round_trip():
    angles = torch.rand(100, 3, generator=gen(4), dtype=torch.float64) * 170 - 85
    r = rotation3d(angles)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(rotation3d_angles(r), angles)
    torch.testing.assert_close(rotation_angle_deg(rotation3d(torch.tensor([[0.0, 0.0, 40.0]]))),
                               torch.tensor([40.0], dtype=torch.float64))
    sheared = r @ torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.2]], dtype=torch.float64)
    q = nearest_rotation(sheared)
    torch.testing.assert_close(q @ q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    assert torch.allclose(torch.linalg.det(q), torch.ones(100, dtype=torch.float64))


def test_the_measure_recovers_a_transformer_that_undoes_the_pose():
    p = sample_pose(400, gen(5), VolumeSpec())
    rotation = pose_rotation(p)
    m = torch.cat([pose_matrix(p), torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(400, 1, 4)], 1)
    perfect = torch.linalg.inv(m)[:, :3].reshape(400, 12) * 0.7  # any scale: the rotation part is what counts
    fit = volume_rectification(rotation, p["angles_deg"], perfect.float())
    assert fit["undone"] == pytest.approx(1.0, abs=1e-4) and fit["residual_deg"] < 0.01
    assert fit["residual_tilt_deg"] < 0.1 < 30 < fit["applied_tilt_deg"]
    for axis in "xyz":
        assert fit["axes"][axis]["slope"] == pytest.approx(1.0, abs=1e-3) and fit["axes"][axis]["r"] > 0.999
    # a transformer that leaves the volume as it is undoes nothing
    still = volume_rectification(rotation, p["angles_deg"], get_transform("affine3d").identity().expand(400, 12))
    assert abs(still["undone"]) < 1e-9 and still["residual_deg"] == pytest.approx(still["applied_deg"])
    assert all(abs(still["axes"][a]["slope"]) < 1e-9 for a in "xyz")
    # one that maps every digit to one pose 30 degrees off upright: the residual is 30, the spread 0
    off = perfect.reshape(400, 3, 4)
    turn = rotation3d(torch.tensor([[0.0, 0.0, 30.0]])).float()
    tilted = torch.cat([off[:, :, :3].float() @ turn, off[:, :, 3:].float()], 2).reshape(400, 12)
    fit = volume_rectification(rotation, p["angles_deg"], tilted)
    assert fit["residual_deg"] == pytest.approx(30, abs=0.01) and fit["spread_deg"] < 0.01
    assert fit["pose_deg"] == pytest.approx(30, abs=0.01)
    assert volume_pose(rotation, tilted)["tilt_deg"].max() < 0.01  # a turn within the image plane tilts nothing


def test_sampling_box_of_a_rotation_about_z():
    theta = torch.cat([rotation3d(torch.tensor([[0.0, 0.0, 90.0]])).float(), torch.zeros(1, 3, 1)], 2).reshape(12)
    box = sampling_box3d(theta, 40)
    # output corner (-1, -1, -1) reads input point R (-1, -1, -1) = (1, -1, -1): the right edge
    torch.testing.assert_close(box[0], torch.tensor([39.5, -0.5, -0.5]), atol=1e-5, rtol=0)


# ---- models -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [24, 32])
@pytest.mark.parametrize("arch,transform", [("cnn", None), ("cnn", "affine3d"), ("fcn", None), ("fcn", "affine3d")])
def test_models_run_forward_and_backward_at_two_sizes(size, arch, transform):
    st = transform is not None
    cfg = VolumeModelConfig(arch, transform, (size,) * 3, st_out_size=(size // 2,) * 3 if st else None,
                            pool=1 if st else 2, projection_scale=3.0, width=16)
    model = VolumeSTClassifier(cfg, 16)
    x = torch.rand(3, 1, size, size, size)
    logits = model(x)
    assert logits.shape == (3, 10)
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    loc = model.localisation_parameters()
    assert (len(loc) > 0) == st
    if st:  # the regression layer starts at the identity with zero weights: the gradient reaches it
        assert model.st.head.weight.grad.abs().sum() > 0
        assert model.transform_input(x)[1].shape == (3, 12)


def test_an_untrained_transformer_shows_the_classifier_the_plain_models_image():
    size = 32
    x = torch.rand(2, 1, size, size, size)
    st = VolumeSTClassifier(VolumeModelConfig("cnn", "affine3d", (size,) * 3, st_out_size=(16, 16, 16),
                                              projection_scale=4.0), 16)
    plain = VolumeSTClassifier(VolumeModelConfig("cnn", None, (size,) * 3, pool=2, projection_scale=4.0), 16)
    out, _ = st.transform_input(x)
    torch.testing.assert_close(st.pool(st.project(out)), plain.pool(plain.project(x)), atol=1e-5, rtol=0)


def test_model_budgets_and_the_trainers_localisation_rate():
    cfg = VolumeModelConfig("cnn", "affine3d", (40, 40, 40), st_out_size=(20, 20, 20), param_budget=70_000)
    model = build_volume_model(cfg)
    assert abs(sum(p.numel() for p in model.parameters()) - 70_000) < 2_000
    trainer = Trainer(model, TrainConfig(steps=1, lr=1e-3, loc_lr_mult=0.1, device="cpu", progress=False))
    trainer._build_optimizer()
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {"main": 1e-3, "localisation": pytest.approx(1e-4)}


def test_fast_settings_never_pick_channels_last_for_3d_convolutions():
    from stnlib.train import fast_settings

    model = VolumeSTClassifier(VolumeModelConfig(in_size=(24, 24, 24)), 16)
    assert fast_settings("cpu", model) == {"precision": "fp32", "channels_last": False}


def test_bad_model_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="3D transform"):
        VolumeSTClassifier(VolumeModelConfig(transform="affine", in_size=(24, 24, 24)), 16)
    with pytest.raises(ValueError, match="at least"):
        VolumeSTClassifier(VolumeModelConfig(in_size=(16, 16, 16)), 16)
    with pytest.raises(ValueError, match="expects volumes"):
        VolumeSTClassifier(VolumeModelConfig(in_size=(24, 24, 24)), 16)(torch.rand(2, 1, 24, 24))


# ---- the experiment -------------------------------------------------------------------------------------------------

def test_the_experiment_trains_and_measures_in_a_tmp_root(tmp_path):
    from stnbook.volume3d import report
    from stnbook.volume3d.experiment import PROFILES

    assert [c.id for c in get_cells("volume3d")] == ["cnn", "st3d-cnn", "fcn", "st3d-fcn"]
    assert {"smoke", "full"} <= set(PROFILES)
    tiny = Profile("tiny", steps=4, batch_size=8, lr=1e-3, train_size=200, test_size=40, eval_every=2,
                   train_overrides=PROFILES["smoke"].train_overrides)
    results = {}
    for cell in get_cells("volume3d", ["cnn", "st3d-cnn"]):
        results[cell.id] = run_cell(cell, tiny, seed=0, device="cpu", threads=1, progress=False, root=tmp_path)
    m = results["st3d-cnn"]
    assert 0 <= m["test_error"] <= 100 and m["test_size"] == 40
    assert set(m["rectification"]["axes"]) == {"x", "y", "z"} and not math.isnan(m["rectification"]["undone"])
    assert "undone" in m["eval_history"][0] and "rectification" not in results["cnn"]
    metrics, model, analysis = load_cell(get_cells("volume3d", ["st3d-cnn"])[0], "tiny", root=tmp_path)
    assert analysis["theta"].shape == (40, 12) and analysis["pred"].shape == (40,)
    assert model.width == metrics["width"] and model.config.st_out_size == (20, 20, 20)
    numbers = report.key_numbers(results)
    assert numbers["st3d_cnn_error"] == f"{m['test_error']:.2f}" and numbers["fcn_error"] == "n/a"
    assert numbers["st3d_cnn_vs_cnn"] in ("beats", "does not beat") and numbers["st3d_fcn_vs_fcn"] == "n/a"
    assert numbers["st3d_cnn_pose"] == f"{m['rectification']['pose_deg']:.0f}"
    assert all(isinstance(v, str) and 0 < len(v) <= 60 for v in numbers.values())  # numbers and words, no sentences
    assert "--cells fcn st3d-fcn" in report.missing_note(results, "full")


def test_the_landing_table_row_compares_with_the_plain_cnn_only(tmp_path):
    import json

    from stnbook import glance

    def write(cell, **fields):
        folder = tmp_path / "volume3d" / "full" / cell
        folder.mkdir(parents=True)
        folder.joinpath("metrics.json").write_text(json.dumps(
            {"experiment": "volume3d", "cell": cell, "profile": "full", "steps": 100, "batch_size": 8,
             "wall_time_s": 60.0, "hardware": {"device": "cpu"}, **fields}))

    art = glance.Artifacts(tmp_path)
    assert glance.volume3d_rows(art)[0].ours == "no artifacts"
    write("cnn", test_error=5.0)
    write("st3d-cnn", test_error=4.0, rectification={"undone": 0.42})
    row = glance.volume3d_rows(glance.Artifacts(tmp_path))[0]
    assert (row.ours_value, row.paper_value, row.verdict) == (4.0, None, glance.ORDERING_ONLY)
    assert "CNN 5.00%" in row.ours and "42% of the 3D rotation undone" in row.ours
