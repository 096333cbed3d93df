"""A live view of the line in a browser: `python -m runtime --model M --source S --serve 8080`.

Standard library only (`http.server.ThreadingHTTPServer`), bound to 127.0.0.1; it answers only requests
addressed to that address or `localhost` (`runtime.serve_guard`: a DNS-rebinding page cannot read the frames),
serves at most MAX_CONNECTIONS connections at once and drops a request not sent within REQUEST_TIMEOUT_S.
Endpoints:

- ``/``             the page (HTML + a little JavaScript, no external resources), with the current state in it;
- ``/events``       server-sent events: one JSON state per update (at most 10 a second), see `LiveState.snapshot`;
- ``/state.json``   the same state once;
- ``/frame.jpg``    the current frame with its heat-map overlay (JPEG);
- ``/stream.mjpg``  the overlays as an MJPEG stream (for players that are not browsers);
- ``/thumb/N.jpg``  the overlay of a recent anomalous frame N;
- POST ``/feedback``, ``/model/swap``, ``/model/rollback`` only when editing is enabled (`runtime.serve_feedback`:
  token, Host check); otherwise the view is read-only (405).

Recording a result is cheap (a few appends under a lock); overlays are drawn and JPEG-encoded only when a client
asks, at most once per frame (however many clients ask, and events between frames do not redraw it), so a slow
browser never slows the inspection. The FPS counts frames of the last FPS_WINDOW_S seconds up to now: it falls
during a stall instead of keeping its last value.
"""
from __future__ import annotations

import collections
import http.server
import re
import threading
import time
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import numpy as np

from runtime import strict_json
from runtime.errors import RuntimeInspectError
from runtime.serve_guard import BoundedThreadingServer, exposure_warning, refuse_foreign_host
from runtime.serve_page import page_with_state

MAX_UPDATES_PER_S = 10.0
SKIP_EVENTS = ("bad_frame", "corrupt")
#: seconds a client may take to send its request (idle half-sent requests are dropped after it)
REQUEST_TIMEOUT_S = 10.0
#: connections served at once (a page holds two or three); more are closed on arrival
MAX_CONNECTIONS = 32
#: the FPS is the frame rate over this many seconds up to now
FPS_WINDOW_S = 2.0
_THUMB_PATH = re.compile(r"/thumb/([0-9]{1,12})\.jpg", re.ASCII)


class LiveState:
    """What the page shows, updated by the inspection loop and read by the HTTP threads."""

    def __init__(self, threshold: Optional[float], backend: str = "", source: str = "", trace: int = 300,
                 thumbs: int = 6, window: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.backend = backend
        self.source = source
        self.counts = {"ok": 0, "anomalous": 0, "unknown": 0, "skipped": 0, "dropped": 0, "reconnects": 0}
        self.status = "running"
        self._trace: Deque[Tuple[int, float]] = collections.deque(maxlen=trace)
        self._latency: Deque[float] = collections.deque(maxlen=window)
        self._times: Deque[float] = collections.deque(maxlen=window)
        self._thumbs: Deque[Any] = collections.deque(maxlen=thumbs)  # Results of recent anomalous frames
        self._events: Deque[Dict[str, Any]] = collections.deque(maxlen=8)
        self._latest: Any = None
        self._jpeg: Tuple[int, Optional[bytes]] = (-1, None)  # (frame it was drawn for, bytes)
        self._thumb_jpegs: Dict[int, bytes] = {}
        self.version = 0
        self._frames_added = 0  # what the overlay cache is keyed on: events and status do not change the frame
        self._clock = clock
        self.drift: Optional[Dict[str, Any]] = None  # the stream's DriftMonitor.status() (runtime.drift)
        self.editable = False  # corrections enabled (runtime.serve_feedback)
        self._cond = threading.Condition()
        self._encoding = threading.Lock()  # one encoder at a time: each frame is drawn once, however many ask

    # -- writers (the inspection loop) ---------------------------------------------------------------
    def add_result(self, result: Any, drops: int = 0) -> None:
        with self._cond:
            verdict = {True: "anomalous", False: "ok", None: "unknown"}[result.is_anomalous]
            self.counts[verdict] += 1
            self.counts["dropped"] = int(drops)
            self._trace.append((int(result.frame_index), float(result.score)))
            self._latency.append(float(result.latency_ms))
            self._times.append(self._clock())
            self._latest = result
            self._frames_added += 1
            if result.is_anomalous:
                self._thumbs.append(result)
                keep = {int(r.frame_index) for r in self._thumbs}
                self._thumb_jpegs = {k: v for k, v in self._thumb_jpegs.items() if k in keep}
            self.version += 1
            self._cond.notify_all()

    def add_event(self, event: Dict[str, Any]) -> None:
        with self._cond:
            kind = str(event.get("event", ""))
            if kind in SKIP_EVENTS:
                self.counts["skipped"] += 1
            if kind == "reconnected":
                self.counts["reconnects"] += 1
            self._events.append({"event": kind, "message": str(event.get("message", ""))[:200],
                                 "time": float(event.get("time", time.time()))})
            self.version += 1
            self._cond.notify_all()

    def set_status(self, status: str) -> None:
        with self._cond:
            self.status = status
            self.version += 1
            self._cond.notify_all()

    # -- readers (the HTTP threads) -----------------------------------------------------------------
    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until the version differs from `seen` (or `timeout` passes); returns the version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout)
            return self.version

    def snapshot(self) -> Dict[str, Any]:
        with self._cond:
            lat = np.asarray(self._latency, dtype=np.float64)
            times = list(self._times)
            r = self._latest
            fps = _fps(times, self._clock())
            return {
                "version": self.version, "status": self.status, "backend": self.backend, "source": self.source,
                "threshold": self.threshold, "counts": dict(self.counts), "fps": round(fps, 2),
                "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
                "frame": None if r is None else {"index": int(r.frame_index), "score": float(r.score),
                                                 "verdict": r.verdict, "name": r.name,
                                                 "normalized_score": r.normalized_score},
                "trace": [[i, round(s, 6)] for i, s in self._trace],
                "thumbs": [{"index": int(t.frame_index), "score": round(float(t.score), 6)} for t in self._thumbs],
                "events": list(self._events), "drift": self.drift, "editable": self.editable,
            }

    def frame_jpeg(self) -> Optional[bytes]:
        """The current overlay as JPEG, drawn once per new frame (the inspection loop never waits for it)."""
        with self._encoding:
            with self._cond:
                r, frame = self._latest, self._frames_added
                cached_frame, cached = self._jpeg
            if r is None:
                return None
            if cached is not None and cached_frame == frame:
                return cached
            data = _encode(r.overlay(), r.frame_order)
            with self._cond:
                self._jpeg = (frame, data)
            return data

    def thumb_jpeg(self, index: int) -> Optional[bytes]:
        with self._encoding:
            with self._cond:
                hit = self._thumb_jpegs.get(index)
                r = next((t for t in self._thumbs if int(t.frame_index) == index), None)
            if hit is not None or r is None:
                return hit
            data = _encode(r.overlay(), r.frame_order, width=160)
            with self._cond:
                self._thumb_jpegs[index] = data
            return data


def _fps(times: Any, now: float) -> float:
    """Frames per second over the last FPS_WINDOW_S seconds up to `now`; for a slower line, one over the
    mean frame interval, or over the time since the last frame when that is longer (a stall lowers it)."""
    if not times:
        return 0.0
    recent = [t for t in times if t >= now - FPS_WINDOW_S]
    if len(recent) > 1:  # intervals between them, and the time since the last one counts too
        return (len(recent) - 1) / (now - recent[0]) if now > recent[0] else 0.0
    interval = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    wait = max(interval, now - times[-1])
    return 1.0 / wait if wait > 0 else 0.0


def _encode(image: np.ndarray, order: str, width: Optional[int] = None) -> bytes:
    import cv2  # noqa: PLC0415

    if order == "RGB":
        image = image[:, :, ::-1]
    if width is not None and image.shape[1] != width:
        h = max(1, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeInspectError("cannot encode the overlay as JPEG")
    return buf.tobytes()


class LiveServer:
    """The HTTP server of a LiveState on 127.0.0.1:`port` (0 = any free port; `url` says which). `host` other
    than 127.0.0.1 is the caller's choice; 0.0.0.0 is warned about. Requests must name the bound address,
    `localhost` or a name of `allowed_hosts` in their Host header (DNS rebinding)."""

    def __init__(self, state: LiveState, port: int, host: str = "127.0.0.1", allowed_hosts: Tuple[str, ...] = (),
                 request_timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 edits: Any = None):
        if not 0 <= int(port) <= 65535:
            raise RuntimeInspectError(f"--serve port must be 0..65535, got {port}")
        exposure_warning(host)
        self.state = state
        self._closing = threading.Event()
        handler = _handler(state, self._closing, host, tuple(allowed_hosts), float(request_timeout), edits)
        try:
            self._server = BoundedThreadingServer((host, int(port)), handler, max_connections)
        except OSError as e:
            raise RuntimeInspectError(f"cannot serve the live view on {host}:{port} ({e.strerror or e}): choose "
                                      f"another --serve PORT") from None
        self.port = int(self._server.server_address[1])
        if edits is not None:
            edits.port = self.port
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="live-view", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        with self.state._cond:  # wake the SSE / MJPEG loops so they end
            self.state.version += 1
            self.state._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)


def _handler(state: LiveState, closing: threading.Event, host: str, allowed_hosts: Tuple[str, ...],
             request_timeout: float, edits: Any = None) -> type:
    period = 1.0 / MAX_UPDATES_PER_S

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "edge-inspect-live"
        timeout = request_timeout  # the socket's: an idle or half-sent request gives its thread back

        def log_message(self, *args: Any) -> None:  # the CLI's stdout is for verdicts
            pass

        def _send(self, body: bytes, ctype: str, code: int = 200) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            thumb = _THUMB_PATH.fullmatch(path)
            try:
                if refuse_foreign_host(self, host, allowed_hosts):
                    return
                if path in ("/", "/index.html"):
                    self._send(page_with_state(state.snapshot()).encode("utf-8"), "text/html; charset=utf-8")
                elif path == "/state.json":
                    self._send(strict_json.dumps(state.snapshot()).encode("utf-8"), "application/json")
                elif path == "/frame.jpg":
                    data = state.frame_jpeg()
                    self._send(data, "image/jpeg") if data else self._send(b"no frame yet", "text/plain", 404)
                elif thumb is not None:
                    data = state.thumb_jpeg(int(thumb.group(1)))
                    self._send(data, "image/jpeg") if data else self._send(b"no such thumbnail", "text/plain", 404)
                elif path == "/events":
                    self._events()
                elif path == "/stream.mjpg":
                    self._mjpeg()
                else:
                    self._send(b"not found", "text/plain", 404)
            except OSError:  # the browser went away, or a send outlasted the timeout
                self.close_connection = True

        def do_POST(self) -> None:  # noqa: N802 - corrections and swaps, when enabled (runtime.serve_feedback)
            from runtime.serve_feedback import read_body  # noqa: PLC0415

            body = read_body(self.headers, self.rfile) if edits is not None else None
            code, answer = ((405, {"error": "read-only live view: start it with --feedback-dir to edit"})
                            if edits is None else (413, {"error": "body missing or too large"}) if body is None
                            else edits.handle(self.path.split("?", 1)[0], self.headers, body))
            self._send(strict_json.dumps(answer).encode("utf-8"), "application/json", code)

        def _events(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            while not closing.is_set():
                version = state.wait_change(seen, timeout=1.0)
                if version == seen:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    seen = version
                    self.wfile.write(b"data: " + strict_json.dumps(state.snapshot()).encode("utf-8") + b"\n\n")
                self.wfile.flush()
                time.sleep(period)

        def _mjpeg(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            while not closing.is_set():
                version = state.wait_change(seen, timeout=1.0)
                data = state.frame_jpeg() if version != seen else None
                seen = version
                if data:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " +
                                     str(len(data)).encode("ascii") + b"\r\n\r\n" + data + b"\r\n")
                    self.wfile.flush()
                time.sleep(period)

    return Handler


class LiveView:
    """What `python -m runtime --serve PORT` drives: a LiveState and its LiveServer."""

    def __init__(self, port: int, inspector: Any, source: str, edits: Any = None):
        self.state = LiveState(inspector.threshold, backend=f"{inspector.backend} ({inspector.device})",
                               source=str(source))
        self.state.editable = edits is not None
        self.edits = edits
        self.server = LiveServer(self.state, port, edits=edits).start()
        self.url = self.server.url

    def on_result(self, result: Any, stream: Any) -> None:
        self.state.drift = stream.drift.status() if getattr(stream, "drift", None) is not None else None
        if self.edits is not None:
            self.edits.remember(result)
        self.state.add_result(result, drops=getattr(stream, "drops", 0))

    def on_event(self, event: Dict[str, Any]) -> None:
        if event.get("event") in ("model_swapped", "model_rolled_back"):  # the version's own threshold
            self.state.threshold = event.get("threshold")
        self.state.add_event(event)

    def serve_until_interrupted(self, status: str, message: str = "") -> None:
        """Keep the last state on the page after the source ended, until Ctrl-C; `message` is printed once the
        page shows `status` (so whoever reads the message finds the page in that state)."""
        self.state.set_status(status)
        if message:
            print(message, flush=True)
        wait_for_interrupt()

    def close(self) -> None:
        self.server.close()


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (the live view keeps serving its last state meanwhile)."""
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


__all__ = ["LiveState", "LiveServer", "LiveView", "wait_for_interrupt"]
