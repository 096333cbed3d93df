"""Anomaly-detection metrics, numpy only (OpenCV for the connected components of AUPRO).

- `roc_auc` / `image_auroc`: exact area under the ROC curve, ties handled as scikit-learn does (trapezoid over
  the ROC curve, i.e. a tied positive/negative pair counts one half). Computed as the Mann-Whitney statistic
  from one sorted copy of the negatives and a binary search per positive, so it needs no per-sample Python
  objects and no joint argsort: millions of pixels are fine.
- `pixel_auroc`: the same over every pixel of every image (masks = positives).
- `aupro`: area under the per-region-overlap curve up to a false-positive rate of `fpr_limit` (0.3), divided by
  `fpr_limit`. Regions are the 8-connected components of each image's ground-truth mask; PRO(t) is the mean
  over all regions of the fraction of the region at or above threshold t; FPR(t) is the fraction of all good
  pixels (mask False, over all images) at or above t. By default the curve is EXACT: it has a point at every
  distinct score value (sorted thresholds), is integrated with the trapezoid rule and linearly interpolated at
  `fpr_limit`. `num_thresholds=K` instead evaluates K evenly spaced thresholds between the maps' minimum and
  maximum (what many reference scripts do, e.g. K = 5000), with the same integration.
- `f1_max` / `pixel_f1_max`: the largest F1 over all thresholds ("defect" when score >= threshold).

A metric that is undefined on the given data (one class only, no defect region, ...) returns NaN and emits an
`UndefinedMetricWarning` whose message says why; `calibration.evaluate` collects these reasons.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple, Union

import cv2
import numpy as np

# Positives are searched in chunks of this many values, to bound the temporary index arrays.
_CHUNK = 1 << 22


class UndefinedMetricWarning(UserWarning):
    """A metric cannot be computed on the given data; the message says why. The metric returns NaN."""


def _undefined(name: str, reason: str) -> float:
    warnings.warn(f"{name} is undefined: {reason}; returning NaN", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


# ----------------------------------------------------------------------------------------------- inputs


def _scores(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"{name} contain NaN; the model produced invalid output")
    return arr


def _labels(values, n: int) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"labels has {arr.shape[0]} entries but scores has {n}")
    if arr.dtype != bool:
        bad = np.setdiff1d(np.unique(arr), [0, 1])
        if bad.size:
            raise ValueError(f"labels must be 0 (good) or 1 (defect), found {bad[:5].tolist()}")
        arr = arr == 1
    return arr


def _masks_maps(masks, maps) -> Tuple[np.ndarray, np.ndarray]:
    """masks (N, h, w) bool-like (non-zero = defect) and maps (N, h, w) or (N, 1, h, w), same shapes."""
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} must both be (N, h, w) of the same shape")
    if masks.dtype != bool:
        masks = masks != 0
    _scores(maps[:1], "maps")  # dtype check
    if np.issubdtype(maps.dtype, np.floating) and np.isnan(maps).any():
        raise ValueError("maps contain NaN; the model produced invalid output")
    return masks, maps


# ----------------------------------------------------------------------------------------------- AUROC


def _auc_pos_neg(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg), exact (integer counts). `neg` is sorted in place."""
    neg.sort()
    twice = 0  # 2 * (number of pairs pos > neg) + (number of tied pairs), exact Python int
    for start in range(0, pos.shape[0], _CHUNK):
        chunk = pos[start : start + _CHUNK]
        below = np.searchsorted(neg, chunk, side="left")
        below_or_equal = np.searchsorted(neg, chunk, side="right")
        twice += int(below.sum(dtype=np.int64)) + int(below_or_equal.sum(dtype=np.int64))
    return twice / (2.0 * pos.shape[0] * neg.shape[0])


def roc_auc(labels, scores) -> float:
    """Exact ROC AUC of `scores` (higher = more anomalous) against binary `labels` (1 = defect).

    Equal to scikit-learn's `roc_auc_score` (trapezoid over the ROC curve, ties count one half)."""
    scores = _scores(scores, "scores")
    labels = _labels(labels, scores.shape[0])
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.shape[0]:
        which = "defect" if n_pos == 0 else "good"
        return _undefined("AUROC", f"no {which} samples among {labels.shape[0]} (only one class)")
    return _auc_pos_neg(scores[labels], scores[~labels])


def image_auroc(labels, scores) -> float:
    """Image-level AUROC: `labels` (N,) 0 good / 1 defect, `scores` (N,) image scores."""
    return roc_auc(labels, scores)


def pixel_auroc(masks, maps) -> float:
    """Pixel-level AUROC over all pixels of all images: `masks` (N, h, w) bool, `maps` (N, h, w) scores."""
    masks, maps = _masks_maps(masks, maps)
    n_pos = int(np.count_nonzero(masks))
    if n_pos == 0 or n_pos == masks.size:
        which = "defect" if n_pos == 0 else "good"
        return _undefined("pixel AUROC", f"the masks have no {which} pixels (only one class)")
    return _auc_pos_neg(maps[masks], maps[~masks])


# ----------------------------------------------------------------------------------------------- F1


def _f1_max_pos_neg(pos: np.ndarray, neg: np.ndarray) -> Tuple[float, float]:
    """Max F1 and its threshold. The maximum is reached at a threshold equal to a positive's score: raising
    the threshold up to the next positive value keeps TP and can only lower FP."""
    n_pos = pos.shape[0]
    neg.sort()
    pos_desc = np.sort(pos)[::-1]
    last_of_run = np.flatnonzero(np.r_[pos_desc[1:] != pos_desc[:-1], True])
    thresholds = pos_desc[last_of_run]
    tp = (last_of_run + 1).astype(np.float64)
    fp = (neg.shape[0] - np.searchsorted(neg, thresholds, side="left")).astype(np.float64)
    f1 = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def f1_max(labels, scores, return_threshold: bool = False) -> Union[float, Tuple[float, float]]:
    """Largest F1 of "defect when score >= t" over all thresholds t (image level).

    With `return_threshold`, returns (f1, t)."""
    scores = _scores(scores, "scores")
    labels = _labels(labels, scores.shape[0])
    if not labels.any():
        value = _undefined("F1-max", f"no defect samples among {labels.shape[0]} (F1 needs positives)")
        return (value, float("nan")) if return_threshold else value
    f1, t = _f1_max_pos_neg(scores[labels], scores[~labels])
    return (f1, t) if return_threshold else f1


def pixel_f1_max(masks, maps, return_threshold: bool = False) -> Union[float, Tuple[float, float]]:
    """Largest pixel-level F1 over all thresholds (all pixels of all images)."""
    masks, maps = _masks_maps(masks, maps)
    if not masks.any():
        value = _undefined("pixel F1-max", "the masks have no defect pixels (F1 needs positives)")
        return (value, float("nan")) if return_threshold else value
    f1, t = _f1_max_pos_neg(maps[masks], maps[~masks])
    return (f1, t) if return_threshold else f1


# ----------------------------------------------------------------------------------------------- AUPRO


def _area_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under (x, y) for x in [x[0], limit], x non-decreasing; y linearly interpolated at limit."""
    k = int(np.searchsorted(x, limit, side="right"))  # x[:k] <= limit
    xs, ys = x[:k], y[:k]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) * 0.5)) if k > 1 else 0.0
    if 0 < k < x.shape[0] and x[k - 1] < limit:
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_lim) * 0.5
    return area


def _regions(masks: np.ndarray, maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """Scores of all defect pixels and each pixel's PRO weight 1 / (n_regions * region size)."""
    values, weights = [], []
    n_regions = 0
    for mask, amap in zip(masks, maps):
        if not mask.any():
            continue
        n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        sizes = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
        inside = lab > 0
        values.append(amap[inside])
        weights.append(1.0 / sizes[lab[inside]])
        n_regions += n - 1
    return np.concatenate(values), np.concatenate(weights) / n_regions, n_regions


def aupro(masks, maps, fpr_limit: float = 0.3, num_thresholds: Optional[int] = None) -> float:
    """Normalised area under the PRO curve up to FPR `fpr_limit` (see the module docstring).

    `masks` (N, h, w) bool, `maps` (N, h, w) scores. `num_thresholds=None` (default) is exact (a curve point at
    every distinct score); an integer K uses K evenly spaced thresholds from the maps' max to min instead.
    Returns a value in [0, 1]: 1 when every region is fully covered before the first false positive; a map
    whose PRO tracks its FPR (an uninformative map, PRO(t) = FPR(t)) gives (0.3^2 / 2) / 0.3 = 0.15."""
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds is not None and int(num_thresholds) < 2:
        raise ValueError(f"num_thresholds must be None (exact) or >= 2, got {num_thresholds}")
    masks, maps = _masks_maps(masks, maps)
    n_good = masks.size - int(np.count_nonzero(masks))
    if n_good == 0:
        return _undefined("AUPRO", "the masks have no good pixels, so the false-positive rate is undefined")
    if n_good == masks.size:
        return _undefined("AUPRO", "the masks have no defect region (all images good)")

    good = maps[~masks]
    good.sort()
    def_values, def_weights, _ = _regions(masks, maps)
    order = np.argsort(def_values, kind="stable")
    def_values = def_values[order]
    # suffix[i] = sum of the weights of def_values[i:], suffix[m] = 0: PRO at or above a threshold.
    suffix = np.concatenate([np.cumsum(def_weights[order][::-1])[::-1], [0.0]])
    del order, def_weights

    def fpr_pro(t: np.ndarray, side: str) -> Tuple[np.ndarray, np.ndarray]:
        # side "left": score >= t is flagged; side "right": score > t is flagged.
        fpr = (n_good - np.searchsorted(good, t, side=side)) / n_good
        pro = suffix[np.searchsorted(def_values, t, side=side)]
        return fpr, pro

    if num_thresholds is None:
        # Only the good values matter for FPR; the top ceil(limit * n_good) of them reach the limit.
        k = min(n_good, int(math.ceil(float(fpr_limit) * n_good)))
        top = good[n_good - k :][::-1]  # descending
        thresholds = top[np.r_[True, top[1:] != top[:-1]]]
        # At each distinct good value g the curve moves from (FPR(>g), PRO(>g)) to (FPR(>=g), PRO(>=g));
        # between consecutive good values only PRO changes (a vertical step, no area).
        f_gt, p_gt = fpr_pro(thresholds, "right")
        f_ge, p_ge = fpr_pro(thresholds, "left")
        fpr = np.empty(2 * thresholds.shape[0] + 1)
        pro = np.empty_like(fpr)
        fpr[0] = pro[0] = 0.0
        fpr[1::2], fpr[2::2] = f_gt, f_ge
        pro[1::2], pro[2::2] = p_gt, p_ge
    else:
        lo, hi = float(min(good[0], def_values[0])), float(max(good[-1], def_values[-1]))
        thresholds = np.linspace(hi, lo, int(num_thresholds))
        f, p = fpr_pro(thresholds, "left")
        fpr, pro = np.r_[0.0, f], np.r_[0.0, p]
    return _area_to_limit(fpr, pro, float(fpr_limit)) / float(fpr_limit)
