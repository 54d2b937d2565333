"""stnbook.memo: a kept analysis is reused only while its artifacts, code and arguments are the same."""

from __future__ import annotations

import types

import pytest
import torch

from stnbook import memo


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("STNBOOK_ROOT", str(tmp_path))
    (tmp_path / "results" / "exp" / "full").mkdir(parents=True)
    (tmp_path / "results" / "exp" / "full" / "metrics.json").write_text('{"error": 1.0}')
    return tmp_path


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_a_kept_result_is_reused_until_an_artifact_changes(root):
    inputs = [root / "results" / "exp"]
    compute, calls = counting({"map": torch.arange(4.0), "cell": "T-0", "found": None})
    first = memo.remember("exp/landscape", compute, inputs=inputs, args=[3])
    again = memo.remember("exp/landscape", compute, inputs=inputs, args=[3])
    assert len(calls) == 1 and torch.equal(again["map"], first["map"]) and again["found"] is None
    assert (root / "results" / "memo" / "exp" / "landscape.pt").is_file()

    (root / "results" / "exp" / "full" / "metrics.json").write_text('{"error": 2.0}')  # a new artifact
    memo.remember("exp/landscape", compute, inputs=inputs, args=[3])
    assert len(calls) == 2
    memo.remember("exp/landscape", compute, inputs=inputs, args=[4])  # other arguments
    assert len(calls) == 3


def test_smoke_folders_do_not_count_and_smoke_results_are_not_kept(root):
    inputs = [root / "results" / "exp"]
    before = memo.digest(inputs)
    (root / "results" / "exp" / "smoke").mkdir()
    (root / "results" / "exp" / "smoke" / "metrics.json").write_text("{}")
    assert memo.digest(inputs) == before
    compute, calls = counting([1.0])
    memo.remember("exp/smoke-run", compute, inputs=inputs, keep=False)
    memo.remember("exp/smoke-run", compute, inputs=inputs, keep=False)
    assert len(calls) == 2 and not (root / "results" / "memo" / "exp" / "smoke-run.pt").exists()


def test_the_code_that_computes_it_is_part_of_the_key(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    module = types.ModuleType("pkg")
    module.__file__ = str(package / "__init__.py")
    before = memo.key([], [module], args=None)
    (package / "report.py").write_text("def f(): return 2\n")
    assert memo.key([], [module], args=None) != before


def test_an_unreadable_kept_file_is_computed_again_and_replaced(root, capsys):
    path = root / "results" / "memo" / "exp" / "readings.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    compute, calls = counting({"T-0": 12.5})
    assert memo.remember("exp/readings", compute, inputs=[]) == {"T-0": 12.5} and len(calls) == 1
    assert "does not load" in capsys.readouterr().err
    assert torch.load(path, weights_only=True)["value"] == {"T-0": 12.5}


def test_a_kept_result_that_is_not_plain_data_is_refused_when_saved(root):
    class Model:
        pass

    with pytest.raises(TypeError, match=r"plain data.*result\['model'\] is a Model"):
        memo.remember("exp/model", lambda: {"model": Model()}, inputs=[])  # would not load with weights_only=True
    assert not (root / "results" / "memo" / "exp" / "model.pt").exists()


@pytest.mark.parametrize("name", ["", "../escape", "a//b", "/abs"])
def test_a_name_outside_the_memo_folder_is_refused(root, name):
    with pytest.raises(ValueError, match="relative path"):
        memo.remember(name, lambda: 1, inputs=[])
