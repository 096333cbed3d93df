"""Tiny ONNX inspection graphs + manifests for the runtime tests (no training, no export needed).

The graph follows the inspection-graph contract: frame (N, H, W, 3) uint8 -> anomaly_map (N, 1, H, W) float32,
score (N,) float32. It casts and scales, reads the channels in the manifest's order, runs a fixed 3x3 conv
(float math for parity tests), optionally adds an extra input 'noise' (N, 1, H, W) with a zero default, and
scores with ReduceMax.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from runtime.manifest import ExtraInput, InputSpec, Manifest, Normalization, Threshold, write_manifest


def make_onnx(path: str, size: Tuple[int, int] = (32, 48), with_noise: bool = False, seed: int = 0,
              static_batch: Optional[int] = None, bias: float = 0.1) -> str:
    """`bias` is added to every map pixel: float("nan") makes a graph whose every output is NaN."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    batch = static_batch if static_batch else "N"
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.5, size=(1, 3, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "scale"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(np.array([bias], np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("Transpose", ["fs"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "weight", "bias"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["c"], ["a"]),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Add", ["a", "m"], ["s"] if with_noise else ["anomaly_map"]),
    ]
    inputs = [helper.make_tensor_value_info("frame", TensorProto.UINT8, [batch, h, w, 3])]
    if with_noise:
        nodes.append(helper.make_node("Add", ["s", "noise"], ["anomaly_map"]))
        inputs.append(helper.make_tensor_value_info("noise", TensorProto.FLOAT, [batch, 1, h, w]))
    nodes.append(helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0))
    outputs = [
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, h, w]),
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
    ]
    graph = helper.make_graph(nodes, "tiny_inspection", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="runtime-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def make_model(folder: str, name: str = "tiny", size: Tuple[int, int] = (32, 48), channel_order: str = "RGB",
               threshold: Optional[float] = None, normalization: Optional[Tuple[float, float]] = None,
               with_noise: bool = False, static_batch: Optional[int] = None, batch_max: int = 8,
               bias: float = 0.1) -> str:
    """Write NAME.onnx + NAME.json into `folder`; returns the .onnx path."""
    path = make_onnx(os.path.join(folder, name + ".onnx"), size, with_noise=with_noise, static_batch=static_batch,
                     bias=bias)
    thr = None
    if threshold is not None:
        norm = Normalization(*normalization) if normalization else None
        thr = Threshold(value=threshold, rule="user", images=10, data="synthetic", date="2026-11-23",
                        normalization=norm)
    extras = [ExtraInput("noise", [1, size[0], size[1]], "float32", True, "fresh noise field")] if with_noise else []
    if static_batch:
        from runtime.manifest import BatchSpec
        batch = BatchSpec(dynamic=False, min=static_batch, opt=static_batch, max=static_batch)
    else:
        from runtime.manifest import BatchSpec
        batch = BatchSpec(dynamic=True, min=1, opt=1, max=batch_max)
    m = Manifest(artifact="", artifact_kind="onnx", sha256="", method="tiny", c=8,
                 input=InputSpec(height=size[0], width=size[1], channel_order=channel_order),
                 extra_inputs=extras, batch=batch, threshold=thr, source_run=None,
                 versions={"toolkit": "test"}, notes=["built by tests"])
    write_manifest(path, m)
    return path


def frames(n: int, size: Tuple[int, int] = (32, 48), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size[0], size[1], 3), dtype=np.uint8)
