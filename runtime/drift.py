"""Is the line still the line the threshold was calibrated on? Rolling score statistics against the good-score
distribution in the manifest, and per-frame checks for frames no good part looks like.

Two things, both numpy only:

- `frame_alert(frame, score, band)`: a frame whose score is not a finite number, and, for a model whose manifest
  records its good-score distribution, a frame that is blank (black, white, one flat colour: its pixels barely
  vary) or whose score lies far *below* every good part's (`DriftBand.floor`) is never a silent pass. The
  Inspector marks such a Result with `alert` ("blank" / "out-of-range"), judges it not good (`is_anomalous`
  True when a threshold is known) and a stream reports an event of that name.
- `DriftMonitor`: per stream, the last `window` scores (alerted frames left out). Once `min_frames` are in,
  their 10 %, 50 % and 90 % quantiles must stay where the good distribution puts them, and the share at or
  above the threshold under its limit. Staying outside for `window // 10` frames in a row (a brief excursion at
  the edge is not a drift) is one `drift` event with the numbers; coming back (for `window // 4` frames in a
  row) one `drift_cleared`. After a model swap the band is rebuilt from the new
  version's manifest and the window restarts.

The good distribution (`DriftBand.from_manifest`), in order of what the manifest has:

1. ``threshold_provenance.scores`` with the good-score quantiles `calibration.threshold` records
   (``good_q05`` ... ``good_q99``, with ``good_min`` / ``good_max``): its CDF, linear between them.
2. the threshold's normalisation only (good_mean, good_std): a normal CDF's quantiles at the same levels.
3. neither: no drift band (stated in `DriftBand.source`); only non-finite scores are caught.

The test is distribution-free: a rolling quantile at level q of n frames from the good distribution has, in the
good CDF, a rank within q +- (4.5 sqrt(q (1 - q) (1 / n + 1 / m)) + 1 / n) (m: the calibration's good images,
whose quantiles are estimates too; 4.5 standard errors because the test repeats on every frame; 1 / n because
counts are whole frames). The rolling median's
allowed range (`DriftBand.median_range(n)`) is what the live view draws. A change of level moves the median, a
change of spread moves q10 or q90 first.

Share above the threshold: at most max(2 p, p + 4.5 sqrt(p (1 - p) (1 / n + 1 / m)) + 1 / n) with p the
calibration's good share at or above the threshold (``good_fraction_at_or_above``), else its target FPR, else
1 %. Floor: the good
median less 6 spreads (sigma = (good_q95 - good_q05) / 3.29, a normal's 5-95 % width, or good_std); a frame
below it is "out-of-range".
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from runtime.errors import RuntimeInspectError

DEFAULT_WINDOW = 200
#: A frame whose pixels (sampled every 4th row and column) vary less than this (standard deviation, 0-255) is blank.
BLANK_STD = 2.0
#: How many spreads (sigma) below the good median a score may lie before the frame is out of range.
FLOOR_SIGMAS = 6.0
#: Standard errors a rolling statistic may stray before it is drift.
DRIFT_Z = 4.5
#: The normal distribution's 5-95 % width in standard deviations.
_Q05_Q95_SIGMAS = 3.29
#: The share above the threshold a band assumes when the manifest records none.
DEFAULT_ALARM_SHARE = 0.01
#: The rolling quantiles the monitor tests.
LEVELS = (0.1, 0.5, 0.9)
#: Levels of the good quantiles `calibration.threshold` records (good_qNN) and their standard-normal z values.
_GOOD_LEVELS = {0.05: -1.645, 0.1: -1.2816, 0.25: -0.6745, 0.5: 0.0, 0.75: 0.6745, 0.9: 1.2816, 0.95: 1.645,
                0.99: 2.3263}
TRACE_KEPT = 120


def _tolerance(q: float, n: int, m: int) -> float:
    """How far the share of n frames below (or above) a level-q point may stray: DRIFT_Z binomial standard errors
    of the window and the calibration, plus one frame (the counts are whole frames)."""
    n = max(n, 1)
    return DRIFT_Z * math.sqrt(q * (1 - q) * (1.0 / n + (1.0 / m if m else 0.0))) + 1.0 / n


@dataclass(frozen=True)
class DriftBand:
    """The good-score distribution a steady line keeps to: its CDF through (`scores`, `levels`) (empty: not
    known), the share at or above the threshold it expects, and the floor below which a single score is out of
    range (None: not known)."""

    scores: Tuple[float, ...]
    levels: Tuple[float, ...]
    floor: Optional[float]
    expected_share: float
    threshold: Optional[float]
    source: str
    calibration_images: int = 0

    @classmethod
    def from_manifest(cls, manifest: Any, threshold: Optional[float]) -> "DriftBand":
        prov = getattr(manifest, "threshold_provenance", None)
        rec: Dict[str, float] = dict(getattr(prov, "scores", None) or {})
        thr_rec = getattr(manifest, "threshold", None)
        share = rec.get("good_fraction_at_or_above")
        if share is None and thr_rec is not None and thr_rec.target_fpr:
            share = float(thr_rec.target_fpr)
        share = float(share) if share else DEFAULT_ALARM_SHARE
        m = int(thr_rec.images) if thr_rec is not None and thr_rec.images else 0
        found = {q: float(rec[f"good_q{round(q * 100):02d}"]) for q in _GOOD_LEVELS
                 if f"good_q{round(q * 100):02d}" in rec}
        if all(q in found for q in (0.05, 0.5, 0.95)):
            points = dict(found)
            if "good_min" in rec:
                points[0.0] = min(float(rec["good_min"]), found[min(found)])
            if "good_max" in rec:
                points[1.0] = max(float(rec["good_max"]), found[max(found)])
            sigma = max(found[0.95] - found[0.05], 1e-12) / _Q05_Q95_SIGMAS
            levels = tuple(sorted(points))
            return cls(tuple(points[q] for q in levels), levels, found[0.5] - FLOOR_SIGMAS * sigma, share,
                       threshold, "calibration good-score quantiles (good_q05..good_q99)", m)
        norm = getattr(thr_rec, "normalization", None)
        if norm is not None and float(norm.good_std) > 0:
            mean, sd = float(norm.good_mean), float(norm.good_std)
            levels = tuple(sorted(_GOOD_LEVELS))
            return cls(tuple(mean + _GOOD_LEVELS[q] * sd for q in levels), levels, mean - FLOOR_SIGMAS * sd, share,
                       threshold, "threshold normalisation (a normal with good_mean, good_std)", m)
        return cls((), (), None, share, threshold, "none: the manifest records no good-score distribution "
                                                   "(calibrate with `python -m calibration.threshold`)", m)

    @property
    def known(self) -> bool:
        return bool(self.scores)

    def rank(self, score: float) -> float:
        """The good CDF at `score` (0..1, linear between the recorded quantiles, clipped beyond them)."""
        return float(np.interp(score, self.scores, self.levels))

    def score_at(self, level: float) -> float:
        return float(np.interp(min(max(level, 0.0), 1.0), self.levels, self.scores))

    def median_range(self, n: int) -> Tuple[float, float]:
        """Where the rolling median of n good frames lies (the live view's band)."""
        tol = _tolerance(0.5, n, self.calibration_images)
        return self.score_at(0.5 - tol), self.score_at(0.5 + tol)

    def outside(self, quantiles: Dict[float, float], n: int) -> List[str]:
        """Why these rolling quantiles (level -> score) of n frames are not the good distribution's (empty: they
        are)."""
        reasons = []
        for q, value in quantiles.items():
            rank, tol = self.rank(value), _tolerance(q, n, self.calibration_images)
            if abs(rank - q) > tol:
                reasons.append(f"q{round(q * 100):02d} {value:.6g} sits at the good distribution's "
                               f"{rank:.0%} (expected {q:.0%} +- {tol:.0%})")
        return reasons

    def share_limit(self, n: int) -> float:
        p = self.expected_share
        return max(2 * p, p + _tolerance(p, n, self.calibration_images))

    def to_dict(self, n: Optional[int] = None) -> Dict[str, Any]:
        out: Dict[str, Any] = {"floor": self.floor, "expected_share": self.expected_share,
                               "threshold": self.threshold, "calibration_images": self.calibration_images,
                               "source": self.source, "good_quantiles": dict(zip(self.levels, self.scores))}
        if n is not None and self.known:
            out["median_low"], out["median_high"] = self.median_range(n)
        return out


def frame_alert(frame: np.ndarray, score: float, band: Optional[DriftBand]) -> Optional[Tuple[str, str]]:
    """(kind, reason) when this frame must not pass as good, else None; kind is "blank" or "out-of-range". A
    non-finite score is always out of range; the blank and floor checks need the good-score distribution (a
    band with a source): a model without a calibrated one gets no guess."""
    if not math.isfinite(score):
        return "out-of-range", f"the score is {score}"
    if band is None or not band.known:
        return None
    sample = frame[::4, ::4]
    if sample.ndim == 3 and sample.shape[2] == 4:
        sample = sample[:, :, :3]
    spread = float(sample.std())
    if spread < BLANK_STD:
        return "blank", f"the frame is blank (pixel standard deviation {spread:.2f}, mean {float(sample.mean()):.1f})"
    if band.floor is not None and score < band.floor:
        return "out-of-range", (f"score {score:.6g} is far below every good part's (floor {band.floor:.6g}: the "
                                f"good median less {FLOOR_SIGMAS:g} spreads)")
    return None


class DriftMonitor:
    """Rolling score statistics of one stream against a `DriftBand` (see the module doc)."""

    def __init__(self, band_for: Callable[[], DriftBand], window: int = DEFAULT_WINDOW,
                 min_frames: Optional[int] = None):
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise RuntimeInspectError(f"drift_window must be an integer >= 2 frames, got {window!r}")
        self._band_for = band_for
        self.window = int(window)
        self.min_frames = int(min_frames) if min_frames is not None else max(2, self.window // 2)
        self.band = band_for()
        self._scores: Deque[float] = collections.deque(maxlen=self.window)
        self._model: Optional[Tuple[Optional[str], Optional[float]]] = None
        self.drifting = False
        self._calm = 0
        self._out = 0  # judged frames in a row outside the band
        self.confirm = max(1, self.window // 10)
        self.drift_events = 0
        self.alerts: Dict[str, int] = {"blank": 0, "out-of-range": 0}
        self.last: Dict[str, Any] = {}
        self._trace: Deque[List[float]] = collections.deque(maxlen=TRACE_KEPT)
        self._trace_every = max(1, self.window // 20)  # the chart spans about 6 windows
        self._judged = 0

    def observe(self, result: Any) -> List[Dict[str, Any]]:
        """Take one Result; returns the events it causes (alert, drift, drift_cleared)."""
        events: List[Dict[str, Any]] = []
        model = (getattr(result, "model_sha256", None), result.threshold)  # a recalibration is a version too
        if model != self._model:  # first frame, or a swapped version: its own band, a fresh window
            if self._model is not None:
                self.band = self._band_for()
                self._scores.clear()
                self.drifting, self._calm, self._out = False, 0, 0
            self._model = model
        alert = getattr(result, "alert", None)
        if alert:
            self.alerts[alert] = self.alerts.get(alert, 0) + 1
            events.append({"event": alert, "message": f"frame {result.frame_index}: {result.alert_reason}: "
                                                      f"not judged good", "time": time.time(),
                           "index": int(result.frame_index), "score": float(result.score)})
            return events
        self._scores.append(float(result.score))
        if len(self._scores) < self.min_frames or not self.band.known:
            return events
        s = np.asarray(self._scores, dtype=np.float64)
        q10, q50, q90 = (float(v) for v in np.quantile(s, LEVELS))
        thr = self.band.threshold
        share = float(np.mean(s >= thr)) if thr is not None else 0.0
        limit = self.band.share_limit(len(s))
        out = self.band.outside(dict(zip(LEVELS, (q10, q50, q90))), len(s))
        if thr is not None and share > limit:
            out.append(f"{share:.1%} of frames at or above the threshold (limit {limit:.1%})")
        self.last = {"frames": len(s), "q10": q10, "q50": q50, "q90": q90, "share_above": share,
                     "share_limit": limit, "index": int(result.frame_index)}
        if self._judged % self._trace_every == 0:
            self._trace.append([int(result.frame_index), round(q10, 6), round(q50, 6), round(q90, 6), round(share, 4)])
        self._judged += 1
        numbers = dict(self.last, band=self.band.to_dict(len(s)), window=self.window)
        self._out = self._out + 1 if out else 0
        if out and not self.drifting and self._out >= self.confirm:
            self.drifting, self._calm = True, 0
            self.drift_events += 1
            events.append(dict(numbers, event="drift", time=time.time(),
                               message=f"scores left the calibrated band over the last {len(s)} frames: "
                                       + "; ".join(out)))
        elif not out and self.drifting:
            self._calm += 1
            if self._calm >= max(1, self.window // 4):
                self.drifting = False
                events.append(dict(numbers, event="drift_cleared", time=time.time(),
                                   message=f"scores back in the calibrated band over the last {len(s)} frames"))
        elif out and self.drifting:
            self._calm = 0
        return events

    def status(self) -> Dict[str, Any]:
        """For the live view and summaries: the band, the latest rolling numbers, the trace of (frame, q10, q50,
        q90, share above) every window/20 frames (the last TRACE_KEPT of them) and the counts."""
        n = len(self._scores) if len(self._scores) >= self.min_frames else self.window
        return {"band": self.band.to_dict(n), "window": self.window, "drifting": self.drifting,
                "last": dict(self.last), "trace": list(self._trace), "drift_events": self.drift_events,
                "alerts": dict(self.alerts)}


__all__ = ["DriftBand", "DriftMonitor", "frame_alert", "DEFAULT_WINDOW", "BLANK_STD"]
