"""`--image-size auto`: the model's input size from the training images themselves, so that wide parts are not
squeezed into a square (a 460x1130 photograph resized to 256x256 is distorted 2.5x, and every camera frame
after it too).

The size keeps the images' median aspect ratio at a pixel budget (``auto`` = 256 x 256 pixels, ``auto:S`` =
S x S pixels), each side rounded to the method's size multiple. OpenCV reads the images (up to 32, evenly
spread); numpy for the rest.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from runtime.frames import aspect_size
from imagesets.samples import Sample
from imagesets.subsets import spread
from imagesets.errors import ConfigError, DataError

DEFAULT_SIDE = 256


def is_auto(text: "str | None") -> bool:
    return isinstance(text, str) and text.strip().lower().startswith("auto")


def budget_side(text: str) -> int:
    """'auto' -> 256; 'auto:320' -> 320."""
    s = text.strip().lower()
    if s == "auto":
        return DEFAULT_SIDE
    try:
        side = int(s.split(":", 1)[1]) if s.startswith("auto:") else -1
    except ValueError:
        side = -1
    if side <= 0:
        raise ConfigError(f"--image-size {text!r}: give auto, auto:S (S x S pixels, e.g. auto:320), N or HxW")
    return side


def auto_image_size(samples: Sequence[Sample], multiple: int, text: str = "auto") -> Tuple[int, int]:
    """The input size for `samples` (see the module doc)."""
    side = budget_side(text)
    aspects = []
    for s in spread(list(samples), 32):
        img = cv2.imread(str(s.path), cv2.IMREAD_UNCHANGED)
        if img is not None and img.shape[0] > 0:
            aspects.append(img.shape[1] / img.shape[0])
    if not aspects:
        raise DataError("--image-size auto: none of the training images could be read")
    return aspect_size(float(np.median(aspects)), side * side, multiple)


__all__ = ["is_auto", "budget_side", "auto_image_size"]
