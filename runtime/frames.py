"""Host frame preparation: the checks, the resize rule, the channel order and the batch a frame is stacked into
before it enters the inspection graph (everything else happens inside the graph).

One resize rule for the toolkit (training reads images through `imagesets`, which calls `resize_to` too, so the
pixels a model was trained on and the pixels it sees in production are the same): ``cv2.INTER_AREA`` when no
axis grows, ``cv2.INTER_LINEAR`` otherwise. The manifest records the rule as `RESIZE_RULE`.

`FramePreparer` fills one thread's (N, H, W, 3) uint8 buffer per batch: thread-local, because two threads
sharing an Inspector would otherwise overwrite each other's frames between preparation and inference.
numpy + OpenCV only.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtime.errors import FrameError
from runtime.manifest import CHANNEL_ORDERS, HOST_RESIZE

log = logging.getLogger("runtime.frames")

#: The channel orders a caller may hand frames in: those a model may take (the manifest's).
FRAME_ORDERS = CHANNEL_ORDERS
#: The host resize rule, as the manifest records it (`input.host_resize`).
RESIZE_RULE = HOST_RESIZE
#: a frame whose aspect ratio differs from the model's by more than this factor, or that is enlarged by more
#: than this factor in a dimension, is warned about (once per frame size): the model sees a distorted image
DISTORTION_WARN = 2.0


def resize_interpolation(src_hw: Tuple[int, int], dst_hw: Tuple[int, int]) -> int:
    """The OpenCV interpolation for resizing `src_hw` to `dst_hw`: AREA when shrinking (no axis grows), LINEAR
    otherwise (AREA would alias nothing away when enlarging and LINEAR aliases when shrinking)."""
    return cv2.INTER_AREA if dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1] else cv2.INTER_LINEAR


def resize_to(img: np.ndarray, size_hw: Tuple[int, int], dst: Optional[np.ndarray] = None) -> np.ndarray:
    """`img` (H, W[, C]) resized to `size_hw` = (h, w) by the toolkit's rule; a same-size image comes back
    unchanged (or copied into `dst`). With `dst` (h, w, C) the result is written there and `dst` returned."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if img.shape[:2] == (h, w):
        if dst is None:
            return img
        np.copyto(dst, img.reshape(dst.shape))
        return dst
    interp = resize_interpolation(img.shape[:2], (h, w))
    if dst is not None and img.ndim == 3 and img.shape[2] == dst.shape[-1]:
        cv2.resize(img, (w, h), dst=dst, interpolation=interp)
        return dst
    out = cv2.resize(img, (w, h), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[:, :, None]
    if dst is None:
        return out
    np.copyto(dst, out.reshape(dst.shape))
    return dst


def check_frame(frame: Any) -> Tuple[np.ndarray, bool]:
    """A caller's frame as (pixels, is_gray): (H, W, 3) colour or (H, W) gray, uint8. An alpha channel is
    dropped, a (H, W, 1) frame is gray; anything else raises FrameError saying how to fix it."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"a frame must be a numpy array (H, W, 3) uint8, got {type(frame).__name__}")
    if frame.size == 0:
        raise FrameError(f"empty frame (shape {frame.shape}): the camera or decoder returned no image")
    if frame.dtype != np.uint8:
        hint = ("scale it: (frame >> 8).astype(np.uint8)" if frame.dtype == np.uint16 else
                "scale it: (frame * 255).clip(0, 255).astype(np.uint8)" if frame.dtype.kind == "f" else
                "convert it to uint8")
        raise FrameError(f"frame dtype is {frame.dtype}, expected uint8: {hint}")
    img = frame
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img, True
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3]), False
    if img.ndim == 3 and img.shape[2] == 3:
        return img, False
    raise FrameError(f"frame shape {frame.shape} is not (H, W, 3), (H, W, 4), (H, W) or (H, W, 1)")


def rgb_to_model_order(frames_rgb: np.ndarray, channel_order: str) -> np.ndarray:
    """RGB frames (…, 3), as the data readers return them, in a model's input channel order (the manifest's
    `input.channel_order`), C-contiguous: what `Backend.infer` takes. The one place tools that read image
    files (calibration, accuracy, latency) turn them into the order a BGR-exported model expects."""
    if channel_order == "RGB":
        return frames_rgb
    if channel_order != "BGR":
        raise FrameError(f"channel order {channel_order!r}: expected 'RGB' or 'BGR'")
    return np.ascontiguousarray(frames_rgb[..., ::-1])


def aspect_size(aspect: float, pixels: int, multiple: int = 16) -> Tuple[int, int]:
    """(h, w) with w / h close to `aspect` and h * w close to `pixels`, both multiples of `multiple`: a model
    size that keeps a frame's aspect ratio (`python -m train --image-size auto` uses it too)."""
    m = max(1, int(multiple))
    h = max(m, int(round((pixels / aspect) ** 0.5 / m)) * m)
    w = max(m, int(round((pixels * aspect) ** 0.5 / m)) * m)
    return h, w


class FramePreparer:
    """Turns callers' frames into the graph's input batch: (N, H, W, 3) uint8 at `size_hw` in `channel_order`."""

    def __init__(self, size_hw: Tuple[int, int], channel_order: str):
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.channel_order = channel_order
        self._local = threading.local()  # per-thread buffer, grown to the largest batch that thread used
        self._warned_sizes: set = set()

    def buffer(self, n: int) -> np.ndarray:
        """This thread's (n, H, W, 3) buffer (allocated or grown now; reused by later batches of <= n)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < n:
            h, w = self.size_hw
            buf = self._local.buf = np.empty((n, h, w, 3), np.uint8)
        return buf[:n]

    def _warn_distortion(self, ih: int, iw: int) -> None:
        """Warn once per frame size when resizing distorts the frame (aspect ratio, or a large enlargement)."""
        if (ih, iw) in self._warned_sizes or len(self._warned_sizes) > 64:
            return
        h, w = self.size_hw
        aspect = (iw / ih) / (w / h)
        enlarge = max(h / ih, w / iw)
        why = []
        if max(aspect, 1.0 / aspect) > DISTORTION_WARN:
            why.append(f"its aspect ratio changes {max(aspect, 1.0 / aspect):.1f}x")
        if enlarge > DISTORTION_WARN:
            why.append(f"it is enlarged {enlarge:.1f}x")
        if why:
            self._warned_sizes.add((ih, iw))
            log.warning("frame %dx%d is resized to the model's %dx%d and %s: the model sees a distorted image; "
                        "crop or pad frames to the model's size, or train it at the frames' aspect ratio "
                        "(python -m train --image-size %s, or --image-size auto)", iw, ih, w, h, " and ".join(why),
                        "%dx%d" % aspect_size(iw / ih, h * w))

    def prepare_into(self, frame: Any, out: np.ndarray, order: str) -> None:
        """Check `frame`, then resize and reorder it into `out` (H, W, 3)."""
        img, gray = check_frame(frame)
        if img.shape[:2] != self.size_hw:
            self._warn_distortion(*img.shape[:2])
        swap = not gray and order != self.channel_order
        if not gray and not swap:
            resize_to(img, self.size_hw, dst=out)
            return
        img = resize_to(img, self.size_hw)
        if gray:
            out[...] = img[:, :, None]
        else:
            np.copyto(out, img[:, :, ::-1])

    def stack(self, frames: Sequence[Any], order: str,
              on_bad: Optional[Callable[[int, FrameError], None]] = None) -> Tuple[np.ndarray, List[int]]:
        """Prepare `frames` into this thread's buffer: (batch of the good ones, their positions in `frames`).
        A bad frame raises FrameError, or with `on_bad` is reported as on_bad(position, error) and left out."""
        buf = self.buffer(len(frames))
        kept: List[int] = []
        for i, frame in enumerate(frames):
            try:
                self.prepare_into(frame, buf[len(kept)], order)
            except FrameError as e:
                if on_bad is None:
                    raise
                on_bad(i, e)
                continue
            kept.append(i)
        return buf[:len(kept)], kept


__all__ = ["FRAME_ORDERS", "RESIZE_RULE", "DISTORTION_WARN", "resize_interpolation", "resize_to", "check_frame",
           "aspect_size", "FramePreparer"]
