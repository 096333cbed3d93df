"""The message every sink sends for one verdict (JSON-able dict)."""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional


def verdict_message(camera: str, result: Any, seq: int, model_version: str = "",
                    threshold: Optional[float] = None) -> Dict[str, Any]:
    """`camera`'s verdict on one frame: `seq` counts this camera's messages from 0 (a gap is a lost message; frame
    numbers may skip frames the camera dropped), `time_read` is when the frame was read (seconds since the epoch),
    `time` when the verdict was made."""
    score = float(result.score)
    norm = result.normalized_score
    return {"camera": camera, "seq": int(seq), "frame": int(result.frame_index),
            "score": score if math.isfinite(score) else None, "verdict": result.verdict,
            "is_anomalous": result.is_anomalous,
            "normalized_score": None if norm is None or not math.isfinite(norm) else round(float(norm), 6),
            "threshold": result.threshold if threshold is None else threshold, "model_version": model_version,
            "time_read": float(result.timestamp), "time": time.time(), "latency_ms": round(result.latency_ms, 3)}


__all__ = ["verdict_message"]
