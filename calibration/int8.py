"""INT8 post-training quantisation of an inspection graph into a Q/DQ ONNX that TensorRT (8.5 ... 11) and
ONNX Runtime run.

    python -m calibration.int8 --model MODEL.onnx --data DIR [--category CAT] [--images 64] \
        [--out MODEL-int8.onnx] [--method minmax|entropy|percentile] [--eval-data DIR --eval-category CAT] \
        [--keep NODE_PREFIX ...] [--placement tensorrt|onnxruntime] [--headroom K] \
        [--calib-cache PATH --trt-version 8.5]

What it does, in order:

1. Calibration frames: good *training* images only (a path inside a ``test/`` split is refused), evenly
   spaced over the sorted folder, decoded and resized on the host as the runtime does, at the manifest's
   input size.
2. Ranges: ONNX Runtime's calibrator (MinMax, Entropy or Percentile) runs on the graph cut after the network
   (pre-processing + network only), one batch at a time so that histogram methods stay within memory.
3. Placement: ``quantize_static`` in QDQ format, symmetric INT8 activations (per tensor) and weights (per
   output channel), zero points 0 as TensorRT requires, on the nodes under the prefixes the method declares
   (``Method.int8_parts``: ``graph_parts["int8"]`` of the manifest; ``/model/net/`` for older manifests).
   TensorRT-friendly details: biases stay FP32 (TensorRT rejects an INT32 DequantizeLinear), weights stay FP32
   behind a Q/DQ pair (the form TensorRT 8.x folds), outputs of Conv/Gemm/MatMul are not quantised (Q/DQ sits on the inputs of weighted ops, so
   TensorRT keeps Conv+ReLU fused), and no dequantised tensor reaches the pre-processing or the scoring
   (MSGMS, Lab, mean filter, max run on the FP32 reconstruction). ``--placement onnxruntime`` quantises the
   outputs of weighted ops too (except the network's last), the DQ -> Conv -> Q pattern that ONNX Runtime's
   CPU provider runs as QLinearConv; with the TensorRT placement ONNX Runtime runs FP32 convolutions between
   Q/DQ pairs, slower than the FP32 graph.
4. Report: FP32 vs INT8 image/pixel AUROC on the test split of the data (or ``--eval-data``) via
   `calibration.evaluate`, map error statistics (calibration images, the same images with synthetic defects
   from `calibration.synthetic`, the evaluation images), how far activations on synthetic defects overshoot
   the INT8 ranges, the quantised nodes, sizes. When INT8 loses more than 0.5 AUROC point, a per-block
   sensitivity analysis quantises one block at a time, measures the map error against FP32 on calibration
   images with synthetic defects (good images alone do not show what clips), and keeps the worst blocks in
   FP32 until the goal is met (at most 3; ``--keep`` does it by hand, ``--no-auto-keep`` turns it off).
   ``--headroom K`` widens every range by K: ranges fitted to good images clip what a defect drives through
   the network, and when that clipping is spread over all blocks no block fallback helps. Ranges are
   computed once and reused for every placement.
5. Output: ``MODEL-int8.onnx`` and its manifest (a copy of the FP32 one with precision "int8", its own
   sha256 and the ``quantization`` report; the FP32 threshold is not carried over: recalibrate it with
   ``python -m calibration.threshold`` on the INT8 model). Where the TensorRT version still reads one
   (8.x), a calibration cache from the same scales (`calibration.trt_cache`).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx

from calibration import qdq
from calibration.data import good_train_samples, load_frames, refuse_test_split, relative_paths, spread
from calibration.errors import CalibrationError
from runtime.backends import create_backend, default_threads
from runtime.backends.onnxruntime import import_onnxruntime
from calibration.synthetic import with_defects
from runtime.errors import RuntimeInspectError
from runtime.manifest import Quantization, load_manifest, sha256_file, verify_artifact, write_manifest

METHODS = ("minmax", "entropy", "percentile")
GOAL_POINTS = 0.5
SENSITIVITY_IMAGES = 16
MAX_AUTO_KEEP = 3
#: extra_options of quantize_static for a TensorRT-ready Q/DQ graph (see the module docstring).
QDQ_OPTIONS: Dict[str, Any] = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "AddQDQPairToWeight": True,
    "OpTypesToExcludeOutputQuantization": list(qdq.WEIGHTED_OPS),
}
#: Placement styles. "tensorrt": Q/DQ on the inputs of weighted ops only (TensorRT's recommendation; it fuses
#: Conv+ReLU and requantises after the ReLU). "onnxruntime": weighted-op outputs quantised too, the pattern
#: DQ -> Conv -> Q that ONNX Runtime's CPU provider turns into QLinearConv (with the TensorRT style it runs
#: FP32 convolutions between Q/DQ pairs, slower than the FP32 graph). Both are valid TensorRT input.
PLACEMENTS = ("tensorrt", "onnxruntime")


def qdq_options(placement: str) -> Dict[str, Any]:
    if placement not in PLACEMENTS:
        raise CalibrationError(f"--placement {placement!r} is not one of {', '.join(PLACEMENTS)}")
    opts = copy.deepcopy(QDQ_OPTIONS)
    if placement == "onnxruntime":
        opts["OpTypesToExcludeOutputQuantization"] = []
    return opts

Log = Callable[[str], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _quiet_ort():
    """onnxruntime.quantization logs advice through the root logger ("consider pre-processing", ...) and its
    histogram calibrators print progress lines to stdout; keep both out of our output."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


# --------------------------------------------------------------------------------------------- quantiser
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
        self.options = qdq_options(placement)
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
        """Ranges of every tensor of the pre-processing + network sub-graph over `frames`."""
        self.frames = frames
        if not self._range_cache_supported():  # older onnxruntime: quantize_static calibrates each time
            return
        from onnxruntime.quantization import create_calibrator, save_tensors_data  # noqa: PLC0415

        model = onnx.load(self.prepared)
        sub = qdq.truncate_to(model, qdq.boundary_outputs(model, self.prefixes))
        sub_path = os.path.join(self.workdir, "calibration-graph.onnx")
        onnx.save(sub, sub_path)
        extra: Dict[str, Any] = {"symmetric": True}
        if self.method == "percentile":
            extra["percentile"] = self.percentile
        with _quiet_ort():
            calibrator = create_calibrator(Path(sub_path), None,
                                           augmented_model_path=os.path.join(self.workdir, "augmented.onnx"),
                                           calibrate_method=self._ort_method(), extra_options=extra)
            starts = range(0, frames.shape[0], self.batch_size)
            for start in _progress(starts, len(starts), "calibrating", self.progress):
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
        """Q/DQ graph with `nodes` quantised, written to `out_path` (and returned)."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415

        if not nodes:
            raise CalibrationError("nothing left to quantise: every network block is kept in FP32 (check --keep)")
        if self.frames is None:
            raise CalibrationError("calibrate() must run before quantize()")
        kwargs: Dict[str, Any] = dict(
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes), calibrate_method=self._ort_method(), extra_options=dict(self.options),
        )
        if self.method == "percentile":
            kwargs["extra_options"]["CalibPercentile"] = self.percentile
        reader = None
        if self.cache is not None:
            kwargs["calibration_cache_path"] = self.cache
        else:
            reader = _FramesReader(self.input_name, self.frames, self.batch_size)
        with _quiet_ort():
            quantize_static(self.prepared, out_path, reader, **kwargs)
        model = onnx.load(out_path)
        qdq.bypass_dequantize_leaving(model, self.prefixes)
        onnx.save(model, out_path)
        return model


# --------------------------------------------------------------------------------------------- measuring
def map_error(maps_a: np.ndarray, scores_a: np.ndarray, maps_b: np.ndarray, scores_b: np.ndarray) -> Dict[str, Any]:
    """How far maps/scores b (INT8) are from a (FP32)."""
    a = np.asarray(maps_a, np.float64).reshape(len(scores_a), -1)
    b = np.asarray(maps_b, np.float64).reshape(len(scores_b), -1)
    d = np.abs(a - b)
    sa, sb = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    ref = float(np.mean(np.abs(a)))
    corr = float("nan")
    if sa.size > 1 and sa.std() > 0 and sb.std() > 0:
        corr = float(np.corrcoef(sa, sb)[0, 1])
    return {
        "images": int(sa.size),
        "max_abs_diff": float(d.max()),
        "mean_abs_diff": float(d.mean()),
        "relative_mean_abs_diff": float(d.mean() / ref) if ref > 0 else float("nan"),
        "fp32_map_mean_abs": ref,
        "score_max_abs_diff": float(np.max(np.abs(sa - sb))),
        "score_mean_abs_diff": float(np.mean(np.abs(sa - sb))),
        "score_correlation": corr,
    }


class EvalSet:
    """Test-split frames, labels, masks and defect types for the FP32 vs INT8 comparison."""

    def __init__(self, data: str, category: Optional[str], size_hw: Tuple[int, int], map_hw: Tuple[int, int],
                 progress: bool):
        from train.data import find_samples, load_masks  # noqa: PLC0415

        samples = find_samples(data, category, "test")
        self.data, self.category = os.path.abspath(data), category
        self.frames = load_frames(samples, size_hw, progress)
        self.labels = np.array([s.label for s in samples], dtype=np.int64)
        self.types = [s.defect_type for s in samples]
        self.masks = load_masks(samples, map_hw) if any(s.mask_path for s in samples) else None

    def evaluate(self, infer, progress: bool) -> Dict[str, Any]:
        from calibration.evaluate import evaluate  # noqa: PLC0415 - only the INT8 report needs it

        return evaluate(infer, self.frames, self.labels, self.masks, self.types, batch_size=8, progress=progress)


def _metrics(ev: Dict[str, Any]) -> Dict[str, Any]:
    return {k: ev.get(k) for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")}


def _loss_points(fp32: Dict[str, Any], int8: Dict[str, Any]) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for key in ("image_auroc", "pixel_auroc"):
        a, b = fp32.get(key), int8.get(key)
        ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        out[key] = 100.0 * (float(a) - float(b)) if ok else None
    return out


def _worst(loss: Dict[str, Optional[float]]) -> Optional[float]:
    vals = [v for v in loss.values() if v is not None]
    return max(vals) if vals else None


# --------------------------------------------------------------------------------------------- main function
def quantize_onnx(
    fp32_onnx: "str | os.PathLike",
    out_onnx: "str | os.PathLike",
    calib_data: "str | os.PathLike",
    category: Optional[str] = None,
    images: Optional[int] = 64,
    method: str = "minmax",
    *,
    placement: str = "tensorrt",
    headroom: float = 1.0,
    eval_data: "str | os.PathLike | None" = None,
    eval_category: Optional[str] = None,
    keep: Sequence[str] = (),
    prefixes: Sequence[str] = (),
    auto_keep: bool = True,
    max_loss_points: float = GOAL_POINTS,
    sensitivity: bool = False,
    calib_cache: "str | os.PathLike | None" = None,
    trt_version: Optional[str] = None,
    percentile: float = 99.999,
    batch_size: int = 4,
    threads: Optional[int] = None,
    progress: bool = True,
    log: Optional[Log] = None,
) -> Dict[str, Any]:
    """Quantise `fp32_onnx` to a Q/DQ INT8 graph at `out_onnx` (with its manifest); returns the report that is
    also stored in the INT8 manifest under ``quantization``. See the module docstring for the steps."""
    t0 = time.time()
    say: Log = log or (lambda msg: None)
    if method not in METHODS:
        raise CalibrationError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    qdq_options(placement)  # validates
    if images is not None and int(images) < 1:
        raise CalibrationError(f"--images must be >= 1, got {images}")
    fp32_path, out_path = os.fspath(fp32_onnx), os.fspath(out_onnx)
    if not os.path.isfile(fp32_path):
        raise CalibrationError(f"model {fp32_path} does not exist; export one with `python -m export.onnx --run RUN "
                               f"--out MODEL.onnx`")
    if os.path.abspath(fp32_path) == os.path.abspath(out_path):
        raise CalibrationError(f"--out {out_path} is the FP32 model itself; give another file, e.g. MODEL-int8.onnx")
    if not out_path.lower().endswith(".onnx"):
        raise CalibrationError(f"--out {out_path} must end in .onnx")
    refuse_test_split(calib_data, category, "--data")
    manifest = load_manifest(fp32_path)
    verify_artifact(fp32_path, manifest)
    if manifest.precision != "fp32":
        raise CalibrationError(f"{fp32_path} has precision {manifest.precision!r}; INT8 calibration starts from the "
                               f"FP32 export (`python -m export.onnx`)")
    size_hw = manifest.input.size
    map_hw = tuple(int(v) for v in manifest.outputs.anomaly_map.shape[2:4])

    samples = good_train_samples(calib_data, category, "--data")
    chosen = spread(samples, images)
    say(f"calibration: {len(chosen)} of {len(samples)} good training images from {calib_data}"
        + (f" ({category})" if category else "") + f", {method}, at {size_hw[0]}x{size_hw[1]}")
    frames = load_frames(chosen, size_hw, progress)

    model = onnx.load(fp32_path)
    parts = manifest.graph_parts.to_dict() if manifest.graph_parts is not None else None
    net_prefixes = qdq.network_prefixes(model, parts, prefixes)
    prefix_source = ("--prefix" if prefixes else
                     "manifest graph_parts" if qdq.manifest_int8_prefixes(parts) else "default")
    net_nodes = qdq.network_nodes(model, net_prefixes)
    keep = [qdq._norm_prefix(k) for k in keep]
    for k in keep:
        if not any(n.startswith(k) for n in net_nodes):
            raise CalibrationError(f"--keep {k} matches no node of the network ({', '.join(net_prefixes)}); give a "
                                   f"prefix such as {next(iter(qdq.blocks(model, net_prefixes)), net_prefixes[0])}")
    qdq.materialize_identity_initializers(model)
    block_map = qdq.blocks(model, net_prefixes)

    eval_set: Optional[EvalSet] = None
    eval_note = ""
    e_data, e_cat = (eval_data, eval_category or category) if eval_data is not None else (calib_data, category)
    try:
        eval_set = EvalSet(os.fspath(e_data), e_cat, size_hw, map_hw, progress)
    except Exception as e:  # noqa: BLE001 - no test split is normal for a plain folder of good images
        from train.errors import InspectError  # noqa: PLC0415

        if eval_data is not None or not isinstance(e, InspectError):
            raise
        eval_note = f"no evaluation set ({e}); accuracy not measured: pass --eval-data DIR --eval-category CAT"
        say(eval_note)

    threads = threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="calibration-int8-") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        onnx.save(model, prepared)
        quantizer = Quantizer(prepared, net_prefixes, manifest.input.name, method, tmp, percentile, batch_size,
                              progress, placement)
        quantizer.calibrate(frames)
        quantizer.set_headroom(headroom)
        fp32 = create_backend("onnxruntime", fp32_path, manifest, threads=threads).infer
        k = min(SENSITIVITY_IMAGES, frames.shape[0])
        sub = frames[[frames.shape[0] * i // k for i in range(k)]]
        syn = with_defects(sub, seed=0)  # the same images with synthetic defects (never test images)
        fp32_sub, fp32_syn = fp32(sub), fp32(syn)
        fp32_eval = eval_set.evaluate(fp32, progress) if eval_set is not None else None

        def trial(kept: List[str], tag: str) -> Dict[str, Any]:
            nodes = [n for n in net_nodes if not qdq.under(n, kept)]
            path = os.path.join(tmp, f"int8-{tag}.onnx")
            quantizer.quantize(nodes, path)
            scorer = create_backend("onnxruntime", path, manifest, threads=threads).infer
            res: Dict[str, Any] = {"keep": list(kept), "path": path,
                                   "calibration_map_error": map_error(*fp32_sub, *scorer(sub)),
                                   "synthetic_map_error": map_error(*fp32_syn, *scorer(syn))}
            if eval_set is not None and fp32_eval is not None:
                ev = eval_set.evaluate(scorer, progress)
                res["eval"] = ev
                res["metrics"] = _metrics(ev)
                res["loss_points"] = _loss_points(_metrics(fp32_eval), res["metrics"])
                res["worst_loss"] = _worst(res["loss_points"])
            return res

        attempts = [trial(keep, "0")]
        first = attempts[0]
        if first.get("worst_loss") is not None:
            say(f"INT8 with {len(keep)} block(s) kept FP32: worst AUROC loss {first['worst_loss']:.2f} points "
                f"(image {_fmt(first['loss_points']['image_auroc'])}, "
                f"pixel {_fmt(first['loss_points']['pixel_auroc'])})")
        over = first.get("worst_loss") is not None and first["worst_loss"] > max_loss_points
        sens: Optional[List[Dict[str, Any]]] = None
        if (over and auto_keep) or sensitivity:
            sens = _sensitivity(quantizer, block_map, keep, (sub, fp32_sub), (syn, fp32_syn), manifest, threads,
                                tmp, progress, say)
        auto_kept: List[str] = []
        if over and auto_keep and sens:
            for entry in sens[:MAX_AUTO_KEEP]:
                auto_kept.append(entry["block"])
                res = trial(keep + auto_kept, str(len(attempts)))
                attempts.append(res)
                say(f"keeping {', '.join(auto_kept)} in FP32: worst AUROC loss {res['worst_loss']:.2f} points")
                if res["worst_loss"] is not None and res["worst_loss"] <= max_loss_points:
                    break
        best = min(attempts, key=lambda r: (r.get("worst_loss") if r.get("worst_loss") is not None else 0.0,
                                            len(r["keep"]))) if over else attempts[0]
        final_keep = best["keep"]
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        shutil.copyfile(best["path"], out_path)
        overshoot = range_overshoot(prepared, onnx.load(out_path), syn, threads)

    final = onnx.load(out_path)
    summary = qdq.qdq_summary(final, net_prefixes)
    quantized_weights = [w["tensor"] for w in summary["weights"]]
    params = qdq.weight_parameters(final, quantized_weights)
    ort = import_onnxruntime()
    report: Dict[str, Any] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "onnxruntime": ort.__version__,
        "format": "QDQ",
        "activations": "int8, symmetric (zero point 0), per tensor",
        "weights": "int8, symmetric (zero point 0), per output channel; stored FP32 behind QuantizeLinear/"
                   "DequantizeLinear (TensorRT folds them into INT8 weights)",
        "bias": "FP32 (not quantised: TensorRT rejects an INT32 DequantizeLinear)",
        "method": method,
        "headroom": float(headroom),
        "calibration": {
            "data": os.path.abspath(os.fspath(calib_data)), "category": category,
            "split": "train (good images only)", "images": len(chosen), "available": len(samples),
            "selection": "evenly spaced over the good training images in sorted path order",
            "size": list(size_hw), "host_resize": manifest.input.host_resize,
            "files": relative_paths(chosen, calib_data),
        },
        "placement": {
            "style": placement,
            "network_prefixes": net_prefixes, "prefix_source": prefix_source,
            "kept_fp32": final_keep, "auto_kept": [k for k in final_keep if k not in keep],
            "quantized_nodes": summary["quantized_nodes"],
            "network_nodes": len(net_nodes),
            "fp32_outside_network": f"pre-processing and scoring stay FP32: {len(summary['outside_network_fed_by_dq'])}"
                                    " of their nodes read a dequantised tensor",
            "qdq": {k: summary[k] for k in ("quantize_linear", "dequantize_linear", "activation_tensors",
                                            "weight_tensors", "zero_point_types")},
            "per_channel_weights": sum(1 for w in summary["weights"] if w["scales"] > 1),
        },
        "map_error": {"calibration_images": best["calibration_map_error"],
                      "synthetic_defect_images": best["synthetic_map_error"]},
        "range_overshoot": overshoot,
        "sizes": {
            "fp32_onnx_bytes": os.path.getsize(fp32_path), "int8_onnx_bytes": os.path.getsize(out_path),
            "quantized_weight_parameters": params, "fp32_weight_bytes": 4 * params, "int8_weight_bytes": params,
            "note": "the Q/DQ ONNX keeps FP32 weights (TensorRT 8.x needs that form); an engine stores them as INT8",
        },
        "source": {"artifact": os.path.basename(fp32_path), "sha256": manifest.sha256},
        "date": _now(),
    }
    if fp32_eval is not None and "eval" in best:
        report["accuracy"] = {
            "eval_data": eval_set.data if eval_set else None, "eval_category": eval_set.category if eval_set else None,
            "split": "test", "images": int(fp32_eval["n_images"]),
            "fp32": _metrics(fp32_eval), "int8": best["metrics"],
            "image_auroc_loss_points": best["loss_points"]["image_auroc"],
            "pixel_auroc_loss_points": best["loss_points"]["pixel_auroc"],
            "image_auroc_step_points": 100.0 / max(1, int(fp32_eval["n_good"]) * int(fp32_eval["n_defect"])),
            "goal_points": max_loss_points,
            "goal_met": best["worst_loss"] is not None and best["worst_loss"] <= max_loss_points,
        }
        report["map_error"]["eval_images"] = map_error(fp32_eval["maps"], np.asarray(fp32_eval["scores"]),
                                                       best["eval"]["maps"], np.asarray(best["eval"]["scores"]))
    else:
        report["accuracy"] = {"note": eval_note or "not measured"}
    report["attempts"] = [{"keep": r["keep"], "metrics": r.get("metrics"), "loss_points": r.get("loss_points"),
                           "calibration_relative_map_error": r["calibration_map_error"]["relative_mean_abs_diff"],
                           "synthetic_relative_map_error": r["synthetic_map_error"]["relative_mean_abs_diff"]}
                          for r in attempts]
    report["sensitivity"] = sens
    report["trt_calibration_cache"] = _maybe_cache(out_path, calib_cache, trt_version, say)
    report["seconds"] = round(time.time() - t0, 1)
    report = _json_safe(report)
    _write_int8_manifest(manifest, out_path, report, ort.__version__)
    return report


def _sensitivity(quantizer: Quantizer, block_map, keep: Sequence[str], good: Tuple[np.ndarray, Any],
                 defects: Tuple[np.ndarray, Any], manifest, threads: int, tmp: str, progress: bool,
                 say: Log) -> List[Dict[str, Any]]:
    """Quantise one block at a time; map error vs FP32 on the calibration images and on the same images with
    synthetic defects, ranked by the latter (what a bad part drives through the block), worst first."""
    rows: List[Dict[str, Any]] = []
    todo = [(b, nodes) for b, nodes in block_map.items() if not qdq.under(b, keep)]
    for i, (block, nodes) in enumerate(_progress(todo, len(todo), "sensitivity", progress)):
        path = os.path.join(tmp, f"sens-{i}.onnx")
        quantizer.quantize(nodes, path)
        scorer = create_backend("onnxruntime", path, manifest, threads=threads).infer
        g = map_error(*good[1], *scorer(good[0]))
        d = map_error(*defects[1], *scorer(defects[0]))
        rows.append({"block": block, "nodes": len(nodes),
                     "good_relative_map_error": g["relative_mean_abs_diff"], "good_max_abs_diff": g["max_abs_diff"],
                     "defect_relative_map_error": d["relative_mean_abs_diff"], "defect_max_abs_diff": d["max_abs_diff"],
                     "defect_score_correlation": d["score_correlation"]})
    rows.sort(key=lambda r: -r["defect_relative_map_error"])
    if rows:
        say("sensitivity (one block INT8 at a time, map error on calibration images with synthetic defects): "
            + ", ".join(f"{r['block']} {r['defect_relative_map_error']:.2%}" for r in rows[:5]))
    return rows


def range_overshoot(fp32_model: str, qdq_model: onnx.ModelProto, frames: np.ndarray, threads: int,
                    top: int = 5) -> Dict[str, Any]:
    """How far FP32 activations on `frames` (synthetic defects) exceed the INT8 ranges: max|x| / (127 * scale)
    per quantised activation; above 1 the INT8 graph clips. Returns the worst tensors and the median ratio."""
    scales = qdq.activation_scales(qdq_model)
    if not scales:
        return {"tensors": 0}
    sub = qdq.truncate_to(onnx.load(fp32_model), list(scales))
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    session = ort.InferenceSession(sub.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = list(scales)
    amax = np.zeros(len(names))
    for start in range(0, frames.shape[0], 4):
        outs = session.run(names, {input_name: frames[start:start + 4]})
        amax = np.maximum(amax, [float(np.max(np.abs(o))) for o in outs])
    ratio = amax / (127.0 * np.array([scales[n] for n in names]))
    order = np.argsort(-ratio)
    return {"tensors": len(names), "images": int(frames.shape[0]), "median_ratio": float(np.median(ratio)),
            "clipped_tensors": int(np.sum(ratio > 1.0)),
            "worst": [{"tensor": names[i], "ratio": float(ratio[i])} for i in order[:top]]}


def _maybe_cache(out_path: str, calib_cache, trt_version: Optional[str], say: Log) -> Optional[Dict[str, Any]]:
    """Write the TensorRT 8.x calibration cache when asked (or when an installed TensorRT 8.x uses one)."""
    from calibration.trt_cache import write_trt_calibration_cache  # noqa: PLC0415
    from runtime.trt_version import capabilities, installed_version  # noqa: PLC0415

    asked = calib_cache is not None or trt_version is not None
    version = trt_version or installed_version()
    if version is None:
        if asked:
            raise CalibrationError("--calib-cache needs --trt-version (no TensorRT is installed to ask), e.g. "
                                   "--trt-version 8.5")
        return None
    try:
        caps = capabilities(version)
    except ValueError as e:
        raise CalibrationError(f"--trt-version: {e}") from None
    if not caps.calibration_cache:
        if asked:
            say(f"TensorRT {version} builds INT8 from the Q/DQ graph; no calibration cache written")
        return {"written": False, "trt_version": str(version),
                "reason": "this TensorRT version uses explicit quantisation (the Q/DQ ONNX)"}
    path = os.fspath(calib_cache) if calib_cache is not None else os.path.splitext(out_path)[0] + ".calib"
    info = write_trt_calibration_cache(out_path, path, version)
    say(f"TensorRT {version} calibration cache: {path} ({info['tensors']} tensors)")
    return {"written": True, **info}


def _write_int8_manifest(fp32_manifest, out_path: str, report: Dict[str, Any], ort_version: str) -> str:
    m = copy.deepcopy(fp32_manifest)
    m.artifact = os.path.basename(out_path)
    m.artifact_kind = "onnx"
    m.sha256 = sha256_file(out_path)
    m.precision = "int8"
    m.threshold = None
    m.tensorrt = None
    m.created = _now()
    m.versions = dict(m.versions or {})
    m.versions["onnxruntime"] = ort_version
    m.threshold_provenance = None
    m.quantization = Quantization(**report)
    m.notes = list(m.notes or []) + [
        f"INT8 Q/DQ graph quantised from {report['source']['artifact']} (sha256 {report['source']['sha256'][:12]}...); "
        f"the FP32 threshold is not carried over: run `python -m calibration.threshold --model {m.artifact} ...`"]
    return write_manifest(out_path, m)


# --------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m calibration.int8",
        description="Quantise an exported inspection graph to a TensorRT-ready INT8 Q/DQ ONNX, calibrated on good "
                    "training images, and report FP32 vs INT8 accuracy.")
    p.add_argument("--model", required=True, help="FP32 MODEL.onnx (with MODEL.json beside it)")
    p.add_argument("--data", required=True, help="data root (MVTec/MPDD/VisA layout) or a folder of good images; "
                                                 "never a test split")
    p.add_argument("--category", default=None, help="category under --data")
    p.add_argument("--images", type=int, default=64, help="calibration images, evenly spaced (default 64)")
    p.add_argument("--out", default=None, help="output Q/DQ model (default MODEL-int8.onnx beside --model)")
    p.add_argument("--method", choices=METHODS, default="minmax", help="range calibration (default minmax)")
    p.add_argument("--placement", choices=PLACEMENTS, default="tensorrt",
                   help="tensorrt (default): Q/DQ on the inputs of weighted ops, TensorRT's recommendation; "
                        "onnxruntime: also on their outputs, so ONNX Runtime's CPU provider runs QLinearConv")
    p.add_argument("--headroom", type=float, default=1.0,
                   help="widen every calibrated activation range by this factor (>= 1; default 1): less clipping "
                        "of what defects drive through the network, coarser steps on good images")
    p.add_argument("--percentile", type=float, default=99.999, help="percentile for --method percentile")
    p.add_argument("--eval-data", default=None, help="data set whose test split measures FP32 vs INT8 "
                                                     "(default: --data, when it has a test split)")
    p.add_argument("--eval-category", default=None, help="category under --eval-data (default --category)")
    p.add_argument("--keep", action="append", default=[], metavar="NODE_PREFIX",
                   help="keep the nodes under this prefix in FP32 (repeatable), e.g. /model/net/head/")
    p.add_argument("--prefix", action="append", default=[], metavar="NODE_PREFIX",
                   help="node-name prefix of the part to quantise (default: the method's, the manifest's "
                        "graph_parts['int8']; /model/net/ for older manifests)")
    p.add_argument("--max-loss", type=float, default=GOAL_POINTS, help="AUROC points INT8 may lose (default 0.5)")
    p.add_argument("--no-auto-keep", action="store_true", help="do not keep sensitive blocks in FP32 automatically")
    p.add_argument("--sensitivity", action="store_true", help="run the per-block sensitivity analysis even when "
                                                              "the goal is met")
    p.add_argument("--calib-cache", default=None, help="also write a TensorRT 8.x calibration cache to this path")
    p.add_argument("--trt-version", default=None, help="TensorRT version the cache is for, e.g. 8.5 or 8.6.1 "
                                                       "(default: the installed one)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: the physical cores)")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.4g}"


def print_report(report: Dict[str, Any], out: str, file=sys.stdout) -> None:
    acc = report.get("accuracy", {})
    w = file.write
    sizes = report["sizes"]
    w(f"wrote {out} ({sizes['int8_onnx_bytes'] / 1e6:.2f} MB; FP32 {sizes['fp32_onnx_bytes'] / 1e6:.2f} MB; "
      f"INT8 weights {sizes['int8_weight_bytes'] / 1e6:.2f} MB in an engine)\n")
    if "fp32" in acc:
        where = acc["eval_data"] + ("/" + acc["eval_category"] if acc["eval_category"] else "")
        w(f"accuracy on {acc['images']} test images ({where}):\n")
        w(f"  {'':12s} {'FP32':>8s} {'INT8':>8s} {'loss (pt)':>10s}\n")
        for key, lk in (("image_auroc", "image_auroc_loss_points"), ("pixel_auroc", "pixel_auroc_loss_points")):
            loss = acc.get(lk)
            w(f"  {key:12s} {_fmt(acc['fp32'].get(key), True):>8s} {_fmt(acc['int8'].get(key), True):>8s} "
              f"{(f'{loss:.2f}' if loss is not None else 'n/a'):>10s}\n")
        w(f"  goal: lose <= {acc['goal_points']} point -> {'met' if acc['goal_met'] else 'NOT met'} (one good/defect "
          f"pair swapped moves image AUROC by {acc['image_auroc_step_points']:.2f} point)\n")
    else:
        w(f"accuracy: {acc.get('note')}\n")
    for name, err in report["map_error"].items():
        w(f"map error ({name.replace('_', ' ')}, {err['images']}): max |d| {_fmt(err['max_abs_diff'])}, mean |d| "
          f"{_fmt(err['mean_abs_diff'])} ({_fmt(err['relative_mean_abs_diff'])} of the mean map), score corr "
          f"{_fmt(err['score_correlation'])}\n")
    pl = report["placement"]
    w(f"quantised: {len(pl['quantized_nodes'])} nodes under {', '.join(pl['network_prefixes'])} "
      f"({pl['qdq']['activation_tensors']} activations, {pl['qdq']['weight_tensors']} weights, "
      f"{pl['per_channel_weights']} per-channel); kept FP32: {', '.join(pl['kept_fp32']) or 'none'}; "
      f"{pl['fp32_outside_network']}\n")
    ov = report.get("range_overshoot") or {}
    if ov.get("worst"):
        worst = ov["worst"][0]
        w(f"ranges (headroom x{report['headroom']:g}): on calibration images with synthetic defects "
          f"{ov['clipped_tensors']} of {ov['tensors']} activations exceed their INT8 range, worst "
          f"{worst['ratio']:.1f}x ({worst['tensor']}), median {ov['median_ratio']:.2f}x\n")
    if report.get("sensitivity"):
        w("sensitivity (one block INT8 at a time; relative map error vs FP32 on calibration images / with synthetic "
          "defects):\n")
        for r in report["sensitivity"]:
            w(f"  {r['block']:28s} good {r['good_relative_map_error']:7.3%}   "
              f"defects {r['defect_relative_map_error']:7.3%}   "
              f"defect score corr {_fmt(r['defect_score_correlation'])}\n")
    cache = report.get("trt_calibration_cache")
    if cache:
        w(f"TensorRT cache: {cache.get('path') if cache.get('written') else 'not written (' + cache['reason'] + ')'}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or os.path.splitext(args.model)[0] + "-int8.onnx"
    from train.errors import InspectError  # noqa: PLC0415

    try:
        report = quantize_onnx(
            args.model, out, args.data, args.category, args.images, args.method, placement=args.placement,
            headroom=args.headroom, eval_data=args.eval_data, eval_category=args.eval_category, keep=args.keep,
            prefixes=args.prefix, auto_keep=not args.no_auto_keep, max_loss_points=args.max_loss,
            sensitivity=args.sensitivity,
            calib_cache=args.calib_cache, trt_version=args.trt_version, percentile=args.percentile,
            threads=args.threads, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
        )
    except (RuntimeInspectError, InspectError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(report, out)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
