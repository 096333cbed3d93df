"""Backends: selection (and `auto` naming its choice), ONNX Runtime vs OpenVINO parity, batching, extra inputs,
missing libraries."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.tiny_models import frames, make_model

from runtime.backends import (REGISTRY, BackendCapabilities, available_backends, backend_capabilities,
                              backend_class, backend_names, create_backend, default_threads, select_backend)
from runtime.backends.base import Backend, pad_batch, physical_cores
from runtime.errors import BackendUnavailable, FrameError, ManifestError, RuntimeInspectError
from runtime.manifest import load_manifest

HAVE_OV = "openvino" in available_backends()
needs_ov = pytest.mark.skipif(not HAVE_OV, reason="openvino not installed")


def _bare_ort(path, x, extra=None):
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {"frame": x}
    feed.update(extra or {})
    return s.run(["anomaly_map", "score"], feed)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(str(tmp_path_factory.mktemp("m")), batch_max=4)


def _hide(monkeypatch, module):
    """Make `import module` fail the way a missing install does (sys.modules entry None -> ImportError)."""
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


def test_registry_and_availability():
    assert set(REGISTRY) == {"onnxruntime", "openvino", "tensorrt", "torch", "triton"}
    names = available_backends()
    assert "onnxruntime" in names  # the default that always installs
    for name in REGISTRY:
        assert issubclass(backend_class(name), Backend)
    with pytest.raises(RuntimeInspectError, match="known: auto, onnxruntime"):
        backend_class("tflite")


def test_capabilities_are_declared_by_every_backend():
    assert backend_names() == tuple(REGISTRY)
    kinds = {"onnx", "openvino-ir", "tensorrt-engine", "graph"}
    for name in backend_names():
        caps = backend_capabilities(name)
        assert isinstance(caps, BackendCapabilities) and caps.name == name
        assert caps.artifact_kinds and set(caps.artifact_kinds) <= kinds, name
        assert caps.precisions and set(caps.precisions) <= {"fp32", "fp16", "int8"}, name
        assert caps.compute_modes[0] == "fp32" and set(caps.compute_modes) <= {"fp32", "fp16", "bf16"}, name
        assert caps.int8_placement in (None, "onnxruntime", "tensorrt"), name
        assert caps.option_names == backend_class(name).option_names
        for mode in caps.compute_modes[1:]:  # every lower-precision mode is selected by real options
            opts = caps.options_for(mode)
            assert opts and set(opts) <= set(caps.option_names), (name, mode)
        assert caps.options_for("fp32") == {}
        # threads: one rule for every backend that computes on this CPU, none for a GPU or a server
        assert caps.default_threads == (default_threads() if "threads" in caps.option_names else None), name
    with pytest.raises(RuntimeInspectError, match="no compute mode 'bf16'; its modes: fp32"):
        backend_capabilities("onnxruntime").options_for("bf16")
    with pytest.raises(RuntimeInspectError, match="unknown backend 'tflite'"):
        backend_capabilities("tflite")
    # what the tools look up instead of their own tables
    assert backend_capabilities("onnxruntime").int8_placement == "onnxruntime"
    assert backend_capabilities("openvino").int8_placement == "tensorrt"
    assert backend_capabilities("tensorrt").needs_gpu and backend_capabilities("tensorrt").int8_placement == "tensorrt"
    assert backend_capabilities("torch").int8_placement is None and "int8" not in backend_capabilities("torch").precisions
    assert backend_capabilities("torch").artifact_kinds == ("graph",)
    assert backend_capabilities("openvino").options_for("bf16") == {"inference_precision": "bf16"}
    assert backend_capabilities("torch").options_for("bf16") == {"autocast": "bf16"}


def test_capabilities_are_read_without_importing_any_backend_library():
    import json
    import subprocess

    code = ("import json, sys\n"
            "from runtime.backends import backend_capabilities, backend_names\n"
            "caps = [backend_capabilities(n) for n in backend_names()]\n"
            "print(json.dumps([m for m in ('torch', 'train', 'onnxruntime', 'openvino', 'tensorrt', 'onnx') "
            "if m in sys.modules]))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_default_threads_is_the_physical_cores_rule():
    assert default_threads() == physical_cores() >= 1
    assert Backend.default_threads() is None  # the base takes no thread count
    assert backend_class("onnxruntime").default_threads() == default_threads()


def test_pad_batch_repeats_the_last_frame():
    x = frames(3, seed=1)
    padded = pad_batch(x, 5)
    assert padded.shape == (5,) + x.shape[1:] and padded.dtype == x.dtype
    np.testing.assert_array_equal(padded[:3], x)
    np.testing.assert_array_equal(padded[3], x[2])
    np.testing.assert_array_equal(padded[4], x[2])
    assert pad_batch(x, 3) is x


class _Recorder(Backend):
    """A backend whose graph returns the mean of each frame: shows what the base class feeds `_infer_impl`."""

    name = "recorder"

    def _load(self) -> None:
        self.fed = []

    def _infer_impl(self, frames, extra):
        self.fed.append(frames.copy())
        n = frames.shape[0]
        return np.zeros((n, 1, 2, 2), np.float32), frames.reshape(n, -1).mean(axis=1)

    def _close(self) -> None:
        pass


def test_base_pads_a_static_batch_with_copies_of_the_last_frame(tmp_path):
    path = make_model(str(tmp_path), name="static3", static_batch=3)
    b = _Recorder(path, load_manifest(path))
    x = frames(4, seed=2)
    with b:
        maps, scores = b.infer(x)
        b.synchronize()  # the base: nothing in flight, returns
    assert [f.shape[0] for f in b.fed] == [3, 3]  # 4 frames: one full chunk, one padded chunk
    np.testing.assert_array_equal(b.fed[1][0], x[3])
    np.testing.assert_array_equal(b.fed[1][1], x[3])
    np.testing.assert_array_equal(b.fed[1][2], x[3])
    assert maps.shape == (4, 1, 2, 2)
    np.testing.assert_allclose(scores, x.reshape(4, -1).mean(axis=1), rtol=1e-6)


@needs_ov
def test_auto_on_cpu_prefers_openvino_and_says_why():
    choice = select_backend("onnx", "auto", "auto")
    assert choice.name == "openvino" and choice.device == "cpu"
    assert "OpenVINO" in choice.reason and "fastest CPU" in choice.reason
    assert select_backend("onnx", "auto", "cpu").name == "openvino"


def test_auto_falls_back_to_onnxruntime_without_openvino(monkeypatch):
    _hide(monkeypatch, "openvino")
    assert "openvino" not in available_backends()
    choice = select_backend("onnx", "auto", "cpu")
    assert choice.name == "onnxruntime" and choice.device == "cpu"
    assert "pip install openvino" in choice.reason


def test_missing_library_names_the_pip_package(monkeypatch, model):
    _hide(monkeypatch, "openvino")
    with pytest.raises(BackendUnavailable, match="pip install openvino"):
        select_backend("onnx", "openvino", "cpu")
    with pytest.raises(BackendUnavailable, match="pip install openvino"):
        create_backend("openvino", model, load_manifest(model)).load()
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime"):
        select_backend("onnx", "onnxruntime", "cpu")


def test_selection_rules_and_errors():
    assert select_backend("onnx", "onnxruntime", "cpu").name == "onnxruntime"
    assert select_backend("onnx", "onnxruntime", "auto").device in ("cpu", "cuda")
    with pytest.raises(RuntimeInspectError, match="python -m export.trt"):
        select_backend("onnx", "tensorrt", "auto")  # tensorrt runs engines, not .onnx
    with pytest.raises(RuntimeInspectError, match="cannot run a TensorRT engine"):
        select_backend("tensorrt-engine", "onnxruntime", "auto")
    with pytest.raises(RuntimeInspectError, match="not device 'cpu'"):
        select_backend("tensorrt-engine", "auto", "cpu")
    with pytest.raises(RuntimeInspectError, match="known: auto, cpu, cuda"):
        select_backend("onnx", "auto", "tpu")
    with pytest.raises(RuntimeInspectError, match="unknown backend 'tflite'"):
        select_backend("onnx", "tflite", "auto")
    with pytest.raises(RuntimeInspectError, match="cannot run an OpenVINO IR"):
        select_backend("openvino-ir", "onnxruntime", "auto")


def test_engine_selects_tensorrt_and_needs_it():
    if "tensorrt" in available_backends():
        assert select_backend("tensorrt-engine").name == "tensorrt"
    else:
        with pytest.raises(BackendUnavailable, match="pip install tensorrt"):
            select_backend("tensorrt-engine", "auto", "auto")


def test_cuda_without_a_gpu_build_names_onnxruntime_gpu():
    from runtime.backends.onnxruntime import gpu_providers

    if gpu_providers():
        pytest.skip("this onnxruntime build has GPU providers")
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime-gpu"):
        select_backend("onnx", "auto", "cuda")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        select_backend("onnx", "onnxruntime", "cuda")


def test_torch_is_never_chosen_by_auto():
    for device in ("auto", "cpu"):
        assert select_backend("onnx", "auto", device).name != "torch"


class PreferredOnCpu(Backend):
    """A backend that declares itself first for `auto` on a CPU (selection only: it is never loaded here)."""

    name = "preferred"
    artifact_kinds = ("onnx",)
    devices = ("cpu",)
    auto_priority = {"cpu": 0}

    @classmethod
    def _probe(cls) -> None:
        pass


def test_a_registered_backend_is_selected_by_its_declarations(monkeypatch):
    """A new backend is a class and a registry line: `auto` ranks it by its declared priority, its declared
    devices bound what it may be asked for, and the built-in ones still answer for the GPU."""
    monkeypatch.setitem(REGISTRY, "preferred", (__name__, "PreferredOnCpu"))
    choice = select_backend("onnx", "auto", "cpu")
    assert choice == ("preferred", "cpu", "auto: preferred on the CPU")
    assert select_backend("onnx", "preferred", "auto").device == "cpu"
    with pytest.raises(RuntimeInspectError, match="the preferred backend runs on cpu here"):
        select_backend("onnx", "preferred", "cuda")
    with pytest.raises(RuntimeInspectError, match="backend 'preferred' cannot run a TensorRT engine"):
        select_backend("tensorrt-engine", "preferred", "auto")
    monkeypatch.setattr(PreferredOnCpu, "auto_priority", {})  # by name only: auto falls back to the others
    assert select_backend("onnx", "auto", "cpu").name in ("openvino", "onnxruntime")


def test_onnxruntime_backend_equals_a_bare_session(model):
    x = frames(3)
    ref_maps, ref_scores = _bare_ort(model, x)
    with create_backend("onnxruntime", model, load_manifest(model)) as b:
        maps, scores = b.infer(x)
        assert "CPUExecutionProvider" in b.describe()
        opts = b.session.get_session_options()
        assert opts.intra_op_num_threads == default_threads() == physical_cores()
    assert maps.dtype == np.float32 and maps.shape == (3, 1, 32, 48) and scores.shape == (3,)
    np.testing.assert_array_equal(maps, ref_maps)
    np.testing.assert_array_equal(scores, ref_scores)


@needs_ov
@pytest.mark.parametrize("n", [1, 3, 9])  # latency path, throughput queue, and more than max batch (4)
def test_openvino_matches_onnxruntime_fp32(model, n):
    x = frames(n, seed=n)
    m = load_manifest(model)
    with create_backend("onnxruntime", model, m) as a, create_backend("openvino", model, m) as b:
        ma, sa = a.infer(x)
        mb, sb = b.infer(x)
    assert mb.shape == ma.shape and sb.shape == sa.shape
    assert np.abs(ma - mb).max() <= 1e-4 and np.abs(sa - sb).max() <= 1e-4


@needs_ov
def test_openvino_single_frames_after_a_batch_and_static_batch(tmp_path, model):
    m = load_manifest(model)
    x = frames(5, seed=3)
    with create_backend("onnxruntime", model, m) as a, create_backend("openvino", model, m) as b:
        ref = a.infer(x)[1]
        b.infer(x)  # compiles the throughput model
        one = np.concatenate([b.infer(x[i:i + 1])[1] for i in range(5)])
        assert "THROUGHPUT" in b.describe()
    assert np.abs(one - ref).max() <= 1e-4
    static = make_model(str(tmp_path), name="static", static_batch=2)
    ms = load_manifest(static)
    with create_backend("openvino", static, ms) as b, create_backend("onnxruntime", static, ms) as a:
        sb, sa = b.infer(x)[1], a.infer(x)[1]  # 5 frames through a batch-2 graph: padded last chunk
    assert sb.shape == (5,) and np.abs(sb - sa).max() <= 1e-4
    assert np.abs(sa - ref).max() <= 1e-4


def test_batches_above_the_maximum_are_split(model):
    x = frames(10, seed=5)
    m = load_manifest(model)
    assert m.batch.max == 4
    with create_backend("onnxruntime", model, m) as b:
        maps, scores = b.infer(x)
    ref_maps, ref_scores = _bare_ort(model, x)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    np.testing.assert_allclose(maps, ref_maps, atol=1e-6)


def test_extra_noise_input_is_fed_when_given(tmp_path):
    path = make_model(str(tmp_path), name="noisy", with_noise=True)
    m = load_manifest(path)
    x = frames(2)
    noise = np.random.default_rng(0).normal(size=(2, 1, 32, 48)).astype(np.float32)
    with create_backend("onnxruntime", path, m) as b:
        maps, _ = b.infer(x, extra={"noise": noise})
        one_field, _ = b.infer(x, extra={"noise": noise[:1]})  # (1, ...) broadcast over the batch
        with pytest.raises(FrameError, match="not declared"):
            b.infer(x, extra={"fog": noise})
        with pytest.raises(FrameError, match="must have shape"):
            b.infer(x, extra={"noise": noise[:, :, :8]})
    ref, _ = _bare_ort(path, x, {"noise": noise})
    np.testing.assert_allclose(maps, ref, atol=1e-6)
    ref1, _ = _bare_ort(path, x, {"noise": np.repeat(noise[:1], 2, axis=0)})
    np.testing.assert_allclose(one_field, ref1, atol=1e-6)


def test_backend_checks_frames_and_manifest_names(tmp_path, model):
    m = load_manifest(model)
    with create_backend("onnxruntime", model, m) as b:
        with pytest.raises(FrameError, match="uint8"):
            b.infer(frames(1).astype(np.float32))
        with pytest.raises(FrameError, match=r"\(N, 32, 48, 3\)"):
            b.infer(frames(1, size=(16, 16)))
    m.outputs.score.name = "image_score"
    with pytest.raises(ManifestError, match="'image_score' is not an output"):
        create_backend("onnxruntime", model, m).load()


def test_close_is_idempotent_and_context_manager_loads(model):
    b = create_backend("onnxruntime", model, load_manifest(model))
    assert not b.is_loaded
    with b:
        assert b.is_loaded
        b.warmup()
    assert not b.is_loaded
    b.close()


def test_torch_backend_needs_the_run(model):
    if "torch" not in available_backends():
        pytest.skip("torch not installed")
    m = load_manifest(model)
    assert m.source_run is None
    with pytest.raises(ManifestError, match="no 'source_run'"):
        create_backend("torch", model, m).load()
    m.source_run = "runs/does-not-exist"
    with pytest.raises(ManifestError, match="does not exist here"):
        create_backend("torch", model, m).load()


def test_unknown_backend_option_is_an_error_naming_the_known_ones(model):
    # An option meant for another backend (or a typo) must not be dropped silently.
    with pytest.raises(RuntimeInspectError, match="openvino has no option precision .*inference_precision"):
        create_backend("openvino", model, load_manifest(model), precision="bf16")


@needs_ov
def test_openvino_computes_fp32_in_f32_unless_asked_for_bf16(model):
    from runtime.machine import cpu_has_bf16

    x = frames(2, seed=3)
    m = load_manifest(model)
    with create_backend("openvino", model, m) as exact, create_backend("onnxruntime", model, m) as ref:
        me, _ = exact.infer(x[:1])
        mr, _ = ref.infer(x[:1])
        assert exact.compute_precision == "f32" and "computes f32" in exact.describe()
    assert np.abs(me - mr).max() <= 1e-4
    if not cpu_has_bf16():
        pytest.skip("this CPU has no AMX/AVX512-BF16: OpenVINO would not compute in bf16")
    with create_backend("openvino", model, m, inference_precision="bf16") as fast:
        fast.infer(x[:1])
        assert fast.compute_precision == "bf16" and "computes bf16" in fast.describe()
