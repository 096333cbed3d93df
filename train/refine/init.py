"""F2PAD's initialisation (Sec. III-E1/2): the backbone's binary mask M0, the inpainted X0, the optimised region.

The paper inpaints M0 with a pretrained masked autoencoder (MAE). No MAE weights can be had offline here (and
the official ones are CC-BY-NC), so X0 comes either from a masked-restoration net trained on the category's good
images (`init=learned`, `inpaint_net.py`, the offline stand-in for the MAE) or from OpenCV's classical
inpainting (Telea's fast marching method or Navier-Stokes), which needs no weights. Only the pixels of M0 dilated
by a disk are optimised; the backbone sees a crop around them with some context, aligned to its deepest stride.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from train.errors import ConfigError

INPAINT_FLAGS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def initial_mask(anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W) map -> bool M0 = map > threshold (the backbone's own binary mask)."""
    return np.asarray(anomaly_map) > float(threshold)


def disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(radius) + 1, 2 * int(radius) + 1))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), disk(radius)) > 0


def inpaint(image: np.ndarray, mask: np.ndarray, method: str = "telea", radius: int = 5) -> np.ndarray:
    """uint8 (H, W, 3) RGB with the bool (H, W) `mask` filled in from its surroundings -> uint8 (H, W, 3)."""
    if method not in INPAINT_FLAGS:
        raise ConfigError(f"inpaint method {method!r}: use one of {', '.join(INPAINT_FLAGS)}")
    if not mask.any():
        return image.copy()
    return cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, float(radius),
                       INPAINT_FLAGS[method])


def initial_image(image: np.ndarray, m0: np.ndarray, init: str, radius: int = 5, inpainter=None) -> np.ndarray:
    """X0: `image` with M0 filled by OpenCV (init telea | ns) or by the learned inpainter (init learned)."""
    if init == "learned":
        if inpainter is None:
            raise ConfigError("option init=learned needs a trained inpainter: pass --inpainter DIR (train one with "
                              "`python -m train.refine.inpainter`)")
        return inpainter.fill(image, m0)
    return inpaint(image, m0, init, radius)


def _aligned_span(lo: int, hi: int, total: int, align: int) -> Tuple[int, int]:
    """[lo, hi) grown to multiples of `align` inside [0, total) (total is a multiple of align)."""
    start = (max(0, lo) // align) * align
    stop = min(total, -(-min(total, hi) // align) * align)
    return start, max(stop, start + align)


def crop_window(region: np.ndarray, context: int, align: int) -> Tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of the bool (H, W) `region` grown by `context` pixels, with origin and
    size multiples of `align` (the image's size must be a multiple of it)."""
    h, w = region.shape
    if h % align or w % align:
        raise ConfigError(f"image size {h}x{w} is not a multiple of the backbone's stride {align}")
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return 0, h, 0, w
    y0, y1 = _aligned_span(int(ys.min()) - context, int(ys.max()) + 1 + context, h, align)
    x0, x1 = _aligned_span(int(xs.min()) - context, int(xs.max()) + 1 + context, w, align)
    return y0, y1, x0, x1
