"""CaptureSource: a camera, stream, GStreamer pipeline or video file read through a VideoCapture-like object.

Live sources are opened and read by a CaptureThread (runtime.capture_io), never by the caller, and watched:
no new frame for `frame_timeout` seconds is a stall, reported as a `stall` event and handled like a drop
(the capture is abandoned and reopened with exponential back-off, bounded attempts). `frame_timeout=None`
(the default) is automatic: 5 s until the frame interval is known, then 10 frame intervals within [2 s, 60 s];
0 turns the watchdog off. Stream URLs opened by OpenCV (FFMPEG) also get OpenCV's own open and read timeouts
(the watchdog's plus a margin, so the watchdog reports first), which bound how long an abandoned capture thread
stays blocked in OpenCV. `request_stop()`/`close()` return within a poll interval plus a short wait for the
capture thread, in every state (connecting, reading, stalled, backing off). A video file's failed
read is not taken as its end while the file announces more frames (CAP_PROP_FRAME_COUNT): the reader tries to
read past the bad frames (a corrupt block mid-file), and what could not be read is counted in `lost_frames`
and reported as a `frames_lost` event (a truncated file), so a short read never passes as a complete one.
`capture_factory` (default `cv2.VideoCapture`) is the seam for tests and custom cameras: any callable
``factory(target, api) -> object`` with ``isOpened()``, ``read() -> (ok, frame)``, ``release()`` and
optionally ``get(prop)``.
"""
from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from typing import Any, Callable, List, Optional, Tuple

from runtime.capture_io import CaptureThread
from runtime.errors import SourceError
from runtime.source_base import EventSink, Frame, FrameSource, emit

log = logging.getLogger("runtime.sources")

CaptureFactory = Callable[[Any, Optional[int]], Any]
#: consecutive failed reads tried past a bad frame of a video file before the rest is reported lost
MAX_BAD_READS = 25
DEFAULT_FRAME_TIMEOUT = 5.0  # s, until the frame interval is known
AUTO_TIMEOUT_INTERVALS = 10  # automatic watchdog: this many frame intervals ...
AUTO_TIMEOUT_RANGE = (2.0, 60.0)  # ... within these bounds (s)
OPENCV_TIMEOUT_MARGIN = 0.5  # s added to OpenCV's open/read timeouts: the watchdog reports first
POLL = 0.05  # s between checks of the stop flag while waiting for a frame or an open
CLOSE_WAIT = 0.5  # s close() waits for the capture thread to release the capture


def _default_factory(target: Any, api: Optional[int], params: Optional[List[int]] = None) -> Any:
    import cv2  # noqa: PLC0415

    if params:
        return cv2.VideoCapture(target, cv2.CAP_ANY if api is None else api, params)
    return cv2.VideoCapture(target) if api is None else cv2.VideoCapture(target, api)


def _frame_count(cap: Any) -> Optional[int]:
    """The frame count a video file announces (None when the capture cannot tell)."""
    try:
        import cv2  # noqa: PLC0415

        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    except Exception:  # a custom capture without get(), or no OpenCV
        return None
    return n if n > 0 else None


class CaptureSource(FrameSource):
    """A camera, stream, GStreamer pipeline or video file read through a VideoCapture-like object."""

    def __init__(self, target: Any, description: str, live: bool, api: Optional[int] = None,
                 capture_factory: Optional[CaptureFactory] = None, reconnect: bool = True,
                 max_reconnects: int = 30, backoff_s: float = 0.5, backoff_max_s: float = 2.0,
                 sleep: Optional[Callable[[float], Any]] = None, on_event: Optional[EventSink] = None,
                 frame_timeout: Optional[float] = None):
        super().__init__(on_event)
        if isinstance(max_reconnects, bool) or not isinstance(max_reconnects, int) or max_reconnects < 0:
            raise SourceError(f"max_reconnects must be an integer >= 0, got {max_reconnects!r}")
        if frame_timeout is not None and (isinstance(frame_timeout, bool) or not isinstance(frame_timeout, (int, float))
                                          or not math.isfinite(frame_timeout) or frame_timeout < 0):
            raise SourceError(f"frame_timeout must be a number of seconds >= 0 (0 = no watchdog) or None (automatic), "
                              f"got {frame_timeout!r}")
        self.target = target
        self.description = description  # credentials already redacted by open_source
        self.live = live
        self.api = api
        self.factory = capture_factory or _default_factory
        self.reconnect = reconnect and live
        self.max_reconnects = int(max_reconnects)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.frame_timeout = frame_timeout
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait  # back-off that stop() interrupts
        self.reconnects = 0
        self.stalls = 0
        self.lost_frames = 0
        self.frame_count: Optional[int] = None  # what a video file announces
        self._cap: Any = None  # video files: read in the caller's thread
        self._io: Optional[CaptureThread] = None  # live sources: the thread that owns the capture
        self._intervals: "deque[float]" = deque(maxlen=30)
        self._last_frame = 0.0
        self._have_frame = False
        self._last_io: Optional[CaptureThread] = None  # kept by close() to tell whether its thread ended
        self._closed = False

    # -- the watchdog -------------------------------------------------------------------------------
    def watchdog_timeout(self) -> Optional[float]:
        """Seconds without a frame that make a stall (None: no watchdog; files have none)."""
        if not self.live or self.frame_timeout == 0:
            return None
        if self.frame_timeout is not None:
            return float(self.frame_timeout)
        if len(self._intervals) < 5:
            return DEFAULT_FRAME_TIMEOUT
        lo, hi = AUTO_TIMEOUT_RANGE
        return min(hi, max(lo, AUTO_TIMEOUT_INTERVALS * statistics.median(self._intervals)))

    def _opencv_params(self) -> List[int]:
        """OpenCV's open/read timeouts for stream URLs (FFMPEG honours them; cameras and pipelines get none)."""
        timeout = self.watchdog_timeout()
        if timeout is None or not isinstance(self.target, str) or self.api is not None:
            return []
        import cv2  # noqa: PLC0415

        ms = int((timeout + OPENCV_TIMEOUT_MARGIN) * 1000)
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]

    # -- opening ------------------------------------------------------------------------------------
    def _try_open(self) -> bool:
        """Video files: open in this thread."""
        try:
            cap = self.factory(self.target, self.api)
        except Exception as e:  # a factory may raise instead of returning a closed capture
            log.debug("opening %s raised %s", self.description, e)
            return False
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return False
        self._cap = cap
        if self.frame_count is None:
            self.frame_count = _frame_count(cap)
        return True

    def _start_io(self) -> Optional[CaptureThread]:
        """Live sources: open in a CaptureThread; returns it once open, None when the open failed or stop came."""
        target, api, factory = self.target, self.api, self.factory
        if factory is _default_factory:
            params = self._opencv_params()
            io = CaptureThread(lambda: _default_factory(target, api, params))
        else:
            io = CaptureThread(lambda: factory(target, api))
        io.start()
        timeout = self.watchdog_timeout() or DEFAULT_FRAME_TIMEOUT
        deadline = time.monotonic() + timeout + 2 * OPENCV_TIMEOUT_MARGIN  # do not rely on OpenCV's alone
        try:
            while not (self._closed or self._stopping.is_set()) and time.monotonic() < deadline:
                item = io.get(POLL)
                if item is None:
                    continue
                if item[0] == "opened":
                    self._last_frame, self._have_frame = time.monotonic(), False
                    return io
                if item[1]:
                    log.debug("opening %s failed: %s", self.description, item[1])
                io.abandon()
                io.thread.join(CLOSE_WAIT)  # it is only releasing the failed capture: let it finish first
                return None
        except BaseException:  # Ctrl-C while connecting: the capture thread must not be left holding the capture
            io.abandon()
            raise
        io.abandon()
        return None

    def open(self) -> "CaptureSource":
        if self._closed:
            raise SourceError(f"{self.description} is closed")
        if self.live:
            if self._io is None:
                self._io = self._start_io()
                if self._io is None:
                    raise SourceError(f"cannot open {self.description}: {self._open_hint()}")
        elif self._cap is None and not self._try_open():
            raise SourceError(f"cannot open {self.description}: {self._open_hint()}")
        return self

    def _open_hint(self) -> str:
        if isinstance(self.target, int):
            return ("no camera at that index (is it connected? list cameras with `ls /dev/video*`; "
                    "in use by another program?)")
        if self.api is not None and "gstreamer" in self.description:
            return "check the pipeline with gst-launch-1.0 and that OpenCV was built with GStreamer"
        if self.live:
            return "check the URL, the network and the credentials"
        return "the file is not a video OpenCV can decode (try MJPG .avi or H.264 .mp4)"

    # -- reading ------------------------------------------------------------------------------------
    def read(self) -> Optional[Frame]:
        if self._closed or self._stopping.is_set():
            return None
        if self.live:
            return self._read_live()
        if self._cap is None:
            self.open()
        ok, image = self._cap.read()
        if ok and image is not None and image.size:
            return self._next(image)
        return self._read_past_bad_frames()

    def _wait_frame(self, io: CaptureThread) -> Tuple[str, Any]:
        """("frame", image) | ("read_failed", None) | ("stall", seconds without a frame) | ("stopped", None)."""
        while True:
            if self._closed or self._stopping.is_set():
                return "stopped", None
            timeout = self.watchdog_timeout()
            waited = time.monotonic() - self._last_frame
            if timeout is not None and waited >= timeout:
                return "stall", waited
            item = io.get(POLL if timeout is None else min(POLL, timeout - waited))
            if item is None:
                continue
            if item[0] == "frame":
                now = time.monotonic()
                if self._have_frame:
                    self._intervals.append(now - self._last_frame)
                self._last_frame, self._have_frame = now, True
                return item
            if item[0] == "read_failed":
                return item

    def _read_live(self) -> Optional[Frame]:
        if self._io is None:
            self.open()
        assert self._io is not None
        kind, value = self._wait_frame(self._io)
        if kind == "frame":
            return self._next(value)
        if kind == "stopped":
            return None
        if kind == "stall":
            self.stalls += 1
            emit(self.on_event, "stall", f"{self.description}: no frame for {value:.1f} s (frame timeout "
                                         f"{self.watchdog_timeout():.1f} s); reopening it", seconds=round(value, 3),
                 timeout=self.watchdog_timeout())
        if not self.reconnect:
            what = "stalled" if kind == "stall" else "was lost"
            raise SourceError(f"{self.description} {what} and reconnect is off: check the camera or stream, or "
                              f"pass reconnect=True")
        return self._reconnect(stalled=kind == "stall")

    # -- video files --------------------------------------------------------------------------------
    def _read_past_bad_frames(self) -> Optional[Frame]:
        """A video file's read failed at frame `self._index`: the end, or bad frames before the announced end."""
        total, at = self.frame_count, self._index
        if total is None or at >= total:
            return None  # the end of the file
        for failed in range(1, min(MAX_BAD_READS, total - at) + 1):
            if self._closed:
                return None
            ok, image = self._cap.read() if at + failed < total else (False, None)
            if ok and image is not None and image.size:
                self._lose(at, failed, f"{self.description}: frame(s) {at}..{at + failed - 1} could not be "
                                       f"decoded (corrupt data); skipped")
                self._index += failed
                return self._next(image)
        self._lose(at, total - at, f"{self.description}: reading stopped at frame {at} of the {total} it "
                                   f"announces; {total - at} frame(s) lost (truncated or corrupt file)")
        return None

    def _lose(self, first: int, count: int, message: str) -> None:
        self.lost_frames += count
        emit(self.on_event, "frames_lost", message, index=first, count=count)

    # -- live sources -------------------------------------------------------------------------------
    def _reconnect(self, stalled: bool = False) -> Optional[Frame]:
        if not stalled:
            emit(self.on_event, "dropped_source", f"{self.description} stopped delivering frames; reconnecting")
        delay = self.backoff_s
        for attempt in range(1, self.max_reconnects + 1):
            self._drop_io()
            if self._closed or self._stopping.is_set():
                return None
            self.sleep(delay)
            if self._closed or self._stopping.is_set():
                return None
            self._io = self._start_io()
            if self._io is not None:
                kind, value = self._wait_frame(self._io)
                if kind == "frame":
                    self.reconnects += 1
                    emit(self.on_event, "reconnected", f"{self.description} reconnected after {attempt} "
                                                       f"attempt(s)", attempt=attempt)
                    return self._next(value)
                if kind == "stopped":
                    return None
            emit(self.on_event, "reconnect_attempt", f"reconnect attempt {attempt}/{self.max_reconnects} to "
                                                     f"{self.description} failed", attempt=attempt)
            delay = min(delay * 2.0, self.backoff_max_s)
        self._drop_io()
        emit(self.on_event, "reconnect_failed", f"gave up on {self.description} after {self.max_reconnects} "
                                                f"reconnect attempts")
        raise SourceError(f"lost {self.description} and could not reconnect after {self.max_reconnects} attempts: "
                          f"check the camera, cable or stream URL")

    def _drop_io(self, wait: float = 0.0) -> None:
        io, self._io = self._io, None
        if io is not None:
            io.abandon()  # it releases the capture after its current call returns
            if wait > 0:
                io.thread.join(wait)

    def _release(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None

    @property
    def capture_thread_alive(self) -> bool:
        """True while a capture thread of this source is still inside OpenCV (after close: until its call ends)."""
        return self._last_io is not None and self._last_io.alive

    def request_stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Final: stop waiting, abandon the capture thread (waiting up to CLOSE_WAIT s for it to release the
        capture; a thread blocked in OpenCV releases it when its call returns) and release a file."""
        self._closed = True
        self._stopping.set()
        self._last_io = self._io
        self._drop_io(wait=CLOSE_WAIT)
        self._release()


__all__ = ["CaptureSource", "MAX_BAD_READS", "DEFAULT_FRAME_TIMEOUT"]
