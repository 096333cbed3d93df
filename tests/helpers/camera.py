"""A real MJPEG camera on 127.0.0.1 for the watchdog tests: ffmpeg (the binary of the `imageio-ffmpeg` pip
package) serving `-f mpjpeg -listen 1`, which takes one client at a time, so a supervisor thread starts it again
when it exits (bounded restarts). `freeze()`/`resume()` send SIGSTOP/SIGCONT: the connection stays open and no
frame arrives, the failure a frozen camera shows."""
from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from typing import List, Optional

import pytest


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        pytest.skip("imageio-ffmpeg is not installed (pip install imageio-ffmpeg): no ffmpeg camera")
    return imageio_ffmpeg.get_ffmpeg_exe()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc: connecting would use up the one client)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])
    except OSError:
        return True


class FfmpegCamera:
    def __init__(self, fps: int = 10, max_starts: int = 20):
        self.exe = ffmpeg_exe()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/cam.mjpg"
        self.fps = fps
        self.max_starts = max_starts
        self.starts = 0
        self.proc: Optional[subprocess.Popen] = None
        self.frozen: Optional[subprocess.Popen] = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="camera-supervisor")

    def _start(self) -> None:
        cmd: List[str] = [self.exe, "-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi", "-i",
                          f"testsrc=size=64x48:rate={self.fps}", "-f", "mpjpeg", "-listen", "1", self.url]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.starts += 1

    def _supervise(self) -> None:
        while not self._closing.is_set() and self.starts < self.max_starts:
            with self._lock:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
            self._closing.wait(0.05)

    def start(self) -> "FfmpegCamera":
        self._start()
        self._supervisor.start()
        deadline = time.monotonic() + 10
        while not _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _listening(self.port):
            self.close()
            pytest.skip("ffmpeg did not start listening on 127.0.0.1 within 10 s")
        return self

    def freeze(self) -> None:
        with self._lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = self.proc

    def resume(self) -> None:
        assert self.frozen is not None
        self.frozen.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self._closing.set()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
                self.proc.wait(5)
