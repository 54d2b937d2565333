"""Export a spatial-transformer classifier to ONNX, so that it runs outside PyTorch (onnxruntime, or a web
page through onnxruntime-web).

The exported graph takes the classifier's input ``x`` (B, C, H, W) and returns three outputs:
``logits`` (B, classes), ``theta`` (B, P) or (B, N, P) for N parallel transformers, and ``output``, the
transformer's warped input (B, C', H', W'), so that a viewer can draw the sampling box and the transformer's
output next to the prediction. The sampler is ONNX ``GridSample`` (opset 16 and later) and the affine grid
a matrix product, which every onnxruntime backend runs.

``onnx`` and ``onnxscript`` (the exporter) and ``onnxruntime`` (the check) are imported only when called.

Examples:
    >>> import torch
    >>> from stnlib.models import ModelConfig, build_model
    >>> model = build_model(ModelConfig("fcn", "affine", width=16))
    >>> wrapped = ExportWrapper(model)
    >>> logits, theta, output = wrapped(torch.rand(2, 1, 28, 28))
    >>> tuple(logits.shape), tuple(theta.shape), tuple(output.shape)
    ((2, 10), (2, 6), (2, 1, 28, 28))
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from stnlib.spatial_transformer import ParallelSpatialTransformers, SpatialTransformer

OUTPUT_NAMES = ("logits", "theta", "output")
DEFAULT_OPSET = 18


class ExportWrapper(nn.Module):
    """``forward(x) -> (logits, theta, output)`` of a model with ``transform_input`` and ``classify`` (an
    :class:`~stnlib.models.STClassifier` or anything with the same two methods).

    The classifier runs on the transformer's output exactly as ``model(x)`` does: ``logits`` equals
    ``model(x)``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not (hasattr(model, "transform_input") and hasattr(model, "classify")):
            raise TypeError(f"expected a model with transform_input(x) -> (output, theta) and classify(output), such as "
                            f"stnlib.models.STClassifier; got {type(model).__name__}")
        if getattr(model, "st", None) is None:
            raise ValueError("the model has no spatial transformer: export its classifier with torch.onnx directly")
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        warped, theta = m.transform_input(x)
        logits = m.classify(warped)
        return logits, theta, warped


@contextlib.contextmanager
def _without_finite_checks(model: nn.Module) -> Iterator[None]:
    """Turn off the transformers' data-dependent theta check (a Python branch on tensor values, which a
    traced graph cannot hold) while exporting; restored afterwards."""
    sts = [m for m in model.modules() if isinstance(m, (SpatialTransformer, ParallelSpatialTransformers))]
    saved = [m.check_finite for m in sts]
    try:
        for m in sts:
            m.check_finite = False
        yield
    finally:
        for m, s in zip(sts, saved):
            m.check_finite = s


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *,
                opset: int = DEFAULT_OPSET, overwrite: bool = False) -> Path:
    """Write ``model`` (wrapped by :class:`ExportWrapper`) to one self-contained ONNX file at ``path``.

    Args:
        model: an :class:`~stnlib.models.STClassifier` (any device; exported from a CPU float32 copy).
        path: destination ``.onnx`` file; written atomically (a temporary file, then renamed).
        example: one input batch (B, C, H, W) that fixes the channel and image sizes; the batch dimension
            is exported as dynamic.
        opset: ONNX opset, at least 16 (``GridSample``).
        overwrite: replace an existing file; otherwise an existing ``path`` raises ``FileExistsError``.

    Returns:
        the path written.
    """
    path = Path(path)
    if opset < 16:
        raise ValueError(f"opset must be >= 16 (ONNX GridSample), got {opset}")
    if not isinstance(example, torch.Tensor) or example.dim() != 4 or not example.is_floating_point():
        raise ValueError(f"example must be a float tensor (B, C, H, W), got "
                         f"{tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as e:
        raise ImportError("ONNX export needs the packages onnx and onnxscript: pip install onnx onnxscript") from e
    import copy

    wrapper = ExportWrapper(copy.deepcopy(model).float().cpu().eval())
    example = example.detach().float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with _without_finite_checks(wrapper), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset,
                                        input_names=["x"], output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=({0: batch},), external_data=False, verbose=False)
            program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, x: torch.Tensor) -> dict[str, float]:
    """Run the ONNX file at ``path`` with onnxruntime (CPU) on ``x`` and compare with PyTorch.

    Returns:
        the largest absolute difference per output name (``logits``, ``theta``, ``output``).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from e
    wrapper = ExportWrapper(model).float().cpu().eval()
    x = x.detach().float().cpu()
    with torch.no_grad():
        expected = wrapper(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {"x": x.numpy()})
    return {name: float((torch.from_numpy(g) - e).abs().max()) for name, g, e in zip(OUTPUT_NAMES, got, expected)}


__all__ = ["DEFAULT_OPSET", "ExportWrapper", "OUTPUT_NAMES", "check_onnx", "export_onnx"]
