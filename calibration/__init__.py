"""Calibration: INT8 Q/DQ quantisation of an exported inspection graph and score-threshold calibration.

- ``python -m calibration.int8``: calibrates on good training images, writes ``MODEL-int8.onnx`` (a Q/DQ graph
  that TensorRT and ONNX Runtime run) and its manifest with a ``quantization`` report (FP32 vs INT8 accuracy,
  map error, range overshoot on synthetic defects (`calibration.synthetic`), placement, sizes); optionally a
  TensorRT 8.x calibration cache (`calibration.trt_cache`).
- ``python -m calibration.threshold``: scores held-out good images and writes the pass/fail threshold and
  the score normalisation, with their provenance, into the model's manifest (no rebuild needed).

Dependencies: numpy, onnx, onnxruntime, OpenCV, and the torch-free parts of the toolkit (`runtime.manifest`,
`runtime.trt_version`, `imagesets`; `calibration.metrics` and `calibration.evaluate`, the
metrics and the evaluation loop that `benchmarks` uses too, so the INT8 report needs nothing above). Never torch.
Names are resolved lazily, so ``import calibration`` is cheap.
"""
from __future__ import annotations

from runtime.lazy import lazy_exports

__all__ = [
    "quantize_onnx", "calibrate_threshold", "fpr_threshold", "f1_threshold",
    "write_trt_calibration_cache", "read_trt_calibration_cache", "CalibrationError", "TestSplitRefused",
]

_LAZY = {
    "quantize_onnx": "calibration.int8",
    "calibrate_threshold": "calibration.threshold",
    "fpr_threshold": "calibration.threshold",
    "f1_threshold": "calibration.threshold",
    "write_trt_calibration_cache": "calibration.trt_cache",
    "read_trt_calibration_cache": "calibration.trt_cache",
    "CalibrationError": "calibration.errors",
    "TestSplitRefused": "calibration.errors",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
