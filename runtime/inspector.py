"""The Inspector: frames in, verdicts out, on whichever backend fits the artifact and the machine.

    insp = Inspector("model.onnx")                 # reads model.json, checks the sha256, picks a backend
    r = insp.inspect(frame_bgr)                    # Result: score, is_anomalous, anomaly_map, overlay(), ...
    for r in insp.stream("rtsp://cam/1"): ...      # capture thread, reconnects, drops counted

Frames are numpy uint8 (H, W, 3) in `frame_order` (default BGR, OpenCV's order), or grayscale (H, W) /
(H, W, 1) (replicated), or (H, W, 4) (alpha dropped). Frames of another size are resized on the host to the
manifest's input size (`runtime.frames`: INTER_AREA to shrink, INTER_LINEAR to enlarge, the rule training uses)
and put in the manifest's channel order; everything else (scaling, normalisation, the model, scoring) happens
in the graph. The verdict is a `runtime.result.Result`; a stream is a `runtime.stream.Stream`.

Threads: one Inspector may be shared by several threads. Each thread prepares its frames in its own buffer
(thread-local), frame indices come from a locked counter, and the backend runs calls concurrently where its
library allows it (ONNX Runtime; OpenVINO with one infer request per caller) or one at a time under a lock
(TensorRT, torch). `close()` is final and safe from any thread: it stops the Inspector's streams, frees the
model, and a later `inspect()` raises RuntimeInspectError instead of loading the model again.

Versions (`runtime.swap`): `swap(path)` serves a checked new version from the next batch on and `rollback()` the
previous one, without stopping; each Result names the version that judged it (`model_sha256`). A frame no good
part looks like (blank, non-finite or far-below-good score: `runtime.drift.frame_alert`) is never a pass.
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

import numpy as np

from runtime.backends import BackendChoice, create_backend, select_backend
from runtime.drift import DriftBand, frame_alert
from runtime.errors import BatchFrameError, FrameError, ManifestError, RuntimeInspectError
from runtime.frames import FRAME_ORDERS, FramePreparer
from runtime.manifest import (ARTIFACT_KINDS, Manifest, artifact_path_for, load_manifest, manifest_path_for,
                              verify_artifact)
from runtime.result import Result
from runtime.source_base import Frame
from runtime.sources import FrameSource
from runtime.stream import Stream
from runtime.threshold_check import implausible_threshold
from runtime.swap import SwapGate, rollback_model, swap_model

log = logging.getLogger("runtime.inspector")


def _kind_of(path: str) -> Optional[str]:
    ext = os.path.splitext(path)[1].lower()
    for kind, exts in ARTIFACT_KINDS.items():
        if ext in exts:
            return kind
    return None


def _finite_outputs(maps: np.ndarray, scores: np.ndarray) -> List[bool]:
    """Per frame of a batch: True when its score and every value of its map are finite."""
    ok = np.isfinite(scores)
    if np.isfinite(maps).all():
        return ok.tolist()
    return (ok & np.isfinite(maps.reshape(maps.shape[0], -1)).all(axis=1)).tolist()


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
        self._rule = self.manifest.verdict_rule(threshold)  # the score normalisation's one formula
        self.threshold: Optional[float] = self._rule.value if self._rule is not None else None
        if self.threshold is not None:
            doubt = implausible_threshold(self.threshold, self.manifest)
            if doubt:
                log.warning("%s: %s", self.manifest_path, doubt)
        self._frames = FramePreparer(self.input_size, self.manifest.input.channel_order)
        self._band = DriftBand.from_manifest(self.manifest, self.threshold)  # blank / out-of-range frames
        # Model versions (runtime.swap): what a swap loads the next version with, the gate that keeps a batch on
        # one version, the version that ran before (for rollback).
        self._load_args = {"backend": backend, "device": device, "frame_order": frame_order,
                           "backend_options": backend_options}
        self._gate = SwapGate()
        self._swap_lock = threading.Lock()
        self._previous: Optional[Dict[str, Any]] = None
        self._lock = threading.Lock()  # the frame counter, `_closed`, the stream set
        self._count = 0
        self._closed = False
        self._streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()
        if warmup:
            self._backend.warmup(iterations=1)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the frames the model takes; other sizes are resized on the host."""
        return self.manifest.input_size

    @property
    def drift_band(self) -> DriftBand:
        """The running version's good-score band (`runtime.drift`): streams compare their rolling scores with it."""
        return self._band

    @property
    def backend_description(self) -> str:
        return self._backend.describe()

    @property
    def runner(self) -> Any:
        """The backend object (runtime.backends.base.Backend) for direct `infer` calls."""
        return self._backend

    # -- frames ---------------------------------------------------------------------------------------
    def reserve(self, batch_size: int) -> None:
        """Allocate the calling thread's frame buffer for batches of up to `batch_size` now, not on the first
        frame (a stream calls it before its capture starts)."""
        self._frames.buffer(int(batch_size))

    def _run(self, frames: Sequence[Any], order: str, indices: Sequence[int], stamps: Sequence[float],
             names: Sequence[str], extra: Optional[Mapping[str, np.ndarray]] = None,
             on_bad: Optional[Callable[[int, FrameError], None]] = None) -> List[Result]:
        if self._closed:
            raise RuntimeInspectError(f"this Inspector ({self.artifact_path}) is closed: create a new one")
        with self._gate.reading():  # one version from the frames to the Results (runtime.swap)
            return self._run_version(frames, order, indices, stamps, names, extra, on_bad)

    def _run_version(self, frames: Sequence[Any], order: str, indices: Sequence[int], stamps: Sequence[float],
                     names: Sequence[str], extra: Optional[Mapping[str, np.ndarray]],
                     on_bad: Optional[Callable[[int, FrameError], None]]) -> List[Result]:
        t0 = time.perf_counter()
        report = None if on_bad is None else (lambda i, e: on_bad(indices[i], e))
        batch, kept = self._frames.stack(frames, order, report)
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
        maps, scores = self._backend.infer(batch, ex)
        latency = (time.perf_counter() - t0) * 1000.0
        rule = self._rule
        vmin = vmax = None
        if rule is not None and rule.normalization is not None:
            vmin, vmax = float(rule.normalization.good_mean), rule.value
        results = []
        finite = _finite_outputs(maps, scores)
        for j, i in enumerate(kept):
            if not finite[j]:  # never a verdict: NaN >= threshold is False, which would read as "good"
                err = FrameError(f"the model returned a non-finite score or map for frame {indices[i]} (score "
                                 f"{float(scores[j])}): no verdict; check the model (an FP16 overflow?) or the server")
                if report is None:
                    raise err
                report(i, err)
                continue
            score = float(scores[j])
            norm = rule.normalize(score) if rule is not None else None
            r = Result(score, self.threshold, norm, maps[j, 0], frames[i], order, latency, indices[i], stamps[i],
                       names[i], vmin, vmax)
            r.model_sha256 = self.manifest.sha256
            alert = frame_alert(np.asarray(frames[i]), score, self._band)
            if alert is not None:  # blank or far below every good part: never a silent pass
                r.set_alert(*alert)
            results.append(r)
        return results

    def inspect(self, frame: np.ndarray, extra: Optional[Mapping[str, np.ndarray]] = None,
                frame_order: Optional[str] = None) -> Result:
        """One frame -> Result (FrameError on an empty, non-uint8 or mis-shaped frame, and when the model returns
        a non-finite score or map: that is never a verdict)."""
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

    def inspect_frames(self, frames: Sequence[Frame], frame_order: Optional[str] = None,
                       on_bad: Optional[Callable[[int, FrameError], None]] = None) -> List[Result]:
        """Frames as a source delivers them (`runtime.sources.Frame`) in one inference: each Result keeps its
        frame's own index, timestamp and name. A bad frame is reported as on_bad(frame.index, error) and left
        out (without `on_bad` it raises FrameError); RuntimeInspectError once the Inspector is closed."""
        order = frame_order or self.frame_order
        if order not in FRAME_ORDERS:
            raise RuntimeInspectError(f"frame_order must be 'BGR' or 'RGB', got {order!r}")
        return self._run([f.image for f in frames], order, [f.index for f in frames], [f.timestamp for f in frames],
                         [f.name for f in frames], on_bad=on_bad)

    # -- streams ------------------------------------------------------------------------------------
    def stream(self, source: Union[int, str, "os.PathLike[str]", FrameSource], batch_size: int = 1,
               queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
               on_event: Optional[Callable[[Dict[str, Any]], None]] = None, **source_options: Any) -> "Stream":
        """Inspect frames from a camera index, URL, GStreamer pipeline, video file or image folder.

        Returns a Stream: iterate it for Results; it is a context manager and has `stop()`, `summary()`,
        `events`, `drops`, and `drift` (`runtime.drift.DriftMonitor`: `drift_window=` frames, default 200). The
        source is opened now (SourceError when it cannot be). `source_options` go to `runtime.sources.open_source`
        (capture_factory=, max_reconnects=, backoff_s=, backoff_max_s=, frame_timeout=: seconds without a frame
        before a live source is reported stalled and reopened).
        `Inspector.close()` stops every stream still open; a stream that is dropped unfinished (`for r in
        insp.stream(url): break`) closes its source when its iterator is closed or collected."""
        if self._closed:
            raise RuntimeInspectError(f"this Inspector ({self.artifact_path}) is closed: create a new one")
        st = Stream(self, source, batch_size=batch_size, queue_size=queue_size, max_frames=max_frames,
                    reconnect=reconnect, on_event=on_event, **source_options)
        with self._lock:
            self._streams.add(st)
        return st

    # -- model versions ---------------------------------------------------------------------------------
    def swap(self, model: Union[str, "os.PathLike[str]"], key: Optional[bytes] = None) -> Dict[str, Any]:
        """Serve the new version `model` from the next batch on, after checking it (`runtime.swap.swap_model`:
        manifest, sha256, the signature when `key` is given); returns the `model_swapped` event. SwapRefused
        when a check fails: the running version goes on."""
        return swap_model(self, model, key)

    def rollback(self) -> Dict[str, Any]:
        """Serve the version that ran before the last swap again (`runtime.swap.rollback_model`)."""
        return rollback_model(self)

    def _emit(self, event: Dict[str, Any]) -> None:
        """Send an Inspector event (a swap) to every open stream's events and sink."""
        with self._lock:
            streams = list(self._streams)
        for st in streams:
            st._record(event)

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
        if self._previous is not None:  # the version kept for rollback
            self._previous["_backend"].close()

    def __enter__(self) -> "Inspector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Inspector({self.artifact_path!r}, backend={self.backend!r}, device={self.device!r}, "
                f"input_size={self.input_size}, threshold={self.threshold})")


__all__ = ["Inspector", "Result", "Stream", "FRAME_ORDERS"]
