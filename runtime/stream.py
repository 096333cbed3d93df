"""A Stream: frames from a source, through a capture thread, inspected by an Inspector (`Inspector.stream`).

Lifetime: the capture thread and the source belong to the Stream and end with it, whatever way the consumer
leaves. `stop()`/`close()` may come from any thread and are final; a stream's iterator that is dropped
unfinished (`for r in insp.stream(url): break`) stops the stream when it is closed or collected (the capture
thread holds no reference to the Stream, so nothing keeps an abandoned one alive); a Stream that was never
iterated releases its source when collected; `Inspector.close()` stops the streams it made.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Union

from runtime.drift import DEFAULT_WINDOW, DriftMonitor
from runtime.errors import RuntimeInspectError
from runtime.sources import Frame, FrameReader, FrameSource, open_source

#: How many of a stream's events `Stream.events` keeps (the oldest go first).
EVENTS_KEPT = 1000

if TYPE_CHECKING:  # pragma: no cover
    from runtime.inspector import Inspector
    from runtime.result import Result

log = logging.getLogger("runtime.inspector")

EventSink = Callable[[Dict[str, Any]], None]


def _weak_sink(stream: "Stream") -> EventSink:
    """An event callback for the source that does not keep the Stream alive (see the module doc)."""
    ref = weakref.ref(stream)

    def sink(event: Dict[str, Any]) -> None:
        st = ref()
        if st is not None:
            st._record(event)

    return sink


class Stream:
    """Iterable of Results from a frame source, with a capture thread (see `Inspector.stream`)."""

    def __init__(self, inspector: "Inspector", source: Union[int, str, "os.PathLike[str]", FrameSource],
                 batch_size: int = 1, queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
                 on_event: Optional[EventSink] = None, drift_window: int = DEFAULT_WINDOW, **source_options: Any):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise RuntimeInspectError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 0):
            raise RuntimeInspectError(f"max_frames must be a non-negative integer or None, got {max_frames!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise RuntimeInspectError(f"queue_size must be a positive integer, got {queue_size!r}")
        self._stopped = False  # first: __del__ reads it even when __init__ fails below
        self.reader: Optional[FrameReader] = None
        self.inspector = inspector
        self.batch_size = batch_size
        self.max_frames = max_frames
        # The most recent events (a stream may run for weeks: older ones stay only with `on_event`'s sink).
        self.events: Deque[Dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self._user_sink = on_event
        # Rolling scores against the running version's good-score band (runtime.drift): drift and alert events.
        self.drift = DriftMonitor(lambda: inspector.drift_band, window=drift_window)
        self._stop_lock = threading.Lock()
        if isinstance(source, FrameSource):
            self.source = source
            if self.source.on_event is None:
                self.source.on_event = _weak_sink(self)
            self.source.open()
        else:
            self.source = open_source(source, reconnect=reconnect, on_event=_weak_sink(self), **source_options)
        self.reader = FrameReader(self.source, queue_size=queue_size)
        self.frames = 0
        self.bad_frames = 0
        self.started: Optional[float] = None
        self.elapsed_s = 0.0
        self._ended = False
        self._gen: Optional["weakref.ref[Iterator[Result]]"] = None  # weak: dropping the iterator ends the stream
        inspector.reserve(batch_size)  # allocate the batch buffer before the first frame
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
        return self.reader.drops if self.reader is not None else 0

    @property
    def reconnects(self) -> int:
        return int(getattr(self.source, "reconnects", 0))

    @property
    def stalls(self) -> int:
        """Times a live source delivered no frame within its frame timeout (each followed by a reopen)."""
        return int(getattr(self.source, "stalls", 0))

    @property
    def lost_frames(self) -> int:
        """Frames a video file announced but that could not be read (truncated or corrupt file)."""
        return int(getattr(self.source, "lost_frames", 0))

    @property
    def stopped(self) -> bool:
        return self._stopped

    # -- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator["Result"]:
        gen = self._gen() if self._gen is not None else None
        if gen is None:
            if self._stopped:
                return iter(())
            gen = self._run()
            self._gen = weakref.ref(gen)
        return gen

    def _next_frame(self, wait: bool) -> Optional[Frame]:
        """Next frame from the reader; None at the end; raises queue.Empty when `wait` is False and none is ready."""
        assert self.reader is not None
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

    def _run(self) -> Iterator["Result"]:
        assert self.reader is not None
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
                try:
                    results = self.inspector.inspect_frames(batch, self.source.channel_order,
                                                            on_bad=self._bad_frame)
                except RuntimeInspectError:
                    if self._stopped or self.inspector.closed:  # closed from another thread: the stream ends
                        return
                    raise
                for r in results:
                    for event in self.drift.observe(r):
                        self._record(event)
                    self.frames += 1
                    self.elapsed_s = time.perf_counter() - self.started
                    yield r
        finally:
            self.stop()

    # -- stop -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop capturing and release the source: final, idempotent, safe from any thread (the consumer's
        loop ends at its next frame)."""
        with self._stop_lock:
            if self.started is not None and not self._stopped:
                self.elapsed_s = time.perf_counter() - self.started
            self._stopped = True
        if self.reader is not None:
            self.reader.stop()

    def close(self) -> None:
        """`stop()`, then close the iterator unless it is running in another thread (it ends by itself)."""
        self.stop()
        gen = self._gen() if self._gen is not None else None
        if gen is not None and not gen.gi_running:
            try:
                gen.close()
            except ValueError:  # started running in another thread meanwhile: stop() already ends it
                pass

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # an abandoned, never-iterated stream still holds an open capture
        try:
            if not getattr(self, "_stopped", True):
                self.stop()
        except Exception:
            pass

    def summary(self) -> Dict[str, Any]:
        fps = self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {"source": self.source.description, "frames": self.frames, "bad_frames": self.bad_frames,
                "lost_frames": self.lost_frames, "drops": self.drops, "reconnects": self.reconnects,
                "stalls": self.stalls, "elapsed_s": round(self.elapsed_s, 3), "fps": round(fps, 2),
                "drift_events": self.drift.drift_events, "alerts": dict(self.drift.alerts)}


__all__ = ["Stream"]
