"""stnlib.export: ONNX files that onnxruntime runs to the numbers PyTorch computes, and the book's live exports."""

from __future__ import annotations

import json

import pytest
import torch

from stnlib.coords import base_grid
from stnlib.export import ExportWrapper, check_onnx, export_onnx
from stnlib.models import ModelConfig, build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOL = {"logits": 1e-4, "theta": 1e-5, "output": 1e-5}


def trained_looking(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model whose transformer is away from the identity (random regression weights), so that theta varies
    with the input and the sampler is exercised off the pixel grid."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        model.st.head.weight.normal_(0, 0.02)
    return model


@pytest.mark.parametrize("config", [
    ModelConfig("fcn", "affine", width=16),
    ModelConfig("cnn", "tps", width=8),
    ModelConfig("fcn", "projective", (42, 42), in_channels=2, num_classes=19, num_transformers=2, width=16,
                loc_arch="cnn", st_out_size=(28, 28), st_init_scale=2 / 3),
], ids=["fcn-affine", "cnn-tps", "2x-projective-crops"])
def test_onnxruntime_matches_pytorch_at_any_batch_size(config, tmp_path):
    model = trained_looking(config)
    c, (h, w) = config.in_channels, config.in_size
    path = export_onnx(model, tmp_path / "m.onnx", torch.rand(2, c, h, w))
    x = torch.rand(5, c, h, w)  # another batch size than the example: the batch dimension is dynamic
    diffs = check_onnx(model, path, x)
    assert all(diffs[k] <= TOL[k] for k in TOL), diffs
    with torch.no_grad():
        logits, theta, output = ExportWrapper(model)(x)
    assert torch.allclose(logits, model(x), atol=1e-6)  # the wrapper's logits are the model's
    assert theta.std(0).max() > 1e-4, "theta should vary with the input (a transformer away from the identity)"


def test_export_leaves_eager_code_working(tmp_path):
    """Tracing must not leave fake tensors in the library's caches (the base grid is cached per size)."""
    model = trained_looking(ModelConfig("fcn", "affine", width=8))
    export_onnx(model, tmp_path / "m.onnx", torch.rand(1, 1, 28, 28))
    grid = base_grid((28, 28))
    assert type(grid) is torch.Tensor
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10) and torch.isfinite(model(x)).all()


def test_export_errors_name_what_was_expected(tmp_path):
    model = trained_looking(ModelConfig("fcn", "affine", width=8))
    with pytest.raises(ValueError, match="opset must be >= 16"):
        export_onnx(model, tmp_path / "a.onnx", torch.rand(1, 1, 28, 28), opset=13)
    with pytest.raises(ValueError, match=r"float tensor \(B, C, H, W\)"):
        export_onnx(model, tmp_path / "a.onnx", torch.rand(28, 28))
    with pytest.raises(ValueError, match="no spatial transformer"):
        ExportWrapper(build_model(ModelConfig("fcn", None, width=8)))
    with pytest.raises(TypeError, match="transform_input"):
        ExportWrapper(torch.nn.Linear(2, 2))
    existing = tmp_path / "b.onnx"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(model, existing, torch.rand(1, 1, 28, 28))
    assert existing.read_bytes() == b"keep me"


def test_the_books_live_exports_are_current_and_agree_with_their_artifacts():
    """The ONNX files the live page loads come from the committed artifacts they name (sha256 of model.pt), are
    the files the manifest describes, and compute what those PyTorch models compute."""
    from stnbook import live

    assert live.stale_exports() == [], "run `python -m stnbook.live export`"
    manifest = live.read_manifest()
    assert set(manifest["models"]) == set(live.LIVE_MODELS)
    x, _, _ = live.check_digits(64)
    for name in live.LIVE_MODELS:
        _, model = live.live_model(name)
        diffs = check_onnx(model, live.live_dir() / f"{name}.onnx", x)
        assert all(diffs[k] <= live.TOLERANCE[k] for k in diffs), (name, diffs)
    digits = json.loads((live.live_dir() / "digits.json").read_text())
    assert digits == live.page_digits()


def test_stale_export_is_detected(tmp_path, monkeypatch):
    from stnbook import live

    for name in live.LIVE_MODELS:
        (tmp_path / f"{name}.onnx").write_bytes((live.live_dir() / f"{name}.onnx").read_bytes())
    (tmp_path / "manifest.json").write_text((live.live_dir() / "manifest.json").read_text())
    monkeypatch.setattr(live, "live_dir", lambda: tmp_path)
    assert live.stale_exports() == []
    first = next(iter(live.LIVE_MODELS))
    (tmp_path / f"{first}.onnx").write_bytes(b"not the exported file")
    assert live.stale_exports() == [first]
