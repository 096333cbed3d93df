"""TensorRT 8.x calibration cache, written from the scales of a Q/DQ graph.

TensorRT 8.x builds INT8 engines from a plain FP32 ONNX with *implicit* quantisation: a calibrator
(`IInt8EntropyCalibrator2`, ...) gives per-tensor scales, and a calibrator whose `read_calibration_cache`
returns a cache skips calibration. TensorRT 10.1 deprecated that route and 11 removed it; there the Q/DQ
ONNX is the only INT8 artifact (`runtime.trt_version` capability ``calibration_cache``).

The cache is text::

    TRT-8502-EntropyCalibration2
    /model/highpass/MatMul_3_output_0: 3c23d70a
    /model/net/enc.0/enc.0.0/enc.0.0.2/Relu_output_0: 3d0f5c29
    ...

The header holds the version (major*1000 + minor*100 + patch: 8.5.2 -> 8502) and the calibrator's algorithm,
which must match the calibrator that reads it. Each line is an ONNX tensor name (TensorRT names network
tensors after them) and the big-endian hex of the float32 scale (= amax / 127), the same scale as the Q/DQ
graph's QuantizeLinear on that tensor. Tensors without a line (pre-processing, scoring) get no INT8 scale, so
TensorRT keeps those layers in FP32/FP16 and warns that their scales are missing: that is the placement.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, Tuple, Union

import onnx

from calibration.errors import CalibrationError
from calibration.qdq import activation_scales
from runtime.files import atomic_write
from runtime.trt_version import capabilities, parse_version

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
DEFAULT_ALGORITHM = "EntropyCalibration2"


def version_code(trt_version: str) -> int:
    """'8.5.2' -> 8502, '8.6' -> 8600 (TensorRT's NV_TENSORRT_VERSION)."""
    major, minor, patch = parse_version(trt_version)
    return major * 1000 + minor * 100 + patch


def cache_header(trt_version: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
    if algorithm not in ALGORITHMS:
        raise CalibrationError(f"calibration algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    return f"TRT-{version_code(trt_version)}-{algorithm}"


def scale_hex(scale: float) -> str:
    return struct.pack(">f", float(scale)).hex()


def hex_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def check_version(trt_version: str) -> None:
    """Raise CalibrationError unless TensorRT `trt_version` still reads calibration caches (8.x)."""
    try:
        caps = capabilities(trt_version)
    except ValueError as e:
        raise CalibrationError(f"--trt-version: {e}") from None
    if not caps.calibration_cache:
        raise CalibrationError(f"TensorRT {trt_version} builds INT8 from the Q/DQ ONNX (explicit quantisation); it "
                               f"has no calibration-cache route: use the Q/DQ model and drop --calib-cache")
    if not caps.supported:
        raise CalibrationError(f"TensorRT {trt_version} is older than this toolkit supports (8.5); give "
                               f"--trt-version 8.5 or newer")


def write_trt_calibration_cache(qdq_model: Union[str, "os.PathLike[str]", onnx.ModelProto], path: "str | os.PathLike",
                                trt_version: str, algorithm: str = DEFAULT_ALGORITHM) -> Dict[str, object]:
    """Write the TensorRT 8.x cache of a Q/DQ graph's activation scales to `path`; returns a summary."""
    check_version(trt_version)
    model = qdq_model if isinstance(qdq_model, onnx.ModelProto) else onnx.load(os.fspath(qdq_model),
                                                                              load_external_data=False)
    scales = activation_scales(model)
    if not scales:
        raise CalibrationError("the model has no quantised activations (no QuantizeLinear on a tensor); give the "
                               "Q/DQ model written by `python -m calibration.int8`")
    header = cache_header(trt_version, algorithm)
    lines = [header] + [f"{name}: {scale_hex(s)}" for name, s in scales.items()]
    path = os.fspath(path)
    atomic_write(path, ("\n".join(lines) + "\n").encode("ascii"))
    return {"path": path, "header": header, "tensors": len(scales), "trt_version": str(trt_version)}


def read_trt_calibration_cache(path: "str | os.PathLike") -> Tuple[str, Dict[str, float]]:
    """(header, {tensor: scale}) of a cache file; CalibrationError when the format is not TensorRT's."""
    with open(os.fspath(path), "r", encoding="ascii") as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise CalibrationError(f"{path} is not a TensorRT calibration cache (first line must be TRT-<version>-<algo>)")
    scales: Dict[str, float] = {}
    for ln in lines[1:]:
        name, sep, value = ln.rpartition(": ")
        if not sep or len(value) != 8:
            raise CalibrationError(f"{path}: line {ln!r} is not 'tensor: 8 hex digits'")
        scales[name] = hex_scale(value)
    return lines[0], scales


__all__ = ["write_trt_calibration_cache", "read_trt_calibration_cache", "cache_header", "version_code",
           "check_version", "ALGORITHMS", "DEFAULT_ALGORITHM"]
