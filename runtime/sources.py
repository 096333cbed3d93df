"""Frame sources for `Inspector.stream` and `python -m runtime`: which source a spec names, and image folders.

`open_source(spec)` understands, in this order:
- an existing folder (its images and those of its sub-folders, sorted by path; a corrupt image is reported and
  skipped; files of other types are reported once) or an existing file: an image (one frame) or a video (every
  frame, nothing dropped; frames it announces but cannot deliver are reported lost). An existing path wins: a
  folder named ``123`` is a folder, not camera 123;
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

#: File name endings read as images, everywhere in the toolkit (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm", ".jp2")
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


def is_image_file(path: "str | os.PathLike[str]") -> bool:
    """True for a file name with one of `IMAGE_EXTENSIONS` (any case) that is not hidden (macOS ``._NAME.png``
    resource forks and the like are skipped)."""
    name = os.path.basename(os.fspath(path))
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def scan_folder(folder: "str | os.PathLike[str]", recursive: bool = True) -> Tuple[List[str], List[str]]:
    """(image files, other files) of `folder` and, when `recursive`, of its sub-folders, sorted by path; the
    others relative to `folder`. Hidden files and folders are ignored. Names that are not regular files (a FIFO,
    a socket, a device, a broken link) are among the others, with what they are in brackets."""
    root = os.fspath(folder)
    images: List[str] = []
    others: List[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for n in filenames:
            full = os.path.join(dirpath, n)
            if n.startswith("."):
                continue
            if not os.path.isfile(full):  # a FIFO, socket, device or broken link: reading it would block or fail
                others.append(f"{os.path.relpath(full, root)} ({_kind_of_file(full)}, not read)")
            elif is_image_file(n):
                images.append(full)
            else:
                others.append(os.path.relpath(full, root))
    key = lambda p: p.replace(os.sep, "/")  # noqa: E731  (one order on every platform)
    return sorted(images, key=key), sorted(others, key=key)


def list_images(folder: "str | os.PathLike[str]", recursive: bool = True) -> List[str]:
    """The image files under `folder` (sub-folders included unless `recursive` is False), sorted by path."""
    return scan_folder(folder, recursive)[0]


def _listing(names: List[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _folder_source(text: str, on_event: Optional[EventSink], max_pixels: int) -> FolderSource:
    files, others = scan_folder(text)
    if not files:
        raise SourceError(f"folder {text} has no images ({', '.join(IMAGE_EXTENSIONS)}) in it or in its "
                          f"sub-folders: check the path")
    src = FolderSource(files, f"folder {text} ({len(files)} images, sub-folders included)", on_event=on_event,
                       max_pixels=max_pixels)
    if others:
        emit(on_event, "skipped_files", f"folder {text}: skipped {len(others)} file(s) without an image extension "
                                        f"({_listing(others)})", files=others)
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
        if text.lower().endswith(IMAGE_EXTENSIONS):
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
           "scan_folder", "is_image_file", "is_gstreamer_pipeline", "image_size_from_header", "redact",
           "IMAGE_EXTENSIONS", "URL_SCHEMES",
           "MAX_PIXELS"]
