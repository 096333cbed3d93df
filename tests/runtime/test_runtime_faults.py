"""Faults on the Inspector and backend side: threads on one Inspector, an IR beside the ONNX, non-finite
thresholds, foreign library exceptions, close from another thread, per-frame batch errors, distortion warnings,
a model path that is a folder. Every thread is joined with a timeout, so nothing here can hang."""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading

import numpy as np
import pytest

from tests.helpers.tiny_models import frames, make_model, make_onnx

from runtime import Inspector
from runtime.errors import FrameError, ManifestError, RuntimeInspectError
from runtime.manifest import manifest_path_for

HAVE_OV = importlib.util.find_spec("openvino") is not None
BACKENDS = ["onnxruntime"] + (["openvino"] if HAVE_OV else [])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(str(tmp_path_factory.mktemp("faults")), channel_order="BGR", threshold=3.0, batch_max=4)


def save_ir(onnx_path, xml_path):
    """Convert an ONNX to an OpenVINO IR in a child process (OpenVINO's ONNX reader crashed once inside the
    full pytest process, in this conversion, which is test set-up, not the runtime under test)."""
    import subprocess

    code = ("import sys, openvino as ov; core = ov.Core(); "
            "ov.save_model(core.read_model(sys.argv[1]), sys.argv[2], compress_to_fp16=False)")
    subprocess.run([sys.executable, "-c", code, str(onnx_path), str(xml_path)], check=True, timeout=300)


def _run_threads(targets, timeout=120.0):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread did not finish"


# -- 1. threads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_on_one_inspector_get_their_own_results(model, backend):
    insp = Inspector(model, backend=backend)
    n = 500
    # frames of another size: the host resize widens the window between preparing a frame and inferring it
    work = [frames(n, size=(96, 144), seed=s) for s in (1, 2)]
    expected = [[insp.inspect(f).score for f in w] for w in work]
    got = [[None] * n, [None] * n]
    errors = []

    def worker(k):
        def run():
            try:
                for i, f in enumerate(work[k]):
                    got[k][i] = insp.inspect(f).score
            except Exception as e:  # reported below, not swallowed
                errors.append(e)
        return run

    _run_threads([worker(0), worker(1)])
    assert not errors, errors
    wrong = sum(abs(g - e) > 1e-5 for k in (0, 1) for g, e in zip(got[k], expected[k]))
    assert wrong == 0, f"{wrong} of {2 * n} results belong to another thread's frame"
    insp.close()


def test_frame_indices_are_unique_across_threads(model):
    insp = Inspector(model, backend="onnxruntime")
    seen = []
    lock = threading.Lock()

    def run():
        for f in frames(50, seed=3):
            r = insp.inspect(f)
            with lock:
                seen.append(r.frame_index)

    _run_threads([run, run])
    assert sorted(seen) == list(range(100))


# -- 2. an IR beside the ONNX is never loaded ------------------------------------------------------------
@pytest.mark.skipif(not HAVE_OV, reason="openvino not installed")
def test_openvino_ignores_an_unhashed_ir_beside_the_onnx(tmp_path):
    path = make_model(str(tmp_path), channel_order="BGR")
    other = make_onnx(str(tmp_path / "other.onnx"), seed=7)  # different weights: different scores
    save_ir(other, tmp_path / "tiny.xml")
    assert (tmp_path / "tiny.bin").exists()
    x = frames(3, seed=5)
    ref = Inspector(path, backend="onnxruntime").inspect_batch(list(x))
    insp = Inspector(path, backend="openvino")
    got = insp.inspect_batch(list(x))
    assert insp.runner.model_path() == path
    assert np.allclose([r.score for r in got], [r.score for r in ref], atol=1e-4)


# -- 5. non-finite thresholds ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_thresholds_are_refused(model, value):
    with pytest.raises(RuntimeInspectError, match="finite"):
        Inspector(model, backend="onnxruntime", threshold=value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_a_manifest_with_a_non_finite_threshold_is_refused(tmp_path, text):
    path = make_model(str(tmp_path), threshold=3.0)
    mpath = manifest_path_for(path)
    raw = open(mpath).read()
    d = json.loads(raw)
    d["threshold"]["value"] = "__X__"
    open(mpath, "w").write(json.dumps(d).replace('"__X__"', text))
    with pytest.raises(ManifestError, match="'threshold.value' must be a finite number"):
        Inspector(path, backend="onnxruntime")


# -- 6. foreign exceptions become the runtime's own ------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_manifest_input_size_that_differs_from_the_graph_is_a_manifest_error(tmp_path, backend):
    path = make_model(str(tmp_path))
    mpath = manifest_path_for(path)
    d = json.load(open(mpath))
    d["input"]["height"] = 40  # the ONNX still says 32 (and its sha256 still matches)
    json.dump(d, open(mpath, "w"))
    with pytest.raises(ManifestError, match=r"has shape .* but the manifest says \(N, 40, 48, 3\)"):
        Inspector(path, backend=backend)


@pytest.mark.parametrize("backend,options,message", [
    ("onnxruntime", {"threads": "abc"}, "threads must be a positive integer"),
    ("onnxruntime", {"threads": 0}, "threads must be a positive integer"),
    ("onnxruntime", {"providers": "CPUExecutionProvider"}, "providers must be a list"),
] + ([("openvino", {"threads": "abc"}, "threads must be a positive integer"),
      ("openvino", {"inference_precision": "xx"}, "inference_precision must be one of f32, bf16, f16"),
      ("openvino", {"requests": -1}, "requests must be a positive integer")] if HAVE_OV else []))
def test_bad_backend_option_values_are_runtime_errors(model, backend, options, message):
    with pytest.raises(RuntimeInspectError, match=message):
        Inspector(model, backend=backend, backend_options=options)


def test_a_library_exception_at_inference_becomes_a_runtime_error(model):
    insp = Inspector(model, backend="onnxruntime")
    insp.runner.session = _Exploding()
    with pytest.raises(RuntimeInspectError, match="onnxruntime inference failed .*: boom"):
        insp.inspect(frames(1)[0])


class _Exploding:
    def run(self, *a, **k):
        raise ValueError("boom\nsecond line of a long library trace")


def test_a_deeply_nested_manifest_is_a_manifest_error(tmp_path):
    path = make_model(str(tmp_path))
    with open(manifest_path_for(path), "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    with pytest.raises(ManifestError, match="nested too deeply"):
        Inspector(path, backend="onnxruntime")


# -- 9. close is final and thread-safe -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_inspect_after_close_raises_instead_of_reloading(model, backend):
    insp = Inspector(model, backend=backend)
    insp.inspect(frames(1)[0])
    insp.close()
    with pytest.raises(RuntimeInspectError, match="closed"):
        insp.inspect(frames(1)[0])
    assert not insp.runner.is_loaded
    insp.close()  # idempotent


def test_close_from_another_thread_during_inspection(model):
    insp = Inspector(model, backend="onnxruntime")
    outcome = []
    inspecting = threading.Event()
    work = frames(50, size=(64, 96), seed=8)

    def run():
        # inspect until the close lands (a fixed frame count raced a fast machine: it could finish first)
        try:
            for i in range(10**6):
                insp.inspect(work[i % len(work)])
                inspecting.set()
        except RuntimeInspectError as e:
            outcome.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert inspecting.wait(60), "the first inspection did not finish"
    insp.close()
    t.join(60)
    assert not t.is_alive()
    assert outcome and "closed" in outcome[0]
    assert not insp.runner.is_loaded


# -- 10. smaller points ----------------------------------------------------------------------------------
def test_a_bad_frame_in_a_batch_does_not_cost_the_others_their_results(model):
    insp = Inspector(model, backend="onnxruntime")
    good = frames(3, seed=4)
    batch = [good[0], np.zeros((32, 48, 5), np.uint8), good[1], np.zeros((0, 0, 3), np.uint8), good[2]]
    with pytest.raises(FrameError, match=r"2 of 5 frames refused \(positions 1, 3") as info:
        insp.inspect_batch(batch)
    err = info.value
    assert set(err.errors) == {1, 3} and isinstance(err.errors[3], FrameError)
    assert [r is None for r in err.results] == [False, True, False, True, False]
    ref = [insp.inspect(f).score for f in good]
    assert np.allclose([err.results[i].score for i in (0, 2, 4)], ref, atol=1e-6)


def test_frame_indices_do_not_skip_after_a_refused_frame(model):
    insp = Inspector(model, backend="onnxruntime")
    assert insp.inspect(frames(1)[0]).frame_index == 0
    with pytest.raises(FrameError):
        insp.inspect(np.zeros((4, 4), np.float32))
    assert insp.inspect(frames(1)[0]).frame_index == 1


@pytest.mark.parametrize("shape,what", [((1, 1, 3), "enlarged 48.0x"), ((10, 270, 3), "aspect ratio changes 18.0x")])
def test_distorting_resizes_are_warned_once(model, caplog, shape, what):
    insp = Inspector(model, backend="onnxruntime")
    with caplog.at_level(logging.WARNING, logger="runtime.inspector"):
        insp.inspect(np.zeros(shape, np.uint8))
        insp.inspect(np.zeros(shape, np.uint8))
        insp.inspect(frames(1, size=(64, 96))[0])  # same aspect ratio, shrunk: no warning
    msgs = [r.getMessage() for r in caplog.records if "distorted" in r.getMessage()]
    assert len(msgs) == 1 and what in msgs[0]


def test_a_model_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(RuntimeInspectError, match="is a directory: give the .onnx"):
        Inspector(str(tmp_path))


@pytest.mark.skipif(not HAVE_OV, reason="openvino not installed")
def test_an_ir_artifact_checks_its_weights(tmp_path):
    from runtime.manifest import load_manifest, sha256_file, write_manifest

    onnx_path = make_model(str(tmp_path), channel_order="BGR")
    xml = str(tmp_path / "ir.xml")
    save_ir(onnx_path, xml)
    m = load_manifest(onnx_path)
    m.artifact, m.artifact_kind, m.sha256 = "ir.xml", "openvino-ir", ""
    m.weights_sha256 = sha256_file(str(tmp_path / "ir.bin"))
    write_manifest(xml, m)
    ref = Inspector(onnx_path, backend="onnxruntime").inspect(frames(1)[0]).score
    assert Inspector(xml).inspect(frames(1)[0]).score == pytest.approx(ref, abs=1e-4)
    data = bytearray((tmp_path / "ir.bin").read_bytes())
    data[-8:] = b"\x00" * 8  # a tampered weight
    (tmp_path / "ir.bin").write_bytes(bytes(data))
    with pytest.raises(RuntimeInspectError, match="weights_sha256"):
        Inspector(xml)
