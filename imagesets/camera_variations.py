"""Fit-time variations of the good images: what a camera changes between the photographs a model was fitted on
and the frames it judges (`python -m train --fit-augment jpeg,brightness,shift`).

A feature method's memory of "good" is exactly the images it was fitted on: frames from a camera that
compresses (MJPG, H.264), exposes a little differently, or sits a few pixels elsewhere score as unseen even on
a good part. Fitting on varied copies as well teaches the model that these changes are normal. Each image gets
`copies` extra versions, each with every named variation at a random, seeded strength:

- ``jpeg``: JPEG re-encoding at quality 30-90 (block and ringing artefacts of a compressed stream);
- ``brightness``: gain 0.85-1.15, offset +-10 grey levels, contrast 0.85-1.15 around the mean, gamma 0.8-1.25;
- ``shift``: a translation of up to `max_shift` pixels (4) in x and y, borders mirrored.

numpy and OpenCV only; deterministic for a seed.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from train.errors import ConfigError

KINDS = ("jpeg", "brightness", "shift")


def parse_kinds(text: "str | None") -> Tuple[str, ...]:
    """'jpeg,brightness,shift' -> ('jpeg', 'brightness', 'shift'); '' or None -> ()."""
    if not text:
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"--fit-augment {','.join(bad)}: unknown variation; choose from {','.join(KINDS)}")
    return kinds


def _jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(30, 91))
    ok, data = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1] if ok else img


def _brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(0.85, 1.15) + mean                 # contrast
    x = x * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10) / 255.0  # gain and offset
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.8, 1.25)             # gamma
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _shift(img: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    dx, dy = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REFLECT_101)


def vary(img: np.ndarray, kinds: Sequence[str], rng: np.random.Generator, max_shift: int = 4) -> np.ndarray:
    """One varied copy of an RGB uint8 (H, W, 3) image: shift, then brightness, then JPEG (a camera's order)."""
    out = img
    if "shift" in kinds:
        out = _shift(out, rng, max_shift)
    if "brightness" in kinds:
        out = _brightness(out, rng)
    if "jpeg" in kinds:
        out = _jpeg(np.ascontiguousarray(out), rng)
    return np.ascontiguousarray(out)


def with_variations(images: np.ndarray, kinds: Sequence[str], copies: int = 1, seed: int = 0,
                    max_shift: int = 4) -> np.ndarray:
    """The images followed by `copies` varied versions of each: uint8 (N * (1 + copies), H, W, 3)."""
    if not kinds:
        return images
    if copies < 1:
        raise ConfigError(f"--fit-augment-copies must be >= 1, got {copies}")
    rng = np.random.default_rng(seed)
    varied = [vary(img, kinds, rng, max_shift) for _ in range(copies) for img in images]
    return np.concatenate([images, np.stack(varied)], axis=0)


__all__ = ["KINDS", "parse_kinds", "vary", "with_variations"]
