"""`Result`: the verdict on one frame, as `Inspector.inspect` / `inspect_batch` / `stream` return it.
numpy + OpenCV only (the map is resized to the frame's size on first access)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import cv2
import numpy as np

from runtime.overlay import overlay as _overlay


class Result:
    """The verdict on one frame.

    - `score`: the image anomaly score (higher = more anomalous).
    - `threshold`: the threshold used (the Inspector's, else the manifest's), or None.
    - `is_anomalous`: score >= threshold; **None when no threshold is known** (neither given nor in the manifest:
      calibrate one with `python -m calibration.threshold` or pass `threshold=`), never a guess.
    - `normalized_score`: (score - good_mean) / (threshold - good_mean), 0 at the mean score of good images and
      1.0 at the threshold; None when the manifest has no normalisation.
    - `anomaly_map`: (H, W) float32 at the frame's size (resized from the model's map on first access);
      `raw_map` is the model's own (h, w) map.
    - `overlay(alpha)`: a heat map over the frame, colour scale from the manifest's normalisation when present.
    - `latency_ms` (host preparation + inference of the batch that carried the frame), `frame_index`,
      `timestamp` (seconds since the epoch: capture time for streams, call time for `inspect`), `name`
      (the file name for folder sources).
    - `alert`: "blank" or "out-of-range" for a frame no good part looks like (`runtime.drift.frame_alert`;
      `alert_reason` says why): it is never a pass (`is_anomalous` True when a threshold is known, the verdict is
      the alert); None otherwise. `model_sha256`: the version (artifact sha256) that judged the frame.
    """

    __slots__ = ("score", "threshold", "is_anomalous", "normalized_score", "raw_map", "frame", "frame_order",
                 "latency_ms", "frame_index", "timestamp", "name", "_vmin", "_vmax", "_map", "alert", "alert_reason",
                 "model_sha256")

    def __init__(self, score: float, threshold: Optional[float], normalized_score: Optional[float],
                 raw_map: np.ndarray, frame: np.ndarray, frame_order: str, latency_ms: float, frame_index: int,
                 timestamp: float, name: str = "", vmin: Optional[float] = None, vmax: Optional[float] = None):
        self.score = float(score)
        self.threshold = threshold
        self.is_anomalous: Optional[bool] = None if threshold is None else bool(self.score >= threshold)
        self.normalized_score = normalized_score
        self.raw_map = raw_map
        self.frame = frame
        self.frame_order = frame_order
        self.latency_ms = float(latency_ms)
        self.frame_index = int(frame_index)
        self.timestamp = float(timestamp)
        self.name = name
        self._vmin = vmin
        self._vmax = vmax
        self._map: Optional[np.ndarray] = None
        self.alert: Optional[str] = None
        self.alert_reason = ""
        self.model_sha256: Optional[str] = None

    def set_alert(self, kind: str, reason: str) -> None:
        """Mark this frame as one no good part looks like: never a pass."""
        self.alert, self.alert_reason = kind, reason
        if self.threshold is not None:
            self.is_anomalous = True

    @property
    def anomaly_map(self) -> np.ndarray:
        if self._map is None:
            h, w = self.frame.shape[:2]
            m = self.raw_map
            self._map = m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        return self._map

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """Heat map over the frame, (H, W, 3) uint8 in the frame's channel order."""
        frame = self.frame[:, :, :3] if self.frame.ndim == 3 and self.frame.shape[2] == 4 else self.frame
        return _overlay(np.ascontiguousarray(frame), self.raw_map, vmin=self._vmin, vmax=self._vmax, alpha=alpha,
                        channel_order=self.frame_order)

    @property
    def verdict(self) -> str:
        if self.alert:
            return self.alert
        return "unknown" if self.is_anomalous is None else ("anomalous" if self.is_anomalous else "good")

    def to_dict(self) -> Dict[str, Any]:
        return {"frame": self.frame_index, "name": self.name, "timestamp": round(self.timestamp, 6),
                "score": self.score, "normalized_score": self.normalized_score, "threshold": self.threshold,
                "is_anomalous": self.is_anomalous, "latency_ms": round(self.latency_ms, 3), "alert": self.alert,
                "model_sha256": self.model_sha256}

    def __repr__(self) -> str:
        return (f"Result(frame_index={self.frame_index}, score={self.score:.6g}, verdict={self.verdict}, "
                f"latency_ms={self.latency_ms:.2f})")


__all__ = ["Result"]
