"""The experiment command: artifacts written atomically, loadable, and identical for one seed."""

import json
import os
from pathlib import Path

import pytest
import torch

from stnbook.experiments import ArtifactConflict, ArtifactError, Profile, get_cells, load_cell, load_results, run_cell

TINY = Profile("tiny", steps=12, batch_size=32, lr=2e-3, train_size=640, test_size=200)


def test_same_seed_same_numbers_and_artifacts_load(tmp_path):
    cell = get_cells("table1", ["R-st-fcn-affine"])[0]
    a = run_cell(cell, TINY, seed=3, device="cpu", progress=False, root=tmp_path / "a")
    b = run_cell(cell, TINY, seed=3, device="cpu", progress=False, root=tmp_path / "b")
    c = run_cell(cell, TINY, seed=4, device="cpu", progress=False, root=tmp_path / "c")
    assert a["test_error"] == b["test_error"] and a["history"] == b["history"]
    assert a["history"] != c["history"]
    # seeds key artifacts: seed 3 lives beside (below) seed 0's folder, never in its place
    folder = tmp_path / "a" / "table1" / "tiny" / "R-st-fcn-affine" / "seed3"
    assert {p.name for p in folder.iterdir()} == {"metrics.json", "model.pt", "analysis.pt"}
    metrics, model, analysis = load_cell(cell, "tiny", root=tmp_path / "a", seed=3)
    assert metrics["command"].startswith("python -m stnbook run table1")
    assert metrics["hardware"]["torch_version"] and metrics["wall_time_s"] > 0
    assert analysis["pred"].shape == (200,) and analysis["theta"].shape == (200, 6)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert set(load_results("table1", "tiny", root=tmp_path / "a", seed=3)) == {"R-st-fcn-affine"}
    assert load_results("table1", "tiny", root=tmp_path / "a") == {}
    # a finished artifact is loaded, not retrained
    json.loads((folder / "metrics.json").read_text())
    again = run_cell(cell, TINY, seed=3, device="cpu", progress=False, root=tmp_path / "a")
    assert again["finished"] == a["finished"] and again["history"] == a["history"]
    # ... but one made with other settings is refused, naming the difference, and replaced only when forced
    longer = Profile("tiny", steps=14, batch_size=32, lr=2e-3, train_size=640, test_size=200)
    with pytest.raises(ArtifactConflict, match="steps: 12 -> 14"):
        run_cell(cell, longer, seed=3, device="cpu", progress=False, root=tmp_path / "a")
    redone = run_cell(cell, longer, seed=3, device="cpu", progress=False, root=tmp_path / "a", force=True)
    assert redone["steps"] == 14 and redone["history"] != a["history"]


def test_artifacts_are_verified_before_reuse(tmp_path, capsys):
    cell = get_cells("table1", ["R-st-fcn-affine"])[0]
    a = run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)
    folder = tmp_path / "table1" / "tiny" / "R-st-fcn-affine"
    assert set(a["files"]) == {"model.pt", "analysis.pt"}
    # a damaged file is named, by load_cell and by run_cell (which trains the cell again)
    (folder / "model.pt").write_bytes((folder / "model.pt").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="model.pt"):
        load_cell(cell, "tiny", root=tmp_path)
    again = run_cell(cell, TINY, device="cpu", progress=True, root=tmp_path)
    assert "model.pt" in capsys.readouterr().out and again["test_error"] == a["test_error"]
    load_cell(cell, "tiny", root=tmp_path)  # repaired
    # a corrupt metrics file is named
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="metrics.json"):
        run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)


def test_cell_overrides_change_only_the_matching_cells(tmp_path):
    prof = Profile("tiny", steps=6, batch_size=32, lr=2e-3, train_size=640, test_size=100,
                   cell_overrides={"R-st-*": {"steps": 9, "loc_lr_mult": 0.5}})
    plain, st = get_cells("table1", ["R-fcn", "R-st-fcn-affine"])
    a = run_cell(plain, prof, device="cpu", progress=False, root=tmp_path)
    b = run_cell(st, prof, device="cpu", progress=False, root=tmp_path)
    assert (a["steps"], a["train_config"]["loc_lr_mult"]) == (6, 1.0)
    assert (b["steps"], b["train_config"]["loc_lr_mult"]) == (9, 0.5)
    assert prof.steps_for("R-st-cnn-tps") == 9 and prof.steps_for("RTS-st-cnn-tps") == 6
    with pytest.raises(ValueError, match="batch_size"):
        Profile("bad", steps=6, batch_size=32, cell_overrides={"*": {"batch_size": 64}})


def test_declared_dependencies_are_checked():
    from stnbook.experiments import Cell, dependencies

    plain, _ = get_cells("table1", ["R-fcn", "R-st-fcn-affine"])
    assert dependencies(plain) == []
    with pytest.raises(ValueError, match="no use_dependencies"):  # table1 cannot pass an artifact on
        dependencies(Cell("table1", "R-st-fcn-affine", "R", plain.model, needs=("R-fcn",)))
    coloc = get_cells("colocalisation")
    assert [d.id for d in dependencies(coloc[1])] == ["mnist-cnn"] and all(c.needs for c in coloc[1:])
    with pytest.raises(ValueError, match="needs itself"):
        dependencies(Cell("colocalisation", "T-0", "T", coloc[1].model, needs=("T-0",)))
    with pytest.raises(ValueError, match="unknown cells"):
        dependencies(Cell("colocalisation", "T-0", "T", coloc[1].model, needs=("nope",)))
    with pytest.raises(ValueError, match="one level"):  # T-1 needs the encoder itself
        dependencies(Cell("colocalisation", "T-0", "T", coloc[1].model, needs=("T-1",)))


def test_every_profile_makes_a_valid_training_config():
    from stnbook.experiments import EXPERIMENTS, train_config

    for exp in EXPERIMENTS.values():
        for prof in exp.profiles.values():
            for cell in exp.cells():
                cfg = train_config(prof, 0, "cpu", 1, False, cell.id)  # TrainConfig validates itself
                assert cfg.steps == prof.steps_for(cell.id) > 0


def test_table1_has_every_cell_of_the_paper():
    ids = {c.id for c in get_cells("table1")}
    assert len(ids) == 4 * 8 + 4
    for d in ("R", "RTS", "P", "E"):
        for m in ("fcn", "cnn"):
            assert {f"{d}-{m}", f"{d}-st-{m}-affine", f"{d}-st-{m}-projective", f"{d}-st-{m}-tps"} <= ids
    assert {"TC-fcn", "TC-cnn", "TC-st-fcn-affine", "TC-st-cnn-affine"} <= ids


def test_a_cell_being_trained_by_another_live_process_is_refused(tmp_path):
    import os
    import socket

    from stnbook.experiments import CellBusy, run_dir_of

    cell = get_cells("table1", ["R-st-fcn-affine"])[0]
    lock = run_dir_of(cell, "tiny", tmp_path) / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{socket.gethostname()} {os.getppid()}")  # a live process
    with pytest.raises(CellBusy, match=str(os.getppid())):
        run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)
    lock.write_text(f"{socket.gethostname()} 999999999")  # a process that is gone: its lock is taken over
    assert run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)["steps"] == 12
    assert not lock.exists()


def test_a_distortion_ramp_is_recorded_and_keys_the_artifact(tmp_path):
    cell = get_cells("table1", ["R-st-fcn-affine"])[0]
    ramped = Profile("tiny", steps=12, batch_size=32, lr=2e-3, train_size=640, test_size=200, distortion_ramp=(0.25, 0.5))
    assert ramped.ramp_steps(cell.id) == (3, 6) and TINY.ramp_steps(cell.id) is None
    a = run_cell(cell, ramped, device="cpu", progress=False, root=tmp_path)
    assert a["distortion_ramp"] == [3, 6]
    plain = run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path / "plain")
    assert "distortion_ramp" not in plain and plain["history"] != a["history"]
    # the same profile name without the ramp is another run: refused, naming the difference
    with pytest.raises(ArtifactConflict, match=r"distortion_ramp: \[3, 6\] -> None"):
        run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)
    assert run_cell(cell, ramped, device="cpu", progress=False, root=tmp_path)["finished"] == a["finished"]
    with pytest.raises(ValueError, match="distortion_ramp must be"):
        Profile("bad", steps=10, batch_size=8, distortion_ramp=(0.5, 0.2))


def test_gpu_check_script_refuses_a_malformed_run_before_doing_anything(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], env={**os.environ, "RUNS": "table1:adam:R-cnn", "OUT": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "a run is experiment:profile:seed:cell, got 'table1:adam:R-cnn'" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_a_finished_run_keeps_the_checkpoints_of_other_seeds_inside_its_folder(tmp_path):
    """Seed k's run folder lies inside seed 0's (``<cell>/seed<k>``): seed 0 finishing removes its own checkpoint
    only, never a checkpoint of seed 1 that is still running or waiting to be resumed."""
    from stnbook.experiments import run_dir_of

    cell = get_cells("table1", ["R-st-fcn-affine"])[0]
    other = run_dir_of(cell, "tiny", tmp_path, seed=1) / "checkpoint.pt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"seed 1's checkpoint")
    run_cell(cell, TINY, device="cpu", progress=False, root=tmp_path)
    assert other.read_bytes() == b"seed 1's checkpoint"
    assert not (run_dir_of(cell, "tiny", tmp_path) / "checkpoint.pt").exists()
    run_cell(cell, TINY, seed=2, device="cpu", progress=False, root=tmp_path)  # a seed with nothing inside
    assert not run_dir_of(cell, "tiny", tmp_path, seed=2).exists() and other.exists()


def test_unfinished_runs_lists_every_checkpoint_with_the_command_that_resumes_it(tmp_path):
    from stnbook.experiments import get_profile, unfinished_runs

    for sub, step in (("table1/smoke/R-cnn", 5), ("table1/smoke/R-cnn/seed2", 7), ("table1/retired/R-cnn", 9)):
        (tmp_path / "runs" / sub).mkdir(parents=True)
        torch.save({"step": step, "wall_time_s": 1.0}, tmp_path / "runs" / sub / "checkpoint.pt")
    runs = unfinished_runs(tmp_path)
    of = get_profile("table1", "smoke").steps_for("R-cnn")
    assert [(r["cell"], r["seed"], r["step"], r["of"]) for r in runs] == [("R-cnn", 0, 5, of), ("R-cnn", 2, 7, of)]
    assert runs[1]["command"] == "python -m stnbook run table1 --profile smoke --cells R-cnn --seed 2"
    assert unfinished_runs(tmp_path / "empty") == []
