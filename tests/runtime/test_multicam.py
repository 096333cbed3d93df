"""Several cameras in one process (runtime.multicam.Line): real ffmpeg MJPEG cameras on 127.0.0.1, a tiny model,
a callback sink and a webhook sink; a line file through the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from runtime.line import LineError, line_from_sources, load_line
from runtime.multicam import Line
from tests.helpers.camera import FfmpegCamera
from tests.runtime.test_sinks import Receiver


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tests.helpers.tiny_models import make_model

    return make_model(str(tmp_path_factory.mktemp("m")), channel_order="BGR", batch_max=4, threshold=0.5)


def test_two_cameras_one_model_every_frame_accounted_and_every_verdict_sent(model):
    cams = [FfmpegCamera(fps=20).start(), FfmpegCamera(fps=20).start()]
    got = []
    recv = Receiver(fail=2)
    try:
        spec = line_from_sources([c.url for c in cams], model, batch=4)
        spec.cameras[1].threshold = -1.0  # every frame of cam2 is anomalous
        line = Line(spec, sinks=[got.append, recv.url], max_frames=25)
        seen = {"cam1": 0, "cam2": 0}
        with line:
            for name, r in line:
                seen[name] += 1
        summary = line.summary()
    finally:
        for c in cams:
            c.close()
        recv.close()
    assert seen == {"cam1": 25, "cam2": 25}
    by_cam = {c["camera"]: c for c in summary["cameras"]}
    for name, c in by_cam.items():
        assert c["frames"] == 25 and c["unaccounted"] == 0 and c["read_to_verdict_p99_ms"] is not None
    assert by_cam["cam2"]["anomalies"] == 25 and by_cam["cam2"]["threshold"] == -1.0
    for name in ("cam1", "cam2"):  # each camera's messages numbered without a gap
        assert [m["seq"] for m in got if m["camera"] == name] == list(range(25))
    assert all(m["verdict"] == "anomalous" for m in got if m["camera"] == "cam2")
    sinks = {s["kind"]: s for s in summary["sinks"]}
    assert sinks["callback"]["delivered"] == 50 and sinks["webhook"]["delivered"] == 50
    assert sinks["webhook"]["retries"] == 2 and len(recv.accepted) == 50


def test_a_blocking_sink_does_not_slow_the_cameras(model, tmp_path):
    import threading

    video = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (48, 32))
    for i in range(60):
        w.write(np.full((32, 48, 3), i * 4, np.uint8))
    w.release()
    release = threading.Event()
    spec = line_from_sources([video, video], model, batch=4)
    line = Line(spec, sinks=[lambda m: release.wait(10)])
    line.sinks[0].queue_size = 5
    line.sinks[0].drain_s = 0.5
    n = sum(1 for _ in line)  # the sink holds its first message the whole time
    release.set()
    line.close()
    st = line.summary()["sinks"][0]
    assert n == 120  # every frame of both files inspected
    assert st["offered"] == 120 and st["delivered"] + st["dropped"] + st["failed"] == 120 and st["dropped"] >= 100


def _line_file(tmp_path, doc):
    path = tmp_path / "line.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("doc, words", [
    ({"cameras": []}, "non-empty list"),
    ({"cameras": [{"name": "a", "source": "x"}]}, "has no model"),
    ({"model": "m.onnx", "cameras": [{"name": "a b", "source": "x"}]}, "letters, digits"),
    ({"model": "m.onnx", "cameras": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}, "used twice"),
    ({"model": "m.onnx", "cameras": [{"name": "a", "source": "x", "fps": 3}]}, "unknown key"),
    ({"model": "m.onnx", "cameras": [{"name": "a", "source": "x", "threshold": "high"}]}, "threshold must be"),
    ({"model": "m.onnx", "cameras": [{"name": "a", "source": "x"}], "sinks": "mqtt://x"}, "list of sink URLs"),
])
def test_a_bad_line_file_says_what_to_fix(tmp_path, doc, words):
    with pytest.raises(LineError, match=words):
        load_line(_line_file(tmp_path, doc))


def test_a_line_file_resolves_paths_beside_it(tmp_path):
    spec = load_line(_line_file(tmp_path, {"model": "models/m.onnx", "threshold": 1.5, "cameras": [
        {"name": "a", "source": "clips/a.avi"}, {"name": "b", "source": "rtsp://10.0.0.2/s", "threshold": 2}]}))
    assert spec.cameras[0].model == str(tmp_path / "models" / "m.onnx")
    assert spec.cameras[0].source == str(tmp_path / "clips" / "a.avi") and spec.cameras[0].threshold == 1.5
    assert spec.cameras[1].source == "rtsp://10.0.0.2/s" and spec.cameras[1].threshold == 2.0


def test_the_command_line_runs_a_line_file_and_writes_every_cameras_results(model, tmp_path):
    video = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (48, 32))
    for i in range(6):
        w.write(np.full((32, 48, 3), i * 30, np.uint8))
    w.release()
    line = _line_file(tmp_path, {"model": model, "cameras": [{"name": "left", "source": video},
                                                             {"name": "right", "source": video}]})
    out = str(tmp_path / "out")
    r = subprocess.run([sys.executable, "-m", "runtime", "--line", line, "--out", out, "--save", "none",
                        "--no-progress", "--backend", "onnxruntime"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert r.returncode == 0, r.stderr
    assert "camera left: 6 frames" in r.stdout and "camera right: 6 frames" in r.stdout
    records = [json.loads(x) for x in open(os.path.join(out, "inspect.jsonl"))]
    results = [x for x in records if x["type"] == "result"]
    assert sorted((x["camera"], x["frame"]) for x in results) == sorted(
        [(c, i) for c in ("left", "right") for i in range(6)])
    assert records[-1]["type"] == "summary" and len(records[-1]["cameras"]) == 2
    bad = subprocess.run([sys.executable, "-m", "runtime", "--line", line, "--source", video], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and "not both" in bad.stderr


def test_the_live_view_of_a_line_shows_every_camera(model, tmp_path):
    import urllib.error
    import urllib.request

    from runtime.serve_line import LineView

    video = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (48, 32))
    for i in range(4):
        w.write(np.full((32, 48, 3), i * 30, np.uint8))
    w.release()
    line = Line(line_from_sources([video, video, video], model, batch=2))
    view = LineView(0, line)
    try:
        with line:
            for name, r in line:
                view.on_result(name, r)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        page = opener.open(view.url, timeout=5).read().decode()
        state = json.loads(opener.open(view.url + "state.json", timeout=5).read())
        frame = opener.open(view.servers["cam2"].url + "frame.jpg", timeout=5).read()
        foreign = urllib.request.Request(view.url + "state.json", headers={"Host": "rebind.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # DNS rebinding: the line's page is not answered
            opener.open(foreign, timeout=5)
    finally:
        view.close()
    assert refused.value.code == 403
    assert all(view.servers[n].url in page for n in ("cam1", "cam2", "cam3"))
    assert {n: s["counts"]["ok"] + s["counts"]["anomalous"] for n, s in state["cameras"].items()} == {
        "cam1": 4, "cam2": 4, "cam3": 4}
    assert cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR).shape == (32, 48, 3)


def test_line_flags_that_do_not_fit_say_so(model, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    line = _line_file(tmp_path, {"model": model, "cameras": [{"name": "a", "source": "x.avi"}]})
    for argv, words in ((["--line", line, "--show"], "--serve PORT"),
                        (["--source", "a.avi", "--source", "b.avi"], "--model is needed"),
                        (["--model", model, "--source", "a.avi", "--sink", "ftp://x"], "is not a sink URL")):
        r = subprocess.run([sys.executable, "-m", "runtime", *argv], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and words in r.stderr, (argv, r.stderr)
