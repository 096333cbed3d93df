"""benchmarks.gpu_check in its CPU-only mode, end to end at tiny sizes: the folder it writes (results, table,
SKIPPED list, logs, the doctor's report), CPU parity of a FAIR c=8 graph, and every GPU piece listed as
skipped with its reason."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_junit_summary_counts_and_reasons(tmp_path):
    from benchmarks.gpu_check_steps import gpu_test_files, junit_summary

    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="a" name="ok"/>'
                   '<testcase classname="a" name="s1"><skipped message="TensorRT not installed"/></testcase>'
                   '<testcase classname="a" name="s2"><skipped message="TensorRT not installed"/></testcase>'
                   '<testcase classname="a" name="bad"><failure message="boom"/></testcase></testsuite></testsuites>')
    s = junit_summary(xml)
    assert (s["passed"], s["failed"], s["skipped"]) == (1, 1, 2)
    assert s["skip_reasons"] == {"TensorRT not installed": 2} and s["failed_tests"] == ["a::bad"]
    files = gpu_test_files()
    assert "tests/export/test_export_trt.py" in files and "tests/runtime/test_runtime_trt.py" in files


def test_parity_table_rows_for_engines_and_errors():
    from benchmarks.gpu_check import parity_table

    leg = {"status": "pass", "outputs": {"anomaly_map": {"max_abs": 1e-3}, "score": {"max_abs": 2e-4}},
           "latency_batch1": {"p50_ms": 1.25}, "latency_batch1_cuda_graph": {"p50_ms": 0.75}}
    rows = parity_table({"models": [{"model": "fair:32", "legs": {"tensorrt fp16": leg,
                                                                  "tensorrt int8": {"status": "error",
                                                                                    "reason": "build failed"}}},
                                    {"model": "patchcore", "legs": {}, "error": "fit failed"}]})
    assert rows[2] == "| fair:32 | tensorrt fp16 | pass | 1.00e-03 | 2.00e-04 | 1.250 | 0.750 |"
    assert rows[3].startswith("| fair:32 | tensorrt int8 | error: build failed |")
    assert rows[4].startswith("| patchcore | | error | fit failed |")


@pytest.mark.slow  # exports a FAIR c=8 graph and runs the doctor and one test file (~40 s on 2 cores)
def test_cpu_only_mode_end_to_end(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--cpu-only", "--out", str(out), "--methods",
                           "fair:8", "--image-size", "32", "--iters", "2", "--tests",
                           "tests/runtime/test_runtime_trt.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIPPED" in proc.stdout and "--cpu-only was given" in proc.stdout and "nothing failed" in proc.stdout
    for name in ("results.json", "table.md", "SKIPPED.md", "doctor.json", "doctor.txt", "tests.xml",
                 "logs/doctor.log", "logs/tests.log"):
        assert (out / name).is_file(), name
    r = json.loads((out / "results.json").read_text())
    assert r["gpu_path"].startswith("unavailable: --cpu-only was given (without it: ") and r["failed"] == []
    legs = r["steps"]["parity"]["models"][0]["legs"]
    assert legs["onnxruntime"]["status"] == "reference"
    assert legs["openvino"]["status"] == "pass" and legs["torch (cpu)"]["status"] == "pass"
    assert r["steps"]["tests"]["failed"] == 0 and r["steps"]["tests"]["skipped"] >= 1
    skipped = {what: why for what, why in r["skipped"]}
    for p in ("fp32", "fp16", "int8"):
        assert any(k.startswith(f"fair:8: tensorrt {p} engine") for k in skipped), skipped
    assert "fair:8: torch (cuda)" in skipped and "latency rows: tensorrt and torch (cuda)" in skipped
    assert any(k.startswith("tests (") and "TensorRT" in v for k, v in skipped.items())
    assert "| fair:8 | openvino | pass |" in (out / "table.md").read_text()
    assert "needs an NVIDIA GPU and TensorRT" in (out / "SKIPPED.md").read_text()
    assert json.loads((out / "doctor.json").read_text())["schema"] == "edge-inspect-doctor"


def test_bad_model_spec_is_refused():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--methods", "fair:x"], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "expected METHOD or METHOD:C" in proc.stderr
