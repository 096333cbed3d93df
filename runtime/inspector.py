"""The Inspector: frames in, verdicts out, on whichever backend fits the artifact and the machine.

    insp = Inspector("model.onnx")                 # reads model.json, checks the sha256, picks a backend
    r = insp.inspect(frame_bgr)                    # Result: score, is_anomalous, anomaly_map, overlay(), ...
    for r in insp.stream("rtsp://cam/1"): ...      # capture thread, reconnects, drops counted

Frames are numpy uint8 (H, W, 3) in `frame_order` (default BGR, OpenCV's order), or grayscale (H, W) /
(H, W, 1) (replicated), or (H, W, 4) (alpha dropped). Frames of another size are resized on the host to the
manifest's input size (INTER_AREA to shrink, INTER_LINEAR to enlarge) and put in the manifest's channel order;
everything else (scaling, normalisation, the model, scoring) happens in the graph.
"""
from __future__ import annotations

import logging
import numbers
import os
import queue
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from runtime.backends import BackendChoice, create_backend, select_backend
from runtime.errors import FrameError, ManifestError, RuntimeInspectError
from runtime.manifest import (ARTIFACT_KINDS, Manifest, artifact_path_for, load_manifest, manifest_path_for,
                              verify_artifact)
from runtime.overlay import overlay as _overlay
from runtime.sources import Frame, FrameReader, FrameSource, open_source

log = logging.getLogger("runtime.inspector")

FRAME_ORDERS = ("BGR", "RGB")


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
        h, w = self.input_size
        self._buf = np.empty((1, h, w, 3), np.uint8)  # grown once to the largest batch used
        self._count = 0
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
        if self._buf.shape[0] < n:
            self._buf = np.empty((n,) + self._buf.shape[1:], np.uint8)
        return self._buf[:n]

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
        """Several frames (a list, or an (N, H, W, 3) array) in one inference -> one Result each."""
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
        indices = list(range(self._count, self._count + n))
        self._count += n
        return self._run(frames, order, indices, [now] * n, [""] * n, extra)

    # -- streams ------------------------------------------------------------------------------------
    def stream(self, source: Union[int, str, "os.PathLike[str]", FrameSource], batch_size: int = 1,
               queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
               on_event: Optional[Callable[[Dict[str, Any]], None]] = None, **source_options: Any) -> "Stream":
        """Inspect frames from a camera index, URL, GStreamer pipeline, video file or image folder.

        Returns a Stream: iterate it for Results; it is a context manager and has `stop()`, `summary()`,
        `events`, `drops`. The source is opened now (SourceError when it cannot be). `source_options` go to
        `runtime.sources.open_source` (capture_factory=, max_reconnects=, backoff_s=, backoff_max_s=)."""
        return Stream(self, source, batch_size=batch_size, queue_size=queue_size, max_frames=max_frames,
                      reconnect=reconnect, on_event=on_event, **source_options)

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "Inspector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Inspector({self.artifact_path!r}, backend={self.backend!r}, device={self.device!r}, "
                f"input_size={self.input_size}, threshold={self.threshold})")


class Stream:
    """Iterable of Results from a frame source, with a capture thread (see `Inspector.stream`)."""

    def __init__(self, inspector: Inspector, source: Union[int, str, "os.PathLike[str]", FrameSource],
                 batch_size: int = 1, queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
                 on_event: Optional[Callable[[Dict[str, Any]], None]] = None, **source_options: Any):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise RuntimeInspectError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 0):
            raise RuntimeInspectError(f"max_frames must be a non-negative integer or None, got {max_frames!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise RuntimeInspectError(f"queue_size must be a positive integer, got {queue_size!r}")
        self.inspector = inspector
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.events: List[Dict[str, Any]] = []
        self._user_sink = on_event
        if isinstance(source, FrameSource):
            self.source = source
            if self.source.on_event is None:
                self.source.on_event = self._record
            self.source.open()
        else:
            self.source = open_source(source, reconnect=reconnect, on_event=self._record, **source_options)
        self.reader = FrameReader(self.source, queue_size=queue_size)
        self.frames = 0
        self.bad_frames = 0
        self.started: Optional[float] = None
        self.elapsed_s = 0.0
        self._stopped = False
        self._ended = False
        self._gen: Optional[Iterator[Result]] = None
        inspector._buffer(batch_size)  # allocate the batch buffer before the first frame
        if batch_size > 1:  # e.g. OpenVINO compiles its throughput model for batches: not on the first frame
            inspector.runner.warmup(iterations=1, batch=batch_size)

    # -- events -------------------------------------------------------------------------------------
    def _record(self, event: Dict[str, Any]) -> None:
        self.events.append(event)
        if self._user_sink is not None:
            self._user_sink(event)

    def _bad_frame(self, index: int, err: Exception) -> None:
        self.bad_frames += 1
        msg = f"frame {index} skipped: {err}"
        log.warning(msg)
        self._record({"event": "bad_frame", "message": msg, "time": time.time(), "index": index})

    @property
    def drops(self) -> int:
        """Frames dropped because inference fell behind a live source."""
        return self.reader.drops

    @property
    def reconnects(self) -> int:
        return int(getattr(self.source, "reconnects", 0))

    # -- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    def _next_frame(self, wait: bool) -> Optional[Frame]:
        """Next frame from the reader; None at the end; raises queue.Empty when `wait` is False and none is ready."""
        if not wait:
            return self.reader.get(timeout=0)
        while not self._stopped:
            try:
                return self.reader.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _collect(self) -> List[Frame]:
        items: List[Frame] = []
        limit = self.batch_size
        if self.max_frames is not None:
            limit = min(limit, self.max_frames - self.frames)
        while len(items) < limit and not self._ended and not self._stopped:
            # live: fill the batch with what is ready (never wait for the camera); files: fill it
            wait = not items or not self.source.live
            try:
                fr = self._next_frame(wait)
            except queue.Empty:
                break
            if fr is None:
                self._ended = True
                break
            if fr.image is None:  # corrupt file: reported by the source already
                self.bad_frames += 1
                continue
            items.append(fr)
        return items

    def _run(self) -> Iterator[Result]:
        self.reader.start()
        self.started = time.perf_counter()
        try:
            while not self._stopped:
                if self.max_frames is not None and self.frames >= self.max_frames:
                    return
                batch = self._collect()
                if not batch:
                    if self._ended or self._stopped:
                        return
                    continue
                results = self.inspector._run([f.image for f in batch], self.source.channel_order,
                                              [f.index for f in batch], [f.timestamp for f in batch],
                                              [f.name for f in batch], on_bad=self._bad_frame)
                for r in results:
                    self.frames += 1
                    self.elapsed_s = time.perf_counter() - self.started
                    yield r
        finally:
            self.stop()

    # -- stop -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop capturing and release the source (safe to call twice, from any thread)."""
        if self.started is not None:
            self.elapsed_s = time.perf_counter() - self.started
        self._stopped = True
        self.reader.stop()

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
        self.stop()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def summary(self) -> Dict[str, Any]:
        fps = self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {"source": self.source.description, "frames": self.frames, "bad_frames": self.bad_frames,
                "drops": self.drops, "reconnects": self.reconnects, "elapsed_s": round(self.elapsed_s, 3),
                "fps": round(fps, 2)}


__all__ = ["Inspector", "Result", "Stream", "FRAME_ORDERS"]
