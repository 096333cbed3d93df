"""Synthetic defects on calibration frames (numpy + OpenCV, seeded): what the network sees on a bad part.

Good images alone under-state the activation ranges: on a defect a restoration network's decoder can run far
beyond anything a good image produces (on the demo set, up to 30x the good-image maximum), and INT8 ranges
fitted to good images clip exactly the signal the inspection exists for. These frames are made from the
calibration (good training) images themselves, never from a test split: a patch of another image pasted in
(CutPaste), a solid blob, a noise patch, a scratch: small, simple stand-ins for what a defect does to a frame
(FAIR's own training corruptions, large CutPaste and Perlin textures, are `train.synthesis`). They measure
how far activations on defects overshoot the INT8 ranges, and drive the per-block sensitivity analysis.
"""
from __future__ import annotations

from typing import List

import cv2
import numpy as np

KINDS = ("patch", "blob", "noise", "scratch")


def _region(rng: np.random.Generator, h: int, w: int):
    rh = int(rng.integers(max(2, h // 10), max(3, h // 4)))
    rw = int(rng.integers(max(2, w // 10), max(3, w // 4)))
    y = int(rng.integers(0, h - rh + 1))
    x = int(rng.integers(0, w - rw + 1))
    return y, x, rh, rw


def add_defect(frame: np.ndarray, donor: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """One synthetic defect of `kind` on a copy of `frame` (uint8 H, W, 3); `donor` is another good frame."""
    out = frame.copy()
    h, w = out.shape[:2]
    y, x, rh, rw = _region(rng, h, w)
    if kind == "patch":
        sy, sx = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        patch = donor[sy:sy + rh, sx:sx + rw]
        if rng.random() < 0.5:
            patch = patch[::-1, ::-1]
        out[y:y + rh, x:x + rw] = patch
    elif kind == "blob":
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (x + rw // 2, y + rh // 2), (max(1, rw // 2), max(1, rh // 2)),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1)
        out[mask > 0] = rng.integers(0, 256, 3).astype(np.uint8)
    elif kind == "noise":
        region = out[y:y + rh, x:x + rw].astype(np.float32)
        region += rng.normal(0.0, 60.0, region.shape).astype(np.float32)
        out[y:y + rh, x:x + rw] = np.clip(region, 0, 255).astype(np.uint8)
    elif kind == "scratch":
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(out, p0, p1, colour, int(rng.integers(1, max(2, min(h, w) // 64 + 2))))
    else:
        raise ValueError(f"unknown defect kind {kind!r}; known: {', '.join(KINDS)}")
    return out


def with_defects(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """A copy of `frames` (N, H, W, 3) uint8 with one synthetic defect each, kinds in turn, deterministic."""
    rng = np.random.default_rng(seed)
    n = frames.shape[0]
    out: List[np.ndarray] = []
    for i in range(n):
        donor = frames[(i + 1 + int(rng.integers(0, max(1, n - 1)))) % n] if n > 1 else frames[i]
        out.append(add_defect(frames[i], donor, rng, KINDS[i % len(KINDS)]))
    return np.stack(out) if out else frames.copy()


__all__ = ["with_defects", "add_defect", "KINDS"]
