"""Many cameras, one process: `Line` runs the cameras of a `runtime.line.LineSpec` and feeds the verdicts to sinks.

- Every camera has its own source, capture thread and watchdog (`runtime.capture` through a `FrameReader`), its
  own counts, events and latency; a camera lost for good ends alone (its error is in its summary), the others go on.
- One Inspector per model: frames of the cameras that share a model are batched together (up to `batch_size`,
  taken round-robin from the cameras that have a frame ready, never waiting for a camera), one inference each.
- Every verdict becomes one message (`runtime.sinks.verdict_message`) put on every sink's bounded queue: a sink
  never slows the loop.

Iterating a Line yields `(camera_name, Result)`. Latency per camera is measured from the frame's read
(`Result.timestamp`) to its verdict; `summary()` accounts for every frame read: inspected + dropped (the camera
ran ahead of inference) + skipped (bad frame) + discarded at stop; `unaccounted` is what is left (0 expected).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from runtime.errors import RuntimeInspectError
from runtime.line import CameraSpec, LineSpec, check_line
from runtime.reader import FrameReader
from runtime.sinks import Sink, make_sinks, start_sinks, verdict_message
from runtime.sinks.base import percentile_ms
from runtime.source_base import Frame
from runtime.stream import EVENTS_KEPT

log = logging.getLogger("runtime.multicam")
LATENCIES_KEPT = 100_000


class _Reader(FrameReader):
    """A FrameReader that wakes the line's loop when it queues a frame and counts what its stop discards."""

    def __init__(self, source: Any, queue_size: int, ready: threading.Event):
        super().__init__(source, queue_size=queue_size)
        self.ready = ready
        self.discarded = 0

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.ready.set()

    def _drain(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except Exception:  # queue.Empty
                return
            self.discarded += int(isinstance(item, Frame))


class Camera:
    """One camera of a line: its source and reader, counts, events and latencies."""

    def __init__(self, spec: CameraSpec, inspector: Any, model_version: str):
        self.spec = spec
        self.name = spec.name
        self.inspector = inspector
        self.model_version = model_version
        self.threshold = spec.threshold if spec.threshold is not None else inspector.threshold
        self._rule: Any = None  # the verdict rule of a camera threshold, for the manifest it was made from
        self._rule_for: Any = None
        self.source: Any = None
        self.reader: Optional[_Reader] = None
        self.frames = self.bad_frames = self.anomalies = self.seq = self.taken = 0
        self.ended = False
        self.error: Optional[str] = None
        self.events: Deque[Dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.read_to_verdict: Deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
        self.infer_ms: Deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def apply_threshold(self, r: Any) -> None:
        """A camera threshold other than its Inspector's: the verdict and normalised score follow it."""
        t = self.spec.threshold
        if t is None or t == r.threshold:
            return
        manifest = self.inspector.manifest  # a swap replaces it: the rule is made again for the new version
        if self._rule_for is not manifest:
            self._rule, self._rule_for = manifest.verdict_rule(t), manifest  # the manifest's one formula
        rule = self._rule
        r.threshold = t
        r.is_anomalous = bool(r.score >= t)
        r.normalized_score = rule.normalize(r.score) if rule is not None else None

    def summary(self) -> Dict[str, Any]:
        reader = self.reader
        read = reader.read_count if reader is not None else 0
        drops = reader.drops if reader is not None else 0
        discarded = reader.discarded if reader is not None else 0
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        fps = (self.frames - 1) / span if span > 0 else 0.0
        out = {"camera": self.name, "source": getattr(self.source, "description", str(self.spec.source)),
               "model": self.spec.model, "threshold": self.threshold, "frames": self.frames,
               "anomalies": self.anomalies, "fps": round(fps, 2), "read": read, "dropped": drops,
               "bad_frames": self.bad_frames, "discarded_at_stop": discarded,
               "unaccounted": read - self.frames - drops - self.bad_frames - discarded,
               "lost_frames": int(getattr(self.source, "lost_frames", 0)),
               "reconnects": int(getattr(self.source, "reconnects", 0)),
               "stalls": int(getattr(self.source, "stalls", 0)),
               "read_to_verdict_p50_ms": percentile_ms(self.read_to_verdict, 50),
               "read_to_verdict_p99_ms": percentile_ms(self.read_to_verdict, 99),
               "inference_p50_ms": percentile_ms(self.infer_ms, 50),
               "inference_p99_ms": percentile_ms(self.infer_ms, 99)}
        if self.error:
            out["error"] = self.error
        return out


class Line:
    """The cameras of a LineSpec, one Inspector per model, verdicts to sinks (see the module doc)."""

    def __init__(self, spec: LineSpec, sinks: Sequence[Any] = (), backend: str = "auto", device: str = "auto",
                 queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
                 on_event: Optional[Callable[[Dict[str, Any]], None]] = None,
                 backend_options: Optional[Dict[str, Any]] = None, **source_options: Any):
        from runtime.inspector import Inspector  # noqa: PLC0415
        from runtime.sources import open_source  # noqa: PLC0415

        self.spec = check_line(spec)
        self.batch_size = int(spec.batch)
        self.max_frames = max_frames
        self._user_event = on_event
        self._ready = threading.Event()
        self._stopped = False
        self.started: Optional[float] = None
        self.elapsed_s = 0.0
        self.inspectors: Dict[str, Any] = {}
        self.cameras: List[Camera] = []
        self.sinks: List[Sink] = []
        try:
            for cam in spec.cameras:
                if cam.model not in self.inspectors:
                    self.inspectors[cam.model] = Inspector(cam.model, backend=spec.backend or backend,
                                                           device=spec.device or device,
                                                           backend_options=dict(backend_options or {}))
                insp = self.inspectors[cam.model]
                self.cameras.append(Camera(cam, insp, str(insp.manifest.sha256)[:12]))
            for insp in self.inspectors.values():
                insp.reserve(self.batch_size)
                if self.batch_size > 1:
                    insp.runner.warmup(iterations=1, batch=self.batch_size)
            self.sinks = make_sinks(list(spec.sinks) + list(sinks))
            start_sinks(self.sinks)
            # the cameras last: a live source's watchdog runs from its opening, and the sinks may take seconds
            for cam in self.cameras:
                cam.source = open_source(cam.spec.source, reconnect=reconnect, on_event=self._event_sink(cam),
                                         **source_options)
                cam.reader = _Reader(cam.source, queue_size, self._ready)
        except BaseException:
            self.close()
            raise
        for s in self.sinks:
            s.declare([c.name for c in self.cameras], {m: i.manifest.sha256[:12] for m, i in self.inspectors.items()})
        self._groups = [[c for c in self.cameras if c.inspector is insp] for insp in self.inspectors.values()]
        self._turn = 0

    # -- events ---------------------------------------------------------------------------------------
    def _event_sink(self, cam: Camera) -> Callable[[Dict[str, Any]], None]:
        def sink(event: Dict[str, Any]) -> None:
            event = dict(event, camera=cam.name)
            cam.events.append(event)
            if self._user_event is not None:
                self._user_event(event)

        return sink

    # -- the loop -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return self._run()

    def _take(self, cam: Camera) -> Optional[Frame]:
        """A ready frame of `cam`, or None (none ready, or the camera ended: then `cam.ended`)."""
        assert cam.reader is not None
        if self.max_frames is not None and cam.taken >= self.max_frames:
            self._end(cam)
            return None
        try:
            fr = cam.reader.get(timeout=0)
        except RuntimeInspectError as e:  # lost for good: this camera ends, the line goes on
            cam.error = str(e)
            self._event_sink(cam)({"event": "camera_failed", "message": str(e), "time": time.time()})
            self._end(cam)
            return None
        except Exception:  # queue.Empty: nothing ready
            return None
        if fr is None:
            self._end(cam)
            return None
        cam.taken += 1
        if fr.image is None:
            cam.bad_frames += 1
            return None
        return fr

    def _gather(self, group: List[Camera]) -> List[Tuple[Camera, Frame]]:
        """Up to batch_size frames, one camera at a time round-robin, from the cameras that have one ready."""
        batch: List[Tuple[Camera, Frame]] = []
        live = [c for c in group if not c.ended]
        start = self._turn % max(1, len(live))
        self._turn += 1
        order = live[start:] + live[:start]
        while order and len(batch) < self.batch_size:
            nxt = []
            for cam in order:
                if len(batch) >= self.batch_size:
                    break
                fr = self._take(cam)
                if fr is not None:
                    batch.append((cam, fr))
                    nxt.append(cam)
            order = nxt
        return batch

    def _infer(self, batch: List[Tuple[Camera, Frame]]) -> List[Tuple[Camera, Any]]:
        insp = batch[0][0].inspector
        frames = [Frame(i, fr.timestamp, fr.image, fr.name) for i, (_c, fr) in enumerate(batch)]

        def bad(i: int, err: Exception) -> None:
            cam = batch[i][0]
            cam.bad_frames += 1
            self._event_sink(cam)({"event": "bad_frame", "message": f"frame {batch[i][1].index} skipped: {err}",
                                   "time": time.time(), "index": batch[i][1].index})

        results = insp.inspect_frames(frames, batch[0][0].source.channel_order, on_bad=bad)
        now = time.time()
        out = []
        for r in results:
            cam, fr = batch[r.frame_index]
            r.frame_index = fr.index
            cam.apply_threshold(r)
            cam.frames += 1
            cam.anomalies += int(bool(r.is_anomalous))
            cam.read_to_verdict.append(max(0.0, now - fr.timestamp))
            cam.infer_ms.append(r.latency_ms / 1000.0)
            t = time.perf_counter()
            cam.first = t if cam.first is None else cam.first
            cam.last = t
            message = verdict_message(cam.name, r, cam.seq, cam.model_version, cam.threshold)
            cam.seq += 1
            for s in self.sinks:
                s.put(message)
            out.append((cam, r))
        return out

    def _run(self) -> Iterator[Tuple[str, Any]]:
        for cam in self.cameras:
            assert cam.reader is not None
            cam.reader.start()
        self.started = time.perf_counter()
        try:
            while not self._stopped:
                self._ready.clear()  # before looking: a frame queued meanwhile sets it again
                busy = False
                for group in self._groups:
                    batch = self._gather(group)
                    if not batch:
                        continue
                    busy = True
                    try:
                        done = self._infer(batch)
                    except RuntimeInspectError:
                        if self._stopped:
                            return
                        raise
                    for cam, r in done:
                        self.elapsed_s = time.perf_counter() - self.started
                        yield cam.name, r
                if all(c.ended for c in self.cameras):
                    return
                if not busy:
                    self._ready.wait(0.1)
        finally:
            self.stop()

    # -- end ------------------------------------------------------------------------------------------
    def _end(self, cam: Camera) -> None:
        if not cam.ended:
            cam.ended = True
            if cam.reader is not None:
                cam.reader.stop()

    def stop(self) -> None:
        """Stop every camera (final, idempotent, any thread); the sinks keep delivering until `close()`."""
        if self.started is not None and not self._stopped:
            self.elapsed_s = time.perf_counter() - self.started
        self._stopped = True
        for cam in self.cameras:
            if cam.reader is not None:
                cam.reader.stop()
            elif cam.source is not None:
                cam.source.close()

    def close(self) -> None:
        """Stop, deliver what the sinks hold (each up to its drain time), free the models."""
        self.stop()
        for s in self.sinks:
            s.close()
        for insp in self.inspectors.values():
            insp.close()

    def __enter__(self) -> "Line":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def summary(self) -> Dict[str, Any]:
        frames = sum(c.frames for c in self.cameras)
        return {"cameras": [c.summary() for c in self.cameras], "sinks": [s.stats() for s in self.sinks],
                "frames": frames, "elapsed_s": round(self.elapsed_s, 3),
                "fps": round(frames / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0,
                "backends": sorted({f"{i.backend} ({i.device})" for i in self.inspectors.values()})}


__all__ = ["Camera", "Line"]
