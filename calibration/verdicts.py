"""Verdict metrics: what a line lives with is pass/fail at one threshold, not a ranking (numpy only).

- `recall_at_fpr`: the fraction of defective images caught by the lowest threshold whose false-alarm rate on
  the good images is at most `fpr` ("anomalous when score >= threshold"). With n good images, at most
  floor(fpr * n) of them may score at or above the threshold, so the threshold lies just above the
  (floor(fpr * n) + 1)-th highest good score, and a defect counts as caught when it scores strictly above
  that good score. With few good images the low rates are coarse (0.1 % of 200 images allows no false alarm);
  `n_good` is reported beside them for that reason.
- `at_threshold`: the false-alarm rate and recall realised at a given threshold (e.g. the manifest's).
- `verdicts`: both, overall and per defect type (each type against all good images), as one JSON-ready dict.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

#: the false-alarm rates at which recall is reported
FPRS = (0.001, 0.01, 0.05)


def _split(labels: Sequence[int], scores: Sequence[float]):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    return s[~y], s[y]


def recall_at_fpr(labels: Sequence[int], scores: Sequence[float], fpr: float) -> float:
    """Recall at the lowest threshold with a false-alarm rate <= `fpr` on the good images (NaN without good
    or defective images)."""
    good, bad = _split(labels, scores)
    if good.size == 0 or bad.size == 0:
        return float("nan")
    allowed = int(math.floor(float(fpr) * good.size + 1e-9))
    if allowed >= good.size:
        return 1.0
    limit = np.sort(good)[::-1][allowed]  # the highest good score that must pass
    return float(np.mean(bad > limit))


def at_threshold(labels: Sequence[int], scores: Sequence[float], threshold: float) -> Dict[str, Any]:
    """{fpr, recall, false_alarms, missed, n_good, n_defect} at "anomalous when score >= threshold"."""
    good, bad = _split(labels, scores)
    t = float(threshold)
    false_alarms, caught = int(np.sum(good >= t)), int(np.sum(bad >= t))
    return {
        "fpr": false_alarms / good.size if good.size else float("nan"),
        "recall": caught / bad.size if bad.size else float("nan"),
        "false_alarms": false_alarms, "missed": int(bad.size - caught),
        "n_good": int(good.size), "n_defect": int(bad.size),
    }


def _key(fpr: float) -> str:
    return f"{fpr:g}"


def verdicts(labels: Sequence[int], scores: Sequence[float], defect_types: Sequence[str],
             threshold: Optional[float] = None, fprs: Sequence[float] = FPRS) -> Dict[str, Any]:
    """{n_good, recall_at_fpr {"0.01": r, ...}, at_threshold {...} or None, per_defect_type {type: {n,
    recall_at_fpr, recall_at_threshold}}}; per defect type, that type's images against all good images."""
    y = np.asarray(labels).reshape(-1).astype(int)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    types = np.asarray([str(t) for t in defect_types], dtype=object)
    out: Dict[str, Any] = {
        "n_good": int((y == 0).sum()),
        "recall_at_fpr": {_key(f): recall_at_fpr(y, s, f) for f in fprs},
        "threshold": None if threshold is None else float(threshold),
        "at_threshold": None if threshold is None else at_threshold(y, s, threshold),
    }
    per_type: Dict[str, Any] = {}
    for name in sorted({t for t, lab in zip(types, y) if lab == 1}):
        sel = (y == 0) | ((y == 1) & (types == name))
        entry: Dict[str, Any] = {"n": int(((y == 1) & (types == name)).sum()),
                                 "recall_at_fpr": {_key(f): recall_at_fpr(y[sel], s[sel], f) for f in fprs}}
        if threshold is not None:
            entry["recall_at_threshold"] = at_threshold(y[sel], s[sel], threshold)["recall"]
        per_type[name] = entry
    out["per_defect_type"] = per_type
    return out


__all__ = ["FPRS", "recall_at_fpr", "at_threshold", "verdicts"]
