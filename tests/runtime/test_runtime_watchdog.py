"""The camera watchdog: a frozen camera is reported as a stall within the frame timeout and reopened; a short freeze
resumes on the same connection; stop returns promptly in every state and no thread keeps the capture.
A real ffmpeg MJPEG camera on 127.0.0.1 (tests/helpers/camera.py), frozen with SIGSTOP and resumed with
SIGCONT. Every wait is bounded; the durations measured are printed (run with -s) for the issue's report.
The bounds asserted are the watchdog's contract with generous slack, not speed."""
from __future__ import annotations

import subprocess
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.camera import FfmpegCamera
from tests.helpers.tiny_models import make_model

from runtime import Inspector
from runtime.capture_io import wait_for_capture_threads
from runtime.errors import SourceError
from runtime.sources import open_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inspector(tmp_path_factory):
    return Inspector(make_model(str(tmp_path_factory.mktemp("wd")), batch_max=4), backend="onnxruntime")


@pytest.fixture
def camera():
    cam = FfmpegCamera().start()
    yield cam
    cam.close()


class Consumer:
    """Iterates a stream in a thread, time-stamping frames and events."""

    def __init__(self, stream):
        self.stream = stream
        self.frames = []  # monotonic arrival times
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            for _r in self.stream:
                self.frames.append(time.monotonic())
        except Exception as e:
            self.errors.append(e)

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            time.sleep(0.02)
        return predicate()


def _events(stream, kind):
    return [e for e in stream.events if e["event"] == kind]


def _stop_and_measure(stream, consumer):
    t0 = time.monotonic()
    stream.stop()
    stop_s = time.monotonic() - t0
    consumer.thread.join(5)
    assert not consumer.thread.is_alive() and not stream.reader.alive
    left = wait_for_capture_threads(10)
    gone_s = time.monotonic() - t0
    assert left == 0, "a capture thread still holds the capture"
    return stop_s, gone_s


def test_a_frozen_camera_is_reported_within_the_timeout_and_reconnects(camera, inspector):
    timeout = 1.5
    st = inspector.stream(camera.url, frame_timeout=timeout, backoff_s=0.2, backoff_max_s=0.5, max_reconnects=40)
    c = Consumer(st)
    c.thread.start()
    assert c.wait(lambda: len(c.frames) >= 5, 10), c.errors
    camera.freeze()
    frozen_at = time.monotonic()
    stamp = {}
    assert c.wait(lambda: _events(st, "stall"), 3 * timeout + 2), "no stall reported"
    stamp["stall"] = time.monotonic()
    stall = _events(st, "stall")[0]
    last_frame = c.frames[-1]
    assert stall["seconds"] >= timeout
    n_before = len(c.frames)
    camera.resume()
    assert c.wait(lambda: _events(st, "reconnected") and len(c.frames) > n_before + 5, 20), (st.events, c.errors)
    stop_s, gone_s = _stop_and_measure(st, c)
    assert not c.errors and st.stalls == 1 and st.reconnects >= 1
    print(f"\nstall reported {stamp['stall'] - frozen_at:.2f} s after SIGSTOP, {stamp['stall'] - last_frame:.2f} s "
          f"after the last frame (frame timeout {timeout} s; event says {stall['seconds']:.2f} s); reconnected; "
          f"stop returned in {stop_s:.3f} s, capture threads gone {gone_s:.3f} s after stop")


def test_a_short_freeze_resumes_on_the_same_connection(camera, inspector):
    st = inspector.stream(camera.url, frame_timeout=4.0, backoff_s=0.2)
    c = Consumer(st)
    c.thread.start()
    assert c.wait(lambda: len(c.frames) >= 5, 10), c.errors
    camera.freeze()
    time.sleep(1.0)
    n = len(c.frames)
    camera.resume()
    assert c.wait(lambda: len(c.frames) > n + 5, 10)
    assert not _events(st, "stall") and st.reconnects == 0 and camera.starts == 1
    stop_s, gone_s = _stop_and_measure(st, c)
    print(f"\nstop while reading: {stop_s:.3f} s, capture threads gone after {gone_s:.3f} s")


def test_stop_while_stalled_returns_promptly(camera, inspector):
    timeout = 3.0  # OpenCV's read timeout is this + 0.5 s: it bounds how long the blocked read can last
    st = inspector.stream(camera.url, frame_timeout=timeout)
    c = Consumer(st)
    c.thread.start()
    assert c.wait(lambda: len(c.frames) >= 3, 10)
    camera.freeze()
    time.sleep(1.0)  # stalled, not yet past the timeout: the capture thread is blocked in OpenCV's read
    stop_s, gone_s = _stop_and_measure(st, c)  # still frozen while measuring
    camera.resume()
    print(f"\nstop while stalled: {stop_s:.3f} s; the blocked capture thread released the capture "
          f"{gone_s:.3f} s after stop (OpenCV read timeout {timeout + 0.5} s from the freeze)")


def test_stop_while_connecting_returns_promptly(camera):
    camera.freeze()  # the kernel accepts the connection, the camera never answers: open blocks
    outcome = []
    src = open_source(camera.url, frame_timeout=3.0, open=False)

    def connect():
        try:
            src.open()
            outcome.append("opened")
        except SourceError as e:
            outcome.append(str(e))

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    src.close()
    t.join(5)
    stop_s = time.monotonic() - t0
    assert not t.is_alive() and outcome and "cannot open" in outcome[0]
    left = wait_for_capture_threads(10)  # still frozen: the open ends by OpenCV's open timeout (3.5 s)
    gone_s = time.monotonic() - t0
    camera.resume()
    assert left == 0
    print(f"\nclose while connecting: open gave up {stop_s:.3f} s after close; the capture thread blocked in "
          f"OpenCV's open ended {gone_s:.3f} s after close (open timeout 3.5 s from the start)")


def test_cli_reports_the_stall_and_ctrl_c_ends_it(camera, tmp_path):
    import signal

    model = make_model(str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--model", model, "--source", camera.url,
                             "--frame-timeout", "1.5", "--backend", "onnxruntime", "--out", str(tmp_path / "o")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, errs = [], []
    readers = [threading.Thread(target=lambda s=s, out=out: out.extend(s), daemon=True)
               for s, out in ((proc.stdout, lines), (proc.stderr, errs))]
    for r in readers:
        r.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(ln.startswith("frame ") for ln in lines) < 5:
            time.sleep(0.05)
        assert sum(ln.startswith("frame ") for ln in lines) >= 5, errs
        camera.freeze()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("no frame for" in e for e in errs):
            time.sleep(0.05)
        assert any("no frame for" in e and "reopening" in e for e in errs), errs
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
        exit_s = time.monotonic() - t0
    finally:
        camera.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    for r in readers:
        r.join(5)
    assert rc == 130, (rc, errs)
    assert any(ln.startswith("summary:") and "1 stalls" in ln for ln in lines), lines[-3:]
    assert not any("terminate called" in e or "Traceback" in e for e in errs), errs
    print(f"\nCLI: stall on stderr, Ctrl-C (SIGINT) while reconnecting: exited {exit_s:.3f} s later with 130")


class HangingCapture:
    """A capture whose reads hang once `script["hang"]` is set (a pipeline that stops producing buffers,
    where OpenCV has no read timeout): the watchdog must not rely on OpenCV. A hung read returns when the
    test sets `script["unblock"]` (bounded), and any read after release is recorded as a violation."""

    def __init__(self, script):
        self.script = script
        self.released = False
        script["opens"] += 1

    def isOpened(self):
        return True

    def read(self):
        if self.released:
            self.script["violations"] += 1
        if self.script["hang"] and self.script["opens"] == 1:
            self.script["unblock"].wait(20)
            if self.released:
                self.script["violations"] += 1
            return False, None
        time.sleep(0.02)
        import numpy as np
        return True, np.zeros((32, 48, 3), np.uint8)

    def release(self):
        self.released = True
        self.script["releases"] += 1


def test_the_watchdog_does_not_rely_on_opencv_timeouts(inspector):
    script = {"opens": 0, "releases": 0, "violations": 0, "hang": False, "unblock": threading.Event()}
    st = inspector.stream(0, capture_factory=lambda t, a: HangingCapture(script), frame_timeout=0.5,
                          backoff_s=0.05)
    c = Consumer(st)
    c.thread.start()
    assert c.wait(lambda: len(c.frames) >= 3, 10)
    script["hang"] = True  # the first capture's next read never returns by itself
    assert c.wait(lambda: _events(st, "stall") and _events(st, "reconnected"), 10), st.events
    n = len(c.frames)
    assert c.wait(lambda: len(c.frames) > n + 3, 10)  # frames flow from the reopened capture
    t0 = time.monotonic()
    st.stop()
    stop_s = time.monotonic() - t0
    c.thread.join(5)
    assert not c.thread.is_alive() and not c.errors
    script["unblock"].set()  # the hung read returns: only now may its thread release the first capture
    assert wait_for_capture_threads(10) == 0
    assert script["violations"] == 0 and script["releases"] == script["opens"]
    print(f"\nhung read without OpenCV timeouts: stall + reopen, stop in {stop_s:.3f} s")


def test_a_reader_never_closes_its_source_under_a_read():
    from runtime.reader import FrameReader
    from runtime.source_base import FrameSource

    class Stuck(FrameSource):  # a file read that hangs (a network share gone away)
        def __init__(self):
            super().__init__()
            self.entered, self.unblock = threading.Event(), threading.Event()
            self.closed_during_read = False
            self.reading = False
            self.closed = threading.Event()

        def read(self):
            self.reading = True
            self.entered.set()
            self.unblock.wait(20)
            self.reading = False
            return None

        def close(self):
            self.closed_during_read = self.reading
            self.closed.set()

    src = Stuck()
    reader = FrameReader(src).start()
    assert src.entered.wait(5)
    t0 = time.monotonic()
    reader.stop(timeout=0.2)
    assert time.monotonic() - t0 < 5 and not src.closed.is_set()  # stop returned; the source is still in use
    src.unblock.set()
    assert src.closed.wait(5) and not src.closed_during_read  # closed by the reader thread, after its read


def test_cli_ctrl_c_while_connecting(camera, tmp_path):
    import signal

    camera.freeze()  # the connection is accepted, nothing answers: the CLI is connecting
    model = make_model(str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--model", model, "--source", camera.url,
                             "--frame-timeout", "20", "--backend", "onnxruntime"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(ln.startswith("model ") for ln in out):
            time.sleep(0.05)
        assert any(ln.startswith("model ") for ln in out)  # the model is loaded; the stream is opening
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
        exit_s = time.monotonic() - t0
        err = proc.stderr.read()
    finally:
        camera.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert rc == 130 and "error: interrupted" in err and "Traceback" not in err, err
    print(f"\nCLI: Ctrl-C while connecting to a frozen camera: exited {exit_s:.3f} s later with 130")
