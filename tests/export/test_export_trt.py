"""export.trt: what it writes and prints without TensorRT (this machine, CI), how it finds the newest run, its
argument checks; and, only where TensorRT and a GPU exist, a real engine build. No fake TensorRT."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.errors import ExportError
from export.trt import EXIT_NO_TENSORRT, newest_run, parse_profile
from runtime.manifest import load_manifest, verify_artifact
from runtime.trt_version import installed_version

ROOT = Path(__file__).resolve().parents[2]
HAVE_TRT = installed_version() is not None


def _trt_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "export.trt", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: this checks the message shown without it")
def test_without_tensorrt_writes_onnx_and_says_how_to_install(tmp_path):
    out = tmp_path / "eng"
    proc = _trt_cli("--method", "fair", "--c", "8", "--image-size", "64", "--random-weights", "--precision", "fp16",
                    "--profile", "1:4:8", "--out", str(out))
    assert proc.returncode == EXIT_NO_TENSORRT, proc.stderr
    err = proc.stderr.strip()
    assert err.count("\n") == 0  # one line
    assert "TensorRT" in err and "pip install tensorrt" in err and "JetPack" in err
    for name in ("fair_c8.onnx", "fair_c8_fp16.onnx"):
        m = load_manifest(out / name)
        verify_artifact(out / name, m)
        assert (m.batch.min, m.batch.opt, m.batch.max) == (1, 4, 8)
        assert any("random weights" in n for n in m.notes) and m.source_run is None
    assert load_manifest(out / "fair_c8_fp16.onnx").precision == "fp16"
    assert "TensorRT 8.5: OK" in proc.stdout and "TensorRT 11.0: OK" in proc.stdout
    assert not list(out.glob("*.engine"))


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: this checks the path without it")
def test_int8_builds_from_a_qdq_graph(tmp_path):
    """--precision int8 --data: the Q/DQ graph comes from calibration.int8.quantize_onnx, with its manifest,
    and passes the operator check."""
    pytest.importorskip("calibration.int8")
    from train import demo_data

    demo_data.generate(tmp_path / "demo", ["brick"], size=64, n_train=4, n_test_good=2, n_test_defect=1,
                       progress=False)
    out = tmp_path / "eng"
    proc = _trt_cli("--method", "fair", "--c", "8", "--image-size", "64", "--random-weights", "--precision", "int8",
                    "--data", str(tmp_path / "demo"), "--category", "brick", "--images", "4", "--no-progress",
                    "--out", str(out))
    assert proc.returncode == EXIT_NO_TENSORRT, proc.stderr
    m = load_manifest(out / "fair_c8_int8.onnx")
    verify_artifact(out / "fair_c8_int8.onnx", m)
    assert m.precision == "int8"
    assert "TensorRT 8.5: OK" in proc.stdout and "QuantizeLinear" in proc.stdout


def test_no_run_tells_what_to_do(tmp_path):
    proc = _trt_cli("--method", "fair", "--c", "8", "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--random-weights" in proc.stderr and "python -m train --method fair --c 8" in proc.stderr
    assert not list(tmp_path.glob("*.onnx"))


def _fake_run(root: Path, name: str, method: str, c: int, mtime: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "c": c, "image_size": [64, 64]}))
    w = d / "model.safetensors"
    w.write_bytes(b"")
    os.utime(w, (mtime, mtime))
    return d


def test_newest_run_reads_each_config(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "old", "fair", 32, 1_000_000)
    new = _fake_run(root, "new", "fair", 32, 2_000_000)
    _fake_run(root, "newer-other-c", "fair", 64, 3_000_000)
    _fake_run(root, "newer-other-method", "noise2norm", 32, 3_000_000)
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    unfinished = root / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"method": "fair", "c": 32}))  # no weights yet
    assert newest_run("fair", 32, root) == new
    assert newest_run("fair", 128, root) is None
    assert newest_run("fair", 32, tmp_path / "missing") is None


def test_arguments_are_checked(tmp_path):
    assert parse_profile("1:8:32") == (1, 8, 32) and parse_profile("4") == (4, 4, 4)
    for bad in ("8:1:32", "0:1:2", "a:b:c", "1:2"):
        with pytest.raises(ExportError, match="MIN:OPT:MAX"):
            parse_profile(bad)
    proc = _trt_cli("--method", "fair", "--c", "8", "--random-weights", "--precision", "int8", "--out", str(tmp_path))
    assert proc.returncode == 2 and "--data" in proc.stderr
    proc = _trt_cli("--c", "8", "--random-weights", "--out", str(tmp_path))
    assert proc.returncode == 2 and "--method" in proc.stderr


@pytest.mark.trt
@pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT and an NVIDIA GPU (pip install tensorrt / JetPack)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_engine(tmp_path, precision):
    out = tmp_path / "eng"
    proc = _trt_cli("--method", "fair", "--c", "8", "--image-size", "64", "--random-weights", "--precision",
                    precision, "--profile", "1:2:4", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    engine = out / f"fair_c8_{precision}.engine"
    m = load_manifest(engine)
    verify_artifact(engine, m)
    assert m.artifact_kind == "tensorrt-engine" and m.precision == precision
    assert m.tensorrt is not None and m.tensorrt.version == installed_version()
    assert m.tensorrt.profile["max"] == 4
    assert len(list(out.glob(f"timing.trt*.sm{m.tensorrt.compute_capability.replace('.', '')}.cache"))) == 1
    assert m.build.tf32 is False  # FP32 layers in true FP32 (parity 1e-4), said in the manifest
