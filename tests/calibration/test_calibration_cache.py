"""calibration.trt_cache: the TensorRT 8.x calibration-cache text format, written from a Q/DQ graph's scales,
and its version gate (no cache for TensorRT >= 10, which builds INT8 from the Q/DQ graph)."""
from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.errors import CalibrationError
from calibration.trt_cache import (cache_header, read_trt_calibration_cache, version_code,
                                   write_trt_calibration_cache)


def qdq_model():
    """x -> Q/DQ (scale 0.02) -> Conv(Q/DQ'd weights) -> Relu -> Q/DQ (scale 0.0125) -> y."""
    w = np.random.default_rng(0).normal(0, 1, (4, 3, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.abs(w).reshape(4, -1).max(1) / 127, "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0.0125, np.float32), "r_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "zp"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zp"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1], name="/model/net/conv"),
        helper.make_node("Relu", ["c"], ["/model/net/relu_out"], name="/model/net/relu"),
        helper.make_node("QuantizeLinear", ["/model/net/relu_out", "r_scale", "zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "r_scale", "zp"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_version_code_and_header():
    assert version_code("8.5.2.2") == 8502
    assert version_code("8.6.1") == 8601
    assert version_code("8.5") == 8500
    assert cache_header("8.6.1") == "TRT-8601-EntropyCalibration2"
    assert cache_header("8.5", "MinMaxCalibration") == "TRT-8500-MinMaxCalibration"
    with pytest.raises(CalibrationError, match="not one of"):
        cache_header("8.5", "Magic")


def test_cache_text_format(tmp_path):
    path = tmp_path / "m.calib"
    info = write_trt_calibration_cache(qdq_model(), path, "8.5.2")
    assert info["tensors"] == 2 and info["header"] == "TRT-8502-EntropyCalibration2"
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2"
    assert all(re.fullmatch(r"\S.*: [0-9a-f]{8}", ln) for ln in lines[1:])
    body = dict(ln.rsplit(": ", 1) for ln in lines[1:])
    # activations only (the weight's per-channel Q/DQ is not an activation), big-endian float32 bits
    assert set(body) == {"x", "/model/net/relu_out"}
    assert body["x"] == struct.pack(">f", 0.02).hex() == "3ca3d70a"
    assert struct.unpack(">f", bytes.fromhex(body["/model/net/relu_out"]))[0] == np.float32(0.0125)
    header, scales = read_trt_calibration_cache(path)
    assert header == lines[0] and scales["x"] == pytest.approx(0.02) and len(scales) == 2


def test_no_cache_for_tensorrt_10_and_later(tmp_path):
    for version in ("10.3.0", "11.4.1"):
        with pytest.raises(CalibrationError, match="Q/DQ"):
            write_trt_calibration_cache(qdq_model(), tmp_path / "x.calib", version)
    with pytest.raises(CalibrationError, match="older"):
        write_trt_calibration_cache(qdq_model(), tmp_path / "x.calib", "8.4.3")
    assert not (tmp_path / "x.calib").exists()


def test_read_rejects_other_formats(tmp_path):
    p = tmp_path / "bad.calib"
    p.write_text("not a cache\n")
    with pytest.raises(CalibrationError, match="not a TensorRT calibration cache"):
        read_trt_calibration_cache(p)
    p.write_text("TRT-8502-EntropyCalibration2\nx: 12\n")
    with pytest.raises(CalibrationError, match="8 hex"):
        read_trt_calibration_cache(p)
