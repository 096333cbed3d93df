"""Backend-agnostic evaluation: run an `infer` callable over test frames and compute the metrics.

`infer` is any callable `uint8 (B, H, W, 3) -> (maps (B, 1, h, w) float, scores (B,))` returning numpy arrays;
for a model, a runtime backend's `infer` (`runtime.backends.create_backend(...).infer`, or
`TorchBackend.from_graph(...).infer` for a torch graph in memory), so what is evaluated is what ships. Maps whose size differs from the masks are resized bilinearly to the masks.

Per defect type, every metric is computed on that type's images plus ALL good images (the usual MVTec
convention for per-type image AUROC; the pixel metrics use the same subset).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from calibration import metrics as M
from calibration.verdicts import verdicts
from train.errors import ConfigError, DataError, RunError

Infer = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]

#: Keys of the result that are numpy arrays, kept for overlays and left out of the JSON.
ARRAY_KEYS = ("maps",)


def _check_inputs(frames, labels, masks, defect_types, batch_size):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    n = frames.shape[0]
    if n == 0:
        raise DataError("no test frames to evaluate; check the data folder and category")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise DataError(f"{labels.shape[0]} labels for {n} frames")
    bad = np.setdiff1d(np.unique(labels), [0, 1])
    if bad.size:
        raise DataError(f"labels must be 0 (good) or 1 (defect), found {bad[:5].tolist()}")
    labels = labels.astype(np.int64)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.ndim != 3 or masks.shape[0] != n:
            raise DataError(f"masks must be (N={n}, h, w), got {masks.shape}")
        if masks.dtype != bool:
            masks = masks != 0
    defect_types = [str(t) for t in defect_types]
    if len(defect_types) != n:
        raise DataError(f"{len(defect_types)} defect types for {n} frames")
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    return frames, labels, masks, defect_types


def _as_outputs(out, b: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validate one batch of (maps, scores) from `infer`; returns maps (B, h, w) float32, scores (B,) float64."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise RunError(f"the model must return (maps, scores), got {type(out).__name__}")
    maps, scores = np.asarray(out[0]), np.asarray(out[1])
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != b:
        raise RunError(f"the model returned maps of shape {maps.shape} for {b} frames; expected ({b}, 1, h, w)")
    scores = scores.reshape(-1) if scores.size == b else scores
    if scores.shape != (b,):
        raise RunError(f"the model returned scores of shape {scores.shape} for {b} frames; expected ({b},)")
    if not (np.isfinite(maps).all() and np.isfinite(scores).all()):
        raise RunError("the model returned NaN or infinite values; check the run's weights and precision")
    return maps.astype(np.float32, copy=False), scores.astype(np.float64)


def _metric(reasons: Dict[str, str], key: str, fn, *args, **kwargs):
    """Call a metric, recording why it is undefined (NaN) under `key`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.UndefinedMetricWarning)
        value = fn(*args, **kwargs)
    for w in caught:
        if issubclass(w.category, M.UndefinedMetricWarning):
            reasons[key] = str(w.message)
        else:  # pragma: no cover - pass other warnings on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


def evaluate(
    infer: Infer,
    frames: np.ndarray,
    labels: Sequence[int],
    masks: Optional[np.ndarray],
    defect_types: Sequence[str],
    batch_size: int = 8,
    progress: bool = True,
    aupro_thresholds: Optional[int] = None,
    threshold: Optional[float] = None,
) -> Dict[str, Any]:
    """Run `infer` over `frames` in batches and compute the metrics.

    frames (N, H, W, 3) uint8; labels (N,) 0 good / 1 defect; masks (N, h, w) bool (None: no pixel metrics);
    defect_types (N,) names ("good" for good images; any name of a label-0 image counts as good).

    Returns a dict: image_auroc, pixel_auroc, aupro, f1_max (image level), f1_threshold, pixel_f1_max, n_images,
    n_good, n_defect, per_defect_type {type: {image_auroc, pixel_auroc, aupro, n}}, undefined {metric: why it
    is NaN}, verdicts (`calibration.verdicts.verdicts`: recall at 0.1/1/5 % false alarms and, with `threshold`,
    the false-alarm rate and recall realised there, overall and per defect type), and the raw per-image lists
    scores, labels, defect_types; plus `maps` (N, h, w) float32 at the mask size, for overlays (numpy: use `json_ready` to drop it before writing JSON).
    """
    frames, labels, masks, defect_types = _check_inputs(frames, labels, masks, defect_types, batch_size)
    n = frames.shape[0]
    batch_size = int(batch_size)
    all_maps: Optional[np.ndarray] = None
    scores = np.empty(n, dtype=np.float64)
    with tqdm(total=n, desc="evaluate", unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            batch = frames[start : start + batch_size]
            maps, batch_scores = _as_outputs(infer(batch), batch.shape[0])
            if all_maps is None:
                size = masks.shape[1:] if masks is not None else maps.shape[1:]
                all_maps = np.empty((n,) + tuple(size), dtype=np.float32)
            for i, amap in enumerate(maps):
                if amap.shape != all_maps.shape[1:]:
                    amap = cv2.resize(amap, (all_maps.shape[2], all_maps.shape[1]), interpolation=cv2.INTER_LINEAR)
                all_maps[start + i] = amap
            scores[start : start + batch.shape[0]] = batch_scores
            bar.update(batch.shape[0])
    assert all_maps is not None  # n >= 1 was checked

    reasons: Dict[str, str] = {}
    result: Dict[str, Any] = {
        "n_images": n,
        "n_good": int((labels == 0).sum()),
        "n_defect": int((labels == 1).sum()),
        "image_auroc": _metric(reasons, "image_auroc", M.image_auroc, labels, scores),
    }
    result["f1_max"], result["f1_threshold"] = _metric(
        reasons, "f1_max", M.f1_max, labels, scores, return_threshold=True
    )
    if masks is not None:
        result["pixel_auroc"] = _metric(reasons, "pixel_auroc", M.pixel_auroc, masks, all_maps)
        result["aupro"] = _metric(reasons, "aupro", M.aupro, masks, all_maps, num_thresholds=aupro_thresholds)
        result["pixel_f1_max"] = _metric(reasons, "pixel_f1_max", M.pixel_f1_max, masks, all_maps)
    else:
        for key in ("pixel_auroc", "aupro", "pixel_f1_max"):
            result[key] = float("nan")
            reasons[key] = f"{key} is undefined: no ground-truth masks were given; returning NaN"

    types = np.asarray(defect_types, dtype=object)
    good = labels == 0
    per_type: Dict[str, Dict[str, Any]] = {}
    for name in sorted({t for t, lab in zip(defect_types, labels) if lab == 1}):
        of_type = (labels == 1) & (types == name)
        sel = good | of_type
        entry: Dict[str, Any] = {"n": int(of_type.sum())}
        entry["image_auroc"] = _metric(reasons, f"{name}/image_auroc", M.image_auroc, labels[sel], scores[sel])
        if masks is not None:
            m, a = masks[sel], all_maps[sel]
            entry["pixel_auroc"] = _metric(reasons, f"{name}/pixel_auroc", M.pixel_auroc, m, a)
            entry["aupro"] = _metric(reasons, f"{name}/aupro", M.aupro, m, a, num_thresholds=aupro_thresholds)
            del m, a
        else:
            entry["pixel_auroc"] = entry["aupro"] = float("nan")
        per_type[name] = entry
    result["per_defect_type"] = per_type
    result["verdicts"] = verdicts(labels, scores, defect_types, threshold)
    result["undefined"] = reasons
    result["scores"] = scores.tolist()
    result["labels"] = labels.tolist()
    result["defect_types"] = list(defect_types)
    result["maps"] = all_maps
    return result


def _plain(value):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, arrays dropped by the caller."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_ready(result: Dict[str, Any]) -> Dict[str, Any]:
    """The result without its arrays (maps), with NaN written as null (the reason is in `undefined`)."""
    return _plain({k: v for k, v in result.items() if k not in ARRAY_KEYS and not isinstance(v, np.ndarray)})
