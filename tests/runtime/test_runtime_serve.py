"""The live view (`python -m runtime ... --serve PORT`): its state, its HTTP endpoints (page, server-sent events,
frame, MJPEG, thumbnails), and the page as a real headless Chromium renders it (skipped, with the reason, when
no Chromium is installed: `apt-get install chromium`)."""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import make_model

ROOT = Path(__file__).resolve().parents[2]
SIZE = (32, 48)
N_IMAGES = 14
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _images(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        img = np.full((96, 144, 3), 60 + 10 * (i % 5), np.uint8)
        cv2.circle(img, (30 + 7 * i, 48), 10 + i, (255, 255, 255), -1)
        img = cv2.add(img, rng.integers(0, 40, img.shape, dtype=np.uint8))
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model = make_model(str(d), size=SIZE)
    _images(d / "images")
    from runtime.inspector import Inspector

    with Inspector(model, backend="onnxruntime") as insp:
        scores = [insp.inspect(cv2.imread(str(p))).score for p in sorted((d / "images").iterdir())]
    threshold = float(np.median(scores))  # about half the frames anomalous: thumbnails to show
    return d, model, threshold


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def _first_sse(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers.get("Content-Type", "").startswith("text/event-stream")
        for raw in r:
            line = raw.decode("utf-8").strip()
            if line.startswith("data: "):
                return json.loads(line[6:])
    raise AssertionError("the event stream ended without a data line")


def _first_mjpeg_part(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers.get("Content-Type", "").startswith("multipart/x-mixed-replace")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += r.read(1)
        head = buf.decode("ascii")
        assert "--frame" in head and "image/jpeg" in head
        length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
        data = r.read(length)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# -- the state, without HTTP ---------------------------------------------------------------------------------
def test_live_state_counts_trace_latency_and_thumbnails(setup):
    d, model, threshold = setup
    from runtime.inspector import Inspector
    from runtime.serve import LiveState

    with Inspector(model, backend="onnxruntime", threshold=threshold) as insp:
        results = [insp.inspect(cv2.imread(str(p))) for p in sorted((d / "images").iterdir())] * 3
    state = LiveState(threshold, backend="onnxruntime", source="folder", trace=20, thumbs=4)
    for r in results:
        state.add_result(r, drops=2)
    state.add_event({"event": "corrupt", "message": "cannot read image x.png", "time": 1.0})
    state.add_event({"event": "reconnected", "message": "camera back", "time": 2.0})
    s = state.snapshot()
    anomalous = sum(bool(r.is_anomalous) for r in results)
    assert s["counts"] == {"ok": len(results) - anomalous, "anomalous": anomalous, "unknown": 0, "skipped": 1,
                           "dropped": 2, "reconnects": 1}
    assert len(s["trace"]) == 20 and s["trace"][-1] == [results[-1].frame_index, round(results[-1].score, 6)]
    lat = [r.latency_ms for r in results]
    assert s["p50_ms"] == pytest.approx(np.percentile(lat, 50), abs=1e-3)
    assert s["p99_ms"] == pytest.approx(np.percentile(lat, 99), abs=1e-3)
    last_bad = [r.frame_index for r in results if r.is_anomalous][-4:]
    assert [t["index"] for t in s["thumbs"]] == last_bad
    assert s["frame"]["index"] == results[-1].frame_index and s["threshold"] == threshold
    assert [e["event"] for e in s["events"]] == ["corrupt", "reconnected"]
    img = cv2.imdecode(np.frombuffer(state.frame_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == results[-1].frame.shape  # the overlay at the frame's own size
    assert state.thumb_jpeg(last_bad[-1]) is not None and state.thumb_jpeg(10 ** 6) is None


def test_live_state_without_threshold_counts_unknown(setup):
    d, model, _ = setup
    from runtime.inspector import Inspector
    from runtime.serve import LiveState

    with Inspector(model, backend="onnxruntime") as insp:
        r = insp.inspect(cv2.imread(str(sorted((d / "images").iterdir())[0])))
    state = LiveState(None)
    assert state.snapshot()["frame"] is None and state.frame_jpeg() is None
    state.add_result(r)
    s = state.snapshot()
    assert s["counts"]["unknown"] == 1 and s["frame"]["verdict"] == "unknown" and s["threshold"] is None


def test_page_state_cannot_close_the_script():
    from runtime.serve_page import page_with_state

    page = page_with_state({"source": "</script><script>alert(1)</script>"})
    assert "alert(1)" in page and "</script><script>alert" not in page


def test_port_in_use_is_the_runtimes_error():
    import socket

    from runtime.errors import RuntimeInspectError
    from runtime.serve import LiveServer, LiveState

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        with pytest.raises(RuntimeInspectError, match="choose another --serve PORT"):
            LiveServer(LiveState(None), s.getsockname()[1])
    with pytest.raises(RuntimeInspectError, match="0..65535"):
        LiveServer(LiveState(None), 70000)


# -- the CLI with --serve, over HTTP and in a browser ------------------------------------------------------------
@pytest.fixture(scope="module")
def served(setup, tmp_path_factory):
    """`python -m runtime --serve 0` on the image folder, left serving its final state; yields (url, stdout)."""
    d, model, threshold = setup
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--model", model, "--source", str(d / "images"),
                             "--backend", "onnxruntime", "--threshold", repr(threshold), "--serve", "0", "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    out, deadline = [], time.monotonic() + 120
    while not any("still serving" in ln for ln in out):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"no 'still serving' line in 120 s: {out}"
        try:
            out.append(lines.get(timeout=1.0))
        except queue.Empty:
            pass
    url = next(ln.split("live view: ")[1].split()[0] for ln in out if ln.startswith("live view: http"))
    yield url, out, proc, threshold
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_cli_serve_endpoints(served):
    url, out, _, threshold = served
    assert url.startswith("http://127.0.0.1:")
    assert any(ln.startswith(f"summary: {N_IMAGES} frames") for ln in out)
    status, ctype, body = _get(url)
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode("utf-8")
    for needle in ('id="frame"', 'id="trace"', 'id="thumbs"', "EventSource(\"/events\")", 'id="p99"'):
        assert needle in page
    initial = json.loads(page.split("const INITIAL = ", 1)[1].split(";\n", 1)[0])  # the state, for the first paint
    assert initial["counts"]["ok"] + initial["counts"]["anomalous"] == N_IMAGES
    s = _first_sse(url + "events")
    assert s["status"] == "source ended" and s["threshold"] == pytest.approx(threshold)
    assert s["counts"]["ok"] + s["counts"]["anomalous"] == N_IMAGES and s["counts"]["anomalous"] >= 1
    assert len(s["trace"]) == N_IMAGES and s["fps"] > 0 and s["p99_ms"] >= s["p50_ms"] > 0
    assert json.loads(_get(url + "state.json")[2])["counts"] == s["counts"]
    status, ctype, body = _get(url + "frame.jpg")
    frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert ctype == "image/jpeg" and frame.shape == (96, 144, 3)
    assert _first_mjpeg_part(url + "stream.mjpg").shape == (96, 144, 3)
    thumb = s["thumbs"][-1]["index"]
    assert _get(f"{url}thumb/{thumb}.jpg")[1] == "image/jpeg"
    for missing in ("thumb/999999.jpg", "nothing", "../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(url + missing)
        assert e.value.code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium) for the browser test")
def test_cli_serve_page_in_headless_chromium(served, tmp_path):
    url = served[0]
    shot = tmp_path / "live.png"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,820",
                        f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (820, 1280) and img.std() > 20  # not a blank page
    # the frame panel (left, below the header) shows the heat map: strongly coloured pixels
    panel = img[200:440, 60:500].astype(np.int16)
    chroma = panel.max(axis=2) - panel.min(axis=2)
    assert (chroma > 80).mean() > 0.3, f"frame panel not coloured: mean chroma {chroma.mean():.1f}"
    # the trace canvas (right) has the blue score line and the red dashed threshold line
    trace = img[260:480, 570:1250].astype(np.int16)
    blue = (trace[:, :, 0] > 180) & (trace[:, :, 2] < 140)
    red = (trace[:, :, 2] > 200) & (trace[:, :, 0] < 140) & (trace[:, :, 1] < 140)
    assert blue.sum() > 100 and red.sum() > 50, (blue.sum(), red.sum())


def test_cli_serve_stops_on_ctrl_c(served):
    proc = served[2]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_cli_serve_bad_port_exits_2(setup):
    d, model, _ = setup
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "runtime", "--model", model, "--source", str(d / "images"),
                        "--serve", "70000"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "65535" in r.stderr
