"""export.artifacts: the one pipeline export.trt and benchmarks/latency.py make their artifacts with: the files and
manifests it writes, that it makes each once, that a failure is remembered, and that INT8 without calibration
data says what is missing. The engine step needs TensorRT and a GPU (tests/export/test_export_trt.py::test_build_engine)."""
from __future__ import annotations

import pytest

from export.artifacts import ArtifactUnavailable, Calibration, GraphSource, ModelArtifacts
from export.errors import ExportError
from runtime.manifest import load_manifest, verify_artifact


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    source = GraphSource(method="fair", c=8, image_size=(64, 64), seed=3)
    return ModelArtifacts(tmp_path_factory.mktemp("arts"), "fair_c8", source,
                          export_options={"profile": (1, 2, 4), "notes": ["a note"]})


def test_fp32_and_fp16_graphs_with_their_manifests(arts):
    fp32 = arts.onnx("fp32")
    fp16 = arts.onnx("fp16")
    assert (fp32.name, fp16.name) == ("fair_c8.onnx", "fair_c8_fp16.onnx")
    for path, precision in ((fp32, "fp32"), (fp16, "fp16")):
        m = load_manifest(path)
        verify_artifact(path, m)
        assert m.precision == precision and (m.batch.min, m.batch.opt, m.batch.max) == (1, 2, 4)
        assert "a note" in m.notes and m.source_run is None
    assert arts.manifest("fp32").c == 8


def test_each_artifact_is_made_once(arts):
    fp32 = arts.onnx("fp32")
    before = fp32.stat().st_mtime_ns
    assert arts.onnx("fp32") == fp32 and fp32.stat().st_mtime_ns == before


def test_int8_without_calibration_data_says_what_is_missing(arts):
    with pytest.raises(ArtifactUnavailable, match="int8 needs calibration images"):
        arts.onnx("int8")
    assert arts.path_of("int8:onnxruntime").name == "fair_c8_int8_onnxruntime.onnx"
    assert arts.path_of("int8:tensorrt") == arts.path_of("int8")  # the default placement keeps the plain name
    with pytest.raises(ExportError, match="unknown graph"):
        arts.onnx("fp16:tensorrt")


def test_a_failure_is_remembered(tmp_path):
    broken = ModelArtifacts(tmp_path, "x", GraphSource(run=str(tmp_path / "no-such-run")))
    with pytest.raises(ExportError) as first:
        broken.onnx("fp32")
    with pytest.raises(ExportError) as again:
        broken.onnx("fp16")  # needs the FP32 graph: the same error, not a second attempt
    assert again.value is first.value
    assert not list(tmp_path.glob("*.onnx"))


def test_int8_with_calibration_data_is_a_qdq_graph(tmp_path):
    pytest.importorskip("calibration.int8")
    from train import demo_data

    demo_data.generate(tmp_path / "demo", ["brick"], size=64, n_train=4, n_test_good=2, n_test_defect=1,
                       progress=False)
    source = GraphSource(method="fair", c=8, image_size=(64, 64))
    arts = ModelArtifacts(tmp_path / "out", "fair_c8", source,
                          calibration=Calibration(str(tmp_path / "demo"), "brick", 4, auto_keep=False, progress=False))
    path = arts.onnx("int8:onnxruntime")
    m = load_manifest(path)
    verify_artifact(path, m)
    assert path.name == "fair_c8_int8_onnxruntime.onnx" and m.precision == "int8"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.onnx")) == ["fair_c8.onnx",
                                                                          "fair_c8_int8_onnxruntime.onnx"]
