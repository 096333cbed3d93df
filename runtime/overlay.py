"""Heat-map overlay of an anomaly map on its frame (shared by the runtime's Result and the benchmarks)."""
from __future__ import annotations

import os
import re
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


def overlay_file_name(index: int, name: str = "", root: Optional[str] = None) -> str:
    """The PNG name of frame `index`'s overlay: ``frame_000012.png``, and for a frame read from a file also that
    file's path (relative to `root`, the folder source) with its separators as ``_``:
    ``frame_000012_scratch_003.png``. The index keeps the names unique and in stream order."""
    base = f"frame_{int(index):06d}"
    if not name:
        return base + ".png"
    rel = os.path.relpath(name, root) if root else os.path.basename(name)
    stem = os.path.splitext(rel)[0]
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("_.")
    return f"{base}_{safe}.png" if safe else base + ".png"
