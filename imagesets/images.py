"""Reading and resizing images and masks: the one place where data-set files become arrays (training,
calibration and benchmarks read through it).

Conventions (the runtime and the manifest follow the same ones):
- images come back as ``uint8 (H, W, 3)`` **RGB**; grayscale is replicated to three channels, an alpha channel is
  dropped (not composited), 16-bit images are scaled to 8 bits (``round(v / 257)``), float images are taken as
  [0, 1] and clipped. EXIF orientation is **not** applied, so an image and its mask always share one geometry.
- masks come back as ``bool (H, W)``; any value > 0 (in any channel) is defect.
- resizing to the model's size uses ``cv2.INTER_AREA`` when the target is no larger than the source on both
  axes and ``cv2.INTER_LINEAR`` otherwise: the rule is the runtime's own (`runtime.frames.resize_to`, which
  the Inspector applies on the host before the frame enters the inspection graph, and the manifest records),
  so the pixels a model was trained on and the pixels it sees in production match. Masks are resized nearest-neighbour
  (``cv2.INTER_NEAREST_EXACT``: pixel-centre aligned like AREA/LINEAR, unlike plain ``INTER_NEAREST``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

from imagesets.errors import DataError
from runtime.frames import RESIZE_RULE, resize_interpolation, resize_to  # noqa: F401  (re-exported)
from runtime.sources import IMAGE_EXTENSIONS, is_image_file  # noqa: F401  (the toolkit's one list, re-exported)

PathLike = Union[str, os.PathLike]

#: The host-side resize rule (`runtime.frames.RESIZE_RULE`, re-exported) and the mask rule.
MASK_RESIZE_RULE = "nearest-exact"


def _decode(path: PathLike) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image file {p} does not exist; check the path or the data folder's layout")
    try:
        # np.fromfile + imdecode instead of imread: works with non-ASCII paths on every platform.
        buf = np.fromfile(str(p), dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except (cv2.error, OSError, ValueError):
        img = None
    if img is None or img.size == 0:
        raise DataError(f"image file {p} could not be decoded (corrupt or not an image); remove or replace it")
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype in (np.float32, np.float64, np.float16):
        return np.clip(np.nan_to_num(img.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.dtype == np.int8:
        return (img.astype(np.int16) + 128).astype(np.uint8)
    # int16 / int32 and the like: scale the full unsigned 16-bit range, clip the rest.
    return np.clip(img.astype(np.int64) // 257, 0, 255).astype(np.uint8)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)`` RGB. Raises :class:`DataError` naming the file when it is
    missing or cannot be decoded."""
    img = _to_uint8(_decode(path))
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    channels = img.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if channels == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise DataError(f"image file {path} has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)")


def read_mask(path: PathLike) -> np.ndarray:
    """Read a ground-truth mask as ``bool (H, W)``: any value > 0 is defect (in any colour channel; an alpha
    channel is ignored)."""
    m = _decode(path)
    if m.ndim == 3:
        m = m[:, :, :3] if m.shape[2] >= 3 else m[:, :, :1]
        return np.any(m > 0, axis=2)
    return m > 0


def _check_size(size_hw: Tuple[int, int]) -> Tuple[int, int]:
    h, w = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise DataError(f"resize target {h}x{w} is not a positive size")
    return h, w


def resize_image(img: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W[, C])`` image to ``size_hw = (h, w)`` by the runtime's rule (`runtime.frames.resize_to`:
    AREA when shrinking, LINEAR otherwise); a same-size image is returned unchanged."""
    return resize_to(img, _check_size(size_hw))


def resize_mask(mask: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize a boolean ``(H, W)`` mask to ``size_hw`` with nearest-neighbour sampling; returns bool."""
    h, w = _check_size(size_hw)
    m = np.asarray(mask).astype(bool)
    if m.shape[:2] == (h, w):
        return m
    out = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return out > 0
