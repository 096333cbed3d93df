"""export.trt_build's checks that need neither TensorRT nor a GPU: the GPU is asked for before any build step,
the timing cache is keyed and every TensorRT return value on its path is checked, TF32 is cleared, weakly typed
FP16 builds pin output types too, and a None execution context is an error.

The small `Recording*` classes stand in for the IBuilderConfig / INetworkDefinition / ILayer methods the code
calls (their names are checked against TensorRT's bindings in test_trt_api_contract.py) and return what
TensorRT documents for the failure cases; no test here pretends that TensorRT built or ran anything."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from export import trt_build, trt_timing_cache
from export.errors import ExportError
from runtime import cuda_runtime, trt_version
from runtime.errors import RuntimeInspectError

FLAGS = SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32", PREFER_PRECISION_CONSTRAINTS="PREFER")
LAYER_TYPES = SimpleNamespace(CONSTANT="constant", SHAPE="shape", IDENTITY="identity", CAST="cast")
TRT = SimpleNamespace(BuilderFlag=FLAGS, LayerType=LAYER_TYPES, float32="f32", float16="f16")


class NoTensorRTUse:
    """Returned in place of the tensorrt module: any use but its version means the build started."""

    __version__ = "10.3.0"

    def __getattr__(self, name):
        raise AssertionError(f"tensorrt.{name} was used before the GPU check")


def test_gpu_is_checked_before_any_build_step(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_version, "import_tensorrt", lambda: NoTensorRTUse())
    monkeypatch.setenv(cuda_runtime.LIBCUDART_ENV, str(tmp_path / "libcudart.so.12"))  # nothing there
    monkeypatch.setattr(cuda_runtime, "_CUDA", None)
    engine = tmp_path / "m.engine"
    with pytest.raises(ExportError, match=r"no usable NVIDIA GPU.*no CUDA runtime library \(libcudart\)"):
        trt_build.build_engine(tmp_path / "m.onnx", engine, timing_cache=tmp_path / "timing.cache")
    assert not engine.exists() and not list(tmp_path.glob("*.cache"))


def test_gpu_error_carries_the_cuda_error_and_versions(monkeypatch):
    """With a real libcudart and no GPU (this machine), the export error is cudaGetDevice's, with versions."""
    try:
        cuda = cuda_runtime.load(cuda_runtime.candidate_libraries(environ={}))
        cuda.device_info()
    except cuda_runtime.CudaUnavailable:
        pytest.skip("no libcudart here")
    except cuda_runtime.CudaError:
        monkeypatch.setattr(cuda_runtime, "_CUDA", cuda)
        with pytest.raises(ExportError, match=r"cudaGetDevice failed: cudaError\w+ \(\d+: .*CUDA runtime \d+"):
            trt_build.gpu_info()
    else:
        pytest.skip("a GPU answers here")


# -- timing cache -------------------------------------------------------------------------------------------
def test_timing_cache_file_is_keyed_by_tensorrt_version_and_sm():
    a = trt_timing_cache.keyed_path(Path("eng/timing.cache"), "10.3.0.26", "8.7")
    assert a == Path("eng/timing.trt10.3.0.sm87.cache")
    assert trt_timing_cache.keyed_path("eng/timing.cache", "8.5.2.2", "7.2").name == "timing.trt8.5.2.sm72.cache"
    assert trt_timing_cache.keyed_path("eng/timing.cache", "10.3.0", "8.9") != a  # another GPU
    assert trt_timing_cache.keyed_path("eng/timing.cache", "10.4.0", "8.7") != a  # another TensorRT
    assert trt_timing_cache.keyed_path("eng/tc", "11.4.1", "12.0").name == "tc.trt11.4.1.sm120.cache"


class RecordingConfig:
    """IBuilderConfig's timing-cache methods: create_timing_cache returns None for a blob it cannot read,
    set_timing_cache returns False on a mismatch, get_timing_cache may return None."""

    def __init__(self, readable=True, accept_stored=True, can_create=True, after_build=b"TIMINGS"):
        self.readable, self.accept_stored, self.can_create = readable, accept_stored, can_create
        self.after_build = after_build
        self.calls = []

    def create_timing_cache(self, blob):
        self.calls.append(("create", bytes(blob)))
        if not self.can_create or (blob and not self.readable):
            return None
        return SimpleNamespace(blob=bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.calls.append(("set", cache.blob, ignore_mismatch))
        return self.accept_stored or not cache.blob

    def get_timing_cache(self):
        if self.after_build is None:
            return None
        return SimpleNamespace(serialize=lambda: memoryview(self.after_build))


def test_timing_cache_round_trip(tmp_path):
    path = tmp_path / "timing.trt10.3.0.sm87.cache"
    config = RecordingConfig()
    assert trt_timing_cache.attach(config, path).blob == b""  # no file yet: empty cache
    assert trt_timing_cache.save(config, path) == path and path.read_bytes() == b"TIMINGS"
    config = RecordingConfig()
    assert trt_timing_cache.attach(config, path).blob == b"TIMINGS"
    assert config.calls == [("create", b"TIMINGS"), ("set", b"TIMINGS", False)]


@pytest.mark.parametrize("config, why", [
    (RecordingConfig(readable=False), "could not read"),
    (RecordingConfig(accept_stored=False), "does not match this GPU"),
])
def test_unusable_timing_cache_falls_back_to_an_empty_one(tmp_path, caplog, config, why):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"from another GPU")
    cache = trt_timing_cache.attach(config, path)
    assert cache is not None and cache.blob == b"" and why in caplog.text
    assert config.calls[-1] == ("set", b"", False)


def test_no_timing_cache_at_all_builds_without_one(tmp_path, caplog):
    assert trt_timing_cache.attach(RecordingConfig(can_create=False), tmp_path / "t.cache") is None
    assert "building without one" in caplog.text
    assert trt_timing_cache.save(RecordingConfig(after_build=None), tmp_path / "t.cache") is None
    assert not (tmp_path / "t.cache").exists() and "returned no timing cache" in caplog.text
    assert trt_timing_cache.attach(RecordingConfig(), None) is None


# -- builder flags ------------------------------------------------------------------------------------------
class RecordingFlagsConfig:
    def __init__(self):
        self.set, self.cleared = [], []

    def set_flag(self, f):
        self.set.append(f)

    def clear_flag(self, f):
        self.cleared.append(f)


class RecordingLayer:
    def __init__(self, kind, *dtypes):
        self.type, self.outputs = kind, [SimpleNamespace(dtype=d) for d in dtypes]
        self.precision, self.output_types = None, {}

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_output(self, k):
        return self.outputs[k]

    def set_output_type(self, k, dtype):
        self.output_types[k] = dtype


def _network(*layers):
    return SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0", "11.1.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tf32_is_cleared_and_precision_flags_follow_the_version(version, precision):
    caps = trt_version.capabilities(version)
    strongly_typed = caps.strongly_typed_flag
    config = RecordingFlagsConfig()
    layers = [RecordingLayer("conv", "f16"), RecordingLayer("reduce", "f32")]
    names = trt_build._set_precision_flags(config, _network(*layers), TRT, caps, precision, strongly_typed,
                                           tf32=False)
    assert config.cleared == ["TF32"]
    expected = {("8", "fp16"): ["FP16", "PREFER"], ("8", "int8"): ["INT8"]}.get((version[0], precision), [])
    assert config.set == expected
    assert names == [n.replace("PREFER", "PREFER_PRECISION_CONSTRAINTS") for n in expected]
    config = RecordingFlagsConfig()
    trt_build._set_precision_flags(config, _network(), TRT, caps, precision, strongly_typed, tf32=True)
    assert config.cleared == []


def test_weakly_typed_fp16_pins_precision_and_output_types():
    fp16 = RecordingLayer("conv", "f16")
    fp32 = RecordingLayer("reduce", "f32", "f32")
    mixed = RecordingLayer("custom", "f16", "f32")
    const = RecordingLayer("constant", "f32")
    ints = RecordingLayer("shape", "i32")
    assert trt_build._pin_layer_precisions(_network(fp16, fp32, mixed, const, ints), TRT) == 2
    assert (fp16.precision, fp16.output_types) == ("f16", {0: "f16"})
    assert (fp32.precision, fp32.output_types) == ("f32", {0: "f32", 1: "f32"})
    for untouched in (mixed, const, ints):
        assert untouched.precision is None and untouched.output_types == {}


# -- execution context --------------------------------------------------------------------------------------
def test_a_none_execution_context_is_an_error():
    from runtime.backends.tensorrt import create_context

    with pytest.raises(RuntimeInspectError, match="could not create an execution context for m.engine"):
        create_context(SimpleNamespace(create_execution_context=lambda: None), "m.engine")
    ctx = object()
    assert create_context(SimpleNamespace(create_execution_context=lambda: ctx), "m.engine") is ctx
