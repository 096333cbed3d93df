"""The hold-out rule shared by training (`--holdout`) and threshold calibration: the last ceil(f * n) good
training images in sorted path order are held out, so a threshold is fit on good images the model never saw."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

from train.data.samples import Sample
from train.errors import ConfigError


def split_holdout(samples: Sequence[Sample], fraction: float) -> Tuple[List[Sample], List[Sample]]:
    """(kept, held_out): the held-out part is the last ceil(fraction * n) samples by path (at least one)."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"--holdout must be a fraction in (0, 1], got {fraction}")
    ordered = sorted(samples, key=lambda s: str(s.path))
    k = max(1, int(math.ceil(float(fraction) * len(ordered))))
    return ordered[:-k], ordered[-k:]
