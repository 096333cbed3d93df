"""The INT8 report: FP32 vs INT8 accuracy, map error, range overshoot on synthetic defects, placement, sizes;
the INT8 manifest that carries it; the TensorRT 8.x calibration cache; the text printed by the CLI.

The report is a JSON-ready dict (NaN written as null) stored in the INT8 manifest under ``quantization``.
"""
from __future__ import annotations

import copy
import os
import sys
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import numpy as np
import onnx

from calibration import qdq
from calibration.errors import CalibrationError
from calibration.evaluate import json_ready
from calibration.int8_search import SearchResult, map_error, metrics_of
from calibration.quantizer import Log, Placement
from runtime.backends.onnxruntime import import_onnxruntime
from runtime.manifest import Quantization, sha256_file, write_manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def range_overshoot(fp32_model: str, qdq_model: onnx.ModelProto, frames: np.ndarray, threads: Optional[int],
                    top: int = 5) -> Dict[str, Any]:
    """How far FP32 activations on `frames` (synthetic defects) exceed the range INT8 codes cover, per quantised
    activation: the larger of max(x) / high and min(x) / low of the representable [low, high]; above 1 the
    INT8 graph clips. A probe of internal tensors (a sub-graph of the FP32 graph that ends at them), not an
    inspection graph, so it runs on its own ONNX Runtime session. Returns the worst tensors and the median."""
    quant = qdq.activation_quant(qdq_model)
    if not quant:
        return {"tensors": 0}
    names = list(quant)
    sub = qdq.truncate_to(onnx.load(fp32_model), names)
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    session = ort.InferenceSession(sub.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    high = np.zeros(len(names))
    low = np.zeros(len(names))
    for start in range(0, frames.shape[0], 4):
        outs = session.run(names, {input_name: frames[start:start + 4]})
        high = np.maximum(high, [float(np.max(o)) for o in outs])
        low = np.minimum(low, [float(np.min(o)) for o in outs])
    ratio = np.zeros(len(names))
    for i, name in enumerate(names):
        lo, hi = quant[name].representable
        ratio[i] = max(high[i] / hi if hi > 0 else 0.0, low[i] / lo if lo < 0 else 0.0)
    order = np.argsort(-ratio)
    return {"tensors": len(names), "images": int(frames.shape[0]), "median_ratio": float(np.median(ratio)),
            "clipped_tensors": int(np.sum(ratio > 1.0)),
            "worst": [{"tensor": names[i], "ratio": float(ratio[i])} for i in order[:top]]}


def maybe_trt_cache(out_path: str, placement: Placement, calib_cache, trt_version: Optional[str],
                    say: Log) -> Optional[Dict[str, Any]]:
    """Write the TensorRT 8.x calibration cache when asked (or when an installed TensorRT 8.x uses one)."""
    from calibration.trt_cache import write_trt_calibration_cache  # noqa: PLC0415
    from runtime.trt_version import capabilities, installed_version  # noqa: PLC0415

    asked = calib_cache is not None or trt_version is not None
    if placement.name != "tensorrt":  # quantize_onnx refused --calib-cache/--trt-version up front
        return None
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


def build_report(*, fp32_path: str, out_path: str, manifest: Any, method: str, placement: Placement,
                 headroom: float, calibration: Dict[str, Any], net_prefixes: List[str], prefix_source: str,
                 keep: List[str], net_nodes: int, result: SearchResult, overshoot: Dict[str, Any],
                 eval_set: Any, fp32_eval: Optional[Dict[str, Any]], eval_note: str, max_loss_points: float,
                 ort_version: str) -> Dict[str, Any]:
    """The ``quantization`` report of the written INT8 graph `out_path` (the search's best attempt)."""
    best = result.best
    final = onnx.load(out_path)
    summary = qdq.qdq_summary(final, net_prefixes)
    params = qdq.weight_parameters(final, [w["tensor"] for w in summary["weights"]])
    report: Dict[str, Any] = {
        "tool": "onnxruntime.quantization.quantize_static", "onnxruntime": ort_version, "format": "QDQ",
        **placement.describe(),
        "method": method, "headroom": float(headroom), "calibration": calibration,
        "placement": {
            "style": placement.name,
            "network_prefixes": net_prefixes, "prefix_source": prefix_source,
            "kept_fp32": best["keep"], "auto_kept": [k for k in best["keep"] if k not in keep],
            "quantized_nodes": summary["quantized_nodes"],
            "network_nodes": net_nodes,
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
            "note": ("the Q/DQ ONNX keeps FP32 weights (TensorRT 8.x needs that form); an engine stores them as INT8"
                     if placement.weights_fp32_behind_qdq else "the Q/DQ ONNX stores the weights as INT8"),
        },
        "source": {"artifact": os.path.basename(fp32_path), "sha256": manifest.sha256},
        "date": _now(),
    }
    if fp32_eval is not None and "eval" in best:
        report["accuracy"] = {
            "eval_data": eval_set.data, "eval_category": eval_set.category,
            "split": "test", "images": int(fp32_eval["n_images"]),
            "fp32": metrics_of(fp32_eval), "int8": best["metrics"],
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
                          for r in result.attempts]
    report["sensitivity"] = result.sensitivity
    return report


def write_int8_manifest(fp32_manifest: Any, out_path: str, report: Dict[str, Any], ort_version: str) -> str:
    """A copy of the FP32 manifest for the INT8 graph: precision "int8", its own sha256, the report (JSON-ready,
    `finish_report`), no threshold (the FP32 one is not carried over)."""
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


def finish_report(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report as stored and returned: plain JSON types, NaN written as null."""
    return json_ready(report)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.4g}"


def print_report(report: Dict[str, Any], out: str, file=sys.stdout) -> None:
    acc = report.get("accuracy", {})
    w = file.write
    sizes = report["sizes"]
    w(f"wrote {out} ({sizes['int8_onnx_bytes'] / 1e6:.2f} MB; FP32 {sizes['fp32_onnx_bytes'] / 1e6:.2f} MB; "
      f"INT8 weights {sizes['int8_weight_bytes'] / 1e6:.2f} MB)\n")
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
    w(f"quantised ({pl['style']} placement): {len(pl['quantized_nodes'])} nodes under "
      f"{', '.join(pl['network_prefixes'])} ({pl['qdq']['activation_tensors']} activations, "
      f"{pl['qdq']['weight_tensors']} weights, {pl['per_channel_weights']} per-channel); kept FP32: "
      f"{', '.join(pl['kept_fp32']) or 'none'}; {pl['fp32_outside_network']}\n")
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


__all__ = ["range_overshoot", "maybe_trt_cache", "build_report", "write_int8_manifest", "finish_report", "print_report"]
