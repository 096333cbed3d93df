"""Tiny data sets on disk for the tests that read folders (MVTec layout)."""
from __future__ import annotations

import cv2
import numpy as np

def write_tiny_mvtec(root, size=48):
    """CATEGORY 'tiles' in the MVTec layout: 4 train good, 3 test good, 2 'scratch' and 2 'blob' with masks."""
    rng = np.random.default_rng(0)
    cat = root / "tiles"
    for split, kind, n in [("train", "good", 4), ("test", "good", 3), ("test", "scratch", 2), ("test", "blob", 2)]:
        (cat / split / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im = np.clip(120 + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            if kind != "good":
                m = np.zeros((size, size), np.uint8)
                if kind == "scratch":
                    m[10 + 5 * i : 13 + 5 * i, 5:40] = 255
                else:
                    m[20:30, 10 + 5 * i : 20 + 5 * i] = 255
                im[m > 0] = 250
                (cat / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(cat / "ground_truth" / kind / f"{i:03d}_mask.png"), m)
            cv2.imwrite(str(cat / split / kind / f"{i:03d}.png"), im)
    return root
