"""The capture thread: reads a FrameSource into a bounded queue for a Stream.

Live sources: when the queue is full the oldest frame is dropped (counted in `drops`), so the consumer always
gets recent frames. Files and folders: the thread blocks until there is room, so nothing is lost. Every reader
still running at interpreter exit is stopped first (an OpenCV capture torn down under a daemon thread aborts
the process: "terminate called without an active exception").
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from typing import Any, Optional

from runtime.errors import SourceError
from runtime.source_base import Frame, FrameSource

_END = object()
_RUNNING: "weakref.WeakSet[FrameReader]" = weakref.WeakSet()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class FrameReader:
    """A capture thread that reads a FrameSource into a bounded queue. `get()` returns a Frame, None at the end,
    and re-raises a SourceError from the thread."""

    def __init__(self, source: FrameSource, queue_size: int = 4, drop_oldest: Optional[bool] = None):
        if queue_size < 1:
            raise SourceError(f"queue_size must be >= 1, got {queue_size}")
        self.source = source
        self.drop_oldest = source.live if drop_oldest is None else drop_oldest
        self.queue: "queue.Queue[Any]" = queue.Queue(maxsize=queue_size)
        self.drops = 0
        self.read_count = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._source_closed = False
        self._close_on_exit = False  # stop() timed out under a read: the thread closes the source when it ends
        self._exited = False

    def start(self) -> "FrameReader":
        with self._stop_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
                _RUNNING.add(self)
                self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _put(self, item: Any) -> None:
        if self.drop_oldest:
            with self._lock:
                while True:
                    try:
                        self.queue.put_nowait(item)
                        return
                    except queue.Full:
                        try:
                            old = self.queue.get_nowait()
                            if isinstance(old, Frame):
                                self.drops += 1
                        except queue.Empty:
                            pass
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                fr = self.source.read()
                if fr is None:
                    break
                self.read_count += 1
                self._put(fr)
        except BaseException as e:  # handed to the consumer and raised there; it also ends the stream
            self._put(_Failure(e))
            return
        finally:
            _RUNNING.discard(self)
            with self._stop_lock:
                self._exited = True
                close = self._close_on_exit
            if close:
                self._close_source()
        self._put(_END)  # in drop mode this may drop a frame, never the marker (it is put last)

    def get(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Next frame (blocking up to `timeout`, None = forever); None at the end; raises queue.Empty on timeout."""
        item = self.queue.get(timeout=timeout) if timeout is None or timeout > 0 else self.queue.get_nowait()
        if item is _END:
            return None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then release the source; idempotent and safe from any thread. The source is closed
        once, after the thread ended; when a read outlives `timeout`, the thread closes it as it ends (live
        sources return from `read` within a poll interval of `request_stop`, see runtime.capture)."""
        self._stop.set()
        self.source.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            deadline = time.monotonic() + timeout
            while thread.is_alive() and time.monotonic() < deadline:
                self._drain()  # unblock a producer waiting for room
                thread.join(0.05)
        self._drain()
        if thread is not None:
            with self._stop_lock:
                if not self._exited:  # still inside a read (or this is the reader thread, e.g. a dropped stream
                    self._close_on_exit = True  # collected here): never release the source under it; the
                    return  # thread closes it as it ends
        self._close_source()

    def _close_source(self) -> None:
        with self._stop_lock:
            if self._source_closed:
                return
            self._source_closed = True
        self.source.close()

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


@atexit.register
def _stop_running_readers() -> None:
    for reader in list(_RUNNING):
        try:
            reader.stop(timeout=1.0)
        except Exception:
            pass


__all__ = ["FrameReader"]
