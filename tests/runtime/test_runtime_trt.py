"""TensorRT version gates (pure functions, CPU) and the TensorRT backend (skipped without TensorRT)."""
from __future__ import annotations

import importlib.util

import pytest

from runtime import trt_version
from runtime.errors import ArtifactMismatch, BackendUnavailable, RuntimeInspectError
from runtime.manifest import BatchSpec, InputSpec, Manifest, TensorRTInfo

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT not installed")


@pytest.mark.parametrize("version, expected", [
    ("8.5.2.2", (8, 5, 2)), ("10.3.0", (10, 3, 0)), ("11.4", (11, 4, 0)), ("10", (10, 0, 0)),
    ("10.13.3.9+cuda13", (10, 13, 3)),
])
def test_parse_version(version, expected):
    assert trt_version.parse_version(version) == expected


def test_parse_version_rejects_garbage():
    with pytest.raises(ValueError, match="not a TensorRT version"):
        trt_version.parse_version("ten")


# version -> the capabilities that must hold (facts: NVIDIA's release notes)
TABLE = {
    "8.4.3": dict(supported=False, named_io_tensors=False, uint8_io=False),
    "8.5.2": dict(supported=True, named_io_tensors=True, uint8_io=True, explicit_batch_flag_required=True,
                  strongly_typed_flag=False, strongly_typed_always=False, builder_precision_flags=True,
                  int8_flag_needed_for_qdq=True, implicit_int8_calibrator=True,
                  implicit_int8_calibrator_deprecated=False, calibration_cache=True, device_memory_size_v2=False,
                  onnx_dft=False, max_onnx_opset=17),
    "8.6.2": dict(supported=True, explicit_batch_flag_required=True, strongly_typed_flag=False, max_onnx_opset=17,
                  calibration_cache=True),
    "10.0.1": dict(explicit_batch_flag_required=False, strongly_typed_flag=True, strongly_typed_always=False,
                   builder_precision_flags=True, int8_flag_needed_for_qdq=False,
                   implicit_int8_calibrator_deprecated=False, calibration_cache=False, max_onnx_opset=20,
                   device_memory_size_v2=False),
    "10.1.0": dict(implicit_int8_calibrator=True, implicit_int8_calibrator_deprecated=True,
                   device_memory_size_v2=True),
    "10.3.0": dict(strongly_typed_flag=True, builder_precision_flags=True, implicit_int8_calibrator=True,
                   weak_typing_deprecated=False, max_onnx_opset=20),
    "10.12.0": dict(weak_typing_deprecated=True),
    "10.15.1": dict(max_onnx_opset=24, onnx_dft=False),
    "11.0.0": dict(strongly_typed_always=True, strongly_typed_flag=True, builder_precision_flags=False,
                   implicit_int8_calibrator=False, calibration_cache=False, named_io_tensors=True,
                   device_memory_size_v2=True, max_onnx_opset=25, onnx_dft=False),
    "11.4.1": dict(onnx_dft=True, builder_precision_flags=False, supported=True),
}


@pytest.mark.parametrize("version", sorted(TABLE, key=trt_version.parse_version))
def test_capability_table(version):
    caps = trt_version.capabilities(version)
    for name, value in TABLE[version].items():
        assert getattr(caps, name) == value, f"{name} on TensorRT {version}"
        if name in trt_version.CAPABILITY_NAMES and isinstance(value, bool):
            assert trt_version.has(name, version) is value


def test_capabilities_are_monotonic_where_they_should_be():
    versions = ["8.5.2", "8.6.1", "10.0.0", "10.1.0", "10.3.0", "10.13.0", "11.0.0", "11.4.0"]
    caps = [trt_version.capabilities(v) for v in versions]
    for earlier, later in zip(caps, caps[1:]):
        for gained in ("named_io_tensors", "strongly_typed_flag", "strongly_typed_always", "device_memory_size_v2"):
            assert getattr(later, gained) >= getattr(earlier, gained), gained
        for lost in ("builder_precision_flags", "implicit_int8_calibrator", "explicit_batch_flag_required"):
            assert getattr(later, lost) <= getattr(earlier, lost), lost
        assert later.max_onnx_opset >= earlier.max_onnx_opset


def test_unknown_capability_and_require_messages():
    with pytest.raises(ValueError, match="known: supported, named_io_tensors"):
        trt_version.has("fp8_magic", "10.3.0")
    with pytest.raises(RuntimeInspectError, match="builder precision flags is not available on TensorRT version 11.4"):
        trt_version.capabilities("11.4").require("builder_precision_flags")
    trt_version.capabilities("10.3").require("builder_precision_flags")  # present: no error


def test_engines_need_the_same_version():
    assert trt_version.same_engine_version("10.3.0", "10.3.0.26")
    assert not trt_version.same_engine_version("10.3.0", "10.4.0")
    assert not trt_version.same_engine_version("8.6.2", "10.3.0")


def _engine_manifest(version="10.3.0", cc="8.7", gpu="Orin") -> Manifest:
    return Manifest(artifact="m.engine", artifact_kind="tensorrt-engine", sha256="0" * 64, method="fair", c=32,
                    input=InputSpec(height=256, width=256), precision="fp16", batch=BatchSpec(True, 1, 4, 8),
                    source_run="runs/fair", tensorrt=TensorRTInfo(version, gpu, cc))


def test_engine_compatibility_check_names_the_rebuild_command():
    from runtime.backends.tensorrt import check_engine_compat  # imports without TensorRT

    m = _engine_manifest()
    check_engine_compat(m, "m.engine", "10.3.0.26", "8.7", "Orin")  # matches
    with pytest.raises(ArtifactMismatch) as e:
        check_engine_compat(m, "m.engine", "8.6.2", "8.7", "Orin")
    msg = str(e.value)
    assert "built with TensorRT 10.3.0" in msg and "has TensorRT 8.6.2" in msg
    assert "python -m export.trt --method fair --c 32 --run runs/fair --precision fp16 --profile 1:4:8" in msg
    with pytest.raises(ArtifactMismatch, match=r"compute capability 8\.7 \(Orin\) but this GPU is 8\.9"):
        check_engine_compat(m, "m.engine", "10.3.0", "8.9", "NVIDIA GeForce RTX 4090")


def test_tensorrt_backend_is_unavailable_without_tensorrt(monkeypatch):
    if HAVE_TRT:
        pytest.skip("TensorRT is installed here")
    from runtime.backends import available_backends, backend_class

    monkeypatch.setattr(trt_version, "_TRT", None)
    with pytest.raises(BackendUnavailable, match="pip install tensorrt"):
        backend_class("tensorrt").probe()
    assert "tensorrt" not in available_backends()
    assert trt_version.installed_version() is None


@needs_trt
def test_installed_tensorrt_is_supported():
    caps = trt_version.current()
    assert caps.supported and caps.named_io_tensors


@needs_trt
def test_tensorrt_backend_matches_onnxruntime(tmp_path):
    """Builds a tiny engine from the test ONNX with the installed TensorRT and compares with ONNX Runtime."""
    import numpy as np
    from tests.helpers.tiny_models import frames, make_model

    from runtime.backends.base import Backend
    from runtime.backends.onnxruntime import OnnxRuntimeBackend
    from runtime import cuda_runtime
    from runtime.backends.tensorrt import TensorRTBackend
    from runtime.manifest import load_manifest, write_manifest

    trt = trt_version.import_tensorrt()
    caps = trt_version.current()
    onnx_path = make_model(str(tmp_path), batch_max=4)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if caps.explicit_batch_flag_required else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(onnx_path)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("frame", (1, 32, 48, 3), (2, 32, 48, 3), (4, 32, 48, 3))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    assert blob is not None
    engine_path = tmp_path / "tiny.engine"
    engine_path.write_bytes(bytes(blob))
    dev = cuda_runtime.probe_device()
    m = load_manifest(onnx_path)
    m.artifact, m.artifact_kind, m.sha256 = "", "tensorrt-engine", ""
    m.tensorrt = TensorRTInfo(trt.__version__, "test-gpu", dev.compute_capability)
    write_manifest(engine_path, m)
    x = frames(6)
    with OnnxRuntimeBackend(onnx_path, load_manifest(onnx_path)) as ort_b:
        ref_maps, ref_scores = ort_b.infer(x)
    for graph in (False, True):
        with TensorRTBackend(str(engine_path), load_manifest(engine_path), device="cuda", cuda_graph=graph) as b:
            assert isinstance(b, Backend)
            maps, scores = b.infer(x)  # 6 > max batch 4: split into chunks
            assert np.allclose(maps, ref_maps, atol=1e-4) and np.allclose(scores, ref_scores, atol=1e-4)
    bad = load_manifest(engine_path)
    bad.tensorrt.version = "7.0.0"
    with pytest.raises(ArtifactMismatch, match="rebuild it"):
        TensorRTBackend(str(engine_path), bad, device="cuda").load()
