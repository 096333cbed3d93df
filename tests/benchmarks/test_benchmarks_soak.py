"""The soak's pieces: fault files and arrays, the MJPEG cameras (drop and return), and a short end-to-end soak
whose accounting must add up (every frame in is a result, a reported skip, a counted drop or counted as lost).
No timed assertions: the soak's speed and reconnect figures are reported by the benchmark, not tested."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import make_model

from benchmarks import fault_injection as fi
from benchmarks.mjpeg_camera import ffmpeg_exe, make_camera


def test_fault_folder_has_every_kind_and_the_folder_source_reports_the_unreadable(tmp_path):
    from runtime.sources import open_source

    frames = fi.texture_frames(4, (32, 48))
    plan = fi.write_fault_folder(str(tmp_path / "f"), frames, 40, every=4)
    kinds = [k for k in plan.values() if k != "clean"]
    assert sorted(set(kinds)) == sorted(fi.FILE_FAULTS) and len(plan) == 40
    events = []
    src = open_source(str(tmp_path / "f"), on_event=events.append)
    got = {fr.name: fr for fr in src}
    assert set(got) == set(plan)
    for path, kind in plan.items():
        if fi.FILE_FAULTS.get(kind) == "skip":
            assert got[path].image is None and any(e.get("name") == path for e in events), kind
        if fi.FILE_FAULTS.get(kind) == "result" or kind == "clean":
            assert got[path].image is not None and got[path].image.dtype == np.uint8, kind
    assert cv2.imread(next(p for p, k in plan.items() if k == "png_16bit"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_array_source_plan_and_truncated_video(tmp_path):
    frames = fi.texture_frames(3, (32, 48))
    src = fi.ArraySource(frames, 21, every=3)
    items = list(src)
    assert len(items) == 21 and sorted({k for _, k in src.plan.values()} - {"clean"}) == sorted(fi.ARRAY_FAULTS)
    by_kind = {src.plan[fr.index][1]: fr.image for fr in items}
    assert by_kind["uint16_array"].dtype == np.uint16 and by_kind["empty_array"].size == 0
    assert by_kind["bgra_array"].shape[2] == 4 and by_kind["gray_array"].ndim == 2
    video = str(tmp_path / "v.avi")
    assert fi.write_video(video, frames, 30) == 30
    claimed = fi.truncate_copy(video, str(tmp_path / "t.avi"), keep=0.5)
    assert claimed == 30  # the header still says 30: a reader can know what it lost
    assert (tmp_path / "t.avi").stat().st_size < (tmp_path / "v.avi").stat().st_size
    assert fi.rss_bytes() > 0


@pytest.mark.parametrize("kind", ["stdlib", "ffmpeg"])
def test_mjpeg_camera_serves_drops_and_returns(tmp_path, kind):
    if kind == "ffmpeg" and ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed (pip install imageio-ffmpeg)")
    frames = fi.texture_frames(5, (32, 48))
    video = str(tmp_path / "cam.avi")
    fi.write_video(video, frames, 30)
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    cam, why = make_camera(video, jpegs, 30.0, prefer=kind)
    assert why.startswith("ffmpeg" if kind == "ffmpeg" else "http.server")
    cam.start()
    try:
        cap = cv2.VideoCapture(cam.url)
        assert cap.isOpened()
        ok, img = cap.read()
        assert ok and img.shape == (32, 48, 3)
        cam.drop()
        deadline = time.monotonic() + 20
        while cap.read()[0]:  # buffered frames first, then the end of the stream
            assert time.monotonic() < deadline, "the camera kept sending after drop()"
        cap.release()
        assert not cv2.VideoCapture(cam.url).isOpened()
        cam.restore()
        cap = cv2.VideoCapture(cam.url)
        ok, img = cap.read()
        assert ok and img.shape == (32, 48, 3)
        cap.release()
    finally:
        cam.close()
    assert cam.processes >= 2  # one before the drop, one after (ffmpeg: one more per client that left)


def test_short_soak_accounts_for_every_frame(tmp_path, capsys):
    import logging

    from benchmarks.soak import main

    level = logging.getLogger("runtime").level

    model = make_model(str(tmp_path), size=(32, 48), threshold=2.5)
    out = tmp_path / "soak.json"
    plot = tmp_path / "soak.png"
    rc = main(["--model", model, "--frames", "160", "--backend", "onnxruntime", "--fault-every", "5",
               "--drop-seconds", "1", "--camera", "stdlib", "--json", str(out), "--plot", str(plot),
               "--workdir", str(tmp_path / "work")])
    assert rc == 0
    assert logging.getLogger("runtime").level == level  # the soak silenced the runtime's warnings only meanwhile
    text = capsys.readouterr().out
    for goal in ("no_crash", "no_unreported_loss", "memory_growth_middle_to_end_under_5pct", "reconnect_within_2s"):
        assert f"goal {goal}: " in text
    r = json.loads(out.read_text())
    assert plot.stat().st_size > 0 and r["backend"] == "onnxruntime" and r["camera"].startswith("http.server")
    assert [p["phase"] for p in r["phases"]] == (["folder", "video", "video_truncated", "camera", "arrays"] * 2 +
                                                 ["sinks", "cli"])
    sinks = next(p for p in r["phases"] if p["phase"] == "sinks")["sinks"]
    assert sinks["webhook"]["answered_500"] > 0 and sinks["webhook"]["retries"] > 0
    assert sinks["callback"]["offered"] > 0
    for name, s in sinks.items():  # every verdict arrived or was counted by its sink
        if isinstance(s, dict):
            assert s["lost_unreported"] == 0 and s["received"] + s["dropped"] + s["failed"] == s["offered"], (name, s)
    cli = r["phases"][-1]
    assert cli["exit_status"] == 0 and cli["summary_written"] and cli["summary_line"]
    assert cli["lost_unreported"] == 0 and cli["skipped"] > 0 and cli["results"] > 0
    for p in r["phases"]:
        accounted = (p["results"] + p["skipped"] + p["dropped"] + p["lost_unreported"] +
                     p.get("discarded_at_stop", 0) - p.get("extra_results", 0))
        assert accounted == p["frames_in"], p
        assert p["crash"] is None, p
    folder = [p for p in r["phases"] if p["phase"] == "folder"]
    for p in folder:  # every file fault that must be skipped was skipped with a report, and nothing was lost
        for kind, c in p["faults"].items():
            assert c["lost"] == 0, (kind, c)
            if fi.FILE_FAULTS[kind] == "skip":
                assert c["skip"] == c["injected"] > 0, (kind, c)
    arrays = [p for p in r["phases"] if p["phase"] == "arrays"]
    for p in arrays:
        for kind, c in p["faults"].items():
            assert c[fi.ARRAY_FAULTS[kind]] == c["injected"], (kind, c)
    for s in r["swaps"]:
        assert s["torn"].startswith("ArtifactMismatch") and s["complete"].startswith("opened")
        assert s["running_inspector_unchanged"] is True
    assert len(r["camera_drops"]) == 2 and all(d["reconnected"] for d in r["camera_drops"])
    mem = r["memory_mib"]
    assert 0 < mem["start"] and 0 < mem["middle"] and 0 < mem["end"]
    # the original model is back on disk after round 2, and the user's model was never touched
    assert json.loads(Path(model).with_suffix(".json").read_text())["threshold"]["value"] == 2.5
