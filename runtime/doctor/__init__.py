"""`python -m runtime.doctor`: what this machine can run, and proof that the backends compute the same thing.

One report of the host (Python, numpy, OpenCV with FFmpeg/GStreamer, CPU and its bf16/INT8 features), the
NVIDIA side (CUDA runtime and driver, GPU, TensorRT and its capabilities, Jetson's JetPack and power mode) and
every backend (available, or why not). Then the bundled self-test graph (`selftest.onnx`, a few KB) and, with
`--model`, the user's model run on every backend available here and compared with ONNX Runtime FP32 under
per-output tolerances; with TensorRT present an engine of the self-test graph is built and checked in seconds.
`--json` writes the same report for a bug report.

Pieces: `system` (host), `gpu` (CUDA, TensorRT), `jetson`, `backends`, `compare` (tolerances), `parity`
(legs, frames, timing), `trt_smoke` (the engine build), `report` (collect and print), `__main__` (the CLI).
Torch-free and valid on Python 3.8, like the rest of `runtime`.
"""
from __future__ import annotations

__all__ = ["collect", "format_text"]


def collect(*args, **kwargs):  # type: ignore[no-untyped-def]
    from runtime.doctor.report import collect as _collect  # noqa: PLC0415 - keep `import runtime.doctor` cheap

    return _collect(*args, **kwargs)


def format_text(report):  # type: ignore[no-untyped-def]
    from runtime.doctor.report import format_text as _format  # noqa: PLC0415

    return _format(report)
