"""Co-localisation: the problems (placement, clutter, boxes), the triplet hinge loss, boxes <-> theta, and the
experiment (encoder artifact, trajectory, scores)."""

import pytest
import torch

from stnbook.colocalisation.experiment import (
    RECORD_STEPS,
    CoLocalisationConfig,
    CoLocaliser,
    hinge_triplets,
    localisation_scores,
    predicted_boxes,
    triplet_hinge_loss,
    true_theta,
)
from stnbook.experiments import Cell, Profile, get_cells, get_profile, load_cell, run_cell
from stnbook.paths import results_dir
from stnlib.data.pairs import CoLocalisationBatches, colocalisation_set, random_crops


def digits(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 4:24, 6:22] = torch.randint(1, 256, (n, 20, 16), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 3


def test_problem_is_one_class_with_boxes_around_the_digits():
    x, y = digits()
    p = colocalisation_set(x, y, digit=2, n=10)
    assert bool((y[p["index"]] == 2).all()) and p["x"].shape == (10, 1, 84, 84)
    box = p["box"]
    assert torch.allclose(box[:, 2] - box[:, 0], torch.full((10,), 28.0, dtype=torch.float64))
    for img, (x0, y0, x1, y1) in zip(p["x"][:, 0], box.round().long().tolist()):
        inside = img.clone()
        inside[y0:y1 + 1, x0:x1 + 1] = 0
        assert float(img.sum()) > 0 and float(inside.sum()) == 0.0  # all ink inside the box (T)
    assert torch.equal(colocalisation_set(x, y, digit=2, n=10)["x"], p["x"])


def test_clutter_comes_from_the_pool_and_lands_outside_the_box_too():
    x, y = digits()
    pool = torch.full((5, 28, 28), 255, dtype=torch.uint8)  # clutter patches are fully inked
    tc = colocalisation_set(x, y, digit=1, clutter=16, clutter_pool=pool, n=10)
    t = colocalisation_set(x, y, digit=1, clutter=0, n=10)
    assert not torch.equal(tc["x"], t["x"])
    outside = tc["x"].clone()
    for k, (x0, y0, x1, y1) in enumerate(tc["box"].round().long().tolist()):
        outside[k, 0, max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = 0
    assert float(outside.sum()) > 0


def test_box_theta_round_trip_and_success_rate():
    boxes = torch.tensor([[0.0 - 0.5, 10 - 0.5, 28 - 0.5, 38 - 0.5], [50 - 0.5, 3 - 0.5, 78 - 0.5, 31 - 0.5]])
    theta = true_theta(boxes)
    assert torch.allclose(predicted_boxes(theta), boxes, atol=1e-4)
    s = localisation_scores(theta, boxes)
    assert s["success"] == 100.0
    shifted = theta + torch.tensor([0.0, 0.5, 0.0])
    assert localisation_scores(shifted, boxes)["success"] == 0.0


def test_hinge_known_answers():
    e = torch.nn.functional.normalize(torch.randn(5, 7), dim=1)
    same = e[:1].expand(5, 7)
    loss, active = hinge_triplets(same, -same, alpha=1.0)  # crops identical, random patches opposite: d = 4
    assert loss.item() == 0.0 and active.item() == 0.0
    loss, _ = hinge_triplets(e, e, alpha=1.0)  # random patch = the crop: hinge = d_pos + alpha
    d = torch.cdist(e, e).pow(2)
    off = ~torch.eye(5, dtype=torch.bool)
    assert torch.allclose(loss, (d[off] + 1).mean(), atol=1e-5)


def test_loss_trains_only_the_localisation_net():
    model = CoLocaliser(CoLocalisationConfig(num_images=6))
    x = torch.rand(6, 1, 84, 84)
    crops = random_crops(6, torch.Generator().manual_seed(0))
    loss, metrics = triplet_hinge_loss(model, (x, crops))
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.st.head.weight.grad is not None and float(model.st.head.weight.grad.abs().sum()) > 0
    assert not any("trajectory" in k for k in model.state_dict())  # the trajectory lives in the trainer's records


def test_callbacks_set_the_curriculum_and_record_the_trajectory():
    from types import SimpleNamespace

    from stnbook.colocalisation.experiment import ScaleCurriculum, TrajectoryRecorder

    cfg = CoLocalisationConfig(num_images=5, hold=0.5, anneal_end=0.5)  # s = 1 for 5 of 10 steps, then learned
    model = CoLocaliser(cfg)
    x = torch.rand(5, 1, 84, 84)
    trainer = SimpleNamespace(model=model, config=SimpleNamespace(steps=10, precision="fp32"), records={},
                              device=torch.device("cpu"))
    cbs = [ScaleCurriculum(), TrajectoryRecorder(x, steps=(0, 2, 7))]
    for step in range(10):
        for cb in cbs:
            cb.on_step_start(trainer, step)
        assert model.curriculum_scale == (1.0 if step < 5 else None)
    cbs[1].on_step_start(trainer, 2)  # a resumed run does not record a step twice
    rec = trainer.records["trajectory"]
    assert [r["step"] for r in rec] == [0, 2, 7]
    assert torch.allclose(rec[0]["theta"][:, 0], torch.ones(5))  # the curriculum's scale reached theta
    assert torch.allclose(rec[2]["theta"], torch.tensor([28 / 84, 0, 0]).expand(5, 3))  # learned: starts at 28/84


def test_curriculum_sets_the_scale_then_hands_it_to_the_net():
    torch.manual_seed(0)  # the model's init and inputs: the gradient check must not depend on tests run before it
    cfg = CoLocalisationConfig(num_images=4, hold=0.2, anneal_end=0.6)
    scales = [cfg.scale_at(k, 10) for k in range(10)]
    assert scales[:2] == [1.0, 1.0] and scales[6:] == [None] * 4
    assert all(a > b for a, b in zip(scales[2:6], scales[3:6])) and scales[5] > 28 / 84  # shrinks towards 28 / 84
    model = CoLocaliser(cfg)
    x = torch.rand(4, 1, 84, 84)
    crops = random_crops(4, torch.Generator().manual_seed(0))
    _, theta = model(x, scale=0.5)
    assert torch.allclose(theta[:, 0], torch.full((4,), 0.5))
    model.curriculum_scale = 1.0
    triplet_hinge_loss(model, (x, crops))[0].backward()  # the curriculum's s = 1: no gradient to the scale output
    assert float(model.st.head.weight.grad[0].abs().sum()) == 0 and float(model.st.head.weight.grad[1:].abs().sum()) > 0
    with torch.no_grad():
        model.st.head.bias.copy_(torch.tensor([1.0, 50.0, -50.0]))  # far off the canvas
    assert bool((model(x)[1][:, 1:].abs() <= 1).all())  # the window's centre stays on the canvas
    with pytest.raises(ValueError, match="hold"):
        CoLocalisationConfig(hold=0.8, anneal_end=0.5)


def test_a_fixed_scale_keeps_the_window_at_the_digits_size_after_the_curriculum():
    x = torch.rand(4, 1, 84, 84)
    crops = random_crops(4, torch.Generator().manual_seed(0))
    learned, fixed = (CoLocaliser(CoLocalisationConfig(num_images=4, fixed_scale=f)) for f in (False, True))
    for model in (learned, fixed):
        with torch.no_grad():
            model.st.head.bias.copy_(torch.tensor([1.4, 0.1, -0.2]))  # a scale output the net has learned
    assert torch.allclose(learned(x)[1][:, 0], torch.full((4,), 28 / 84 + 0.4))
    _, theta = fixed(x)
    assert torch.allclose(theta[:, 0], torch.full((4,), 28 / 84)) and torch.allclose(theta[:, 1:], learned(x)[1][:, 1:])
    assert torch.allclose(fixed(x, scale=0.7)[1][:, 0], torch.full((4,), 0.7))  # the curriculum still sets it
    triplet_hinge_loss(fixed, (x, crops))[0].backward()  # only the translation is trained
    assert float(fixed.st.head.weight.grad[0].abs().sum()) == 0 and float(fixed.st.head.weight.grad[1:].abs().sum()) > 0


def test_random_patches_lie_inside_the_canvas_and_are_step_indexed():
    data = CoLocalisationBatches(torch.zeros(50, 1, 84, 84), seed=4)
    _, c = data.batch(7)
    assert torch.equal(c, data.batch(7)[1]) and not torch.equal(c, data.batch(8)[1])
    box = predicted_boxes(c)
    assert bool((box >= -0.5 - 1e-4).all() and (box <= 83.5 + 1e-4).all())


def test_experiment_uses_the_encoder_artifact_and_saves_the_trajectory(tmp_path):
    tiny = Profile("tiny", steps=9, batch_size=32, lr=3e-3, train_size=500, test_size=100)
    cfg = CoLocalisationConfig(digit=1, variant="TC")
    cell = Cell("colocalisation", "TC-1", "TC", cfg, needs=("mnist-cnn",))
    m = run_cell(cell, tiny, seed=0, device="cpu", progress=False, root=tmp_path)
    encoder = tmp_path / "colocalisation" / "tiny" / "mnist-cnn"  # the declared dependency, trained first
    assert (encoder / "model.pt").exists() and m["encoder_dir"] == str(encoder.resolve())
    assert cfg.encoder_dir is None  # the cell's own config is not edited
    assert run_cell(cell, tiny, seed=0, device="cpu", progress=False, root=tmp_path)["files"] == m["files"]
    assert not (results_dir() / "colocalisation" / "tiny").exists()  # a run into another root leaves results/ alone
    assert 0 <= m["success"] <= 100 and m["test_error"] is None
    assert m["loss_true"] < m["loss_identity"]  # even a briefly trained e() ranks the true boxes first
    metrics, model, analysis = load_cell(cell, "tiny", root=tmp_path)
    from stnbook.colocalisation.experiment import trajectory
    steps, traj = trajectory(analysis)
    assert steps.tolist() == [s for s in RECORD_STEPS if s < 9] and traj.shape == (len(steps), 100, 3)
    assert analysis["theta"].shape == (100, 3) and analysis["iou"].shape == (100,)
    # the model loaded from the artifact reproduces the saved theta (encoder weights included)
    from stnbook.colocalisation.experiment import problem
    with torch.no_grad():
        _, theta = model(problem(model.config)["x"])
    assert torch.allclose(theta, analysis["theta"], atol=2e-2)
    assert [c.id for c in get_cells("colocalisation")][0] == "mnist-cnn"


def test_report_numbers_for_the_text():
    from stnbook.colocalisation import report as reports

    results = {"mnist-cnn": {"params": 42122, "test_error": 2.468, "test_size": 10000, "steps": 150, "batch_size": 256,
                             "wall_time_s": 23.6},
               "T-1": {"success": 100.0, "loss_true": 0.2, "loss_learned": 0.3},
               "T-2": {"success": 20.0, "loss_true": 0.5, "loss_learned": 0.4},
               "TC-1": {"success": 7.0, "loss_true": 0.1, "loss_learned": 0.2}}
    assert reports.encoder_key_numbers(results) == {
        "coloc_enc_params": "42,122", "coloc_enc_error": "2.47", "coloc_enc_test": "10,000", "coloc_enc_steps": "150",
        "coloc_enc_batch": "256", "coloc_enc_seconds": "24"}
    success = reports.success_key_numbers(results)
    assert (success["coloc_run_t_classes"], success["coloc_run_t_mean"], success["coloc_run_t_range"]) == \
        ("2 classes", "60.0", "20-100")
    assert (success["coloc_run_tc_classes"], success["coloc_run_tc_range"]) == ("1 class", "7-7")
    assert reports.loss_key_numbers(results) == {"coloc_loss_truth_lower": "2", "coloc_loss_problems": "3",
                                                 "coloc_loss_true": "0.267", "coloc_loss_found": "0.300"}
    nothing = {}
    for fn in (reports.encoder_key_numbers, reports.success_key_numbers, reports.loss_key_numbers):
        nothing.update(fn({}))
    assert set(nothing.values()) == {"n/a"}


def test_window_offsets_measure_a_common_offset_and_its_spread():
    from stnbook.colocalisation import report as reports
    from stnbook.colocalisation.experiment import window_offsets

    g = torch.Generator().manual_seed(0)
    corner = torch.randint(0, 56, (20, 2), generator=g).double() - 0.5
    boxes = torch.cat([corner, corner + 28], 1)
    theta = true_theta(boxes)
    assert window_offsets(theta, boxes).abs().max() < 1e-3  # the true windows sit on the digits
    shifted = theta.clone()
    shifted[:, 1] += 2 * 9 / 84  # every window 9 px right, 12 px down
    shifted[:, 2] += 2 * 12 / 84
    s = reports.offset_summary({"theta": shifted, "box": boxes}, 84)
    assert (round(s["dx"], 3), round(s["dy"], 3), round(s["length"], 3)) == (9.0, 12.0, 15.0)
    assert s["spread"] < 1e-3 and round(s["side"], 3) == 28.0
    jitter = shifted.clone()
    jitter[:, 1:] += torch.randn(20, 2, generator=g) * 2 * 3 / 84  # about 3 px of scatter around the offset
    assert 2.0 < reports.offset_summary({"theta": jitter, "box": boxes}, 84)["spread"] < 4.0
    # the key numbers: which failed problems frame every image alike but off centre
    found = {"T-0": {"success": 0.0, "length": 15.0, "spread": 0.5}, "T-1": {"success": 10.0, "length": 3.0,
             "spread": 0.5}, "T-2": {"success": 20.0, "length": 12.0, "spread": 6.0},
             "T-3": {"success": 95.0, "length": 4.0, "spread": 1.0}}
    k = reports.offset_key_numbers(found)
    assert (k["coloc_off_failed"], k["coloc_off_consistent"], k["coloc_off_ok_length"]) == ("3", "1", "4.0")
    assert set(reports.offset_key_numbers({"T-3": found["T-3"]}).values()) == {"n/a"}


def one_digit_everywhere(lo: int, hi: int, n: int = 12):
    """``n`` 84x84 canvases holding the same random 28x28 binary "digit" with its top-left corner in [lo, hi) per
    axis, and the true boxes: (x (n, 1, 84, 84), boxes (n, 4) float64)."""
    g = torch.Generator().manual_seed(1)
    digit = (torch.rand(28, 28, generator=g) > 0.5).float()
    x = torch.zeros(n, 1, 84, 84)
    corner = torch.randint(lo, hi, (n, 2), generator=g)
    for k, (c0, r0) in enumerate(corner.tolist()):
        x[k, 0, r0:r0 + 28, c0:c0 + 28] = digit
    return x, torch.cat([corner - 0.5, corner + 27.5], 1).double()


def test_offset_landscape_is_lowest_at_the_truth_for_an_embedding_that_sees_the_digit():
    """An embedding that is the crop's pixels: moving every window alike keeps the crops alike (the positive
    distances stay 0, which is why training's common offsets are hard to leave), but loses ink, so the crops come
    closer to the blank random patches; with a margin large enough for every hinge to be active, the landscape's
    minimum is the zero offset."""
    from stnbook.colocalisation.experiment import offset_landscape

    x, boxes = one_digit_everywhere(4, 52)
    model = CoLocaliser(CoLocalisationConfig(encoder_width=8, num_images=12, alpha=4.0))
    model.embed = lambda crops, normalize=True: crops.flatten(1) / 28
    land = offset_landscape(model, x, boxes, [-6, 0, 6], draws=2)
    assert land.shape == (3, 3) and int(land.argmin()) == 4, land
    with pytest.raises(ValueError, match="kind must be one of"):
        offset_landscape(model, x, boxes, [0], kind="pixels")


def test_coarse_embedding_while_the_window_is_large_then_the_final_one():
    from types import SimpleNamespace

    from stnbook.colocalisation.experiment import ScaleCurriculum, cnn_embedding, hinge_triplets

    cfg = CoLocalisationConfig(num_images=4, hold=0.2, anneal_end=0.6, embedding="logits",
                               coarse_embedding="features", coarse_until=0.6)
    model = CoLocaliser(cfg)
    trainer = SimpleNamespace(model=model, config=SimpleNamespace(steps=10))
    kinds = []
    for step in range(10):
        ScaleCurriculum().on_step_start(trainer, step)
        kinds.append(model.curriculum_embedding)
        scale = model.curriculum_scale
        assert kinds[-1] == ("features" if scale is not None and scale >= 0.6 else "logits")
    assert kinds[0] == "features" and kinds[-1] == "logits" and "logits" in kinds[:6]  # switches while shrinking
    # the loss uses the step's embedding: compare with the hinge computed by hand on each embedding
    x = torch.rand(4, 1, 84, 84)
    crops = random_crops(4, torch.Generator().manual_seed(0))
    model.curriculum_scale = 1.0
    for kind in ("features", "logits"):
        model.curriculum_embedding = kind
        out, _ = model(x, 1.0)
        e = cnn_embedding(model.encoder, out, True, kind)
        e_rand = cnn_embedding(model.encoder, model.st.sample(x, crops), True, kind)
        assert torch.allclose(triplet_hinge_loss(model, (x, crops))[0], hinge_triplets(e, e_rand, 1.0)[0])
    assert model.embed(out).shape[1] == 10  # scoring uses the final embedding (logits)
    with pytest.raises(ValueError, match="coarse_embedding"):
        CoLocalisationConfig(coarse_embedding="pixels")
    with pytest.raises(ValueError, match="coarse_until"):
        CoLocalisationConfig(coarse_until=0.0)


def test_offset_search_moves_every_window_back_onto_its_digit():
    """Windows that frame every digit 6 px to the right (what failed training runs do) and an embedding that is the
    crop's pixels (whose loss is lowest at the truth, see above): the search moves every window back onto its
    digit, once, at the first step after the curriculum; the shift is saved with the model."""
    from types import SimpleNamespace

    from stnbook.colocalisation.experiment import OffsetSearch, best_common_shift, search_offsets, window_offsets

    x, boxes = one_digit_everywhere(14, 42)
    cfg = CoLocalisationConfig(encoder_width=8, num_images=12, alpha=4.0, hold=0.2, anneal_end=0.6,
                               offset_search=9.0, offset_step=1.5)
    model = CoLocaliser(cfg)
    model.embed = lambda crops, normalize=True, kind=None: crops.flatten(1) / 28
    off = true_theta(boxes).float()
    off[:, 1] += 2 * 6 / 84  # 6 px right of every digit
    raw = torch.cat([torch.ones(12, 1), torch.atanh(off[:, 1:])], 1)
    model.st.localise = lambda images: raw  # a net that has learned the common offset
    before = window_offsets(model(x)[1].detach(), boxes)
    assert torch.allclose(before, torch.tensor([6.0, 0.0]).expand(12, 2), atol=1e-3)

    shifts = search_offsets(9.0, 1.5)
    assert len(shifts) == 13 * 13 and shifts[0].tolist() == [0.0, 0.0] and len(set(map(tuple, shifts.tolist()))) == 169
    best, losses = best_common_shift(model, x, shifts, draws=2)
    assert losses[best] < losses[0] and shifts[best, 0] < 0  # leftwards, back towards the digits

    trainer = SimpleNamespace(model=model, config=SimpleNamespace(steps=10, seed=0), records={},
                              device=torch.device("cpu"))
    search = OffsetSearch(x)
    for step in range(10):
        search.on_step_start(trainer, step)
        if step < 6:  # nothing before the curriculum's end (step 6 of 10)
            assert "offset_search" not in trainer.records
    rec = trainer.records["offset_search"]
    assert rec["step"] == 6 and rec["loss_after"] < rec["loss_before"] and rec["candidates"] == 169
    after = window_offsets(model(x)[1].detach(), boxes)
    assert after.norm(dim=1).max() < 1e-3, after
    assert "window_shift" in model.state_dict() and "window_shift" not in CoLocaliser(CoLocalisationConfig()).state_dict()
    with pytest.raises(ValueError, match="offset_search"):
        CoLocalisationConfig(offset_search=-1.0)


def test_missed_truths_are_the_failed_problems_whose_truth_has_the_lower_loss():
    from stnbook.colocalisation import report as reports

    causes = reports.failure_causes(reports.profile_columns(reports.FIXED))
    missed = reports.missed_truths(reports.FIXED)
    if causes["coloc_cause_failed"] == "0":
        pytest.skip("no committed fixed-scale artifacts")
    assert missed["coloc_missed_n"] == causes["coloc_cause_optimisation"]
    assert int(missed["coloc_missed_aligned"]) <= int(missed["coloc_missed_n"])
    assert int(missed["coloc_missed_beyond"]) <= int(missed["coloc_missed_n"])
    assert reports.missed_truths(reports.FIXED, radius=1e9)["coloc_missed_beyond"] == "0"


def test_the_whole_canvas_phase_spread_comes_from_the_recorded_windows_of_each_problem(monkeypatch):
    from stnbook.colocalisation import report as reports

    spreads = reports.hold_spreads(reports.FIXED)
    if not spreads:
        pytest.skip("no committed fixed-scale artifacts")
    for cell, row in spreads.items():
        assert 0 <= row["hold"] and 0 < row["start"] < 40, cell  # windows start at the canvas's centre: the
        # spread is the digits' own (about 16 px on an 84 px canvas)
    numbers = reports.hold_key_numbers(spreads)
    n = {v: sum(c.startswith(f"{v}-") for c in spreads) for v in ("T", "TC")}
    for v in ("t", "tc"):
        followed, of = numbers[f"coloc_hold_{v}_follow"].split(" of ")
        assert int(of) == n[v.upper()] and 0 <= int(followed) <= int(of)
    monkeypatch.setattr(reports, "FOLLOWS_PX", 0.0)  # nothing follows to within 0 px: the count is the threshold's
    assert reports.hold_key_numbers(spreads)["coloc_hold_t_follow"].startswith("0 of")


def test_the_t_and_tc_problems_of_a_class_hold_the_same_digits_and_the_digit_is_part_of_the_tc_ink():
    from stnbook.colocalisation import report as reports
    from stnbook.colocalisation.experiment import problem

    t, tc = (problem(CoLocalisationConfig(digit=1, variant=v)) for v in ("T", "TC"))
    assert torch.equal(t["index"], tc["index"])  # the same 100 test digits, placed anew
    share = reports.ink_share([1])[1]
    assert 10 < share < 90  # the clutter adds ink of its own, the digit keeps most of its own


def test_window_search_finds_the_shared_digit_and_the_net_learns_its_windows(tmp_path):
    """The same "digit" anywhere on 12 canvases and an embedding that is the crop's pixels: the search (proposals,
    then coordinate descent on the hinge loss) puts every window on its digit without seeing a box; the callback
    stores the windows once (a buffer, so a resumed run does not search again) and the first third of the steps
    regress them, the rest use the hinge loss."""
    from types import SimpleNamespace

    from stnbook.colocalisation.experiment import WindowSearch, loss, window_search

    x, boxes = one_digit_everywhere(0, 56)
    cfg = CoLocalisationConfig(encoder_width=8, num_images=12, alpha=4.0, hold=0.0, anneal_end=0.0, fixed_scale=True,
                               window_search=1 / 3, search_step=2.0)
    model = CoLocaliser(cfg)
    model.embed = lambda crops, normalize=True, kind=None: crops.flatten(1) / 28
    found = window_search(model, x, step=2.0, draws=2)
    assert found["candidates"] == 29 * 29 and found["loss"] <= found["proposal_loss"]
    theta = torch.cat([torch.full((12, 1), cfg.final_scale), found["centres"]], 1)
    assert localisation_scores(theta, boxes)["success"] == 100.0
    again = window_search(model, x, step=2.0, draws=2)
    assert torch.equal(again["centres"], found["centres"])  # deterministic

    trainer = SimpleNamespace(model=model, config=SimpleNamespace(steps=6, seed=0), records={},
                              device=torch.device("cpu"))
    search = WindowSearch(x)
    phases = []
    for step in range(6):
        search.on_step_start(trainer, step)
        phases.append(model.regressing)
        if step == 0:
            assert not model.search_centres.isnan().any()
            trainer.records.pop("window_search")
    assert phases == [True, True, False, False, False, False] and "window_search" not in trainer.records  # once
    model.regressing = True
    value, metrics = loss(model, (x, torch.zeros(12, 3)))
    assert value.requires_grad and metrics["loss"] > 0  # the identity windows are far from the searched ones
    assert "search_centres" in model.state_dict() and "search_centres" not in CoLocaliser(CoLocalisationConfig()).state_dict()
    with pytest.raises(ValueError, match="window_search"):
        CoLocalisationConfig(window_search=1.0)


def test_a_profile_can_use_another_profiles_encoder(tmp_path, monkeypatch):
    """``needs_profile``: the problems of one profile use the encoder artifact of another (trained there first if
    missing), and the metrics name it; no encoder is trained under the problems' own profile."""
    from stnbook.colocalisation.experiment import COLOCALISATION

    enc = Profile("tiny-enc", steps=5, batch_size=32, lr=3e-3, train_size=500, test_size=100)
    probs = Profile("tiny-probs", steps=4, batch_size=32, lr=3e-3, train_size=500, test_size=100, needs_profile="tiny-enc")
    monkeypatch.setitem(COLOCALISATION.profiles, "tiny-enc", enc)
    monkeypatch.setitem(COLOCALISATION.profiles, "tiny-probs", probs)
    cell = Cell("colocalisation", "T-3", "T", CoLocalisationConfig(digit=3), needs=("mnist-cnn",))
    m = run_cell(cell, probs, device="cpu", progress=False, root=tmp_path)
    assert m["encoder_dir"] == str((tmp_path / "colocalisation" / "tiny-enc" / "mnist-cnn").resolve())
    assert (tmp_path / "colocalisation" / "tiny-enc" / "mnist-cnn" / "metrics.json").exists()
    assert not (tmp_path / "colocalisation" / "tiny-probs" / "mnist-cnn").exists()
    # asked for by name (as a whole-experiment run does, the encoder being its first cell), the encoder is the
    # other profile's: loaded there, not trained again under the problems' profile
    enc_cell = next(c for c in get_cells("colocalisation") if c.id == "mnist-cnn")
    again = run_cell(enc_cell, probs, device="cpu", progress=False, root=tmp_path)
    assert again["profile"] == "tiny-enc" and again["steps"] == 5
    assert not (tmp_path / "colocalisation" / "tiny-probs" / "mnist-cnn").exists()
    assert not (tmp_path / "runs" / "colocalisation" / "tiny-probs" / "mnist-cnn").exists()


def test_class_readings_count_the_patches_and_true_crops_the_embedding_reads_as_the_problems_digit(monkeypatch):
    """The random patches and true crops the CNN classifies as the problem's digit, on committed window-search
    problems: an embedding that reads every crop as the digit gives 100%, one that reads none as it 0%."""
    from stnbook.colocalisation import report as reports
    from stnbook.colocalisation.experiment import CoLocaliser

    real = reports.class_readings(cells=["T-0", "T-1"])
    if not real:
        pytest.skip("no committed window-search artifacts")
    for cell, r in real.items():
        assert 0 <= r["patches"] <= 100 and r["truth"] > 80, cell  # the CNN reads the true crops as the digit
    assert real["T-1"]["patches"] > real["T-0"]["patches"]  # an empty patch is read as a one, not as a zero
    assert reports.blank_class() in [str(d) for d in range(10)]

    def reads_as(offset):
        def embed(self, crops, normalize=True, kind=None):
            return torch.nn.functional.one_hot(torch.full((len(crops),), (self.config.digit + offset) % 10), 10).float()
        return embed

    monkeypatch.setattr(CoLocaliser, "embed", reads_as(0))
    assert all(r["patches"] == r["truth"] == 100.0 for r in reports.class_readings(cells=["T-0", "T-1"]).values())
    monkeypatch.setattr(CoLocaliser, "embed", reads_as(1))
    assert all(r["patches"] == r["truth"] == 0.0 for r in reports.class_readings(cells=["T-0", "T-1"]).values())
    numbers = reports.reading_key_numbers(real, share=0.0)  # every problem counts as "high" at a 0% share
    assert numbers["coloc_read_high"] == "2" and numbers["coloc_read_low"] == "0"


def test_a_no_digit_class_trains_on_windows_that_miss_the_digit_and_the_problems_embed_with_its_11_logits(tmp_path,
                                                                                                        monkeypatch):
    from stnbook.colocalisation.experiment import (
        COLOCALISATION,
        NO_DIGIT,
        NO_DIGIT_ENCODER,
        background_crops,
        make_data,
    )

    enc = Profile("tiny-nd-enc", steps=5, batch_size=32, lr=3e-3, train_size=5_000, test_size=100,
                  model_overrides=NO_DIGIT_ENCODER)
    probs = Profile("tiny-nd", steps=3, batch_size=32, lr=3e-3, train_size=5_000, test_size=100,
                    model_overrides={"T-*": {"encoder_classes": NO_DIGIT + 1, "embedding": "logits"}},
                    needs_profile="tiny-nd-enc")
    monkeypatch.setitem(COLOCALISATION.profiles, "tiny-nd-enc", enc)
    monkeypatch.setitem(COLOCALISATION.profiles, "tiny-nd", probs)
    enc_cell = next(c for c in get_cells("colocalisation") if c.id == "mnist-cnn")
    train, _ = make_data(enc_cell, enc, 0, torch.device("cpu"))
    assert (train.labels < NO_DIGIT).sum() == 5_000 and (train.labels == NO_DIGIT).sum() > 1_000  # the digits and,
    # beside them, the windows that miss them
    plain, _ = make_data(enc_cell, get_profile("colocalisation", "trained-encoder"), 0, torch.device("cpu"))
    assert not (plain.labels == NO_DIGIT).any()  # ten classes: no such examples
    cell = Cell("colocalisation", "T-3", "T", CoLocalisationConfig(digit=3), needs=("mnist-cnn",))
    m = run_cell(cell, probs, device="cpu", progress=False, root=tmp_path)
    assert m["model_config"]["encoder_classes"] == NO_DIGIT + 1
    _, model, _ = load_cell(cell, "tiny-nd", root=tmp_path)
    assert model.encoder.classifier[-1].out_features == NO_DIGIT + 1
    assert model.embed(torch.rand(2, 1, 28, 28)).shape == (2, NO_DIGIT + 1)
    with pytest.raises(ValueError, match="encoder_classes"):
        CoLocalisationConfig(encoder_classes=12)

    x, y = train.images[:5_000], train.labels[:5_000]  # the windows are kept by their IoU with the digit's box
    assert len(background_crops(x, y, 0, per_class=5, windows=3, iou_below=1.01)) == 10 * 2 * 5 * 3
    assert len(background_crops(x, y, 0, per_class=5, windows=3, iou_below=0.0)) == 0
