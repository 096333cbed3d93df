"""Model versions in a running Inspector (runtime.swap): a swap in the middle of a stream loses no frame and
never mixes versions inside one result; a corrupt, unsigned or wrongly signed version is refused while the old
one keeps running; rollback; the watched swap file and SIGHUP."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import cv2
import numpy as np
import pytest

from runtime import Inspector
from runtime.swap import SwapRefused, SwapWatcher, sign_version
from runtime.manifest import load_manifest, write_manifest
from tests.helpers.tiny_models import make_model, make_onnx

H, W = 32, 48
N_FRAMES = 160


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two versions (other weights, other threshold) that score the same frame differently."""
    d = tmp_path_factory.mktemp("versions")
    (d / "v1").mkdir()
    (d / "v2").mkdir()
    v1 = make_model(str(d / "v1"), channel_order="RGB", batch_max=8, threshold=2.0)
    v2 = make_model(str(d / "v2"), channel_order="BGR", batch_max=8, threshold=2.5)
    make_onnx(v2, (H, W), seed=1)  # other weights: another artifact and sha256
    m = load_manifest(v2)
    m.sha256 = ""
    write_manifest(v2, m)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (N_FRAMES, H, W, 3), dtype=np.uint8)
    folder = d / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), f)
    return d, v1, v2, frames, str(folder)


def reference_scores(model, frames):
    with Inspector(model, backend="onnxruntime") as insp:
        return np.array([r.score for r in insp.inspect_batch(list(frames))])


def test_swap_mid_stream_loses_no_frame_and_never_mixes_versions(versions):
    _, v1, v2, frames, folder = versions
    ref = {0: reference_scores(v1, frames), 1: reference_scores(v2, frames)}
    assert not np.allclose(ref[0], ref[1])
    insp = Inspector(v1, backend="onnxruntime")
    shas = {insp.manifest.sha256: 0}
    swapper = None
    results = []
    with insp:
        st = insp.stream(folder, batch_size=4)
        for r in st:
            results.append(r)
            if len(results) == 40:  # swap from another thread while the stream goes on
                swapper = threading.Thread(target=insp.swap, args=(v2,))
                swapper.start()
            if len(results) == 120:  # the last frames surely after the switch, however slow the machine
                swapper.join(60)
        shas[insp.manifest.sha256] = 1
        events = list(st.events)
    assert [r.frame_index for r in results] == list(range(N_FRAMES))  # no frame lost
    which = [shas[r.model_sha256] for r in results]
    assert which[0] == 0 and which[-1] == 1 and which == sorted(which)  # one switch, between batches
    switch = which.index(1)
    assert switch % 4 == 0  # on a batch boundary: a batch is judged by one version
    for r, v in zip(results, which):  # each Result is entirely the version it names
        assert r.score == pytest.approx(ref[v][r.frame_index], rel=1e-5)
        assert r.threshold == (2.0 if v == 0 else 2.5)
    swapped = [e for e in events if e["event"] == "model_swapped"]
    assert len(swapped) == 1 and swapped[0]["sha256"] == results[-1].model_sha256


def test_corrupt_or_unsigned_versions_are_refused_and_the_old_one_keeps_running(versions, tmp_path):
    _, v1, v2, frames, folder = versions
    bad = tmp_path / "bad"
    shutil.copytree(os.path.dirname(v2), bad)
    corrupt = bad / os.path.basename(v2)
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    key, other = b"k" * 32, b"o" * 32
    with Inspector(v1, backend="onnxruntime") as insp:
        events = []
        st = insp.stream(folder, on_event=events.append)  # an open stream hears the refusals
        serving = insp.manifest.sha256
        with pytest.raises(SwapRefused, match="sha256"):
            insp.swap(str(corrupt))
        with pytest.raises(SwapRefused, match="not signed"):
            insp.swap(v2, key=key)
        sign_version(v2, other)
        with pytest.raises(SwapRefused, match="does not match"):
            insp.swap(v2, key=key)
        assert insp.manifest.sha256 == serving and insp.threshold == 2.0
        r = insp.inspect(frames[0])  # the old version still judges
        assert r.model_sha256 == serving and r.score == pytest.approx(reference_scores(v1, frames[:1])[0], rel=1e-5)
        assert [e["event"] for e in events] == ["swap_refused"] * 3
        sign_version(v2, key)
        assert insp.swap(v2, key=key)["sha256"] != serving
        st.close()
    os.remove(os.path.splitext(v2)[0] + ".sig")


def test_a_manifest_changed_after_signing_is_refused(versions, tmp_path):
    _, v1, v2, _, _ = versions
    copy = tmp_path / "v2"
    shutil.copytree(os.path.dirname(v2), copy)
    model = str(copy / os.path.basename(v2))
    key = b"s" * 32
    sign_version(model, key)
    manifest = os.path.splitext(model)[0] + ".json"
    text = open(manifest).read().replace('"value": 2.5', '"value": 99.0')  # a raised threshold
    open(manifest, "w").write(text)
    with Inspector(v1, backend="onnxruntime") as insp:
        with pytest.raises(SwapRefused, match="does not match"):
            insp.swap(model, key=key)


def test_rollback_serves_the_previous_version_again(versions):
    _, v1, v2, frames, _ = versions
    with Inspector(v1, backend="onnxruntime") as insp:
        first = insp.manifest.sha256
        with pytest.raises(SwapRefused, match="no previous version"):
            insp.rollback()
        insp.swap(v2)
        assert insp.inspect(frames[0]).model_sha256 != first
        event = insp.rollback()
        assert event["event"] == "model_rolled_back" and event["sha256"] == first
        r = insp.inspect(frames[0])
        assert r.model_sha256 == first and r.threshold == 2.0


def test_the_swap_file_and_sighup_request_a_swap_and_a_rollback(versions, tmp_path):
    _, v1, v2, _, _ = versions
    request = tmp_path / "serve.txt"
    request.write_text(v1)
    with Inspector(v1, backend="onnxruntime") as insp:
        first = insp.manifest.sha256
        watcher = SwapWatcher(insp, str(request), poll_s=30.0).start()  # only SIGHUP wakes it within the test
        try:
            request.write_text(v2)
            if hasattr(signal, "SIGHUP"):
                os.kill(os.getpid(), signal.SIGHUP)
            else:  # pragma: no cover - no SIGHUP on this platform: look at the file directly
                watcher.check()
            deadline = time.monotonic() + 20
            while insp.manifest.sha256 == first and time.monotonic() < deadline:
                time.sleep(0.05)
            assert insp.manifest.sha256 != first
            request.write_text("rollback")
            assert watcher.check()["event"] == "model_rolled_back"
            assert insp.manifest.sha256 == first
            request.write_text(str(tmp_path / "missing.onnx"))
            assert watcher.check() is None and insp.manifest.sha256 == first  # refused, still serving
        finally:
            watcher.stop()
