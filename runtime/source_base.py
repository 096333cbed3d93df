"""What every frame source shares: the Frame record, the FrameSource base class, events, and credential
redaction for anything a source writes (descriptions, logs, events, the CLI's jsonl `source` field)."""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np

log = logging.getLogger("runtime.sources")

EventSink = Callable[[Dict[str, Any]], None]
#: events a user must see without asking (logged at WARNING): lost frames, lost or stalled sources, reconnects
WARNING_EVENTS = ("corrupt", "frames_lost", "skipped_files", "dropped_source", "reconnect_attempt", "reconnected",
                  "reconnect_failed", "stall")

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s]*)@")


def redact(text: str) -> str:
    """Hide the password of every `scheme://user:password@host` in `text`: `rtsp://admin:***@host/...`."""

    def hide(m: "re.Match[str]") -> str:
        user, sep, _password = m.group(2).partition(":")
        return f"{m.group(1)}{user}{':***' if sep else ''}@"

    return _USERINFO.sub(hide, text)


@dataclass
class Frame:
    """One item from a source: `image` (H, W, 3) BGR uint8, or None with `error` for a corrupt item."""

    index: int
    timestamp: float
    image: Optional[np.ndarray]
    name: str = ""
    error: Optional[str] = None


def emit(sink: Optional[EventSink], kind: str, message: str, **fields: Any) -> Dict[str, Any]:
    """Log an event (WARNING for the kinds in WARNING_EVENTS) and hand it to `sink`; returns it."""
    ev = {"event": kind, "message": message, "time": time.time()}
    ev.update(fields)
    log.log(logging.WARNING if kind in WARNING_EVENTS else logging.INFO, message)
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


__all__ = ["Frame", "FrameSource", "EventSink", "emit", "redact", "WARNING_EVENTS"]
