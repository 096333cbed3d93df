"""Frame sources for `Inspector.stream` and `python -m runtime`, and the capture thread that feeds them.

`open_source(spec)` understands:
- a camera index: ``0`` or ``"0"`` (live);
- an RTSP/HTTP/... URL: ``rtsp://host/stream`` (live);
- a GStreamer pipeline: any string containing ``!`` (live; needs an OpenCV built with GStreamer, e.g. Jetson's);
- a folder of images (sorted by name; a corrupt image is reported and skipped);
- an image file (one frame) or a video file (every frame, nothing dropped).

Live sources reconnect with exponential back-off (bounded attempts) when they drop; the capture thread keeps a
bounded queue that drops the oldest frame for live sources (the newest frame matters, drops are counted) and
blocks for files and folders (nothing is lost). Frames come out as BGR uint8, OpenCV's order.
`capture_factory` (default `cv2.VideoCapture`) is the seam for tests and for custom cameras: any callable
``factory(target, api) -> object`` with ``isOpened()``, ``read() -> (ok, frame)`` and ``release()``.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from runtime.errors import SourceError

log = logging.getLogger("runtime.sources")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm", ".jp2")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "rtp://", "srt://")

SourceSpec = Union[int, str, "os.PathLike[str]"]
EventSink = Callable[[Dict[str, Any]], None]


@dataclass
class Frame:
    """One item from a source: `image` (H, W, 3) BGR uint8, or None with `error` for a corrupt item."""

    index: int
    timestamp: float
    image: Optional[np.ndarray]
    name: str = ""
    error: Optional[str] = None


def _event(sink: Optional[EventSink], kind: str, message: str, **fields: Any) -> Dict[str, Any]:
    ev = {"event": kind, "message": message, "time": time.time()}
    ev.update(fields)
    if kind in ("corrupt", "reconnect_failed", "dropped_source"):
        log.warning(message)
    else:
        log.info(message)
    if sink is not None:
        sink(ev)
    return ev


class FrameSource:
    """Base class: `open()`, `read() -> Frame | None (end)`, `close()`. `live` sources may drop frames."""

    live = False
    channel_order = "BGR"
    description = "source"

    def __init__(self, on_event: Optional[EventSink] = None):
        self.on_event = on_event
        self._index = 0

    def open(self) -> "FrameSource":
        return self

    def read(self) -> Optional[Frame]:  # pragma: no cover - overridden
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask a blocking read (e.g. a reconnect back-off) to give up soon; safe from another thread."""

    def close(self) -> None:
        pass

    def _next(self, image: Optional[np.ndarray], name: str = "", error: Optional[str] = None) -> Frame:
        fr = Frame(self._index, time.time(), image, name, error)
        self._index += 1
        return fr

    def __iter__(self) -> Iterator[Frame]:
        while True:
            fr = self.read()
            if fr is None:
                return
            yield fr

    def __enter__(self) -> "FrameSource":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_factory(target: Any, api: Optional[int]) -> Any:
    import cv2  # noqa: PLC0415

    return cv2.VideoCapture(target) if api is None else cv2.VideoCapture(target, api)


class CaptureSource(FrameSource):
    """A camera, stream, GStreamer pipeline or video file read through a VideoCapture-like object."""

    def __init__(self, target: Any, description: str, live: bool, api: Optional[int] = None,
                 capture_factory: Optional[Callable[[Any, Optional[int]], Any]] = None, reconnect: bool = True,
                 max_reconnects: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 8.0,
                 sleep: Optional[Callable[[float], Any]] = None, on_event: Optional[EventSink] = None):
        super().__init__(on_event)
        self.target = target
        self.description = description
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
            return None  # end of the file
        if not self.reconnect:
            raise SourceError(f"lost {self.description} and reconnect is off: check the camera or stream, or pass "
                              f"reconnect=True")
        return self._reconnect()

    def _reconnect(self) -> Optional[Frame]:
        _event(self.on_event, "dropped_source", f"{self.description} stopped delivering frames; reconnecting")
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
                    _event(self.on_event, "reconnected", f"{self.description} reconnected after {attempt} "
                                                         f"attempt(s)", attempt=attempt)
                    return self._next(image)
            _event(self.on_event, "reconnect_attempt", f"reconnect attempt {attempt}/{self.max_reconnects} to "
                                                       f"{self.description} failed", attempt=attempt)
            delay = min(delay * 2.0, self.backoff_max_s)
        _event(self.on_event, "reconnect_failed", f"gave up on {self.description} after {self.max_reconnects} "
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


class FolderSource(FrameSource):
    """Images of a folder in sorted order (or a given list of files); a corrupt image is reported and skipped
    (it comes out as a Frame with `error` set), never fatal."""

    live = False

    def __init__(self, files: Sequence[str], description: str, on_event: Optional[EventSink] = None):
        super().__init__(on_event)
        self.files = list(files)
        self.description = description
        self._pos = 0

    def read(self) -> Optional[Frame]:
        import cv2  # noqa: PLC0415

        if self._pos >= len(self.files):
            return None
        path = self.files[self._pos]
        self._pos += 1
        try:
            data = np.fromfile(path, dtype=np.uint8)  # imdecode: also reads non-ASCII paths
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        except (OSError, cv2.error) as e:
            image, why = None, str(e)
        else:
            why = "empty file" if not data.size else "not a decodable image"
        if image is None:
            fr = self._next(None, name=path, error=f"cannot read image {path}: {why}; skipped")
            _event(self.on_event, "corrupt", fr.error or "", index=fr.index, name=path)
            return fr
        return self._next(image, name=path)


def list_images(folder: str) -> List[str]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS) and not n.startswith("."))
    return [os.path.join(folder, n) for n in names]


def open_source(spec: SourceSpec, capture_factory: Optional[Callable[[Any, Optional[int]], Any]] = None,
                reconnect: bool = True, max_reconnects: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 8.0,
                on_event: Optional[EventSink] = None, open: bool = True) -> FrameSource:
    """Make the FrameSource for `spec` (see the module doc) and open it (SourceError with what to check)."""
    kw = dict(capture_factory=capture_factory, reconnect=reconnect, max_reconnects=max_reconnects,
              backoff_s=backoff_s, backoff_max_s=backoff_max_s, on_event=on_event)
    src: FrameSource
    if isinstance(spec, bool):
        raise SourceError(f"source {spec!r} is not a camera index, URL, pipeline, folder or file")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        src = CaptureSource(index, f"camera {index}", live=True, **kw)  # type: ignore[arg-type]
    else:
        text = os.fspath(spec)
        if "!" in text:
            import cv2  # noqa: PLC0415

            src = CaptureSource(text, f"gstreamer pipeline {text!r}", live=True, api=cv2.CAP_GSTREAMER,
                                **kw)  # type: ignore[arg-type]
        elif text.lower().startswith(URL_SCHEMES):
            src = CaptureSource(text, f"stream {text}", live=True, **kw)  # type: ignore[arg-type]
        elif os.path.isdir(text):
            files = list_images(text)
            if not files:
                raise SourceError(f"folder {text} has no images ({', '.join(IMAGE_EXTS)}): check the path")
            src = FolderSource(files, f"folder {text} ({len(files)} images)", on_event=on_event)
        elif os.path.isfile(text):
            if text.lower().endswith(IMAGE_EXTS):
                src = FolderSource([text], f"image {text}", on_event=on_event)
            else:
                src = CaptureSource(text, f"video file {text}", live=False, **kw)  # type: ignore[arg-type]
        else:
            raise SourceError(f"source {text!r} is not a camera index, URL (rtsp://, http://), GStreamer pipeline "
                              f"(with '!'), folder or existing file: check the path")
    return src.open() if open else src


_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class FrameReader:
    """A capture thread that reads a FrameSource into a bounded queue.

    Live sources: when the queue is full the oldest frame is dropped (counted in `drops`), so the consumer
    always gets recent frames. Files and folders: the thread blocks until there is room, so nothing is lost.
    `get()` returns a Frame, None at the end, and re-raises a SourceError from the thread."""

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

    def start(self) -> "FrameReader":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
            self._thread.start()
        return self

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
        """Stop the thread, then release the source (never released under a read in progress unless the
        read outlives `timeout`)."""
        self._stop.set()
        self.source.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            deadline = time.monotonic() + timeout
            while self._thread.is_alive() and time.monotonic() < deadline:
                self._drain()  # unblock a producer waiting for room
                self._thread.join(0.05)
        self._drain()
        self.source.close()

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


__all__ = ["Frame", "FrameSource", "CaptureSource", "FolderSource", "FrameReader", "open_source", "list_images",
           "IMAGE_EXTS", "URL_SCHEMES"]
