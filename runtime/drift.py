"""Is the line still the line the threshold was calibrated on? Rolling score statistics against the good-score
distribution in the manifest, and per-frame checks for frames no good part looks like.

Two things, both numpy only:

- `frame_alert(frame, score, band)`: a frame whose score is not a finite number, and, for a model whose manifest
  records its good-score distribution, a frame that is blank (black, white, one flat colour: its pixels barely
  vary) or whose score lies far *below* every good part's (`DriftBand.floor`) is never a silent pass. The Inspector marks such a Result with `alert` ("blank" /
  "out-of-range"), judges it not good (`is_anomalous` True when a threshold is known) and a stream reports an
  event of that name.
- `DriftMonitor`: per stream, the last `window` scores (alerted frames left out); once `min_frames` are in,
  their median must stay inside the band and the share at or above the threshold under its limit. Leaving the
  band is one `drift` event with the numbers; coming back (for `window // 4` frames in a row) one
  `drift_cleared`. After a model swap the band is rebuilt from the new version's manifest and the window
  restarts.

The band (`DriftBand.from_manifest`), in order of what the manifest has:

1. ``threshold_provenance.scores`` with the good-score quantiles `calibration.threshold` records
   (``good_q05`` ... ``good_q95``): the rolling median must lie within [good_q05, good_q95] (a steady good
   stream's median sits near good_q50); the spread sigma = (good_q95 - good_q05) / 3.29 (a normal's 5-95 %
   width).
2. the threshold's normalisation only (good_mean, good_std): [good_mean - 2 std, good_mean + 2 std], sigma =
   good_std.
3. neither: no drift band (stated in `DriftBand.source`); blank frames are still caught.

Share above the threshold: at most max(2 p, p + 4 sqrt(p (1 - p) (1 / n + 1 / m))) with p the calibration's good
share at or above the threshold (``good_fraction_at_or_above``), else its target FPR, else 1 %; n the frames in
the window, m the calibration's good images (the threshold is itself an estimate from them); 4 standard errors
because the test repeats on every frame. Floor:
median - 6 sigma of the good scores; a frame below it is "out-of-range".
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

DEFAULT_WINDOW = 200
#: A frame whose pixels (sampled every 4th row and column) vary less than this (standard deviation, 0-255) is blank.
BLANK_STD = 2.0
#: How many spreads (sigma) below the good median a score may lie before the frame is out of range.
FLOOR_SIGMAS = 6.0
#: The normal distribution's 5-95 % width in standard deviations.
_Q05_Q95_SIGMAS = 3.29
#: The share above the threshold a band assumes when the manifest records none.
DEFAULT_ALARM_SHARE = 0.01
TRACE_KEPT = 120


@dataclass(frozen=True)
class DriftBand:
    """Where a steady good line keeps its rolling scores: median within [low, high], share at or above the
    threshold at most `share_limit`; a single score below `floor` is out of range. None: not known."""

    low: Optional[float]
    high: Optional[float]
    floor: Optional[float]
    expected_share: float
    threshold: Optional[float]
    source: str
    calibration_images: int = 0

    @classmethod
    def from_manifest(cls, manifest: Any, threshold: Optional[float]) -> "DriftBand":
        prov = getattr(manifest, "threshold_provenance", None)
        scores: Dict[str, float] = dict(getattr(prov, "scores", None) or {})
        thr_rec = getattr(manifest, "threshold", None)
        share = scores.get("good_fraction_at_or_above")
        if share is None and thr_rec is not None and thr_rec.target_fpr:
            share = float(thr_rec.target_fpr)
        share = float(share) if share else DEFAULT_ALARM_SHARE
        m = int(thr_rec.images) if thr_rec is not None and thr_rec.images else 0
        if all(k in scores for k in ("good_q05", "good_q50", "good_q95")):
            q05, q50, q95 = float(scores["good_q05"]), float(scores["good_q50"]), float(scores["good_q95"])
            sigma = max(q95 - q05, 1e-12) / _Q05_Q95_SIGMAS
            return cls(q05, q95, q50 - FLOOR_SIGMAS * sigma, share, threshold,
                       "calibration good-score quantiles (good_q05..good_q95)", m)
        norm = getattr(thr_rec, "normalization", None)
        if norm is not None and float(norm.good_std) > 0:
            mean, sd = float(norm.good_mean), float(norm.good_std)
            return cls(mean - 2 * sd, mean + 2 * sd, mean - FLOOR_SIGMAS * sd, share, threshold,
                       "threshold normalisation (good_mean +- 2 good_std)", m)
        return cls(None, None, None, share, threshold, "none: the manifest records no good-score distribution "
                                                       "(calibrate with `python -m calibration.threshold`)", m)

    def share_limit(self, n: int) -> float:
        p = self.expected_share
        spread = 1.0 / max(n, 1) + (1.0 / self.calibration_images if self.calibration_images else 0.0)
        return max(2 * p, p + 4 * math.sqrt(p * (1 - p) * spread))

    def to_dict(self) -> Dict[str, Any]:
        return {"low": self.low, "high": self.high, "floor": self.floor, "expected_share": self.expected_share,
                "threshold": self.threshold, "calibration_images": self.calibration_images, "source": self.source}


def frame_alert(frame: np.ndarray, score: float, band: Optional[DriftBand]) -> Optional[Tuple[str, str]]:
    """(kind, reason) when this frame must not pass as good, else None; kind is "blank" or "out-of-range". A
    non-finite score is always out of range; the blank and floor checks need the good-score distribution (a
    band with a source): a model without a calibrated one gets no guess."""
    if not math.isfinite(score):
        return "out-of-range", f"the score is {score}"
    if band is None or band.low is None:
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
        if window < 2:
            raise ValueError(f"drift window must be >= 2 frames, got {window}")
        self._band_for = band_for
        self.window = int(window)
        self.min_frames = int(min_frames) if min_frames is not None else max(2, self.window // 2)
        self.band = band_for()
        self._scores: Deque[float] = collections.deque(maxlen=self.window)
        self._model: Optional[Tuple[Optional[str], Optional[float]]] = None
        self.drifting = False
        self._calm = 0
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
                self.drifting, self._calm = False, 0
            self._model = model
        alert = getattr(result, "alert", None)
        if alert:
            self.alerts[alert] = self.alerts.get(alert, 0) + 1
            events.append({"event": alert, "message": f"frame {result.frame_index}: {result.alert_reason}: "
                                                      f"not judged good", "time": time.time(),
                           "index": int(result.frame_index), "score": float(result.score)})
            return events
        self._scores.append(float(result.score))
        if len(self._scores) < self.min_frames or self.band.low is None:
            return events
        s = np.asarray(self._scores, dtype=np.float64)
        q10, q50, q90 = (float(v) for v in np.quantile(s, (0.1, 0.5, 0.9)))
        thr = self.band.threshold
        share = float(np.mean(s >= thr)) if thr is not None else 0.0
        limit = self.band.share_limit(len(s))
        out = []
        if q50 > self.band.high:
            out.append(f"median {q50:.6g} above the band's {self.band.high:.6g}")
        if q50 < self.band.low:
            out.append(f"median {q50:.6g} below the band's {self.band.low:.6g}")
        if thr is not None and share > limit:
            out.append(f"{share:.1%} of frames at or above the threshold (limit {limit:.1%})")
        self.last = {"frames": len(s), "q10": q10, "q50": q50, "q90": q90, "share_above": share,
                     "share_limit": limit, "index": int(result.frame_index)}
        if self._judged % self._trace_every == 0:
            self._trace.append([int(result.frame_index), round(q10, 6), round(q50, 6), round(q90, 6), round(share, 4)])
        self._judged += 1
        numbers = dict(self.last, band=self.band.to_dict(), window=self.window)
        if out and not self.drifting:
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
        elif out:
            self._calm = 0
        return events

    def status(self) -> Dict[str, Any]:
        """For the live view and summaries: the band, the latest rolling numbers, the trace of (frame, q10, q50,
        q90, share above) every window/20 frames (the last TRACE_KEPT of them) and the counts."""
        return {"band": self.band.to_dict(), "window": self.window, "drifting": self.drifting,
                "last": dict(self.last), "trace": list(self._trace), "drift_events": self.drift_events,
                "alerts": dict(self.alerts)}


__all__ = ["DriftBand", "DriftMonitor", "frame_alert", "DEFAULT_WINDOW", "BLANK_STD"]
