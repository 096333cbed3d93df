"""Synthetic defects for choosing F2PAD's settings without test labels: the demo set's defect painters
(`train.demo_data.make_defect`: scratch, blob, stain, missing) applied to a square window of a good image."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from train.errors import ConfigError


def paint_defect(image: np.ndarray, kind: str, window: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) good image -> (uint8 image with one defect, bool (H, W) mask). The painter draws in a
    `window` x `window` square at a random place (its sizes are fractions of that side)."""
    from train.demo_data import make_defect

    h, w = image.shape[:2]
    side = min(int(window), h, w)
    if side < 32:
        raise ConfigError(f"--window {window}: the defect window must be at least 32 pixels (and fit the image)")
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    tile = image[y:y + side, x:x + side].astype(np.float32) / 255.0
    painted, tile_mask = make_defect(tile, kind, rng)
    out = image.copy()
    out[y:y + side, x:x + side] = np.clip(painted * 255.0 + 0.5, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[y:y + side, x:x + side] = tile_mask
    return out, mask


def synthetic_set(good: Sequence[np.ndarray], count: int, window: int, seed: int = 0,
                  kinds: Optional[Sequence[str]] = None) -> List[Tuple[np.ndarray, np.ndarray, str]]:
    """`count` (image, mask, kind) triples: the kinds in turn, each on the next good image (cycling)."""
    from train.demo_data import DEFECT_TYPES

    if not good:
        raise ConfigError("no good images to paint synthetic defects into")
    kinds = list(kinds or DEFECT_TYPES)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(count)):
        kind = kinds[i % len(kinds)]
        image, mask = paint_defect(good[i % len(good)], kind, window, rng)
        out.append((image, mask, kind))
    return out
