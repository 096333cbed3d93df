"""Every op module exports to ONNX (opset 17, TorchScript exporter) and ONNX Runtime reproduces torch."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from train.ops.highpass import FrequencyHighPass, SobelHighPass
from train.ops.scoring import FairScorer

SIZE = (64, 64)
BANNED = {"DFT", "STFT", "If", "Loop"}  # what TensorRT's parser cannot take, or data-dependent control flow


def _export_and_run(module, inputs, names, tmp_path):
    path = tmp_path / "op.onnx"
    module.eval()
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    out_names = [f"out{i}" for i in range(len(expected))]
    torch.onnx.export(
        module, tuple(inputs), str(path), opset_version=17, dynamo=False,
        input_names=names, output_names=out_names,
        dynamic_axes={n: {0: "batch"} for n in names + out_names},
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & BANNED, f"exported graph uses {sorted(ops & BANNED)}"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # run with a different batch size than traced, to prove the batch axis is really dynamic
    more = [torch.cat([x, x.flip(-1)]) for x in inputs]
    with torch.no_grad():
        expected2 = module(*more)
    expected2 = expected2 if isinstance(expected2, tuple) else (expected2,)
    got = sess.run(None, {n: x.numpy() for n, x in zip(names, more)})
    for e, g in zip(expected2, got):
        assert e.shape == g.shape
        err = float(np.abs(e.numpy() - g).max())
        assert float(np.abs(g).max()) > 1e-3 or e.numel() == e.shape[0]  # not an all-zero map
        assert err <= 1e-4, f"{type(module).__name__}: ONNX Runtime vs torch max abs error {err:.2e}"
    return ops


@pytest.mark.parametrize("kind", ["bhpf", "ghpf", "ihpf"])
def test_frequency_highpass_exports(kind, tmp_path):
    ops = _export_and_run(FrequencyHighPass(SIZE, kind=kind, d0=8.0), [torch.rand(1, 3, *SIZE)], ["rgb"], tmp_path)
    assert "MatMul" in ops


@pytest.mark.parametrize("variant", ["sobel-xy3", "sobel-x5"])
def test_sobel_highpass_exports(variant, tmp_path):
    _export_and_run(SobelHighPass(variant), [torch.rand(1, 3, *SIZE)], ["rgb"], tmp_path)


def test_fair_scorer_exports(tmp_path):
    image = torch.rand(1, 3, *SIZE)
    recon = image + 0.1 * torch.randn(1, 3, *SIZE)
    ops = _export_and_run(FairScorer(), [recon, image], ["recon", "image"], tmp_path)
    assert "ReduceMax" in ops and "AveragePool" in ops
