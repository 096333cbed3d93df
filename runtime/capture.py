"""CaptureSource: a camera, stream, GStreamer pipeline or video file read through a VideoCapture-like object.

Live sources reconnect with exponential back-off (bounded attempts) when they drop. A video file's failed
read is not taken as its end while the file announces more frames (CAP_PROP_FRAME_COUNT): the reader tries to
read past the bad frames (a corrupt block mid-file), and what could not be read is counted in `lost_frames`
and reported as a `frames_lost` event (a truncated file), so a short read never passes as a complete one.
`capture_factory` (default `cv2.VideoCapture`) is the seam for tests and custom cameras: any callable
``factory(target, api) -> object`` with ``isOpened()``, ``read() -> (ok, frame)``, ``release()`` and
optionally ``get(prop)``.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from runtime.errors import SourceError
from runtime.source_base import EventSink, Frame, FrameSource, emit

log = logging.getLogger("runtime.sources")

CaptureFactory = Callable[[Any, Optional[int]], Any]
#: consecutive failed reads tried past a bad frame of a video file before the rest is reported lost
MAX_BAD_READS = 25


def _default_factory(target: Any, api: Optional[int]) -> Any:
    import cv2  # noqa: PLC0415

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
                 max_reconnects: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 8.0,
                 sleep: Optional[Callable[[float], Any]] = None, on_event: Optional[EventSink] = None):
        super().__init__(on_event)
        if isinstance(max_reconnects, bool) or not isinstance(max_reconnects, int) or max_reconnects < 0:
            raise SourceError(f"max_reconnects must be an integer >= 0, got {max_reconnects!r}")
        self.target = target
        self.description = description  # credentials already redacted by open_source
        self.live = live
        self.api = api
        self.factory = capture_factory or _default_factory
        self.reconnect = reconnect and live
        self.max_reconnects = int(max_reconnects)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait  # back-off that stop() interrupts
        self.reconnects = 0
        self.lost_frames = 0
        self.frame_count: Optional[int] = None  # what a video file announces
        self._cap: Any = None
        self._closed = False

    def _try_open(self) -> bool:
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
        if not self.live and self.frame_count is None:
            self.frame_count = _frame_count(cap)
        return True

    def open(self) -> "CaptureSource":
        if self._cap is None and not self._try_open():
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

    def read(self) -> Optional[Frame]:
        if self._closed:
            return None
        if self._cap is None:
            self.open()
        ok, image = self._cap.read()
        if ok and image is not None and image.size:
            return self._next(image)
        if not self.live:
            return self._read_past_bad_frames()
        if not self.reconnect:
            raise SourceError(f"lost {self.description} and reconnect is off: check the camera or stream, or pass "
                              f"reconnect=True")
        return self._reconnect()

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
    def _reconnect(self) -> Optional[Frame]:
        emit(self.on_event, "dropped_source", f"{self.description} stopped delivering frames; reconnecting")
        delay = self.backoff_s
        for attempt in range(1, self.max_reconnects + 1):
            self._release()
            if self._closed or self._stopping.is_set():
                return None
            self.sleep(delay)
            if self._closed or self._stopping.is_set():
                return None
            if self._try_open():
                ok, image = self._cap.read()
                if ok and image is not None and image.size:
                    self.reconnects += 1
                    emit(self.on_event, "reconnected", f"{self.description} reconnected after {attempt} "
                                                       f"attempt(s)", attempt=attempt)
                    return self._next(image)
            emit(self.on_event, "reconnect_attempt", f"reconnect attempt {attempt}/{self.max_reconnects} to "
                                                     f"{self.description} failed", attempt=attempt)
            delay = min(delay * 2.0, self.backoff_max_s)
        emit(self.on_event, "reconnect_failed", f"gave up on {self.description} after {self.max_reconnects} "
                                                f"reconnect attempts")
        raise SourceError(f"lost {self.description} and could not reconnect after {self.max_reconnects} attempts: "
                          f"check the camera, cable or stream URL")

    def _release(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None

    def request_stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._closed = True
        self._stopping.set()
        self._release()


__all__ = ["CaptureSource", "MAX_BAD_READS"]
