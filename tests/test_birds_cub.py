"""The birds experiment on CUB-200-2011 ("birds-cub"): its smoke profile end to end on the tiny tree of
tests/cub_tree.py, its analysis of where the crops look, and the error when the data set is absent."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cub_tree import IMAGES, write_tree

from stnbook.birds.cub import CUBNotFound, find_cub, hit_table, scored_rows
from stnbook.experiments import get_cells, get_profile, load_cell, run_cell
from stnbook.paths import CUB_ROOT_ENV, cub_root, data_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    cub = write_tree(tmp_path / "data")
    monkeypatch.setenv(CUB_ROOT_ENV, str(cub))
    return cub


def test_cells_are_the_papers_models_at_the_proxys_proportions():
    cells = {c.id: c.model for c in get_cells("birds-cub")}
    assert list(cells) == ["cnn", "2xst", "4xst"]
    assert [m.num_transformers for m in cells.values()] == [0, 2, 4]
    for m in cells.values():
        assert (m.in_size, m.low_res, m.crop, m.num_classes) == (240, 80, 40, 200)
        assert m.attention_scale == pytest.approx(1 / 6)  # fixed scale; only the location is regressed
    assert get_profile("birds-cub", "full").overrides_for("2xst")["loc_lr_mult"] < 1


def test_smoke_profile_trains_every_cell_on_a_cub_tree(tree, tmp_path):
    out = tmp_path / "results"
    for cell in get_cells("birds-cub"):
        m = run_cell(cell, "smoke", device="cpu", threads=1, progress=False, root=out)
        assert m["steps"] == 3 and m["test_size"] == 2  # the tree's test split: images 2 and 5
        assert abs(m["accuracy"] - (100 - m["test_error"])) < 1e-6
        assert m["visible"] == {"head": 1, "body": 2}  # image 5 shows no head part
        assert m["model_config"]["in_size"] == 48 and m["model_config"]["num_classes"] == 200
        metrics, model, analysis = load_cell(cell, "smoke", root=out)
        assert dataclasses.asdict(model.config) == metrics["model_config"]
        assert analysis["pred"].shape == (2,) and analysis["parts"].shape == (2, 2, 2)
        n = cell.model.num_transformers
        if n == 0:
            assert "hits" not in metrics and "theta" not in analysis
            continue
        assert analysis["theta"].shape == (2, n, 2)
        assert len(metrics["hits"]) == len(metrics["hits_at_start"]) == n
        assert all(set(h) == {"head", "body", "neither"} and all(0 <= v <= 100 for v in h.values())
                   for h in metrics["hits"])
        assert metrics["hits"] == hit_table(analysis["theta"], analysis["parts"], metrics["attention_scale"])
        assert f"st{n}_body" in metrics["history"][-1]  # the training loss logs where the crops look
    assert sorted(p.name for p in (out / "birds-cub" / "smoke").iterdir()) == ["2xst", "4xst", "cnn"]


def test_hit_rates_count_only_visible_parts():
    nan = float("nan")
    parts = torch.tensor([[[0.0, 0.0], [0.9, 0.9]],  # head under the crop, body far away
                          [[nan, nan], [0.1, 0.0]],  # no head visible; body under the crop
                          [[0.9, -0.9], [-0.9, 0.9]]])  # both visible, both far away
    theta = torch.zeros(3, 1, 2)
    (h,) = hit_table(theta, parts, 0.25)
    assert h["head"] == pytest.approx(50.0)  # 1 of the 2 images with a visible head
    assert h["body"] == pytest.approx(100 / 3)
    assert h["neither"] == pytest.approx(50.0)  # of the 2 images with both visible, image 2 has neither


def test_a_test_subset_is_spread_over_the_split():
    assert scored_rows(5794, 4).tolist() == [0, 1931, 3862, 5793]
    assert scored_rows(2, 16).tolist() == [0, 1]


def test_the_data_root_comes_from_the_environment_or_data(tree, monkeypatch):
    assert cub_root() == tree and find_cub() == tree
    assert find_cub(tree.parent) == tree  # the folder holding CUB_200_2011 works too
    monkeypatch.delenv(CUB_ROOT_ENV)
    assert cub_root() == data_dir() / "CUB_200_2011"


def test_an_absent_data_set_says_where_to_get_and_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CUB_ROOT_ENV, str(tmp_path / "nowhere"))
    cell = get_cells("birds-cub", ["2xst"])[0]
    with pytest.raises(CUBNotFound) as info:
        run_cell(cell, "smoke", device="cpu", progress=False, root=tmp_path / "results")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "vision.caltech.edu" in message
    assert str(data_dir() / "CUB_200_2011" / "images.txt") in message and CUB_ROOT_ENV in message
    assert not (tmp_path / "results").exists()  # nothing was started
    # the command line says the same in one line, without a traceback
    run = subprocess.run([sys.executable, "-m", "stnbook", "run", "birds-cub", "--cells", "cnn"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, CUB_ROOT_ENV: str(tmp_path)})
    assert run.returncode == 2 and "Traceback" not in run.stderr and "vision.caltech.edu" in run.stderr


def test_a_tree_with_more_classes_than_outputs_is_refused(tmp_path, monkeypatch):
    from stnlib.data.cub import CUBDataError

    images = dict(IMAGES)
    images[6] = (201, 1, "201.Extra/Extra_0006.jpg", (20, 20), (1.0, 1.0, 5.0, 5.0))
    cub = write_tree(tmp_path / "data", images)
    (cub / "classes.txt").unlink()  # classes.txt would bound the ids at 2
    monkeypatch.setenv(CUB_ROOT_ENV, str(cub))
    with pytest.raises(CUBDataError, match="class ids up to 201, more than the 200 outputs"):
        run_cell(get_cells("birds-cub", ["cnn"])[0], "smoke", device="cpu", progress=False, root=tmp_path / "r")
