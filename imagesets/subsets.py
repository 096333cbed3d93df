"""Deterministic subsets of the good training images, shared by training, `train.map_stats` and calibration.

The hold-out rule (`--holdout`): the last ceil(f * n) good training images in sorted path order are held out, so
a threshold is fit on good images the model never saw. `spread`: n evenly spaced images (first and last in)."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from imagesets.samples import Sample
from imagesets.errors import ConfigError


def split_holdout(samples: Sequence[Sample], fraction: float) -> Tuple[List[Sample], List[Sample]]:
    """(kept, held_out): the held-out part is the last ceil(fraction * n) samples by path (at least one)."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"--holdout must be a fraction in (0, 1], got {fraction}")
    ordered = sorted(samples, key=lambda s: str(s.path))
    k = max(1, int(math.ceil(float(fraction) * len(ordered))))
    return ordered[:-k], ordered[-k:]


def spread(samples: Sequence[Sample], n: Optional[int]) -> List[Sample]:
    """`n` evenly spaced samples (first and last included); all of them when n is None or >= len."""
    samples = list(samples)
    if n is None or n >= len(samples):
        return samples
    if n < 1:
        raise ConfigError(f"--images must be >= 1, got {n}")
    idx = np.unique(np.round(np.linspace(0, len(samples) - 1, int(n))).astype(int))
    return [samples[i] for i in idx]
