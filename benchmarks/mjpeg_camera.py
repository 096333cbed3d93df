"""A live MJPEG-over-HTTP camera on 127.0.0.1 for the soak: it can be dropped and brought back.

Two implementations with one interface (`start()`, `drop()`, `restore() -> float`, `close()`, `url`,
`frames_sent`, `kind`):

- `FfmpegCamera`: ffmpeg (the binary of the `imageio-ffmpeg` pip package) loops an MJPG video in real time and
  serves it as `multipart/x-mixed-replace` (its `mpjpeg` muxer, `-listen 1`). ffmpeg's HTTP server takes one
  client and exits when it leaves, so a supervisor thread starts a fresh ffmpeg whenever the camera is up and
  the last one has ended (that is also what a client's reconnect needs).
- `StdlibCamera`: the same stream from `http.server`, for machines where ffmpeg cannot run.

`drop()` kills the server (the client sees its connection close); `restore()` starts it again and returns the
`time.time()` at which it listens, from which the soak measures the reconnect gap.
"""
from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from typing import List, Optional

BOUNDARY = "soakframe"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ffmpeg_exe() -> Optional[str]:
    """Path of imageio-ffmpeg's ffmpeg binary, or None when the package is not installed."""
    try:
        import imageio_ffmpeg  # noqa: PLC0415
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


class FfmpegCamera:
    """ffmpeg serving `video` (an MJPG .avi, copied without re-encoding) at its own frame rate."""

    kind = "ffmpeg"

    def __init__(self, video: str, exe: str, port: Optional[int] = None):
        self.video = video
        self.exe = exe
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/cam.mjpg"
        self.frames_sent = 0  # summed over every ffmpeg process (from `-progress`)
        self.processes = 0
        self._up = threading.Event()
        self._closed = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def _command(self) -> List[str]:
        return [self.exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-progress", "pipe:1", "-re",
                "-stream_loop", "-1", "-i", self.video, "-c:v", "copy", "-f", "mpjpeg", "-listen", "1", self.url]

    def _supervise(self) -> None:
        while not self._closed.is_set():
            if not self._up.wait(0.05):
                continue
            proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            with self._lock:
                self._proc = proc
                self.processes += 1
            last = 0
            assert proc.stdout is not None
            for line in proc.stdout:  # ends when ffmpeg exits (client gone, or killed by drop/close)
                if line.startswith("frame="):
                    try:
                        last = int(line.split("=", 1)[1])
                    except ValueError:
                        pass
            proc.wait()
            with self._lock:
                self.frames_sent += last
                self._proc = None

    def start(self) -> "FfmpegCamera":
        self._up.set()
        self._thread = threading.Thread(target=self._supervise, name="ffmpeg-camera", daemon=True)
        self._thread.start()
        if not _wait_listening_no_probe(self.port):
            self.close()
            raise RuntimeError(f"ffmpeg did not start listening on {self.url}")
        return self

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def drop(self) -> None:
        self._up.clear()
        self._kill()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the supervisor may be between two ffmpeg processes
            with self._lock:
                if self._proc is None:
                    return
            self._kill()
            time.sleep(0.02)

    def restore(self) -> float:
        self._up.set()
        _wait_listening_no_probe(self.port)
        return time.time()

    def close(self) -> None:
        self._closed.set()
        self._up.clear()
        self._kill()
        if self._thread is not None:
            self._thread.join(5.0)


def _wait_listening_no_probe(port: int, timeout: float = 5.0) -> bool:
    """Wait until something listens on `port`, without connecting (ffmpeg's one-client server would take a
    probe connection as its client and exit): read the kernel's table of listening sockets."""
    hexport = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/net/tcp", "r", encoding="ascii") as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(hexport) and parts[3] == "0A":  # 0A = LISTEN
                        return True
        except OSError:  # no /proc (not Linux): fall back to a short fixed wait
            time.sleep(0.3)
            return True
        time.sleep(0.01)
    return False


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StdlibCamera:
    """The same MJPEG stream from the standard library: `jpegs` (encoded frames) sent in a loop at `fps`."""

    kind = "stdlib"

    def __init__(self, jpegs: List[bytes], fps: float = 30.0, port: Optional[int] = None):
        self.jpegs = list(jpegs)
        self.fps = float(fps)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/cam.mjpg"
        self.frames_sent = 0
        self.processes = 0
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._live = threading.Event()
        self._count_lock = threading.Lock()

    def _handler(self) -> type:
        cam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                i = 0
                period = 1.0 / cam.fps
                nxt = time.monotonic()
                try:
                    while cam._live.is_set():
                        data = cam.jpegs[i % len(cam.jpegs)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(data)}\r\n\r\n".encode("ascii") + data + b"\r\n")
                        self.wfile.flush()
                        with cam._count_lock:
                            cam.frames_sent += 1
                        i += 1
                        nxt += period
                        time.sleep(max(0.0, nxt - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def _serve(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        self.processes += 1
        self._live.set()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stdlib-camera", daemon=True)
        self._thread.start()

    def start(self) -> "StdlibCamera":
        self._serve()
        return self

    def drop(self) -> None:
        self._live.clear()  # the handlers leave their loop and the connection closes
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restore(self) -> float:
        self._serve()
        return time.time()

    def close(self) -> None:
        self.drop()


def make_camera(video: str, jpegs: List[bytes], fps: float, prefer: str = "auto"):
    """FfmpegCamera when ffmpeg is installed and `prefer` allows it, else StdlibCamera; returns (camera, why)."""
    exe = ffmpeg_exe() if prefer in ("auto", "ffmpeg") else None
    if exe is not None and os.path.isfile(exe):
        return FfmpegCamera(video, exe), f"ffmpeg {os.path.basename(exe)} (imageio-ffmpeg)"
    if prefer == "ffmpeg":
        raise RuntimeError("--camera ffmpeg needs ffmpeg: pip install imageio-ffmpeg")
    why = "requested" if prefer == "stdlib" else "imageio-ffmpeg is not installed"
    return StdlibCamera(jpegs, fps), f"http.server ({why})"


__all__ = ["FfmpegCamera", "StdlibCamera", "make_camera", "ffmpeg_exe", "free_port"]
