"""Noise-to-norm exports to ONNX (opset 17) and ONNX Runtime matches torch; also inside the uint8 inspection graph."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from train.graph import InspectionGraph
from train.methods import get_method

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE = (64, 64)
TOL = 1e-4


def _model(c=8, size=SIZE):
    m = get_method("noise2norm")
    torch.manual_seed(0)
    return m.build_model(c, size, m.options({})).eval()


def _export(module, args, path, input_names):
    dyn = {name: {0: "batch"} for name in input_names + ["anomaly_map", "score"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(
            module, args, str(path), opset_version=17, dynamo=False,
            input_names=input_names, output_names=["anomaly_map", "score"], dynamic_axes=dyn,
        )
    onnx.checker.check_model(onnx.load(str(path)))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_export_matches_torch(tmp_path):
    model = _model()
    x = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    sess = _export(model, (x,), tmp_path / "n2n.onnx", ["image"])
    for batch in (x, torch.rand(3, 3, *SIZE)):  # the traced batch and another one (dynamic axis)
        with torch.no_grad():
            ref_map, ref_score = model(batch)
        out_map, out_score = sess.run(None, {"image": batch.numpy()})
        err = max(np.abs(out_map - ref_map.numpy()).max(), np.abs(out_score - ref_score.numpy()).max())
        print(f"noise2norm c=8 64x64 ONNX Runtime vs torch max abs error {err:.3g}")
        assert out_map.shape == (batch.shape[0], 1, *SIZE)
        assert err <= TOL
    ops = {n.op_type for n in onnx.load(str(tmp_path / "n2n.onnx")).graph.node}
    assert not ops & {"DFT", "Loop", "If", "RandomNormal", "RandomNormalLike"}


def test_inspection_graph_with_optional_noise_input(tmp_path):
    method = get_method("noise2norm")
    model = _model()
    graph = InspectionGraph(model, SIZE, frame_size=(80, 96), channel_order="BGR").eval()
    (name, extra), = method.extra_inputs(SIZE).items()
    shape = extra.shape
    frames = torch.randint(0, 256, (2, 80, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    sess = _export(graph, (frames, noise), tmp_path / "graph.onnx", ["frame", name])
    with torch.no_grad():
        ref_map, ref_score = graph(frames, noise)
        fixed_map, _ = graph(frames)
    out_map, out_score = sess.run(None, {"frame": frames.numpy(), name: noise.numpy()})
    assert np.abs(out_map - ref_map.numpy()).max() <= TOL
    assert np.abs(out_score - ref_score.numpy()).max() <= TOL
    # The run-time noise really replaces the fixed field.
    assert not torch.allclose(ref_map, fixed_map)
