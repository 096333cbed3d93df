"""CaptureThread: the one thread that touches one live capture (opens it, reads it, releases it).

Why a thread of its own: OpenCV's `open()` and `read()` block, sometimes for a long time (a frozen camera
keeps the connection open and sends nothing; OpenCV's FFMPEG backend waits 30 s by default), and a capture
must never be released while another thread is inside its `read()`. So the source's reader never calls the
capture: it waits for this thread's items with a timeout (the frame watchdog) and can walk away at once when
stopped or when the camera stalls. Walking away is `abandon()`: the capture thread notices after its current
call returns (bounded by OpenCV's open/read timeouts where the backend honours them), releases the capture
itself and ends. Items: ("opened", None), ("open_failed", why), ("frame", image), ("read_failed", None).

Interpreter exit waits (up to EXIT_WAIT_S) for capture threads still releasing a capture: a VideoCapture torn
down under a daemon thread at exit aborts the process ("terminate called without an active exception", exit
134) after the command already printed its result.
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

Item = Tuple[str, Any]

_LIVE: List["CaptureThread"] = []  # started and not yet ended, for `wait_for_capture_threads`
_LIVE_LOCK = threading.Lock()
#: seconds interpreter exit waits for capture threads to release their captures (bounded by OpenCV's timeouts)
EXIT_WAIT_S = 5.0


class CaptureThread:
    """Opens `opener()` in a daemon thread and reads it until abandoned or a read fails."""

    def __init__(self, opener: Callable[[], Any], name: str = "capture-io", queue_size: int = 2):
        self._opener = opener
        self.items: "queue.Queue[Item]" = queue.Queue(maxsize=queue_size)
        self._abandon = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "CaptureThread":
        with _LIVE_LOCK:
            _LIVE.append(self)
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def abandon(self) -> None:
        """Stop using this capture: the thread releases it once its current open/read returns. Any thread."""
        self._abandon.set()

    def _put(self, item: Item) -> bool:
        """Hand an item over, waiting for room but never past `abandon()`; False when abandoned."""
        while not self._abandon.is_set():
            try:
                self.items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        cap = None
        try:
            try:
                cap = self._opener()
            except Exception as e:  # a factory may raise instead of returning a closed capture
                self._put(("open_failed", str(e)))
                return
            if cap is None or not cap.isOpened():
                self._put(("open_failed", ""))
                return
            if not self._put(("opened", None)):
                return
            while not self._abandon.is_set():
                ok, image = cap.read()
                if self._abandon.is_set():
                    return
                if not ok or image is None or not image.size:
                    self._put(("read_failed", None))
                    return
                if not self._put(("frame", image)):
                    return
        finally:
            if cap is not None:
                try:
                    cap.release()  # here, after the last read returned: never under a read
                except Exception:
                    pass
            with _LIVE_LOCK:
                if self in _LIVE:
                    _LIVE.remove(self)

    def get(self, timeout: float) -> Optional[Item]:
        """The next item, or None when none came within `timeout` seconds."""
        try:
            return self.items.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


def live_capture_threads() -> int:
    """Capture threads still running (a thread blocked in OpenCV after being abandoned counts)."""
    with _LIVE_LOCK:
        return sum(1 for t in _LIVE if t.alive)


def wait_for_capture_threads(timeout: float) -> int:
    """Wait up to `timeout` seconds for abandoned capture threads to end; returns how many are left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _LIVE_LOCK:
            threads = [t for t in _LIVE if t.alive]
        if not threads:
            return 0
        threads[0].thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
    return live_capture_threads()


@atexit.register
def _wait_at_exit() -> None:
    wait_for_capture_threads(EXIT_WAIT_S)


__all__ = ["CaptureThread", "live_capture_threads", "wait_for_capture_threads"]
