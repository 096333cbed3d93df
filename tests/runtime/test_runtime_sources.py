"""Frame sources and streams: a real MJPG video, a folder with a corrupt image, reconnect with back-off through an
injected capture (our logic, not a library's), drop-oldest for live sources, missing cameras, clean stops."""
from __future__ import annotations

import logging
import os
import threading
import time

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import frames

from runtime.errors import RuntimeInspectError, SourceError
from runtime.sources import CaptureSource, FrameReader, FrameSource, open_source


def write_video(path, n=10, size=(48, 64)):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert writer.isOpened()
    imgs = []
    for i in range(n):
        img = np.full((h, w, 3), 20 * i % 255, np.uint8)
        cv2.putText(img, str(i), (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        writer.write(img)
        imgs.append(img)
    writer.release()
    return imgs


class FakeCapture:
    """A VideoCapture stand-in driven by a script shared across re-opens: each read pops the next item
    (an image, or False for a failed read); opening fails while `script.closed` > 0."""

    def __init__(self, script):
        self.script = script
        self.opened = script.fail_opens <= 0
        script.fail_opens -= 1
        script.opens += 1
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        if not self.script.items:
            if self.script.repeat is not None:  # a camera that keeps delivering
                return True, self.script.repeat
            return False, None
        item = self.script.items.pop(0)
        if item is False:
            return False, None
        return True, item

    def release(self):
        self.released = True
        self.script.releases += 1


class Script:
    def __init__(self, items, fail_opens=0):
        self.items = list(items)
        self.fail_opens = fail_opens
        self.opens = 0
        self.releases = 0
        self.sleeps = []
        self.repeat = None

    def factory(self, target, api):
        return FakeCapture(self)

    def sleep(self, seconds):
        self.sleeps.append(seconds)


def img(v, size=(32, 48)):
    return np.full(size + (3,), v, np.uint8)


def test_video_file_yields_every_frame_in_order(tmp_path, bgr_inspector):
    path = tmp_path / "clip.avi"
    written = write_video(path, n=10)
    with bgr_inspector.stream(str(path), batch_size=3) as st:
        results = list(st)
    assert [r.frame_index for r in results] == list(range(10))
    assert st.drops == 0 and st.bad_frames == 0 and st.frames == 10
    assert not st.source.live
    assert results[0].frame.shape == written[0].shape  # frames keep their size; maps come back at it
    assert results[0].anomaly_map.shape == (48, 64)
    ts = [r.timestamp for r in results]
    assert ts == sorted(ts)
    # same scores as inspecting the decoded frames one by one
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    cap.release()
    direct = [bgr_inspector.inspect(f).score for f in decoded]
    assert np.allclose([r.score for r in results], direct, atol=1e-6)
    s = st.summary()
    assert s["frames"] == 10 and s["drops"] == 0 and "video file" in s["source"]


def test_max_frames_stops_early_and_releases(tmp_path, bgr_inspector):
    path = tmp_path / "clip.avi"
    write_video(path, n=12)
    st = bgr_inspector.stream(str(path), batch_size=4, max_frames=5)
    assert len(list(st)) == 5
    assert st.source._cap is None  # released


def test_folder_with_a_corrupt_image_skips_and_reports_it(tmp_path, bgr_inspector, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(["a.png", "b.jpg", "d.bmp"]):
        cv2.imwrite(str(folder / name), frames(1, seed=i)[0])
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    events = []
    with caplog.at_level(logging.WARNING):
        with bgr_inspector.stream(str(folder), on_event=events.append) as st:
            results = list(st)
    names = [os.path.basename(r.name) for r in results]
    assert names == ["a.png", "b.jpg", "d.bmp"]
    assert [r.frame_index for r in results] == [0, 1, 3]  # the corrupt one had index 2
    assert st.bad_frames == 1
    corrupt = [e for e in events if e["event"] == "corrupt"]
    assert len(corrupt) == 1 and "c.png" in corrupt[0]["message"] and corrupt[0]["index"] == 2
    assert any("c.png" in rec.getMessage() for rec in caplog.records)
    assert list(st.events) == events


def test_empty_folder_and_missing_paths(tmp_path, bgr_inspector):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="has no images"):
        bgr_inspector.stream(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="is not a camera index, URL"):
        bgr_inspector.stream(str(tmp_path / "missing.avi"))
    bad_video = tmp_path / "broken.avi"
    bad_video.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open video file"):
        open_source(str(bad_video))


def test_single_image_file(tmp_path, bgr_inspector):
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), frames(1)[0])
    results = list(bgr_inspector.stream(str(path)))
    assert len(results) == 1 and results[0].name == str(path)


def test_missing_camera_is_a_source_error():
    script = Script([], fail_opens=1)
    with pytest.raises(SourceError, match="cannot open camera 3: no camera at that index"):
        open_source(3, capture_factory=script.factory)
    with pytest.raises(SourceError, match="cannot open camera 9"):  # OpenCV's own capture, no such device
        open_source("9")


def test_specs_are_classified(tmp_path):
    script = Script([img(1)])
    cam = open_source("0", capture_factory=script.factory, open=False)
    assert isinstance(cam, CaptureSource) and cam.live and cam.target == 0
    url = open_source("rtsp://10.0.0.5/stream1", capture_factory=script.factory, open=False)
    assert url.live and url.description.startswith("stream rtsp://")
    gst = open_source("videotestsrc ! videoconvert ! appsink", capture_factory=script.factory, open=False)
    assert gst.live and gst.api == cv2.CAP_GSTREAMER and "gstreamer" in gst.description
    with pytest.raises(SourceError):
        open_source(True)


def test_live_source_reconnects_with_exponential_backoff(bgr_inspector):
    # 3 frames, the stream drops (failed read), two failed re-opens, then it comes back with 2 more frames
    script = Script([img(10), img(20), img(30), False])
    src = CaptureSource(0, "camera 0", live=True, capture_factory=script.factory, max_reconnects=5,
                        backoff_s=0.5, backoff_max_s=8.0, sleep=script.sleep)
    src.open()
    original_sleep = script.sleep

    def sleep_then_recover(seconds):
        original_sleep(seconds)
        if len(script.sleeps) == 1:
            script.fail_opens = 2  # the next two opens fail
        if len(script.sleeps) == 3:
            script.items = [img(40), img(50)]  # the third attempt finds the stream again

    src.sleep = sleep_then_recover
    events = []
    src.on_event = events.append
    got = [src.read() for _ in range(5)]
    assert [int(f.image[0, 0, 0]) for f in got] == [10, 20, 30, 40, 50]
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert script.sleeps == [0.5, 1.0, 2.0]  # doubling back-off
    assert src.reconnects == 1
    kinds = [e["event"] for e in events]
    assert kinds == ["dropped_source", "reconnect_attempt", "reconnect_attempt", "reconnected"]


def test_reconnect_gives_up_after_bounded_attempts():
    script = Script([img(1), False])
    src = CaptureSource("rtsp://cam", "stream rtsp://cam", live=True, capture_factory=script.factory,
                        max_reconnects=4, backoff_s=1.0, backoff_max_s=3.0, sleep=script.sleep)
    src.open()
    assert src.read() is not None
    script.fail_opens = 100
    with pytest.raises(SourceError, match="could not reconnect after 4 attempts"):
        src.read()
    assert script.sleeps == [1.0, 2.0, 3.0, 3.0]  # capped at backoff_max_s


def test_reconnect_off_fails_on_the_first_drop():
    script = Script([img(1), False])
    src = CaptureSource(0, "camera 0", live=True, capture_factory=script.factory, reconnect=False)
    src.open()
    src.read()
    with pytest.raises(SourceError, match="reconnect is off"):
        src.read()


def test_stream_recovers_from_a_dropped_source_end_to_end(bgr_inspector):
    script = Script([img(10), img(20), False, img(30), img(40)])
    script.repeat = img(50)
    events = []
    st = bgr_inspector.stream(0, capture_factory=script.factory, backoff_s=0.0, max_reconnects=2, max_frames=4,
                          on_event=events.append)
    results = list(st)
    assert len(results) == 4 and st.reconnects == 1
    assert "reconnected" in [e["event"] for e in events]


def test_stream_raises_source_error_when_the_source_is_lost(bgr_inspector):
    script = Script([img(10), False])
    st = bgr_inspector.stream(0, capture_factory=script.factory, backoff_s=0.0, max_reconnects=2)
    got = []
    with pytest.raises(SourceError, match="could not reconnect after 2 attempts"):
        for r in st:
            got.append(r)
    assert len(got) == 1 and script.releases >= 1


class ListSource(FrameSource):
    def __init__(self, images, live):
        super().__init__()
        self.images = list(images)
        self.live = live
        self.description = "list"
        self.closed = False

    def read(self):
        if not self.images:
            return None
        return self._next(self.images.pop(0))

    def close(self):
        self.closed = True


def test_live_sources_drop_the_oldest_frames_and_count_them():
    src = ListSource([img(i) for i in range(10)], live=True)
    reader = FrameReader(src, queue_size=3).start()
    reader._thread.join(5)  # the consumer is "busy": the reader fills and overflows the queue
    got = []
    while True:
        fr = reader.get(timeout=1)
        if fr is None:
            break
        got.append(int(fr.image[0, 0, 0]))
    assert got == [8, 9]  # the newest frames survive (the end marker takes one slot)
    assert reader.drops == 8
    reader.stop()
    assert src.closed


def test_file_sources_never_drop():
    src = ListSource([img(i) for i in range(10)], live=False)
    reader = FrameReader(src, queue_size=2).start()
    time.sleep(0.05)
    got = []
    while True:
        fr = reader.get(timeout=5)
        if fr is None:
            break
        got.append(int(fr.image[0, 0, 0]))
    assert got == list(range(10)) and reader.drops == 0


def test_a_bad_frame_in_a_stream_is_reported_and_skipped(bgr_inspector):
    bad = np.zeros((32, 48, 5), np.uint8)
    src = ListSource([img(10), bad, img(30)], live=False)
    events = []
    st = bgr_inspector.stream(src, on_event=events.append)
    results = list(st)
    assert [r.frame_index for r in results] == [0, 2]
    assert st.bad_frames == 1
    assert events[0]["event"] == "bad_frame" and events[0]["index"] == 1 and "(H, W, 3)" in events[0]["message"]


class Endless(ListSource):
    def read(self):
        return self._next(img(self._index % 200))


def test_stop_from_the_consumer_and_generator_close(bgr_inspector):
    endless = Endless([], live=True)
    st = bgr_inspector.stream(endless, queue_size=2)
    it = iter(st)
    first = next(it)
    assert first.frame_index >= 0
    st.stop()
    assert list(it) == []  # after stop the generator ends (batch size 1: nothing left in flight)
    assert endless.closed
    assert not st.reader._thread.is_alive()

    endless2 = Endless([], live=True)
    with bgr_inspector.stream(endless2) as st2:
        for n, _ in enumerate(st2):
            if n == 3:
                break
    assert endless2.closed and not st2.reader._thread.is_alive()


def test_stop_from_another_thread_unblocks_a_waiting_stream(bgr_inspector):
    class Slow(Endless):
        def read(self):
            time.sleep(0.01)
            return super().read()

    src = Slow([], live=True)
    st = bgr_inspector.stream(src)
    timer = threading.Timer(0.3, st.stop)
    timer.start()
    n = sum(1 for _ in st)
    timer.join()
    assert n >= 1 and src.closed and not st.reader._thread.is_alive()


def test_stream_argument_checks(bgr_inspector, tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, n=2)
    for kwargs, message in (({"batch_size": 0}, "batch_size"), ({"max_frames": -1}, "max_frames"),
                            ({"queue_size": 0}, "queue_size")):
        with pytest.raises(RuntimeInspectError, match=message):
            bgr_inspector.stream(str(path), **kwargs)


def test_default_backoff_retries_at_least_every_2_s():
    # The soak found a camera back after 3.55 s reconnected only at 7.5 s (back-off doubling to 8 s): the default
    # cap keeps any retry within 2 s of a camera's return.
    script = Script([img(1), False])
    src = CaptureSource("rtsp://cam", "stream rtsp://cam", live=True, capture_factory=script.factory,
                        max_reconnects=6, sleep=script.sleep)
    src.open()
    assert src.read() is not None
    script.fail_opens = 100
    with pytest.raises(SourceError):
        src.read()
    assert script.sleeps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_stream_keeps_a_bounded_number_of_events(bgr_inspector, tmp_path):
    from runtime.stream import EVENTS_KEPT

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    seen = []
    stream = bgr_inspector.stream(str(tmp_path), on_event=seen.append)
    for i in range(EVENTS_KEPT + 5):
        stream._record({"event": "test", "i": i})
    assert len(stream.events) == EVENTS_KEPT and stream.events[0]["i"] == 5
    assert len(seen) == EVENTS_KEPT + 5  # the user's sink still gets every one
    stream.close()
