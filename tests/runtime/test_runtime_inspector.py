"""The Inspector: results equal a bare ONNX Runtime session, frame preparation (size, channel order, grayscale),
FrameError on bad frames, thresholds and normalisation, maps and overlays, artifact checks."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import frames, make_model

from runtime import Inspector
from runtime.errors import ArtifactMismatch, FrameError, ManifestError, RuntimeInspectError
from runtime.manifest import manifest_path_for

BACKENDS = ["onnxruntime"] + (["openvino"] if __import__("importlib").util.find_spec("openvino") else [])


def _bare(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(["anomaly_map", "score"], {"frame": x})


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    return make_model(str(tmp_path_factory.mktemp("rgb")), channel_order="RGB", threshold=3.2,
                      normalization=(3.0, 0.1), batch_max=4)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    return make_model(str(tmp_path_factory.mktemp("plain")), channel_order="BGR")


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_equal_a_bare_onnxruntime_session(rgb_model, backend):
    x = frames(5, seed=11)  # RGB frames of the model's size: passed through untouched
    ref_maps, ref_scores = _bare(rgb_model, x)
    insp = Inspector(rgb_model, backend=backend, frame_order="RGB")
    assert insp.backend == backend and insp.backend_reason
    results = insp.inspect_batch(x)
    assert [r.frame_index for r in results] == [0, 1, 2, 3, 4]
    scores = np.array([r.score for r in results], np.float32)
    maps = np.stack([r.raw_map for r in results])[:, None]
    tol = 0 if backend == "onnxruntime" else 1e-4
    assert np.abs(scores - ref_scores).max() <= tol and np.abs(maps - ref_maps).max() <= tol
    single = insp.inspect(x[2])
    assert abs(single.score - float(ref_scores[2])) <= max(tol, 1e-6)
    assert single.frame_index == 5
    insp.close()


def test_auto_backend_is_visible(rgb_model):
    insp = Inspector(rgb_model)
    assert insp.backend in ("openvino", "onnxruntime") and insp.device == "cpu"
    assert insp.backend_reason.startswith("auto:")
    assert insp.backend in repr(insp) and insp.backend in insp.backend_description
    assert insp.input_size == (32, 48) and insp.manifest.method == "tiny"


def test_bgr_frames_are_converted_to_the_models_rgb(rgb_model):
    x = frames(1, seed=3)[0]  # RGB
    insp = Inspector(rgb_model, backend="onnxruntime")  # default frame_order BGR
    via_bgr = insp.inspect(np.ascontiguousarray(x[:, :, ::-1]))
    via_rgb = insp.inspect(x, frame_order="RGB")
    ref = _bare(rgb_model, x[None])[1][0]
    assert via_bgr.score == pytest.approx(float(ref), abs=1e-6)
    assert via_rgb.score == pytest.approx(float(ref), abs=1e-6)
    assert via_bgr.frame_order == "BGR" and via_rgb.frame_order == "RGB"


def test_other_sizes_are_resized_on_the_host_with_area_and_linear(plain_model):
    insp = Inspector(plain_model, backend="onnxruntime")
    big = frames(1, size=(96, 144), seed=4)[0]
    small = frames(1, size=(16, 24), seed=5)[0]
    for frame, interp in ((big, cv2.INTER_AREA), (small, cv2.INTER_LINEAR)):
        expected = cv2.resize(frame, (48, 32), interpolation=interp)
        ref = _bare(plain_model, expected[None])
        r = insp.inspect(frame)
        assert r.score == pytest.approx(float(ref[1][0]), abs=1e-6)
        np.testing.assert_allclose(r.raw_map, ref[0][0, 0], atol=1e-6)
        # the map comes back at the frame's size
        assert r.anomaly_map.shape == frame.shape[:2] and r.anomaly_map.dtype == np.float32
        assert r.anomaly_map is r.anomaly_map  # computed once
        np.testing.assert_allclose(r.anomaly_map, cv2.resize(ref[0][0, 0], (frame.shape[1], frame.shape[0]),
                                                             interpolation=cv2.INTER_LINEAR), atol=1e-5)


def test_grayscale_frames_are_replicated(plain_model):
    insp = Inspector(plain_model, backend="onnxruntime")
    gray = frames(1, seed=6)[0][:, :, 0]
    ref = _bare(plain_model, np.repeat(gray[:, :, None], 3, axis=2)[None])[1][0]
    for g in (gray, gray[:, :, None]):
        assert insp.inspect(g).score == pytest.approx(float(ref), abs=1e-6)
    big_gray = cv2.resize(gray, (96, 64), interpolation=cv2.INTER_LINEAR)
    ref_big = _bare(plain_model, np.repeat(cv2.resize(big_gray, (48, 32), interpolation=cv2.INTER_AREA)[:, :, None],
                                           3, axis=2)[None])[1][0]
    assert insp.inspect(big_gray).score == pytest.approx(float(ref_big), abs=1e-6)
    rgba = np.dstack([frames(1, seed=7)[0], np.full((32, 48), 255, np.uint8)])
    assert insp.inspect(rgba).score == pytest.approx(insp.inspect(rgba[:, :, :3].copy()).score)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty frame"),
    (np.zeros((32, 48, 3), np.float32), "dtype is float32, expected uint8"),
    (np.zeros((32, 48, 3), np.uint16), ">> 8"),
    (np.zeros((2, 32, 48, 3), np.uint8), "is not (H, W, 3)"),
    (np.zeros((32, 48, 5), np.uint8), "is not (H, W, 3)"),
    (np.zeros((48,), np.uint8), "is not (H, W, 3)"),
    ([[1, 2], [3, 4]], "numpy array"),
    (None, "numpy array"),
])
def test_bad_frames_raise_frame_error(plain_model, bad, message):
    insp = Inspector(plain_model, backend="onnxruntime")
    with pytest.raises(FrameError) as e:
        insp.inspect(bad)
    assert message in str(e.value)


def test_inspect_batch_input_checks(plain_model):
    insp = Inspector(plain_model, backend="onnxruntime")
    with pytest.raises(FrameError, match="no frames"):
        insp.inspect_batch([])
    with pytest.raises(FrameError, match="list of frames"):
        insp.inspect_batch(np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(RuntimeInspectError, match="frame_order"):
        insp.inspect(frames(1)[0], frame_order="YUV")
    mixed = [frames(1, seed=1)[0], frames(1, size=(64, 64), seed=2)[0], frames(1, seed=3)[0][:, :, 0]]
    rs = insp.inspect_batch(mixed)  # sizes and channels may differ inside one batch
    assert [r.anomaly_map.shape for r in rs] == [(32, 48), (64, 64), (32, 48)]


def test_batch_buffer_is_reused(plain_model):
    insp = Inspector(plain_model, backend="onnxruntime")
    insp.inspect_batch(list(frames(3)))
    buf = insp._frames.buffer(1).base  # this thread's buffer (a view of it)
    insp.inspect_batch(list(frames(2, seed=9)))
    insp.inspect(frames(1, seed=10)[0])
    assert insp._frames.buffer(1).base is buf and buf.shape[0] == 3


def test_threshold_verdicts_and_normalized_score(rgb_model):
    x = frames(6, seed=12)
    insp = Inspector(rgb_model, backend="onnxruntime", frame_order="RGB")
    assert insp.threshold == 3.2
    for r in insp.inspect_batch(x):
        assert r.threshold == 3.2 and r.is_anomalous == (r.score >= 3.2)
        assert r.normalized_score == pytest.approx((r.score - 3.0) / (3.2 - 3.0))
        assert r.verdict in ("good", "anomalous")
        d = r.to_dict()
        assert d["is_anomalous"] == r.is_anomalous and d["frame"] == r.frame_index
    low = Inspector(rgb_model, backend="onnxruntime", threshold=0.5)
    r = low.inspect(x[0])
    assert r.is_anomalous is True and r.threshold == 0.5
    assert r.normalized_score is None  # 0.5 is below the good mean: no meaningful normalisation
    with pytest.raises(RuntimeInspectError, match="threshold must be a number"):
        Inspector(rgb_model, backend="onnxruntime", threshold="high")


def test_without_any_threshold_the_verdict_is_none(plain_model):
    insp = Inspector(plain_model, backend="onnxruntime")
    assert insp.manifest.threshold is None and insp.threshold is None
    r = insp.inspect(frames(1)[0])
    assert r.is_anomalous is None and r.threshold is None and r.normalized_score is None
    assert r.verdict == "unknown"


def test_overlay_uses_the_manifest_scale(rgb_model):
    from runtime.overlay import overlay

    frame = frames(1, size=(64, 96), seed=13)[0]
    insp = Inspector(rgb_model, backend="onnxruntime")
    r = insp.inspect(frame)
    ov = r.overlay(alpha=0.4)
    assert ov.shape == frame.shape and ov.dtype == np.uint8 and not np.array_equal(ov, frame)
    expected = overlay(frame, r.raw_map, vmin=3.0, vmax=3.2, alpha=0.4, channel_order="BGR")
    np.testing.assert_array_equal(ov, expected)
    assert np.array_equal(r.overlay(alpha=0.0), frame)


def test_latency_and_timestamps(plain_model):
    import time

    insp = Inspector(plain_model, backend="onnxruntime")
    t0 = time.time()
    r = insp.inspect(frames(1)[0])
    assert r.latency_ms > 0 and t0 <= r.timestamp <= time.time()


def test_sha256_mismatch_refuses_the_model(tmp_path):
    import onnx

    path = make_model(str(tmp_path))
    model = onnx.load(path)
    model.graph.initializer[2].float_data[:] = [0.7]  # another bias: a valid model, not the exported one
    model.graph.initializer[2].ClearField("raw_data")
    onnx.save(model, path)
    with pytest.raises(ArtifactMismatch, match="python -m export.onnx"):
        Inspector(path, backend="onnxruntime")
    Inspector(path, backend="onnxruntime", verify=False, warmup=False)  # opt-out for debugging


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_model_is_an_artifact_mismatch_not_a_library_error(tmp_path, backend):
    path = make_model(str(tmp_path))
    with open(path, "ab") as f:
        f.write(b"\0garbage")
    with pytest.raises(ArtifactMismatch, match="cannot (load|read)"):
        Inspector(path, backend=backend, verify=False)


def test_model_paths_and_kinds(tmp_path):
    path = make_model(str(tmp_path))
    json_path = manifest_path_for(path)
    assert Inspector(json_path, backend="onnxruntime").artifact_path == path  # the manifest names the artifact
    with pytest.raises(RuntimeInspectError, match="does not exist"):
        Inspector(str(tmp_path / "nope.onnx"))
    os.remove(json_path)
    with pytest.raises(ManifestError, match="no manifest"):
        Inspector(path)
    path = make_model(str(tmp_path))
    engine = tmp_path / "other.engine"
    engine.write_bytes(open(path, "rb").read())
    import shutil

    shutil.copy(manifest_path_for(path), manifest_path_for(str(engine)))
    with pytest.raises(ManifestError, match="artifact_kind 'onnx'"):
        Inspector(str(engine))


def test_extra_inputs_reach_the_model(tmp_path):
    path = make_model(str(tmp_path), name="noisy", with_noise=True)
    insp = Inspector(path, backend="onnxruntime", frame_order="RGB")
    x = frames(2)
    zero = np.zeros((2, 1, 32, 48), np.float32)
    base = [r.score for r in insp.inspect_batch(x, extra={"noise": zero})]
    shifted = [r.score for r in insp.inspect_batch(x, extra={"noise": zero + 1.0})]
    assert np.allclose(np.array(shifted) - np.array(base), 1.0, atol=1e-5)
    one = insp.inspect(x[0], extra={"noise": zero[:1] + 2.0})
    assert one.score == pytest.approx(base[0] + 2.0, abs=1e-5)
    with pytest.raises(FrameError, match="needs the extra input.*'noise' \\(fresh noise field\\)"):
        insp.inspect(x[0])  # this graph requires it: a clear error, not onnxruntime's


# -- host frame preparation is one piece shared with training; Stream uses the Inspector's public API -----------
def _graph_inputs(insp, batch):
    """The uint8 batch the Inspector hands its backend for `batch` (a list of frames)."""
    seen = []
    infer = insp.runner.infer

    def record(x, extra=None):
        seen.append(np.array(x, copy=True))
        return infer(x, extra)

    insp.runner.infer = record
    try:
        insp.inspect_batch(batch)
    finally:
        insp.runner.infer = infer
    return seen[0]


@pytest.mark.parametrize("src_hw", [(32, 48), (97, 131), (20, 30), (64, 40), (16, 200)])
def test_training_and_runtime_resize_give_identical_pixels(tmp_path, rgb_model, src_hw):
    """imagesets reads a file (RGB) and resizes it; the Inspector gets the same file from cv2.imread (BGR): the
    pixels that reach the graph are the pixels the model was trained on, to the bit (shrink, enlarge, mixed)."""
    from imagesets import load_images
    from imagesets.samples import Sample

    img = np.random.default_rng(sum(src_hw)).integers(0, 256, size=(*src_hw, 3), dtype=np.uint8)
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), img)
    insp = Inspector(rgb_model, backend="onnxruntime", frame_order="BGR")  # the model takes RGB
    trained = load_images([Sample(path=str(path), label=0, defect_type="good")], insp.input_size, progress=False)
    seen = _graph_inputs(insp, [cv2.imread(str(path))])
    assert seen.shape == trained.shape and np.array_equal(seen, trained)


def test_train_data_resize_rule_is_the_runtimes():
    import imagesets as td
    from runtime import frames as rf

    assert td.resize_interpolation is rf.resize_interpolation
    assert td.images.RESIZE_RULE == rf.RESIZE_RULE
    assert rf.resize_interpolation((100, 100), (50, 50)) == cv2.INTER_AREA
    assert rf.resize_interpolation((100, 100), (50, 200)) == cv2.INTER_LINEAR
    one = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    assert rf.resize_to(one, (6, 8)).shape == (6, 8, 1)  # a single channel axis survives cv2


def test_stream_calls_only_public_inspector_members():
    """Stream drives the Inspector through its public API: no `inspector._x` anywhere in runtime/stream.py, and
    every member it uses exists on Inspector."""
    import ast

    from runtime.inspector import Inspector as Insp

    tree = ast.parse((Path(__file__).parents[2] / "runtime" / "stream.py").read_text())

    def is_inspector(node):
        return ((isinstance(node, ast.Name) and node.id == "inspector")
                or (isinstance(node, ast.Attribute) and node.attr == "inspector"))

    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and is_inspector(n.value)}
    assert used, "the scan found no use of the inspector: it no longer looks at the right names"
    private = sorted(a for a in used if a.startswith("_"))
    assert not private, f"runtime/stream.py reaches into Inspector privates: {private}"
    assert all(hasattr(Insp, a) for a in used), sorted(a for a in used if not hasattr(Insp, a))


def test_inspect_frames_keeps_source_indices_and_reports_bad_frames(plain_model):
    from runtime.source_base import Frame

    insp = Inspector(plain_model, backend="onnxruntime")
    x = frames(2, seed=4)
    bad = []
    rs = insp.inspect_frames([Frame(7, 1.5, x[0], "a.png"), Frame(8, 2.5, np.zeros((0, 3, 3), np.uint8), "b.png"),
                              Frame(9, 3.5, x[1], "c.png")], on_bad=lambda i, e: bad.append((i, type(e))))
    assert [(r.frame_index, r.timestamp, r.name) for r in rs] == [(7, 1.5, "a.png"), (9, 3.5, "c.png")]
    assert bad == [(8, FrameError)]
    assert rs[1].score == pytest.approx(insp.inspect(x[1]).score)
    with pytest.raises(FrameError):
        insp.inspect_frames([Frame(1, 0.0, np.zeros((4, 4), np.float32))])
    insp.close()
    with pytest.raises(RuntimeInspectError, match="closed"):
        insp.inspect_frames([Frame(1, 0.0, x[0])])
