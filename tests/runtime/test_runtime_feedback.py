"""Operator corrections (runtime.feedback) and the live view's write side (runtime.serve_feedback): the feedback
folder keeps frame, map, verdict, who and when; the live view is read-only unless enabled, and when enabled
needs the token and a loopback Host header; corrections from a folder of saved results."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import Inspector
from runtime.feedback import FeedbackError, main as feedback_main, read_feedback, record_result
from runtime.manifest import load_manifest, write_manifest
from runtime.serve import LiveServer, LiveState
from runtime.serve_feedback import LiveEdits, host_allowed
from tests.helpers.tiny_models import make_model, make_onnx

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("fb")
    (d / "v1").mkdir()
    (d / "v2").mkdir()
    v1 = make_model(str(d / "v1"), channel_order="BGR", threshold=1.0)
    v2 = make_model(str(d / "v2"), channel_order="BGR", threshold=1.5)
    make_onnx(v2, (32, 48), seed=1)
    m = load_manifest(v2)
    m.sha256 = ""
    write_manifest(v2, m)
    frames = np.random.default_rng(0).integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)
    folder = d / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return d, v1, v2, frames, str(folder)


def test_a_correction_keeps_frame_map_verdict_who_and_when(setup, tmp_path):
    _, v1, _, frames, _ = setup
    with Inspector(v1, backend="onnxruntime") as insp:
        r = insp.inspect(frames[0])
    entry = record_result(str(tmp_path / "fb"), r, "good", "anna", note="glare")
    assert sorted(os.listdir(entry)) == ["frame.png", "map.npy", "record.json"]
    (c,) = read_feedback(str(tmp_path / "fb"), "good")
    assert np.array_equal(c.load_frame(), frames[0])
    assert np.allclose(np.load(os.path.join(entry, "map.npy"), allow_pickle=False), r.raw_map)
    rec = c.record
    assert rec["who"] == "anna" and rec["label"] == "good" and rec["when"].endswith("+00:00")
    assert rec["score"] == r.score and rec["is_anomalous"] is True and rec["model_sha256"] == r.model_sha256
    assert read_feedback(str(tmp_path / "fb"), "defect") == []
    cv2.imwrite(c.frame_path, frames[1])  # changed after it was recorded
    with pytest.raises(FeedbackError, match="changed"):
        c.load_frame()
    with pytest.raises(FeedbackError, match="label"):
        record_result(str(tmp_path / "fb"), r, "maybe", "anna")
    with pytest.raises(FeedbackError, match="who"):
        record_result(str(tmp_path / "fb"), r, "good", " ")


def test_host_check_names_only_this_loopback_server():
    assert host_allowed("127.0.0.1:8080", 8080) and host_allowed("localhost:8080", 8080)
    assert host_allowed("LOCALHOST", 8080) and host_allowed("[::1]:8080", 8080)
    for bad in (None, "", "evil.example:8080", "127.0.0.1:9090", "127.0.0.1.evil.example:8080"):
        assert not host_allowed(bad, 8080)


def _post(port, path, body, token=TOKEN, host=None, ctype="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": ctype, "Host": host or f"127.0.0.1:{port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read() or b"{}")
    conn.close()
    return out


def test_live_view_is_read_only_unless_enabled(setup):
    server = LiveServer(LiveState(1.0), 0).start()
    try:
        code, answer = _post(server.port, "/feedback", {"frame": 0, "label": "good", "who": "x"})
        assert code == 405 and "read-only" in answer["error"]
    finally:
        server.close()


def test_enabled_live_view_records_corrections_and_swaps_with_token_and_host(setup, tmp_path):
    _, v1, v2, frames, _ = setup
    feedback = str(tmp_path / "feedback")
    with Inspector(v1, backend="onnxruntime") as insp:
        edits = LiveEdits(insp, feedback, TOKEN)
        results = insp.inspect_batch(list(frames))
        for r in results:
            edits.remember(r)
        flagged = [r.frame_index for r in results if r.is_anomalous]
        assert flagged
        server = LiveServer(LiveState(1.0), 0, edits=edits).start()
        port = server.port
        try:
            ok = {"frame": flagged[0], "label": "good", "who": "anna"}
            assert _post(port, "/feedback", ok, host="evil.example")[0] == 403
            assert _post(port, "/feedback", ok, token=None)[0] == 401
            assert _post(port, "/feedback", ok, token="wrong" * 5)[0] == 401
            assert _post(port, "/feedback", ok, ctype="text/plain")[0] == 415
            assert _post(port, "/feedback", dict(ok, frame=999))[0] == 404
            assert not os.path.exists(feedback)  # nothing written by a refused request
            code, answer = _post(port, "/feedback", ok)
            assert code == 200 and os.path.isdir(answer["recorded"])
            (c,) = read_feedback(feedback)
            assert c.record["who"] == "anna" and c.record["frame"] == flagged[0] and c.record["source"] == "live view"
            first = insp.manifest.sha256
            code, answer = _post(port, "/model/swap", {"model": v2})
            assert code == 200 and answer["event"] == "model_swapped" and insp.manifest.sha256 != first
            code, answer = _post(port, "/model/swap", {"model": str(tmp_path / "none.onnx")})
            assert code == 409 and insp.manifest.sha256 != first
            code, answer = _post(port, "/model/rollback", {})
            assert code == 200 and insp.manifest.sha256 == first
        finally:
            server.close()


def test_corrections_from_a_folder_of_saved_results(setup, tmp_path):
    _, v1, _, frames, folder = setup
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "runtime", "--model", v1, "--source", folder, "--out", str(out),
                        "--save", "none", "--no-progress", "--backend", "onnxruntime"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    feedback = str(tmp_path / "feedback")
    assert feedback_main(["--results", str(out), "--frame", "2", "--label", "defect", "--who", "ben",
                          "--feedback", feedback]) == 0
    (c,) = read_feedback(feedback)
    assert c.label == "defect" and c.record["who"] == "ben" and c.record["source"] == "results folder"
    assert np.array_equal(c.load_frame(), frames[2])
    assert feedback_main(["--results", str(out), "--frame", "77", "--label", "good", "--who", "ben",
                          "--feedback", feedback]) == 2
