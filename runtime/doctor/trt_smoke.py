"""Build a small FP32 TensorRT engine of an ONNX model, with its manifest, so a broken TensorRT install (a
parser, builder, CUDA or driver problem) shows in seconds on the self-test graph, not after a long build.

The build is `export.trt_build.build_engine_with_manifest`, the one way the toolkit builds engines, imported
here lazily: like the torch backend this reaches outside `runtime`, deliberately and only when TensorRT is
present; that module imports TensorRT, numpy and the runtime only (no torch).
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Tuple

from runtime.manifest import Manifest

WORKSPACE_MB = 256  # a tiny graph; keeps the build from asking for much of a Jetson's shared memory


def profile_for(manifest: Manifest) -> Tuple[int, int, int]:
    """(min, opt, max) batch within the ONNX's declared batch range, at most 4."""
    hi = max(1, min(4, int(manifest.batch.max)))
    lo = max(1, min(int(manifest.batch.min), hi))
    return lo, max(lo, min(2, hi)), hi


def build(onnx_path: str, manifest: Manifest, out_dir: str) -> Tuple[str, Dict[str, Any]]:
    """(engine path, build facts) of an FP32 engine of `onnx_path` in `out_dir`."""
    from export.trt_build import build_engine_with_manifest  # noqa: PLC0415 - see the module's docstring

    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    engine = os.path.join(out_dir, f"{stem}_doctor_{manifest.precision}.engine")
    t0 = time.perf_counter()
    res = build_engine_with_manifest(onnx_path, engine, precision=manifest.precision, batch=profile_for(manifest),
                                     workspace_mb=WORKSPACE_MB)
    return engine, {"build_seconds": round(time.perf_counter() - t0, 2), "tensorrt_version": res.tensorrt_version,
                    "gpu": res.gpu, "compute_capability": res.compute_capability,
                    "strongly_typed": res.strongly_typed}


__all__ = ["build", "profile_for", "WORKSPACE_MB"]
