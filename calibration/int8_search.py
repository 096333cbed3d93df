"""The accuracy-guarded search of INT8 calibration: which network blocks stay FP32 so that INT8 keeps the FP32
model's accuracy.

Every candidate Q/DQ graph is scored through the runtime's ONNX Runtime backend on the CPU
(`runtime.backends.create_backend("onnxruntime", ...)`), the code that ships, against the FP32 graph's outputs:

- map error on *probes*: a few calibration images (good training images) and the same images with synthetic
  defects (`calibration.synthetic`; good images alone do not show what clips);
- FP32 vs INT8 image/pixel AUROC on the evaluation set (a test split) via `calibration.evaluate`.

When the first candidate (everything quantised but ``--keep``) loses more than the goal, a per-block sensitivity
analysis quantises one block at a time and ranks blocks by their map error on the synthetic-defect probe; the
worst are kept FP32 one after another (at most `MAX_AUTO_KEEP`) until the goal is met, and the best attempt wins.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from calibration import qdq
from calibration.data import load_frames
from calibration.quantizer import Log, Quantizer, progress_bar
from runtime.backends import create_backend

GOAL_POINTS = 0.5
SENSITIVITY_IMAGES = 16
MAX_AUTO_KEEP = 3
EVAL_BATCH = 8

Outputs = Tuple[np.ndarray, np.ndarray]  # maps (N, 1, h, w) float32, scores (N,) float32


def open_backend(path: str, manifest: Any, threads: Optional[int] = None):
    """The runtime's ONNX Runtime CPU backend on `path`; a candidate Q/DQ graph is given the FP32 manifest (same
    input, outputs and batch profile). `threads` None: the backend's own rule (physical cores)."""
    options = {"threads": int(threads)} if threads else {}
    return create_backend("onnxruntime", path, manifest, device="cpu", **options)


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
                 channel_order: str, progress: bool):
        from imagesets import find_samples, load_masks  # noqa: PLC0415

        samples = find_samples(data, category, "test")
        self.data, self.category = os.path.abspath(data), category
        self.frames = load_frames(samples, size_hw, channel_order, progress)
        self.labels = np.array([s.label for s in samples], dtype=np.int64)
        self.types = [s.defect_type for s in samples]
        self.masks = load_masks(samples, map_hw) if any(s.mask_path for s in samples) else None

    def evaluate(self, infer, progress: bool) -> Dict[str, Any]:
        from calibration.evaluate import evaluate  # noqa: PLC0415 - only the INT8 report needs it

        return evaluate(infer, self.frames, self.labels, self.masks, self.types, batch_size=EVAL_BATCH,
                        progress=progress)


def metrics_of(ev: Dict[str, Any]) -> Dict[str, Any]:
    return {k: ev.get(k) for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")}


def loss_points(fp32: Dict[str, Any], int8: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """AUROC points INT8 loses against FP32 (image and pixel); None where a metric is undefined."""
    out: Dict[str, Optional[float]] = {}
    for key in ("image_auroc", "pixel_auroc"):
        a, b = fp32.get(key), int8.get(key)
        ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        out[key] = 100.0 * (float(a) - float(b)) if ok else None
    return out


def _worst(loss: Dict[str, Optional[float]]) -> Optional[float]:
    vals = [v for v in loss.values() if v is not None]
    return max(vals) if vals else None


@dataclass
class Probes:
    """Frames every candidate is scored on, with the FP32 graph's outputs on them."""

    good: np.ndarray  # calibration images
    defects: np.ndarray  # the same images with synthetic defects
    fp32_good: Outputs
    fp32_defects: Outputs
    eval_set: Optional[EvalSet] = None
    fp32_eval: Optional[Dict[str, Any]] = None


@dataclass
class SearchResult:
    attempts: List[Dict[str, Any]]
    best: Dict[str, Any]
    sensitivity: Optional[List[Dict[str, Any]]] = field(default=None)


class GuardedSearch:
    """Quantises candidates with `quantizer` and keeps the one that loses least accuracy (module docstring)."""

    def __init__(self, quantizer: Quantizer, manifest: Any, net_nodes: Sequence[str], blocks: Dict[str, List[str]],
                 probes: Probes, workdir: str, threads: Optional[int] = None, progress: bool = True,
                 log: Optional[Log] = None):
        self.quantizer, self.manifest = quantizer, manifest
        self.net_nodes, self.blocks = list(net_nodes), blocks
        self.probes, self.workdir, self.threads = probes, workdir, threads
        self.progress = progress
        self.say: Log = log or (lambda msg: None)

    def trial(self, kept: Sequence[str], tag: str) -> Dict[str, Any]:
        """Everything under the network prefixes but `kept` quantised, scored on the probes and the eval set."""
        p = self.probes
        nodes = [n for n in self.net_nodes if not qdq.under(n, kept)]
        path = os.path.join(self.workdir, f"int8-{tag}.onnx")
        self.quantizer.quantize(nodes, path)
        res: Dict[str, Any] = {"keep": list(kept), "path": path}
        with open_backend(path, self.manifest, self.threads) as backend:
            res["calibration_map_error"] = map_error(*p.fp32_good, *backend.infer(p.good))
            res["synthetic_map_error"] = map_error(*p.fp32_defects, *backend.infer(p.defects))
            if p.eval_set is not None and p.fp32_eval is not None:
                ev = p.eval_set.evaluate(backend.infer, self.progress)
                res["eval"] = ev
                res["metrics"] = metrics_of(ev)
                res["loss_points"] = loss_points(metrics_of(p.fp32_eval), res["metrics"])
                res["worst_loss"] = _worst(res["loss_points"])
        return res

    def sensitivity(self, keep: Sequence[str]) -> List[Dict[str, Any]]:
        """Quantise one block at a time; map error vs FP32 on the calibration images and on the same images with
        synthetic defects, ranked by the latter (what a bad part drives through the block), worst first."""
        p = self.probes
        rows: List[Dict[str, Any]] = []
        todo = [(b, nodes) for b, nodes in self.blocks.items() if not qdq.under(b, keep)]
        for i, (block, nodes) in enumerate(progress_bar(todo, len(todo), "sensitivity", self.progress)):
            path = os.path.join(self.workdir, f"sens-{i}.onnx")
            self.quantizer.quantize(nodes, path)
            with open_backend(path, self.manifest, self.threads) as backend:
                g = map_error(*p.fp32_good, *backend.infer(p.good))
                d = map_error(*p.fp32_defects, *backend.infer(p.defects))
            rows.append({"block": block, "nodes": len(nodes),
                         "good_relative_map_error": g["relative_mean_abs_diff"], "good_max_abs_diff": g["max_abs_diff"],
                         "defect_relative_map_error": d["relative_mean_abs_diff"],
                         "defect_max_abs_diff": d["max_abs_diff"], "defect_score_correlation": d["score_correlation"]})
        rows.sort(key=lambda r: -r["defect_relative_map_error"])
        if rows:
            self.say("sensitivity (one block INT8 at a time, map error on calibration images with synthetic defects): "
                     + ", ".join(f"{r['block']} {r['defect_relative_map_error']:.2%}" for r in rows[:5]))
        return rows

    def run(self, keep: Sequence[str], auto_keep: bool = True, max_loss_points: float = GOAL_POINTS,
            sensitivity: bool = False) -> SearchResult:
        keep = list(keep)
        attempts = [self.trial(keep, "0")]
        first = attempts[0]
        if first.get("worst_loss") is not None:
            lp = first["loss_points"]
            self.say(f"INT8 with {len(keep)} block(s) kept FP32: worst AUROC loss {first['worst_loss']:.2f} points "
                     f"(image {_points(lp['image_auroc'])}, pixel {_points(lp['pixel_auroc'])})")
        over = first.get("worst_loss") is not None and first["worst_loss"] > max_loss_points
        sens = self.sensitivity(keep) if (over and auto_keep) or sensitivity else None
        auto_kept: List[str] = []
        if over and auto_keep and sens:
            for entry in sens[:MAX_AUTO_KEEP]:
                auto_kept.append(entry["block"])
                res = self.trial(keep + auto_kept, str(len(attempts)))
                attempts.append(res)
                self.say(f"keeping {', '.join(auto_kept)} in FP32: worst AUROC loss {res['worst_loss']:.2f} points")
                if res["worst_loss"] is not None and res["worst_loss"] <= max_loss_points:
                    break
        best = min(attempts, key=lambda r: (r.get("worst_loss") if r.get("worst_loss") is not None else 0.0,
                                            len(r["keep"]))) if over else attempts[0]
        return SearchResult(attempts, best, sens)


def _points(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4g}"


__all__ = ["GuardedSearch", "Probes", "SearchResult", "EvalSet", "map_error", "metrics_of", "loss_points",
           "open_backend", "GOAL_POINTS", "SENSITIVITY_IMAGES", "MAX_AUTO_KEEP"]
