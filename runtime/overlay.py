"""Heat-map overlay of an anomaly map on its frame (shared by the runtime's Result and the benchmarks)."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def overlay(
    frame: np.ndarray,
    anomaly_map: np.ndarray,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    alpha: float = 0.5,
    channel_order: str = "RGB",
) -> np.ndarray:
    """Blend a JET heat map of `anomaly_map` (h, w) over `frame` (H, W, 3) uint8; returns (H, W, 3) uint8
    in the frame's own channel order. The map is resized to the frame; `vmin`/`vmax` fix the colour scale
    (default: the map's own range, which makes every map look "hot" somewhere: pass the manifest's
    normalisation for comparable colours)."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    amap = np.asarray(anomaly_map, dtype=np.float32).squeeze()
    if amap.ndim != 2:
        raise ValueError(f"anomaly_map must be 2-D after squeeze, got shape {np.shape(anomaly_map)}")
    h, w = frame.shape[:2]
    if amap.shape != (h, w):
        amap = cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
    lo = float(amap.min()) if vmin is None else float(vmin)
    hi = float(amap.max()) if vmax is None else float(vmax)
    scaled = np.clip((amap - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    heat_bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = heat_bgr if channel_order == "BGR" else heat_bgr[:, :, ::-1]
    out = cv2.addWeighted(frame.astype(np.uint8), 1.0 - alpha, heat, alpha, 0.0)
    return out
