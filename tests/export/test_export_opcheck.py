"""export.opcheck: the exported graphs (FAIR bhpf and sobel-xy3, noise2norm; FP32 and FP16) use only operators
the TensorRT ONNX parser of 8.5, 10.x and 11 supports; graphs with DFT, cubic Resize, asymmetric Q/DQ, custom
domains, UINT8 inside the graph or a too-new opset are rejected."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.opcheck import DEFAULT_TARGETS, check_onnx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Export each (method, options, noise input) once, FP32 and its FP16 variant, random weights c=8 64x64."""
    from export.graph import graph_random
    from export.onnx import export_onnx, fp16_variant

    cache = {}

    def get(method, options=None, noise_input=False, fp16=False):
        key = (method, tuple(sorted((options or {}).items())), noise_input)
        if key not in cache:
            graph, config = graph_random(method, 8, 64, options)
            folder = tmp_path_factory.mktemp(method)
            fp32 = export_onnx(graph, config, folder / f"{method}.onnx", noise_input=noise_input)
            cache[key] = (fp32, fp16_variant(fp32))
        return cache[key][1 if fp16 else 0]

    return get


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("filt", ["bhpf", "sobel-xy3"])
def test_fair_graphs_parse_on_all_targets(exports, filt, fp16):
    path = exports("fair", {"filter": filt}, fp16=fp16)
    report = check_onnx(path)
    assert report.targets == list(DEFAULT_TARGETS)
    assert report.ok, report.summary()
    assert "DFT" not in report.op_counts
    assert ("MatMul" in report.op_counts) == (filt == "bhpf")  # the frequency filter as matrix products
    if fp16:
        assert report.op_counts.get("Cast", 0) > 1


@pytest.mark.parametrize("noise_input", [False, True], ids=["const-noise", "noise-input"])
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_noise2norm_graphs_parse_on_all_targets(exports, fp16, noise_input):
    from train.methods import list_methods

    if "noise2norm" not in list_methods():
        pytest.skip("noise2norm is not registered in this checkout")
    path = exports("noise2norm", noise_input=noise_input, fp16=fp16)
    report = check_onnx(path)
    assert report.ok, report.summary()
    assert not any(op.startswith("Random") for op in report.op_counts)  # seeded constant / input, never RNG ops
    inputs = [i.name for i in onnx.load(str(path)).graph.input]
    assert inputs == (["frame", "noise"] if noise_input else ["frame"])


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _dft_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 2])
    axis = numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"], name="/model/highpass/DFT")
    return _model([node], [x], [y], [axis], opset=20)


def test_dft_is_rejected(tmp_path):
    model = _dft_model()
    report = check_onnx(model, ["8.5", "10.0", "10.13", "11.0"])
    assert not report.ok
    for t in ("8.5", "10.0", "10.13", "11.0"):
        assert not report.ok_for(t) and "DFT" in report.failing_ops(t)
    assert any("matrix products" in i.message for i in report.errors)
    # TensorRT 11.2 parses DFT (cuFFT plugin) and opset 20
    assert check_onnx(model, ["11.2"]).ok
    onnx.save(model, str(tmp_path / "dft.onnx"))
    proc = subprocess.run([sys.executable, "-m", "export.opcheck", "--model", str(tmp_path / "dft.onnx")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "DFT" in proc.stdout and "FAILS" in proc.stdout


def test_restrictions_are_checked():
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", f, [1, 1, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    cubic = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="cubic")
    assert "Resize" in check_onnx(_model([cubic], [x], [y], [scales])).failing_ops("8.5")
    linear = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="linear")
    assert check_onnx(_model([linear], [x], [y], [scales])).ok

    # Q/DQ with a non-zero zero point (asymmetric)
    q = helper.make_tensor_value_info("q", f, [4])
    sc = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "sc")
    zp = numpy_helper.from_array(np.array(3, dtype=np.int8), "zp")
    nodes = [helper.make_node("QuantizeLinear", ["x4", "sc", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "sc", "zp"], ["q"], name="dq")]
    x4 = helper.make_tensor_value_info("x4", f, [4])
    report = check_onnx(_model(nodes, [x4], [q], [sc, zp]))
    assert {"QuantizeLinear", "DequantizeLinear"} <= report.failing_ops("10.0")
    zp0 = numpy_helper.from_array(np.array(0, dtype=np.int8), "zp")
    assert check_onnx(_model(nodes, [x4], [q], [sc, zp0])).ok

    # a custom domain and an operator missing from the 8.5 table (LayerNormalization, added in 10.x)
    custom = helper.make_node("FusedConv", ["x"], ["y"], name="fc", domain="com.microsoft")
    assert not check_onnx(_model([custom], [x], [y])).ok
    ln_scale = numpy_helper.from_array(np.ones(4, dtype=np.float32), "g")
    ln = helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln")
    r = check_onnx(_model([ln], [x], [helper.make_tensor_value_info("y", f, [1, 1, 4, 4])], [ln_scale]))
    assert not r.ok_for("8.5") and r.ok_for("10.0") and r.ok_for("11.0")


def test_uint8_only_as_network_io_and_opset():
    u8 = helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 4, 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    bad = [helper.make_node("Transpose", ["frame"], ["t"], name="/Transpose", perm=[0, 3, 1, 2]),
           helper.make_node("Cast", ["t"], ["y"], name="/Cast", to=TensorProto.FLOAT)]
    report = check_onnx(_model(bad, [u8], [y]))
    assert "Transpose" in report.failing_ops("8.5") and any("UINT8" in i.message for i in report.errors)
    good = [helper.make_node("Cast", ["frame"], ["c"], name="/Cast", to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["c"], ["y"], name="/Transpose", perm=[0, 3, 1, 2])]
    assert check_onnx(_model(good, [u8], [y])).ok
    # opset 21: beyond 8.5 (17) and 10.0 (20), fine for 11 (25)
    r = check_onnx(_model(good, [u8], [y], opset=21))
    assert not r.ok_for("8.5") and not r.ok_for("10.0") and r.ok_for("11.0")


def test_random_ops_warn():
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    node = helper.make_node("RandomNormal", [], ["y"], name="noise", shape=[1, 3, 4, 4], seed=1.0)
    report = check_onnx(_model([node], [], [y]))
    assert report.ok and report.warnings and "seed" in report.warnings[0].message
