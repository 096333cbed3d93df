"""Frame sources for `Inspector.stream` and `python -m runtime`: which source a spec names, and image folders.

`open_source(spec)` understands, in this order:
- an existing folder (images sorted by name; a corrupt image is reported and skipped; subfolders and files of
  other types are reported once) or an existing file: an image (one frame) or a video (every frame, nothing
  dropped; frames it announces but cannot deliver are reported lost). An existing path wins: a folder named
  ``123`` is a folder, not camera 123;
- an RTSP/HTTP/... URL: ``rtsp://user:pass@host/stream`` (live; the password never appears in descriptions,
  logs, events or the CLI's jsonl);
- a camera index: ``0`` or ``"0"`` (live);
- a GStreamer pipeline: elements joined by `` ! `` (with spaces) or a string that starts with a known source
  element (``videotestsrc``, ``v4l2src``, ``nvarguscamerasrc``, ...) (live; needs an OpenCV built with
  GStreamer, e.g. Jetson's). A ``!`` inside a password or a file name does not make a pipeline.

Live sources reconnect with exponential back-off (runtime.capture); the capture thread (runtime.reader) keeps
a bounded queue that drops the oldest frame for live sources and blocks for files and folders. Frames come out
as BGR uint8, OpenCV's order.
"""
from __future__ import annotations

import os
import re
import stat
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from runtime.capture import CaptureSource
from runtime.errors import SourceError
from runtime.image_header import announced_size
from runtime.reader import FrameReader
from runtime.source_base import EventSink, Frame, FrameSource, emit, redact

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm", ".jp2")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "rtp://", "srt://")
GST_SOURCE_ELEMENTS = ("videotestsrc", "v4l2src", "nvarguscamerasrc", "nvv4l2camerasrc", "libcamerasrc", "rtspsrc",
                       "filesrc", "uridecodebin", "urisourcebin", "udpsrc", "tcpclientsrc", "souphttpsrc", "appsrc",
                       "ksvideosrc", "mfvideosrc", "avfvideosrc", "autovideosrc", "playbin", "decodebin",
                       "shmsrc", "multifilesrc", "aravissrc", "pylonsrc", "tcambin")
#: decoded-pixel cap of a folder image (a PNG "decompression bomb" is a few KiB that decode to gigabytes)
MAX_PIXELS = 100_000_000

SourceSpec = Union[int, str, "os.PathLike[str]"]


def is_gstreamer_pipeline(text: str) -> bool:
    """Elements linked with ' ! ', or a known GStreamer source element followed by its properties."""
    s = text.strip()
    if " ! " in s:
        return True
    first = re.split(r"\s", s, maxsplit=1)[0]
    return first in GST_SOURCE_ELEMENTS


def image_size_from_header(data: np.ndarray) -> Optional[Tuple[int, int]]:
    """(width, height) an encoded image announces, read without decoding (`runtime.image_header`); None for a
    format whose header cannot be read (such a file is refused, never decoded blind)."""
    return announced_size(data)


class FolderSource(FrameSource):
    """Images of a folder in sorted order (or a given list of files); a corrupt image, or one whose header
    announces more than `max_pixels` pixels, is reported and skipped (a Frame with `error` set), never fatal."""

    live = False

    def __init__(self, files: Sequence[str], description: str, on_event: Optional[EventSink] = None,
                 max_pixels: int = MAX_PIXELS):
        super().__init__(on_event)
        self.files = list(files)
        self.description = description
        self.max_pixels = int(max_pixels)
        self._pos = 0

    def _decode(self, path: str) -> Tuple[Optional[np.ndarray], str]:
        import cv2  # noqa: PLC0415

        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block the read forever
                return None, f"it is {_kind_of_file(path)}, not a regular file"
            data = np.fromfile(path, dtype=np.uint8)  # imdecode: also reads non-ASCII paths
        except OSError as e:
            return None, str(e)
        if not data.size:
            return None, "empty file"
        size = image_size_from_header(data)
        if size is None:  # cv2.imdecode would allocate whatever the file says before anyone could refuse it
            return None, ("its image format is not one whose size can be checked before decoding (or its header "
                          "is damaged); convert it to PNG or JPEG")
        if size[0] * size[1] > self.max_pixels:
            return None, (f"it is {size[0]}x{size[1]} = {size[0] * size[1]} pixels, above the cap of {self.max_pixels} "
                          f"(a decompression bomb or a wrong file; pass max_pixels= if it is real)")
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error as e:
            return None, str(e).strip().splitlines()[-1]
        if image is not None and image.shape[0] * image.shape[1] > self.max_pixels:
            return None, f"it decodes to {image.shape[1]}x{image.shape[0]} pixels, above the cap of {self.max_pixels}"
        return image, "not a decodable image"

    def read(self) -> Optional[Frame]:
        if self._pos >= len(self.files):
            return None
        path = self.files[self._pos]
        self._pos += 1
        image, why = self._decode(path)
        if image is None:
            fr = self._next(None, name=path, error=f"cannot read image {path}: {why}; skipped")
            emit(self.on_event, "corrupt", fr.error or "", index=fr.index, name=path)
            return fr
        return self._next(image, name=path)


def _kind_of_file(path: str) -> str:
    """What a path that is not a regular file is, in words ("a FIFO", "a device", ...)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "unreadable (a broken link?)"
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def scan_folder(folder: str) -> Tuple[List[str], List[str], List[str]]:
    """(image files, subfolders, other files) of `folder`, sorted by name; hidden entries are ignored. Names
    that are not regular files (a FIFO, a socket, a device, a broken link: reading one would block or fail)
    are among the others, with what they are in brackets."""
    images, subfolders, others = [], [], []
    for n in sorted(os.listdir(folder)):
        if n.startswith("."):
            continue
        full = os.path.join(folder, n)
        if os.path.isdir(full):
            subfolders.append(n)
        elif not os.path.isfile(full):
            others.append(f"{n} ({_kind_of_file(full)}, not read)")
        elif n.lower().endswith(IMAGE_EXTS):
            images.append(full)
        else:
            others.append(n)
    return images, subfolders, others


def list_images(folder: str) -> List[str]:
    return scan_folder(folder)[0]


def _listing(names: List[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _folder_source(text: str, on_event: Optional[EventSink], max_pixels: int) -> FolderSource:
    files, subfolders, others = scan_folder(text)
    if not files:
        raise SourceError(f"folder {text} has no images ({', '.join(IMAGE_EXTS)}): check the path")
    src = FolderSource(files, f"folder {text} ({len(files)} images)", on_event=on_event, max_pixels=max_pixels)
    if subfolders or others:
        parts = []
        if subfolders:
            parts.append(f"{len(subfolders)} subfolder(s) ({_listing(subfolders)}; not searched)")
        if others:
            parts.append(f"{len(others)} file(s) without an image extension ({_listing(others)})")
        emit(on_event, "skipped_files", f"folder {text}: skipped {' and '.join(parts)}",
             subfolders=subfolders, files=others)
    return src


def open_source(spec: SourceSpec, capture_factory: Optional[Callable[[Any, Optional[int]], Any]] = None,
                reconnect: bool = True, max_reconnects: int = 30, backoff_s: float = 0.5, backoff_max_s: float = 2.0,
                on_event: Optional[EventSink] = None, open: bool = True, max_pixels: int = MAX_PIXELS,
                frame_timeout: Optional[float] = None) -> FrameSource:
    """Make the FrameSource for `spec` (see the module doc) and open it (SourceError with what to check).
    `frame_timeout`: seconds without a frame before a live source counts as stalled and is reopened (None:
    automatic, 0: off; see runtime.capture)."""
    kw = dict(capture_factory=capture_factory, reconnect=reconnect, max_reconnects=max_reconnects,
              backoff_s=backoff_s, backoff_max_s=backoff_max_s, on_event=on_event, frame_timeout=frame_timeout)
    src: FrameSource
    if isinstance(spec, bool):
        raise SourceError(f"source {spec!r} is not a camera index, URL, pipeline, folder or file")
    text = str(spec) if isinstance(spec, int) else os.fspath(spec)
    if not isinstance(spec, int) and os.path.isdir(text):
        src = _folder_source(text, on_event, max_pixels)
    elif not isinstance(spec, int) and os.path.isfile(text):
        if text.lower().endswith(IMAGE_EXTS):
            src = FolderSource([text], f"image {text}", on_event=on_event, max_pixels=max_pixels)
        else:
            src = CaptureSource(text, f"video file {text}", live=False, **kw)  # type: ignore[arg-type]
    elif text.lower().startswith(URL_SCHEMES):
        src = CaptureSource(text, f"stream {redact(text)}", live=True, **kw)  # type: ignore[arg-type]
    elif text.strip().isdigit():
        index = int(text)
        src = CaptureSource(index, f"camera {index}", live=True, **kw)  # type: ignore[arg-type]
    elif is_gstreamer_pipeline(text):
        import cv2  # noqa: PLC0415

        src = CaptureSource(text, f"gstreamer pipeline {redact(text)!r}", live=True, api=cv2.CAP_GSTREAMER,
                            **kw)  # type: ignore[arg-type]
    else:
        raise SourceError(f"source {redact(text)!r} is not a camera index, URL (rtsp://, http://), GStreamer pipeline "
                          f"(elements joined by ' ! '), folder or existing file: check the path")
    return src.open() if open else src


__all__ = ["Frame", "FrameSource", "CaptureSource", "FolderSource", "FrameReader", "open_source", "list_images",
           "scan_folder", "is_gstreamer_pipeline", "image_size_from_header", "redact", "IMAGE_EXTS", "URL_SCHEMES",
           "MAX_PIXELS"]
