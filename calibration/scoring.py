"""A tiny ONNX Runtime scorer for calibration: uint8 frames -> (anomaly maps, scores), numpy only.

Calibration needs the exact numbers the deployed graph computes, on the CPU, without torch and without the
runtime's frame sources: an `onnxruntime.InferenceSession` on the ONNX, fed in batches. The input and output
names come from the manifest when one is given, else from the graph (first input; outputs ``anomaly_map`` and
``score`` or the first two).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from calibration.errors import CalibrationError
from runtime.errors import BackendUnavailable

BACKENDS = ("onnxruntime",)


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort  # noqa: PLC0415 - lazy: `import calibration` stays cheap
    except ImportError as e:
        raise BackendUnavailable("onnxruntime", "onnxruntime", detail=str(e)) from None
    return ort


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class OrtScorer:
    """`scorer(frames)` -> (maps (N, 1, h, w) float32, scores (N,) float32) for uint8 (N, H, W, 3) frames."""

    def __init__(self, onnx_path: "str | os.PathLike", manifest: Any = None, threads: Optional[int] = None,
                 batch_size: int = 8, optimize: bool = True):
        ort = import_onnxruntime()
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or default_threads())
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if not optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.path = os.fspath(onnx_path)
        try:
            self.session = ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types (InvalidGraph, Fail, ...)
            raise CalibrationError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0]}; re-export the "
                                   f"model") from None
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if manifest is not None:
            self.input_name = manifest.input.name
            self.output_names = [manifest.outputs.anomaly_map.name, manifest.outputs.score.name]
        else:
            self.input_name = inputs[0].name
            named = [n for n in ("anomaly_map", "score") if n in outputs]
            self.output_names = named if len(named) == 2 else outputs[:2]
        known = [i.name for i in inputs]
        if self.input_name not in known:
            raise CalibrationError(f"input {self.input_name!r} is not an input of {self.path} (inputs: "
                                   f"{', '.join(known)}); the model and its manifest do not match: re-export")
        missing = [o for o in self.output_names if o not in outputs]
        if missing:
            raise CalibrationError(f"outputs {missing} are not outputs of {self.path} (outputs: {', '.join(outputs)}); "
                                   f"the model and its manifest do not match: re-export")
        required = [i.name for i in inputs if i.name != self.input_name]
        if required:
            raise CalibrationError(f"{self.path} has extra inputs {required}; calibration feeds frames only: export "
                                   f"the model with its default constant noise field")
        batch_dim = inputs[known.index(self.input_name)].shape[0]
        self.fixed_batch = int(batch_dim) if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.batch_size = self.fixed_batch or max(1, int(batch_size))

    def __call__(self, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        frames = np.ascontiguousarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise CalibrationError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
        maps, scores = [], []
        for start in range(0, frames.shape[0], self.batch_size):
            batch = frames[start:start + self.batch_size]
            n = batch.shape[0]
            if self.fixed_batch and n < self.fixed_batch:  # a static batch axis: pad with the last frame
                batch = np.concatenate([batch, np.repeat(batch[-1:], self.fixed_batch - n, axis=0)])
            m, s = self.session.run(self.output_names, {self.input_name: batch})
            maps.append(np.asarray(m, dtype=np.float32)[:n])
            scores.append(np.asarray(s, dtype=np.float32).reshape(-1)[:n])
        return np.concatenate(maps), np.concatenate(scores)


def score_frames(onnx_path, frames: np.ndarray, manifest: Any = None, threads: Optional[int] = None,
                 batch_size: int = 8) -> np.ndarray:
    """Image scores (N,) float64 of `frames` under the ONNX model."""
    _, scores = OrtScorer(onnx_path, manifest, threads, batch_size)(frames)
    return scores.astype(np.float64)


def check_backend(name: str, choices: Sequence[str] = BACKENDS) -> str:
    if name not in choices:
        raise CalibrationError(f"--backend {name!r} is not supported for calibration; choose one of "
                               f"{', '.join(choices)} (the ONNX graph is scored on the CPU)")
    return name


__all__ = ["OrtScorer", "score_frames", "check_backend", "BACKENDS", "import_onnxruntime"]
