"""Good images that score like defects, written out for a person to look at: a mislabelled part, a dirty lens,
or a real change of the line. Each gets an overlay PNG (frame | heat map on the threshold's scale) and one
entry in ``outliers.json`` (name, score, robust z, the threshold), so the decision what they are stays a
person's: remove them from the good set, or collect more of that kind and fit again.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from runtime.errors import writing
from runtime.files import atomic_write, write_json
from runtime.overlay import overlay


def _file_name(i: int, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(name))[0]).strip("_") or "frame"
    return f"{i:03d}_{stem}.png"


def write_outliers(folder: "str | os.PathLike", frames: np.ndarray, maps: np.ndarray, scores: Sequence[float],
                   z: Sequence[float], names: Sequence[str], indices: Sequence[int], channel_order: str,
                   good_mean: float, threshold: float) -> List[Dict[str, Any]]:
    """Overlays and ``outliers.json`` for `indices` of the scored good frames (in the model's channel order);
    returns the JSON entries. The colour scale runs from the good mean (blue) to the threshold (red)."""
    out = Path(folder)
    entries: List[Dict[str, Any]] = []
    with writing(f"the outlier report in {out}"):
        for rank, i in enumerate(sorted(indices, key=lambda j: -float(scores[j]))):
            frame = frames[i]
            heat = overlay(frame, maps[i], vmin=good_mean, vmax=threshold, channel_order=channel_order)
            panel = np.concatenate([frame, heat], axis=1)
            bgr = panel if channel_order == "BGR" else panel[:, :, ::-1]
            ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr))
            fname = _file_name(rank, names[i])
            if ok:
                atomic_write(out / fname, png.tobytes())
            entries.append({"image": names[i], "score": float(scores[i]), "robust_z": float(z[i]),
                            "overlay": fname if ok else None})
    write_json(out / "outliers.json", {"threshold": float(threshold), "good_mean": float(good_mean),
                                       "outliers": entries}, what=f"the outlier report in {out}")
    return entries


__all__ = ["write_outliers"]
