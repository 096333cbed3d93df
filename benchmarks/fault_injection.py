"""Faulty inputs for the soak (`benchmarks.soak`): files a folder source meets on a plant's share, arrays a
camera SDK may hand over, a truncated video, and an on-disk model swap.

Each fault kind says what a correct runtime does with it: `"result"` (the frame is inspected, e.g. a grayscale
PNG) or `"skip"` (the frame is reported as a named skip and the stream goes on, e.g. a zero-byte file). The soak
records what really happened per kind; a frame that is neither a result nor a reported skip is "lost".
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from runtime.sources import Frame, FrameSource

# kind -> what a correct runtime does with it
FILE_FAULTS: Dict[str, str] = {
    "zero_byte": "skip",          # an empty file with an image name (a copy that failed)
    "truncated_jpeg": "either",   # the first 40 % of a JPEG: libjpeg may decode the top part or give up
    "text_as_image": "skip",      # a text file named .png
    "png_16bit": "result",        # 16-bit PNG: the folder reader decodes it to 8 bit
    "palette_png": "result",      # indexed colour
    "grayscale_png": "result",
    "bgra_png": "result",         # with an alpha channel
    "wrong_size": "result",       # not the model's size: resized on the host
}
ARRAY_FAULTS: Dict[str, str] = {
    "uint16_array": "skip",       # a 16-bit camera frame handed over without scaling
    "float_array": "skip",
    "empty_array": "skip",        # (0, 0, 3): a decoder that returned nothing
    "two_channel_array": "skip",
    "gray_array": "result",
    "bgra_array": "result",
    "wrong_size_array": "result",
}


def rss_bytes() -> int:
    """Resident memory of this process (VmRSS from /proc; 0 where there is no /proc)."""
    try:
        with open("/proc/self/status", "r", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def texture_frames(n: int, size: Tuple[int, int], seed: int = 0) -> List[np.ndarray]:
    """`n` BGR uint8 frames of `size` (h, w): crops of scikit-image's bundled brick texture at random places,
    so the model sees the kind of image it was trained on in the demo."""
    from skimage import data as skdata  # noqa: PLC0415

    tex = skdata.brick()  # (512, 512) uint8, shipped inside scikit-image
    h, w = size
    crop = 128
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, tex.shape[0] - crop, 2)
        patch = cv2.resize(tex[y:y + crop, x:x + crop], (w, h), interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR))
    return out


def _write_file_fault(kind: str, path_stem: str, frame: np.ndarray) -> str:
    """Write fault `kind` made from `frame`; returns the file's path."""
    if kind == "zero_byte":
        path = path_stem + ".png"
        open(path, "wb").close()
    elif kind == "truncated_jpeg":
        path = path_stem + ".jpg"
        ok, buf = cv2.imencode(".jpg", frame)
        data = buf.tobytes()
        with open(path, "wb") as f:
            f.write(data[: int(len(data) * 0.4)])
    elif kind == "text_as_image":
        path = path_stem + ".png"
        with open(path, "w", encoding="utf-8") as f:
            f.write("this is not an image\n")
    elif kind == "png_16bit":
        path = path_stem + ".png"
        cv2.imwrite(path, frame.astype(np.uint16) * 257)
    elif kind == "palette_png":
        from PIL import Image  # noqa: PLC0415

        path = path_stem + ".png"
        Image.fromarray(frame[:, :, ::-1].copy()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    elif kind == "grayscale_png":
        path = path_stem + ".png"
        cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    elif kind == "bgra_png":
        path = path_stem + ".png"
        cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    elif kind == "wrong_size":
        path = path_stem + ".png"
        h, w = frame.shape[:2]
        cv2.imwrite(path, cv2.resize(frame, (w * 3 + 7, max(h // 2, 1) + 3), interpolation=cv2.INTER_LINEAR))
    else:
        raise ValueError(f"unknown file fault {kind!r}; known: {', '.join(FILE_FAULTS)}")
    return path


def write_fault_folder(folder: str, frames: List[np.ndarray], count: int, every: int) -> Dict[str, str]:
    """Fill `folder` with `count` images (PNG, cycling through `frames`); every `every`-th is a fault, the kinds
    taken in turn. Returns {file path: fault kind or "clean"}, in the order the folder source reads them."""
    os.makedirs(folder, exist_ok=True)
    kinds = list(FILE_FAULTS)
    plan: Dict[str, str] = {}
    n_fault = 0
    for i in range(count):
        stem = os.path.join(folder, f"{i:06d}")
        frame = frames[i % len(frames)]
        if every > 0 and i % every == every - 1:
            kind = kinds[n_fault % len(kinds)]
            n_fault += 1
            plan[_write_file_fault(kind, stem + "_" + kind, frame)] = kind
        else:
            path = stem + ".png"
            cv2.imwrite(path, frame)
            plan[path] = "clean"
    return dict(sorted(plan.items()))


def write_video(path: str, frames: List[np.ndarray], count: int, fps: float = 30.0) -> int:
    """An MJPG .avi of `count` frames (cycling through `frames`); returns the number written."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MJPG video to {path}")
    for i in range(count):
        writer.write(frames[i % len(frames)])
    writer.release()
    return count


def truncate_copy(src: str, dst: str, keep: float = 0.5) -> int:
    """Copy the first `keep` of `src`'s bytes to `dst` (a video cut off by a full disk or a crash while
    copying); returns the frame count its header still claims (what a reader could know it lost)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    cap = cv2.VideoCapture(dst)
    claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return claimed


def _array_fault(kind: str, frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if kind == "uint16_array":
        return frame.astype(np.uint16) * 257
    if kind == "float_array":
        return frame.astype(np.float32) / 255.0
    if kind == "empty_array":
        return np.zeros((0, 0, 3), np.uint8)
    if kind == "two_channel_array":
        return np.ascontiguousarray(frame[:, :, :2])
    if kind == "gray_array":
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if kind == "bgra_array":
        return cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    if kind == "wrong_size_array":
        return cv2.resize(frame, (w + 13, h * 2), interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"unknown array fault {kind!r}; known: {', '.join(ARRAY_FAULTS)}")


class ArraySource(FrameSource):
    """A source that hands over numpy arrays as a camera SDK would, every `every`-th one a fault from
    ARRAY_FAULTS in turn. `plan[index] = (name, kind)` records what frame `index` was."""

    live = False
    description = "array source (camera SDK)"

    def __init__(self, frames: List[np.ndarray], count: int, every: int,
                 on_event: Optional[Callable[[Dict[str, Any]], None]] = None):
        super().__init__(on_event)
        self.frames = frames
        self.count = count
        self.every = every
        self.plan: Dict[int, Tuple[str, str]] = {}
        self._n_fault = 0

    def read(self) -> Optional[Frame]:
        i = len(self.plan)
        if i >= self.count:
            return None
        frame = self.frames[i % len(self.frames)]
        kind = "clean"
        if self.every > 0 and i % self.every == self.every - 1:
            kinds = list(ARRAY_FAULTS)
            kind = kinds[self._n_fault % len(kinds)]
            self._n_fault += 1
            frame = _array_fault(kind, frame)
        name = f"array_{i:06d}_{kind}"
        fr = self._next(frame, name=name)
        self.plan[fr.index] = (name, kind)
        return fr


def copy_model(model: str, folder: str) -> str:
    """Copy MODEL.onnx and MODEL.json into `folder` (the soak swaps files there, never the user's); returns
    the copy's .onnx path."""
    os.makedirs(folder, exist_ok=True)
    root = os.path.splitext(model)[0]
    dst = os.path.join(folder, os.path.basename(model))
    shutil.copyfile(model, dst)
    shutil.copyfile(root + ".json", os.path.splitext(dst)[0] + ".json")
    return dst


def model_variant(onnx_path: str, tag: str) -> Tuple[bytes, Dict[str, Any]]:
    """Bytes of a second model for the swap (same graph, a different doc string, so a different sha256) and
    its manifest dict (threshold set to a marker value), both in memory, not yet written."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    import onnx  # noqa: PLC0415

    model = onnx.load(onnx_path)
    model.doc_string = f"soak swap variant {tag}"
    data = model.SerializeToString()
    with open(os.path.splitext(onnx_path)[0] + ".json", "r", encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["threshold"] = {"value": 1.0e6, "rule": "user", "images": 0, "data": "soak swap marker",
                             "date": "2026-01-01", "normalization": None}
    return data, manifest


__all__ = ["FILE_FAULTS", "ARRAY_FAULTS", "rss_bytes", "texture_frames", "write_fault_folder", "write_video",
           "truncate_copy", "ArraySource", "copy_model", "model_variant"]
