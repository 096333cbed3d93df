"""The Inspector: frames in, verdicts out, on whichever backend fits the artifact and the machine.

    insp = Inspector("model.onnx")                 # reads model.json, checks the sha256, picks a backend
    r = insp.inspect(frame_bgr)                    # Result: score, is_anomalous, anomaly_map, overlay(), ...
    for r in insp.stream("rtsp://cam/1"): ...      # capture thread, reconnects, drops counted

Frames are numpy uint8 (H, W, 3) in `frame_order` (default BGR, OpenCV's order), or grayscale (H, W) /
(H, W, 1) (replicated), or (H, W, 4) (alpha dropped). Frames of another size are resized on the host to the
manifest's input size (INTER_AREA to shrink, INTER_LINEAR to enlarge) and put in the manifest's channel order;
everything else (scaling, normalisation, the model, scoring) happens in the graph.

Threads: one Inspector may be shared by several threads. Each thread prepares its frames in its own buffer
(thread-local), frame indices come from a locked counter, and the backend runs calls concurrently where its
library allows it (ONNX Runtime; OpenVINO with one infer request per caller) or one at a time under a lock
(TensorRT, torch). `close()` is final and safe from any thread: it stops the Inspector's streams, frees the
model, and a later `inspect()` raises RuntimeInspectError instead of loading the model again.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from runtime.backends import BackendChoice, create_backend, select_backend
from runtime.errors import BatchFrameError, FrameError, ManifestError, RuntimeInspectError
from runtime.manifest import (ARTIFACT_KINDS, Manifest, artifact_path_for, load_manifest, manifest_path_for,
                              verify_artifact)
from runtime.overlay import overlay as _overlay
from runtime.sources import FrameSource
from runtime.stream import Stream

log = logging.getLogger("runtime.inspector")

FRAME_ORDERS = ("BGR", "RGB")
#: a frame whose aspect ratio differs from the model's by more than this factor, or that is enlarged by more
#: than this factor in a dimension, is warned about (once per frame size): the model sees a distorted image
DISTORTION_WARN = 2.0


class Result:
    """The verdict on one frame.

    - `score`: the image anomaly score (higher = more anomalous).
    - `threshold`: the threshold used (the Inspector's, else the manifest's), or None.
    - `is_anomalous`: score >= threshold; **None when no threshold is known** (neither given nor in the manifest:
      calibrate one with `python -m calibration.threshold` or pass `threshold=`), never a guess.
    - `normalized_score`: (score - good_mean) / (threshold - good_mean), 0 at the mean score of good images and
      1.0 at the threshold; None when the manifest has no normalisation.
    - `anomaly_map`: (H, W) float32 at the frame's size (resized from the model's map on first access);
      `raw_map` is the model's own (h, w) map.
    - `overlay(alpha)`: a heat map over the frame, colour scale from the manifest's normalisation when present.
    - `latency_ms` (host preparation + inference of the batch that carried the frame), `frame_index`,
      `timestamp` (seconds since the epoch: capture time for streams, call time for `inspect`), `name`
      (the file name for folder sources).
    """

    __slots__ = ("score", "threshold", "is_anomalous", "normalized_score", "raw_map", "frame", "frame_order",
                 "latency_ms", "frame_index", "timestamp", "name", "_vmin", "_vmax", "_map")

    def __init__(self, score: float, threshold: Optional[float], normalized_score: Optional[float],
                 raw_map: np.ndarray, frame: np.ndarray, frame_order: str, latency_ms: float, frame_index: int,
                 timestamp: float, name: str = "", vmin: Optional[float] = None, vmax: Optional[float] = None):
        self.score = float(score)
        self.threshold = threshold
        self.is_anomalous: Optional[bool] = None if threshold is None else bool(self.score >= threshold)
        self.normalized_score = normalized_score
        self.raw_map = raw_map
        self.frame = frame
        self.frame_order = frame_order
        self.latency_ms = float(latency_ms)
        self.frame_index = int(frame_index)
        self.timestamp = float(timestamp)
        self.name = name
        self._vmin = vmin
        self._vmax = vmax
        self._map: Optional[np.ndarray] = None

    @property
    def anomaly_map(self) -> np.ndarray:
        if self._map is None:
            h, w = self.frame.shape[:2]
            m = self.raw_map
            self._map = m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        return self._map

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """Heat map over the frame, (H, W, 3) uint8 in the frame's channel order."""
        frame = self.frame[:, :, :3] if self.frame.ndim == 3 and self.frame.shape[2] == 4 else self.frame
        return _overlay(np.ascontiguousarray(frame), self.raw_map, vmin=self._vmin, vmax=self._vmax, alpha=alpha,
                        channel_order=self.frame_order)

    @property
    def verdict(self) -> str:
        return "unknown" if self.is_anomalous is None else ("anomalous" if self.is_anomalous else "good")

    def to_dict(self) -> Dict[str, Any]:
        return {"frame": self.frame_index, "name": self.name, "timestamp": round(self.timestamp, 6),
                "score": self.score, "normalized_score": self.normalized_score, "threshold": self.threshold,
                "is_anomalous": self.is_anomalous, "latency_ms": round(self.latency_ms, 3)}

    def __repr__(self) -> str:
        return (f"Result(frame_index={self.frame_index}, score={self.score:.6g}, verdict={self.verdict}, "
                f"latency_ms={self.latency_ms:.2f})")


def _kind_of(path: str) -> Optional[str]:
    ext = os.path.splitext(path)[1].lower()
    for kind, exts in ARTIFACT_KINDS.items():
        if ext in exts:
            return kind
    return None


class Inspector:
    """Loads an exported model with its manifest and runs frames through it.

    `model`: NAME.onnx / NAME.engine / NAME.plan / NAME.xml (with NAME.json beside it) or NAME.json.
    `backend`: "auto" or a name (`runtime.backends.REGISTRY`); `device`: "auto", "cpu" or "cuda".
    `threshold`: overrides the manifest's. `frame_order`: channel order of the frames you pass ("BGR" for
    OpenCV cameras and cv2.imread, "RGB" for PIL / scikit-image). `verify`: check the artifact's sha256.
    `backend_options` go to the backend (e.g. threads=, providers=, cuda_graph=, run_dir=).
    """

    def __init__(self, model: Union[str, "os.PathLike[str]"], backend: str = "auto", device: str = "auto",
                 threshold: Optional[float] = None, frame_order: str = "BGR", verify: bool = True,
                 warmup: bool = True, backend_options: Optional[Mapping[str, Any]] = None):
        path = os.fspath(model)
        if frame_order not in FRAME_ORDERS:
            raise RuntimeInspectError(f"frame_order must be 'BGR' or 'RGB', got {frame_order!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            raise RuntimeInspectError(f"threshold must be a number, got {threshold!r}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise RuntimeInspectError(f"threshold must be a finite number, got {threshold!r}: every score would be "
                                      f"judged the same way; pass the calibrated value or none")
        if os.path.isdir(path):
            raise RuntimeInspectError(f"model {path} is a directory: give the .onnx / .engine file inside it (the "
                                      f"one with a .json manifest beside it)")
        if not os.path.isfile(path):
            raise RuntimeInspectError(f"model {path} does not exist: give the .onnx or .engine written by "
                                      f"`python -m export.onnx` / `python -m export.trt`")
        self.manifest: Manifest = load_manifest(path)
        self.artifact_path = artifact_path_for(path, self.manifest) if path.lower().endswith(".json") else path
        self.manifest_path = manifest_path_for(path)
        kind = _kind_of(self.artifact_path)
        if kind != self.manifest.artifact_kind:
            raise ManifestError(f"{self.manifest_path} says artifact_kind {self.manifest.artifact_kind!r} but "
                                f"{self.artifact_path} is {kind or 'of an unknown kind'}: give the matching pair "
                                f"of files")
        if os.path.basename(self.artifact_path) != self.manifest.artifact:
            log.warning("%s describes %r but sits beside %s (renamed?); the sha256 check decides",
                        self.manifest_path, self.manifest.artifact, os.path.basename(self.artifact_path))
        if verify:
            verify_artifact(self.artifact_path, self.manifest)
        self.frame_order = frame_order
        self.choice: BackendChoice = select_backend(self.manifest.artifact_kind, backend, device)
        self.backend: str = self.choice.name
        self.device: str = self.choice.device
        self.backend_reason: str = self.choice.reason
        log.info("backend %s on %s: %s", self.backend, self.device, self.backend_reason)
        self._backend = create_backend(self.backend, self.artifact_path, self.manifest, device=self.device,
                                       **dict(backend_options or {}))
        self._backend.load()
        self.threshold: Optional[float] = (float(threshold) if threshold is not None else
                                           (float(self.manifest.threshold.value) if self.manifest.threshold else None))
        norm = self.manifest.normalization
        self._good_mean: Optional[float] = None
        if norm is not None and self.threshold is not None and self.threshold > float(norm.good_mean):
            self._good_mean = float(norm.good_mean)
        self._local = threading.local()  # per-thread frame buffer, grown to the largest batch that thread used
        self._lock = threading.Lock()  # the frame counter, `_closed`, the stream set
        self._count = 0
        self._closed = False
        self._streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()
        self._warned_sizes: set = set()
        if warmup:
            self._backend.warmup(iterations=1)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the frames the model takes; other sizes are resized on the host."""
        return self.manifest.input_size

    @property
    def backend_description(self) -> str:
        return self._backend.describe()

    @property
    def runner(self) -> Any:
        """The backend object (runtime.backends.base.Backend) for direct `infer` calls."""
        return self._backend

    # -- frames ---------------------------------------------------------------------------------------
    def _buffer(self, n: int) -> np.ndarray:
        """This thread's (n, H, W, 3) buffer: never shared between threads (two callers would overwrite each
        other's frames between preparation and inference)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < n:
            h, w = self.input_size
            buf = self._local.buf = np.empty((n, h, w, 3), np.uint8)
        return buf[:n]

    def _warn_distortion(self, ih: int, iw: int) -> None:
        """Warn once per frame size when resizing distorts the frame (aspect ratio, or a large enlargement)."""
        if (ih, iw) in self._warned_sizes or len(self._warned_sizes) > 64:
            return
        h, w = self.input_size
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
                        "crop or pad frames to the model's size", iw, ih, w, h, " and ".join(why))

    def _prepare_into(self, frame: Any, out: np.ndarray, order: str) -> np.ndarray:
        """Check `frame`, resize and reorder it into `out` (H, W, 3); returns the frame as given (for overlays)."""
        if not isinstance(frame, np.ndarray):
            raise FrameError(f"a frame must be a numpy array (H, W, 3) uint8, got {type(frame).__name__}")
        if frame.size == 0:
            raise FrameError(f"empty frame (shape {frame.shape}): the camera or decoder returned no image")
        if frame.dtype != np.uint8:
            hint = ("scale it: (frame >> 8).astype(np.uint8)" if frame.dtype == np.uint16 else
                    "scale it: (frame * 255).clip(0, 255).astype(np.uint8)" if frame.dtype.kind == "f" else
                    "convert it to uint8")
            raise FrameError(f"frame dtype is {frame.dtype}, expected uint8: {hint}")
        gray = False
        img = frame
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.ndim == 2:
            gray = True
        elif img.ndim == 3 and img.shape[2] == 4:
            img = np.ascontiguousarray(img[:, :, :3])
        elif not (img.ndim == 3 and img.shape[2] == 3):
            raise FrameError(f"frame shape {frame.shape} is not (H, W, 3), (H, W, 4), (H, W) or (H, W, 1)")
        h, w = self.input_size
        ih, iw = img.shape[:2]
        swap = not gray and order != self.manifest.input.channel_order
        if (ih, iw) != (h, w):
            self._warn_distortion(ih, iw)
            interp = cv2.INTER_AREA if (ih >= h and iw >= w) else cv2.INTER_LINEAR
            if gray or swap:
                img = cv2.resize(img, (w, h), interpolation=interp)
            else:
                cv2.resize(img, (w, h), dst=out, interpolation=interp)
                return frame
        if gray:
            out[...] = img[:, :, None]
        elif swap:
            np.copyto(out, img[:, :, ::-1])
        else:
            np.copyto(out, img)
        return frame

    def _run(self, frames: Sequence[Any], order: str, indices: Sequence[int], stamps: Sequence[float],
             names: Sequence[str], extra: Optional[Mapping[str, np.ndarray]] = None,
             on_bad: Optional[Callable[[int, FrameError], None]] = None) -> List[Result]:
        if self._closed:
            raise RuntimeInspectError(f"this Inspector ({self.artifact_path}) is closed: create a new one")
        t0 = time.perf_counter()
        buf = self._buffer(len(frames))
        kept: List[int] = []
        originals: List[np.ndarray] = []
        for i, frame in enumerate(frames):
            try:
                originals.append(self._prepare_into(frame, buf[len(kept)], order))
                kept.append(i)
            except FrameError as e:
                if on_bad is None:
                    raise
                on_bad(indices[i], e)
        if not kept:
            return []
        ex: Optional[Dict[str, np.ndarray]] = None
        if extra:
            declared = {e.name: len(e.shape) for e in self.manifest.extra_inputs}
            ex = {}
            for k, v in extra.items():
                arr = np.asarray(v)
                batched = k in declared and arr.ndim == declared[k] + 1
                ex[k] = arr[kept] if batched and len(kept) != len(frames) else arr
        maps, scores = self._backend.infer(buf[:len(kept)], ex)
        latency = (time.perf_counter() - t0) * 1000.0
        vmin = vmax = None
        if self._good_mean is not None:
            vmin, vmax = self._good_mean, self.threshold
        results = []
        for j, i in enumerate(kept):
            score = float(scores[j])
            norm = None
            if self._good_mean is not None and self.threshold is not None:
                norm = (score - self._good_mean) / (self.threshold - self._good_mean)
            results.append(Result(score, self.threshold, norm, maps[j, 0], originals[j], order, latency, indices[i],
                                  stamps[i], names[i], vmin, vmax))
        return results

    def inspect(self, frame: np.ndarray, extra: Optional[Mapping[str, np.ndarray]] = None,
                frame_order: Optional[str] = None) -> Result:
        """One frame -> Result (FrameError on an empty, non-uint8 or mis-shaped frame)."""
        return self.inspect_batch([frame], extra=extra, frame_order=frame_order)[0]

    def inspect_batch(self, frames: Union[np.ndarray, Sequence[np.ndarray]],
                      extra: Optional[Mapping[str, np.ndarray]] = None,
                      frame_order: Optional[str] = None) -> List[Result]:
        """Several frames (a list, or an (N, H, W, 3) array) in one inference -> one Result each.

        A bad frame does not cost the others their results: the good ones are inspected, then BatchFrameError
        (a FrameError) names each bad frame's position and carries `results` (a Result or None per frame, in
        order) and `errors` ({position: FrameError})."""
        order = frame_order or self.frame_order
        if order not in FRAME_ORDERS:
            raise RuntimeInspectError(f"frame_order must be 'BGR' or 'RGB', got {order!r}")
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        if isinstance(frames, np.ndarray) or not isinstance(frames, (list, tuple)):
            raise FrameError(f"inspect_batch takes a list of frames or an (N, H, W, 3) array, got "
                             f"{getattr(frames, 'shape', type(frames).__name__)}")
        if not frames:
            raise FrameError("inspect_batch got no frames")
        now = time.time()
        n = len(frames)
        errors: Dict[int, FrameError] = {}
        results = self._run(frames, order, list(range(n)), [now] * n, [""] * n, extra,
                            on_bad=lambda i, e: errors.__setitem__(i, e))
        with self._lock:  # indices count inspected frames only: a refused frame takes none
            for r in results:
                r.frame_index = self._count
                self._count += 1
        if errors:
            if n == 1:
                raise errors[0]
            by_position: List[Optional[Result]] = [None] * n
            good = iter(results)
            for i in range(n):
                if i not in errors:
                    by_position[i] = next(good)
            raise BatchFrameError(errors, by_position)
        return results

    # -- streams ------------------------------------------------------------------------------------
    def stream(self, source: Union[int, str, "os.PathLike[str]", FrameSource], batch_size: int = 1,
               queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
               on_event: Optional[Callable[[Dict[str, Any]], None]] = None, **source_options: Any) -> "Stream":
        """Inspect frames from a camera index, URL, GStreamer pipeline, video file or image folder.

        Returns a Stream: iterate it for Results; it is a context manager and has `stop()`, `summary()`,
        `events`, `drops`. The source is opened now (SourceError when it cannot be). `source_options` go to
        `runtime.sources.open_source` (capture_factory=, max_reconnects=, backoff_s=, backoff_max_s=,
        frame_timeout=: seconds without a frame before a live source is reported stalled and reopened).
        `Inspector.close()` stops every stream still open; a stream that is dropped unfinished (`for r in
        insp.stream(url): break`) closes its source when its iterator is closed or collected."""
        if self._closed:
            raise RuntimeInspectError(f"this Inspector ({self.artifact_path}) is closed: create a new one")
        st = Stream(self, source, batch_size=batch_size, queue_size=queue_size, max_frames=max_frames,
                    reconnect=reconnect, on_event=on_event, **source_options)
        with self._lock:
            self._streams.add(st)
        return st

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop this Inspector's open streams and free the model; final, idempotent, safe from any thread."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for st in streams:
            st.stop()
        self._backend.close()

    def __enter__(self) -> "Inspector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Inspector({self.artifact_path!r}, backend={self.backend!r}, device={self.device!r}, "
                f"input_size={self.input_size}, threshold={self.threshold})")


__all__ = ["Inspector", "Result", "Stream", "FRAME_ORDERS"]
