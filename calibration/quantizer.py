"""The INT8 quantiser: activation ranges computed once, then Q/DQ graphs written for any set of nodes, in one of
two placements.

Ranges: ONNX Runtime's calibrator (MinMax, Entropy or Percentile) runs on the graph cut after the quantised part
(pre-processing + network only, `qdq.truncate_to`), one batch at a time so that histogram methods stay within
memory; the ranges are saved once and reused by every candidate graph of the accuracy-guarded search
(`calibration.int8_search`). ``headroom`` widens them by a factor.

Placements (`PLACEMENTS`), both written by ``onnxruntime.quantization.quantize_static`` in QDQ format with
per-output-channel symmetric INT8 weights, on the nodes under the method's INT8 prefixes only:

- ``tensorrt``: what TensorRT 8.5 ... 11 wants. Symmetric INT8 activations (zero point 0, TensorRT refuses any
  other), Q/DQ on the inputs of weighted ops only (TensorRT fuses Conv+ReLU and requantises after the ReLU),
  weights kept FP32 behind a Q/DQ pair (the form TensorRT 8.x folds), biases FP32 (TensorRT rejects an INT32
  DequantizeLinear). OpenVINO runs this placement well too. ONNX Runtime's CPU provider runs it slower than the
  FP32 graph's twin would suggest: it cannot fuse a weighted op whose output is not quantised, so it computes
  FP32 convolutions between Q/DQ pairs.
- ``onnxruntime``: for ONNX Runtime's CPU provider only (TensorRT refuses its non-zero zero points). Asymmetric
  UINT8 activations with INT8 weights (the U8S8 kernels of ORT's x86 library; ORT's documentation recommends
  them for x86 CPUs, and INT8 activations ran 1.2x slower on our AMD EPYC with AVX512-VNNI), weights stored as
  INT8 with INT32 biases (ORT's default form), and the outputs of weighted ops quantised too. The ORT CPU
  provider then fuses DQ -> Conv -> Q into QLinearConv, and because a ReLU's range starts at 0 (the UINT8 zero
  point is then the lowest code) the quantiser drops the ReLU into the Q: the network runs as a chain of
  QLinearConv, NhwcMaxPool on uint8 and QLinearAdd, with float round trips left only around the bilinear
  Resize (ORT drops Q/DQ around a nearest Resize only) and at the network's ends.

onnxruntime is imported lazily (only this module and the report's overshoot probe need it beyond the backend).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import onnx

from calibration import qdq
from calibration.errors import CalibrationError

METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Placement:
    """How a Q/DQ graph is laid out for one kind of consumer (see the module docstring)."""

    name: str
    activation_type: str  # "int8" or "uint8"
    activation_symmetric: bool  # zero point 0 (int8) or fitted to the range (uint8)
    weighted_outputs: bool  # Q/DQ on the outputs of Conv/Gemm/MatMul too (ORT fuses them into QLinearConv)
    weights_fp32_behind_qdq: bool  # FP32 weight -> Q -> DQ (TensorRT 8.x) or INT8 weight -> DQ (ORT)
    quantize_bias: bool  # INT32 bias (ORT) or FP32 bias (TensorRT rejects an INT32 DequantizeLinear)
    help: str

    def quantize_static_options(self) -> Dict[str, Any]:
        """`extra_options` of onnxruntime.quantization.quantize_static for this placement."""
        return {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": True,
            "QuantizeBias": self.quantize_bias,
            "AddQDQPairToWeight": self.weights_fp32_behind_qdq,
            "OpTypesToExcludeOutputQuantization": [] if self.weighted_outputs else list(qdq.WEIGHTED_OPS),
        }

    def describe(self) -> Dict[str, str]:
        """The report's words for what this placement quantises and how."""
        if self.activation_symmetric:
            act = f"{self.activation_type}, symmetric (zero point 0), per tensor"
        else:
            act = f"{self.activation_type}, asymmetric (zero point fitted to the range), per tensor"
        weights = "int8, symmetric (zero point 0), per output channel; " + (
            "stored FP32 behind QuantizeLinear/DequantizeLinear (TensorRT folds them into INT8 weights)"
            if self.weights_fp32_behind_qdq else "stored INT8")
        bias = ("INT32 (scale = activation scale x weight scale)" if self.quantize_bias else
                "FP32 (not quantised: TensorRT rejects an INT32 DequantizeLinear)")
        return {"activations": act, "weights": weights, "bias": bias}


PLACEMENTS: Dict[str, Placement] = {
    "tensorrt": Placement(
        "tensorrt", "int8", activation_symmetric=True, weighted_outputs=False, weights_fp32_behind_qdq=True,
        quantize_bias=False,
        help="tensorrt (default): symmetric INT8, Q/DQ on the inputs of weighted ops, TensorRT's recommendation "
             "(OpenVINO runs it well too)"),
    "onnxruntime": Placement(
        "onnxruntime", "uint8", activation_symmetric=False, weighted_outputs=True, weights_fp32_behind_qdq=False,
        quantize_bias=True,
        help="onnxruntime: UINT8 activations, INT8 weights, outputs quantised too, so ONNX Runtime's CPU provider "
             "runs QLinearConv/QLinearAdd chains (not valid for TensorRT)"),
}


def get_placement(name: str) -> Placement:
    if name not in PLACEMENTS:
        raise CalibrationError(f"--placement {name!r} is not one of {', '.join(PLACEMENTS)}")
    return PLACEMENTS[name]


@contextlib.contextmanager
def quiet_ort():
    """onnxruntime.quantization logs advice through the root logger ("consider pre-processing", ...) and its
    histogram calibrators print progress lines to stdout; keep both out of our output."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


class _FramesReader:
    """A CalibrationDataReader over uint8 frames, `batch` at a time (built lazily: onnxruntime is optional)."""

    def __new__(cls, input_name: str, frames: np.ndarray, batch: int):
        from onnxruntime.quantization import CalibrationDataReader  # noqa: PLC0415

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.start, self.end, self.pos = 0, frames.shape[0], 0

            def get_next(self):
                if self.start + self.pos >= self.end:
                    return None
                lo = self.start + self.pos
                hi = min(lo + batch, self.end)
                self.pos += hi - lo
                return {input_name: np.ascontiguousarray(frames[lo:hi])}

            def __len__(self) -> int:
                return frames.shape[0]

            def set_range(self, start_index: int, end_index: int) -> None:
                self.start, self.end, self.pos = int(start_index), min(int(end_index), frames.shape[0]), 0

        return Reader()


class Quantizer:
    """Computes the activation ranges of a prepared FP32 graph once, then quantises any node set with them."""

    def __init__(self, prepared: str, prefixes: Sequence[str], input_name: str, method: str, workdir: str,
                 percentile: float = 99.999, batch_size: int = 4, progress: bool = True,
                 placement: str = "tensorrt"):
        if method not in METHODS:
            raise CalibrationError(f"--method {method!r} is not one of {', '.join(METHODS)}")
        self.placement = get_placement(placement)
        self.prepared = prepared
        self.prefixes = list(prefixes)
        self.input_name = input_name
        self.method = method
        self.workdir = workdir
        self.percentile = float(percentile)
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.cache: Optional[str] = None
        self.base_cache: Optional[str] = None
        self.frames: Optional[np.ndarray] = None

    def _ort_method(self):
        from onnxruntime.quantization import CalibrationMethod  # noqa: PLC0415

        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[self.method]

    @staticmethod
    def _range_cache_supported() -> bool:
        import onnxruntime.quantization as oq  # noqa: PLC0415

        return (hasattr(oq, "save_tensors_data")
                and "calibration_cache_path" in inspect.signature(oq.quantize_static).parameters)

    def calibrate(self, frames: np.ndarray) -> None:
        """Ranges of every tensor of the pre-processing + network sub-graph over `frames` (symmetric ranges for
        a symmetric placement, min/max for an asymmetric one)."""
        self.frames = frames
        if not self._range_cache_supported():  # older onnxruntime: quantize_static calibrates each time
            return
        from onnxruntime.quantization import create_calibrator, save_tensors_data  # noqa: PLC0415

        model = onnx.load(self.prepared)
        sub = qdq.truncate_to(model, qdq.boundary_outputs(model, self.prefixes))
        sub_path = os.path.join(self.workdir, "calibration-graph.onnx")
        onnx.save(sub, sub_path)
        extra: Dict[str, Any] = {"symmetric": self.placement.activation_symmetric}
        if self.method == "percentile":
            extra["percentile"] = self.percentile
        with quiet_ort():
            calibrator = create_calibrator(Path(sub_path), None,
                                           augmented_model_path=os.path.join(self.workdir, "augmented.onnx"),
                                           calibrate_method=self._ort_method(), extra_options=extra)
            starts = range(0, frames.shape[0], self.batch_size)
            for start in progress_bar(starts, len(starts), "calibrating", self.progress):
                calibrator.collect_data(_FramesReader(self.input_name, frames[start:start + self.batch_size],
                                                      self.batch_size))
            ranges = calibrator.compute_data()
        self.cache = self.base_cache = os.path.join(self.workdir, "ranges.json")
        save_tensors_data(ranges, self.cache)

    def set_headroom(self, factor: float) -> None:
        """Widen every activation range by `factor` (>= 1): ranges fitted to good images clip what a defect
        drives through the network; headroom trades resolution on good images for less clipping on defects."""
        factor = float(factor)
        if factor == 1.0:
            self.cache = self.base_cache if self.base_cache is not None else self.cache
            return
        if not factor >= 1.0:
            raise CalibrationError(f"--headroom must be >= 1 (a factor on the calibrated ranges), got {factor}")
        if self.base_cache is None:
            raise CalibrationError("--headroom needs an onnxruntime whose quantize_static takes calibration_cache_path "
                                   "(1.2x or newer); upgrade onnxruntime or drop --headroom")
        from onnxruntime.quantization import TensorData, TensorsData, load_tensors_data, save_tensors_data  # noqa

        base = load_tensors_data(self.base_cache)
        scaled = {}
        for name, td in base.data.items():
            attrs = {k: getattr(td, k) for k in td._attrs}  # noqa: SLF001 - TensorData keeps its field list there
            for k in ("lowest", "highest"):
                if k in attrs:
                    v = np.asarray(attrs[k])
                    attrs[k] = (v * factor).astype(v.dtype)
            scaled[name] = TensorData(**attrs)
        self.cache = os.path.join(self.workdir, f"ranges-x{factor:g}.json")
        save_tensors_data(TensorsData(base.calibration_method, scaled), self.cache)

    def quantize(self, nodes: Sequence[str], out_path: str) -> onnx.ModelProto:
        """Q/DQ graph with `nodes` quantised, written to `out_path` (and returned). No dequantised tensor
        reaches a node outside the quantised part (`qdq.bypass_dequantize_leaving`)."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415

        if not nodes:
            raise CalibrationError("nothing left to quantise: every network block is kept in FP32 (check --keep)")
        if self.frames is None:
            raise CalibrationError("calibrate() must run before quantize()")
        activation = QuantType.QUInt8 if self.placement.activation_type == "uint8" else QuantType.QInt8
        kwargs: Dict[str, Any] = dict(
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=activation, weight_type=QuantType.QInt8, nodes_to_quantize=list(nodes),
            calibrate_method=self._ort_method(), extra_options=self.placement.quantize_static_options(),
        )
        if self.method == "percentile":
            kwargs["extra_options"]["CalibPercentile"] = self.percentile
        reader = None
        if self.cache is not None:
            kwargs["calibration_cache_path"] = self.cache
        else:
            reader = _FramesReader(self.input_name, self.frames, self.batch_size)
        with quiet_ort():
            quantize_static(self.prepared, out_path, reader, **kwargs)
        model = onnx.load(out_path)
        qdq.bypass_dequantize_leaving(model, self.prefixes)
        onnx.save(model, out_path)
        return model


Log = Callable[[str], None]

__all__ = ["METHODS", "PLACEMENTS", "Placement", "get_placement", "Quantizer", "quiet_ort", "progress_bar", "Log"]
