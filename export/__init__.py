"""export: the inspection graph of a trained run as ONNX (FP32, FP16) and TensorRT engines, with manifests.

    python -m export.onnx --run RUN --out MODEL.onnx          # ONNX + MODEL.json
    python -m export.trt --method fair --c 32 --precision fp16  # ONNX variants + engine (needs TensorRT)
    python -m export.opcheck --model MODEL.onnx                # every op parses on TensorRT 8.5 / 10.x / 11?

`import export` is cheap: names resolve on first use (torch, onnx and TensorRT load only when needed).
"""
from __future__ import annotations

from runtime.lazy import lazy_exports

__all__ = ["graph_from_run", "graph_random", "export_onnx", "fp16_variant", "convert_fp16", "check_onnx",
           "build_manifest", "build_engine", "ExportError"]

_LAZY = {
    "graph_from_run": "export.graph",
    "graph_random": "export.graph",
    "export_onnx": "export.onnx",
    "fp16_variant": "export.onnx",
    "convert_fp16": "export.fp16",
    "check_onnx": "export.opcheck",
    "build_manifest": "export.manifest",
    "build_engine": "export.trt_build",
    "ExportError": "export.errors",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
