"""Faults on the source side: videos that fail mid-file, abandoned streams and their threads, close from
another thread, source routing and credential redaction, folder reports, decompression bombs. Threads are
joined with timeouts and loops are bounded, so nothing here can hang."""
from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import zlib
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import frames

from runtime import Inspector
from runtime.errors import SourceError
from runtime.sources import (CaptureSource, FolderSource, FrameSource, image_size_from_header,
                             is_gstreamer_pipeline, open_source)

N_VIDEO = 112


def write_video(path, fourcc, n=N_VIDEO, size=(48, 64)):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (w, h))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc}")
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    writer.release()
    return path


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- 3. videos that fail mid-file ------------------------------------------------------------------------
def test_a_truncated_avi_reports_the_frames_it_lost(tmp_path, bgr_inspector):
    full = write_video(tmp_path / "full.avi", "MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # the index at the end is gone too
    events = []
    with bgr_inspector.stream(str(cut), on_event=events.append) as st:
        results = list(st)
    assert 0 < len(results) < N_VIDEO
    lost = [e for e in events if e["event"] == "frames_lost"]
    assert lost and sum(e["count"] for e in lost) == N_VIDEO - len(results)
    assert st.lost_frames == N_VIDEO - len(results) and st.summary()["lost_frames"] == st.lost_frames
    assert f"of the {N_VIDEO} it announces" in lost[-1]["message"]


def test_an_mp4_with_a_corrupt_block_is_read_past_it(tmp_path, bgr_inspector):
    good = write_video(tmp_path / "good.mp4", "mp4v")
    data = bytearray(good.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = b"\xab" * 2000
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    events = []
    with bgr_inspector.stream(str(bad), on_event=events.append) as st:
        results = list(st)
    lost = sum(e["count"] for e in events if e["event"] == "frames_lost")
    assert lost > 0 and len(results) + lost == N_VIDEO
    assert len(results) > N_VIDEO // 2 + 5  # frames after the corrupt block were read, not given up
    indices = [r.frame_index for r in results]
    assert indices == sorted(indices) and indices[-1] == N_VIDEO - 1  # indices stay the file's frame numbers


def test_a_complete_video_loses_nothing(tmp_path, bgr_inspector):
    path = write_video(tmp_path / "ok.avi", "MJPG", n=20)
    events = []
    with bgr_inspector.stream(str(path), on_event=events.append) as st:
        assert len(list(st)) == 20
    assert st.lost_frames == 0 and not [e for e in events if e["event"] == "frames_lost"]


# -- 4. abandoned streams --------------------------------------------------------------------------------
class Endless(FrameSource):
    live = True
    description = "endless"

    def __init__(self):
        super().__init__()
        self.closed = threading.Event()

    def read(self):
        time.sleep(0.002)
        return self._next(np.full((32, 48, 3), self._index % 200, np.uint8))

    def close(self):
        self.closed.set()


def _readers():
    return [t for t in threading.enumerate() if t.name == "frame-reader" and t.is_alive()]


def test_twenty_abandoned_streams_leave_no_thread(bgr_model):
    insp = Inspector(bgr_model, backend="onnxruntime")
    before = len(_readers())
    sources = []
    for _ in range(20):
        src = Endless()
        sources.append(src)
        for _r in insp.stream(src):  # the documented pattern: take a frame, leave without closing
            break
    gc.collect()
    assert _wait_for(lambda: len(_readers()) == before), f"{len(_readers()) - before} reader threads left"
    assert all(s.closed.is_set() for s in sources)


def test_inspector_close_stops_streams_it_made(bgr_model):
    insp = Inspector(bgr_model, backend="onnxruntime")
    before = len(_readers())
    src = Endless()
    st = insp.stream(src)
    it = iter(st)
    next(it)  # running, and still referenced
    insp.close()
    assert src.closed.is_set() and st.stopped
    assert _wait_for(lambda: len(_readers()) == before)
    assert list(it) == []


def test_a_stream_never_iterated_releases_its_source_when_dropped(bgr_model):
    insp = Inspector(bgr_model, backend="onnxruntime")
    src = Endless()
    insp.stream(src)
    gc.collect()
    assert src.closed.is_set()


# -- 9. close from another thread ------------------------------------------------------------------------
def _consume_in_a_thread(st):
    """Iterate `st` in a daemon thread; returns (thread, results so far, errors), once 3 results arrived."""
    got, errors = [], []

    def consume():
        try:
            for r in st:
                got.append(r)
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert _wait_for(lambda: len(got) >= 3)
    return t, got, errors


def test_stream_close_from_another_thread_is_final(bgr_model):
    insp = Inspector(bgr_model, backend="onnxruntime")
    st = insp.stream(Endless())
    t, _got, errors = _consume_in_a_thread(st)
    closer_errors = []

    def close():
        try:
            st.close()  # from a thread that is not the consumer, while the generator runs
        except Exception as e:
            closer_errors.append(e)

    c = threading.Thread(target=close, daemon=True)
    c.start()
    c.join(10)
    t.join(10)
    assert not c.is_alive() and not t.is_alive()
    assert not closer_errors and not errors
    assert list(st) == []  # final: iterating again yields nothing


def test_inspector_close_from_another_thread_ends_a_running_stream(bgr_model):
    insp = Inspector(bgr_model, backend="onnxruntime")
    st = insp.stream(Endless())
    t, _got, errors = _consume_in_a_thread(st)
    insp.close()
    t.join(10)
    assert not t.is_alive() and not errors
    assert not insp.runner.is_loaded  # no silent reload by the running stream


# -- 8. routing and redaction ----------------------------------------------------------------------------
class Fake:
    def __init__(self, target, api):
        self.target, self.api = target, api

    def isOpened(self):
        return True

    def read(self):
        return False, None

    def release(self):
        pass


def test_routing_only_real_pipelines_are_gstreamer(tmp_path, monkeypatch):
    url = open_source("rtsp://admin:Secret!1@10.0.0.5/cam", capture_factory=Fake, open=False)
    assert url.live and url.api is None and url.target == "rtsp://admin:Secret!1@10.0.0.5/cam"
    folder = tmp_path / "imgs!"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), frames(1)[0])
    assert isinstance(open_source(str(folder), open=False), FolderSource)
    clip = tmp_path / "clip!.avi"
    write_video(clip, "MJPG", n=3)
    src = open_source(str(clip), open=False)
    assert isinstance(src, CaptureSource) and not src.live and src.api is None
    assert is_gstreamer_pipeline("videotestsrc ! videoconvert ! appsink")
    assert is_gstreamer_pipeline("v4l2src device=/dev/video0")
    assert not is_gstreamer_pipeline("imgs!") and not is_gstreamer_pipeline("a!b ! ")  # no spaced '!' link
    gst = open_source("videotestsrc ! appsink", capture_factory=Fake, open=False)
    assert gst.api == cv2.CAP_GSTREAMER


def test_an_existing_folder_named_like_a_camera_index_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("123")
    cv2.imwrite(os.path.join("123", "a.png"), frames(1)[0])
    src = open_source("123", capture_factory=Fake, open=False)
    assert isinstance(src, FolderSource)
    cam = open_source("124", capture_factory=Fake, open=False)
    assert isinstance(cam, CaptureSource) and cam.target == 124


def test_credentials_never_reach_descriptions_logs_or_events(bgr_inspector, caplog):
    state = {"opens": 0, "reads": 0}

    class Once(Fake):  # the first open delivers one frame, then the camera is gone for good
        def __init__(self, target, api):
            super().__init__(target, api)
            state["opens"] += 1

        def isOpened(self):
            return state["opens"] == 1

        def read(self):
            state["reads"] += 1
            return (True, np.zeros((32, 48, 3), np.uint8)) if state["reads"] == 1 else (False, None)

    events = []
    url = "rtsp://admin:Secret!1@10.0.0.5/cam"
    with caplog.at_level(logging.INFO):
        st = bgr_inspector.stream(url, capture_factory=Once, backoff_s=0.0, max_reconnects=1, on_event=events.append)
        got = []
        with pytest.raises(SourceError) as info:
            for r in st:
                got.append(r)
    assert len(got) == 1
    texts = [st.summary()["source"], str(info.value)] + [e["message"] for e in events] + \
            [r.getMessage() for r in caplog.records]
    assert all("Secret" not in t for t in texts)
    assert "rtsp://admin:***@10.0.0.5/cam" in st.summary()["source"]
    assert any(e["event"] == "dropped_source" for e in events)


# -- 10. folders: skipped entries reported, decompression bombs refused ------------------------------------
def test_a_folder_reads_its_sub_folders_and_reports_skipped_files(tmp_path, bgr_inspector):
    cv2.imwrite(str(tmp_path / "a.png"), frames(1)[0])
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "b.pgm"), frames(1)[0][:, :, 0])  # a grayscale PGM is an image too
    (tmp_path / ".hidden").mkdir()
    cv2.imwrite(str(tmp_path / ".hidden" / "c.png"), frames(1)[0])
    (tmp_path / "notes.txt").write_text("x")
    events = []
    with bgr_inspector.stream(str(tmp_path), on_event=events.append) as st:
        names = [os.path.relpath(r.name, tmp_path) for r in st]
    assert names == ["a.png", os.path.join("sub", "b.pgm")]
    skipped = [e for e in events if e["event"] == "skipped_files"]
    assert len(skipped) == 1 and skipped[0]["files"] == ["notes.txt"]


def _png_header_only(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def test_a_png_bomb_is_refused_before_decoding(tmp_path, bgr_inspector):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20000, 20000))  # 400 M px: under OpenCV's own cap
    cv2.imwrite(str(tmp_path / "ok.png"), frames(1)[0])
    events = []
    with bgr_inspector.stream(str(tmp_path), on_event=events.append) as st:
        results = list(st)
    assert [os.path.basename(r.name) for r in results] == ["ok.png"] and st.bad_frames == 1
    corrupt = [e for e in events if e["event"] == "corrupt"]
    assert "above the cap of" in corrupt[0]["message"]


def test_the_pixel_cap_applies_to_real_images(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("big.png", "big.jpg", "big.bmp"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
        assert image_size_from_header(np.fromfile(str(tmp_path / name), np.uint8)) == (400, 300)
    src = FolderSource(sorted(str(p) for p in tmp_path.iterdir()), "t", max_pixels=100_000)
    got = [src.read() for _ in range(3)]
    assert all(f.image is None and "above the cap" in f.error for f in got)


def test_streams_left_open_at_exit_do_not_abort_the_process(tmp_path, bgr_model):
    import subprocess

    video = write_video(tmp_path / "v.avi", "MJPG", n=200, size=(240, 320))
    code = (
        "import sys\n"
        "from runtime import Inspector\n"
        f"insp = Inspector({bgr_model!r}, backend='onnxruntime')\n"
        "kept = []\n"
        "for _ in range(5):\n"
        f"    st = insp.stream({str(video)!r}, queue_size=1)\n"
        "    it = iter(st); next(it); kept.append((st, it))  # referenced, never closed: still decoding\n"
        "print('exiting', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "exiting" in r.stdout, (r.returncode, r.stderr[-2000:])
    assert "terminate called" not in r.stderr
