"""export.triton: the model repository's layout and config.pbtxt, parsed with Triton's own ModelConfig schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.tiny_models import make_model

from export.errors import ExportError
from export.triton import config_pbtxt, model_config_schema, parse_config, write_repository
from runtime.manifest import BatchSpec, TensorRTInfo, load_manifest, sha256_file

ROOT = Path(__file__).resolve().parents[2]
needs_schema = pytest.mark.skipif(model_config_schema() is None,
                                  reason="tritonclient (Triton's model_config_pb2) is not installed")


def _types(schema):
    dt = schema.DataType
    return dt.Value("TYPE_UINT8"), dt.Value("TYPE_FP32")


@needs_schema
def test_repository_layout_and_config_follow_tritons_schema(tmp_path):
    model = make_model(str(tmp_path), threshold=0.5, normalization=(0.2, 0.1), with_noise=True)
    model_dir = write_repository(model, tmp_path / "repo", max_batch=16, instances=2, preferred=[4, 8])
    # Triton's documented layout: REPO/NAME/config.pbtxt and REPO/NAME/<version>/model.onnx.
    assert model_dir == tmp_path / "repo" / "tiny"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == \
        ["1", "1/model.json", "1/model.onnx", "config.pbtxt"]
    assert sha256_file(str(model_dir / "1" / "model.onnx")) == sha256_file(model)
    manifest = load_manifest(model_dir / "1" / "model.onnx")  # the runtime reads the copy beside it
    assert manifest.artifact == "model.onnx" and manifest.threshold.value == 0.5
    assert manifest.threshold.normalization.good_mean == 0.2

    schema = model_config_schema()
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    uint8, fp32 = _types(schema)
    assert cfg.name == "tiny" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 16
    frame, noise = cfg.input
    assert (frame.name, frame.data_type, list(frame.dims)) == ("frame", uint8, [32, 48, 3])
    assert noise.name == "noise" and noise.optional and list(noise.dims) == [1, 32, 48]
    amap, score = cfg.output
    assert (amap.name, amap.data_type, list(amap.dims)) == ("anomaly_map", fp32, [1, 32, 48])
    assert (score.name, score.data_type, list(score.dims)) == ("score", fp32, [1])
    assert score.HasField("reshape") and list(score.reshape.shape) == []
    assert cfg.HasField("dynamic_batching") and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    group = cfg.instance_group[0]
    assert group.count == 2 and group.kind == schema.ModelInstanceGroup.Kind.Value("KIND_GPU")
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP32"
    assert [(w.batch_size, w.inputs["frame"].zero_data) for w in cfg.model_warmup] == [(1, True), (16, True)]
    assert list(cfg.model_warmup[0].inputs["frame"].dims) == [32, 48, 3]


@needs_schema
def test_cpu_instances_have_no_tensorrt_accelerator_and_static_batch_has_no_batcher(tmp_path):
    model = make_model(str(tmp_path), name="fixed", static_batch=4)
    cfg = parse_config(config_pbtxt(load_manifest(model), "fixed", kind="cpu"))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [4, 32, 48, 3] and list(cfg.output[1].dims) == [4]
    assert not cfg.HasField("optimization")
    assert cfg.instance_group[0].kind == model_config_schema().ModelInstanceGroup.Kind.Value("KIND_CPU")


@needs_schema
def test_engine_becomes_model_plan_within_its_profile(tmp_path):
    model = make_model(str(tmp_path))
    manifest = load_manifest(model)
    manifest.artifact_kind = "tensorrt-engine"
    manifest.batch = BatchSpec(dynamic=True, min=1, opt=4, max=8)
    manifest.tensorrt = TensorRTInfo(version="10.3.0", gpu="Orin", compute_capability="8.7",
                                     profile={"min": 1, "opt": 4, "max": 8})
    cfg = parse_config(config_pbtxt(manifest, "eng", max_batch=8))
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8 and not cfg.HasField("optimization")
    with pytest.raises(ExportError, match="profile maximum 8"):
        config_pbtxt(manifest, "eng", max_batch=32)
    with pytest.raises(ExportError, match="GPU only"):
        config_pbtxt(manifest, "eng", max_batch=8, kind="cpu")


@needs_schema
def test_schema_rejects_a_misspelt_field():
    with pytest.raises(ExportError, match="ModelConfig"):
        parse_config('name: "x"\nmax_batch: 8\n')


def test_cli_writes_the_repository_and_fails_with_one_line(tmp_path):
    model = make_model(str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "export.triton", "--model", model, "--out", str(tmp_path / "repo"),
                          "--name", "inspect", "--max-batch-size", "8"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "repo" / "inspect" / "config.pbtxt").read_text().startswith('name: "inspect"')
    assert json.loads((tmp_path / "repo" / "inspect" / "1" / "model.json").read_text())["artifact"] == "model.onnx"
    bad = subprocess.run([sys.executable, "-m", "export.triton", "--model", str(tmp_path / "none.onnx"), "--out",
                          str(tmp_path / "repo")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --model")
