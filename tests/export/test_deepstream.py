"""DeepStream: the float-planar graph equals the uint8 graph, the nvinfer config says what nvinfer must do, and
the tensor-meta parser turns one frame's arrays into map, score and the manifest's verdict (CPU, numpy)."""
from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.deepstream import nvinfer_config, write_deepstream
from export.errors import ExportError
from runtime.deepstream import TensorMetaParser
from runtime.errors import RuntimeInspectError
from runtime.manifest import Normalization, Threshold, load_manifest, write_manifest
from tests.helpers.tiny_runs import train_and_export

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 1-step FAIR run at 32x32, exported as uint8 ONNX with a calibrated-looking threshold in its manifest."""
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    model, run = train_and_export(tmp_path_factory.mktemp("ds"), "fair4", images, c=4, steps=1)
    manifest = load_manifest(model)
    manifest.threshold = Threshold(value=0.5, rule="user", images=4, data="test", date="2026-12-03",
                                   normalization=Normalization(good_mean=0.1, good_std=0.05))
    write_manifest(model, manifest)
    return model, run


def test_float_planar_graph_equals_the_uint8_graph(exported, tmp_path):
    import onnxruntime as ort

    model, _ = exported
    onnx_path, cfg_path, parser_path = write_deepstream(model, tmp_path, batch_size=4, precision="fp16")
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"frame": frames})
    ds = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = ds.get_inputs()
    assert inp.type == "tensor(float)" and inp.shape[1:] == [3, 32, 32]
    # What nvinfer hands the network with net-scale-factor=1, offsets=0, RGB: planar float pixel values.
    planar = frames.transpose(0, 3, 1, 2).astype(np.float32)
    maps, scores = ds.run(["anomaly_map", "score"], {"frame": planar})
    np.testing.assert_allclose(maps, ref[0], rtol=1e-5, atol=1e-6)
    assert scores.shape == (3, 1)
    np.testing.assert_allclose(scores[:, 0], ref[1], rtol=1e-5)

    # The parser reads the same verdicts from per-frame layers as the manifest's threshold gives.
    parser = TensorMetaParser.from_file(str(parser_path))
    for i in range(3):
        v = parser.parse({"anomaly_map": maps[i], "score": scores[i]})  # one frame, no batch axis
        assert v.score == pytest.approx(float(ref[1][i]), rel=1e-5)
        assert v.is_anomalous == bool(v.score >= 0.5)
        assert v.normalized_score == pytest.approx((v.score - 0.1) / (0.5 - 0.1), rel=1e-6)
        np.testing.assert_allclose(v.anomaly_map, ref[0][i, 0], rtol=1e-5, atol=1e-6)


def test_nvinfer_config_keys(exported, tmp_path):
    model, _ = exported
    _, cfg_path, _ = write_deepstream(model, tmp_path, batch_size=4, precision="fp16")
    cfg = configparser.ConfigParser()
    cfg.read(cfg_path)
    p = cfg["property"]
    assert p["onnx-file"] == "fair4_ds.onnx" and p["network-type"] == "100" and p["output-tensor-meta"] == "1"
    assert p["batch-size"] == "4" and p["network-mode"] == "2" and p["infer-dims"] == "3;32;32"
    assert p["net-scale-factor"] == "1.0" and p["offsets"] == "0;0;0" and p["model-color-format"] == "0"
    assert p["output-blob-names"] == "anomaly_map;score"
    with pytest.raises(ExportError, match="precision"):
        nvinfer_config("m.onnx", (32, 32), precision="bf16")


def test_parser_rules_and_errors():
    from runtime.manifest import InputSpec, Manifest

    manifest = Manifest(artifact="m.onnx", artifact_kind="onnx", sha256="0" * 64, method="fair", c=4,
                        input=InputSpec(height=4, width=6), threshold=None)
    parser = TensorMetaParser(manifest, (4, 6))
    v = parser.parse({"anomaly_map": np.zeros((1, 4, 6), np.float32), "score": np.array([0.3], np.float32)})
    assert v.is_anomalous is None and v.verdict == "unknown" and v.normalized_score is None
    assert TensorMetaParser(manifest, (4, 6), threshold=0.2).parse(
        {"anomaly_map": np.zeros((4, 6)), "score": np.float32(0.3)}).verdict == "anomalous"
    batch = parser.parse_batch({"anomaly_map": np.zeros((2, 1, 4, 6)), "score": np.array([0.1, 0.2])})
    assert [b.score for b in batch] == pytest.approx([0.1, 0.2])
    with pytest.raises(RuntimeInspectError, match="lacks layer"):
        parser.parse({"score": np.zeros(1)})
    with pytest.raises(RuntimeInspectError, match="expected 24 map values"):
        parser.parse({"anomaly_map": np.zeros((1, 8, 8)), "score": np.zeros(1)})


def test_cli_entry_points(exported, tmp_path):
    model, _ = exported
    proc = subprocess.run([sys.executable, "-m", "export.triton", "--deepstream", "--model", str(model), "--out",
                           str(tmp_path), "--batch-size", "2"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "fair4_ds.json").read_text())["map_size"] == [32, 32]
    bad = subprocess.run([sys.executable, "-m", "export.deepstream", "--model", str(model), "--out", str(tmp_path),
                          "--run", str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: run folder")
