"""benchmarks/latency.py: one small run of the script end to end (JSON keys, skipped rows with reasons, params
as `python -m train --summary`, GMACs from the ONNX graph vs torch's count), the MAC counter on a hand-made
graph, the timing loop, the memory probe and the table/plot writers. No timed assertions."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks import latency_rows
from benchmarks import latency_runners, latency_suite, table
from benchmarks.graph_stats import node_macs, onnx_stats, relative_difference
from benchmarks.latency_timing import PeakRSS, latency_stats, time_infer
from runtime.machine import machine_info, physical_cores
from runtime.files import write_json

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {
    "method", "c", "backend", "precision", "batch", "image_size", "status", "reason", "params", "gmacs",
    "gmacs_torch", "size_bytes", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "fps", "iters", "peak_rss_bytes",
    "image_auroc", "aupro", "notes",
}


def _has_trt_gpu() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and machine_info()["gpu"] != "none"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The script, run as a script from the repository root, for one small model (c=8, 64x64, 3 iterations)."""
    out = tmp_path_factory.mktemp("lat") / "lat.json"
    cmd = [sys.executable, "benchmarks/latency.py", "--method", "fair", "--c", "8", "--image-size", "64",
           "--backend", "torch", "onnxruntime", "openvino", "tensorrt", "--precision", "fp32", "int8", "--batch-sizes", "1", "2",
           "--warmup", "1", "--iters", "3", "--json", str(out), "--markdown", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.fixture(scope="module")
def summary_cli():
    proc = subprocess.run([sys.executable, "-m", "train", "--method", "fair", "--c", "8", "--image-size", "64",
                           "--summary"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(result, **match):
    row = next((r for r in result["rows"] if all(r.get(k) == v for k, v in match.items())), None)
    assert row is not None, f"no row {match}"
    return row


def test_script_json_has_machine_and_every_row(small_run):
    result, stdout = small_run
    m = result["machine"]
    assert m["cpu"] and m["physical_cores"] >= 1 and m["gpu"]
    for lib in ("torch", "onnxruntime", "openvino", "tensorrt"):
        assert lib in m["versions"]
    assert {"settings", "notes", "rows"} <= set(result)
    # 1 model x 4 backends x 2 precisions x 2 batches, none dropped
    assert len(result["rows"]) == 16
    for row in result["rows"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["status"] in ("ok", "skipped", "error")
        if row["status"] != "ok":
            assert row["reason"], row
    assert any("pre-processing" in n and "scoring" in n for n in result["notes"])
    assert "| method | c | backend |" in stdout  # --markdown
    assert "CPU:" in stdout.splitlines()[0]  # machine info heads the table


def test_timed_rows_have_consistent_numbers(small_run):
    result, _ = small_run
    for backend in ("torch", "onnxruntime"):
        for batch in (1, 2):
            row = _row(result, backend=backend, precision="fp32", batch=batch)
            assert row["status"] == "ok", row["reason"]
            assert row["iters"] == 3
            assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
            assert row["fps"] == pytest.approx(batch / (row["mean_ms"] / 1e3), rel=1e-6)
            assert row["cpu_p50_ms"] is not None and row["cpu_p50_ms"] >= 0
            assert row["peak_rss_bytes"] is not None and row["peak_rss_bytes"] >= 0
            assert row["image_auroc"] is None and row["aupro"] is None  # no --runs: no accuracy
    assert _row(result, backend="onnxruntime", precision="fp32", batch=1)["size_bytes"] > 0
    assert "in-memory graph" in _row(result, backend="torch", precision="fp32", batch=1)["runner"]


def test_openvino_rows_compute_in_fp32(small_run):
    pytest.importorskip("openvino")
    result, _ = small_run
    for batch in (1, 2):  # batch 2 goes through OpenVINO's AsyncInferQueue (THROUGHPUT)
        row = _row(result, backend="openvino", precision="fp32", batch=batch)
        assert row["status"] == "ok", row["reason"]
        assert row["compute_precision"] == "f32"  # not OpenVINO's bf16 default on AMX CPUs


def test_rows_that_cannot_run_carry_reasons(small_run):
    result, _ = small_run
    int8 = _row(result, backend="onnxruntime", precision="int8", batch=1)
    assert int8["status"] == "skipped" and "int8 needs --data" in int8["reason"]
    assert _row(result, backend="torch", precision="int8", batch=1)["status"] == "skipped"
    trt = _row(result, backend="tensorrt", precision="fp32", batch=1)
    assert trt["device"] == "cuda"  # a backend that needs a GPU runs on cuda whatever --device says
    if _has_trt_gpu():
        pytest.skip("TensorRT and a GPU are present: the trt row runs")
    assert trt["status"] == "skipped"
    assert "tensorrt" in trt["reason"].lower() or "gpu" in trt["reason"].lower()
    assert trt["p50_ms"] is None and trt["fps"] is None


def test_params_equal_train_summary(small_run, summary_cli):
    result, _ = small_run
    for row in result["rows"]:
        assert row["params"] == summary_cli["params"]
        assert row["gmacs_torch"] == pytest.approx(summary_cli["gmacs"])


def test_gmacs_from_onnx_match_train_summary(small_run, summary_cli):
    result, _ = small_run
    row = _row(result, backend="onnxruntime", precision="fp32", batch=1)
    assert row["gmacs"] is not None and row["gmacs"] > 0
    assert relative_difference(row["gmacs"], summary_cli["gmacs"]) < latency_rows.GMACS_TOLERANCE
    assert "Conv" in row["gmacs_by_op"] and "MatMul" in row["gmacs_by_op"]  # UNet + DFT-matmul high-pass
    assert not any("differ" in n for n in row["notes"])


def test_static_skips_need_no_child_process(tmp_path):
    settings = latency_rows.Settings()
    model = latency_rows.Model("fair", 8, (64, 64), None, settings, tmp_path)
    for backend, precision, text in (("onnxruntime", "bf16", "no bf16; bf16 rows: openvino, torch"),
                                     ("torch", "int8", "no int8; int8 rows: onnxruntime, openvino, tensorrt"),
                                     ("torch", "fp16", "fp16 on a GPU only"),
                                     ("onnxruntime", "int8", "int8 needs --data")):
        spec = latency_rows.RowSpec("fair", 8, backend, precision, 1, (64, 64))
        with pytest.raises(latency_rows.RowSkipped, match=text):
            latency_rows.prepare_job(spec, model, settings)


def test_rows_follow_the_backends_declarations():
    """The row's artifact, placement, compute mode and options come from `backend_capabilities`, not a table."""
    from runtime.backends import backend_capabilities

    art = latency_rows.row_artifact
    assert art("openvino", "bf16") == latency_rows.RowArtifact("fp32", "onnx", "bf16", {"inference_precision": "bf16"})
    assert art("torch", "bf16") == latency_rows.RowArtifact("fp32", "graph", "bf16", {"autocast": "bf16"})
    assert art("torch", "fp32") == latency_rows.RowArtifact("fp32", "graph", "fp32", {})
    for name in ("onnxruntime", "openvino", "tensorrt"):
        assert art(name, "int8").key == f"int8:{backend_capabilities(name).int8_placement}"
    assert art("onnxruntime", "int8").key == "int8:onnxruntime" and art("openvino", "int8").key == "int8:tensorrt"
    assert art("tensorrt", "fp16") == latency_rows.RowArtifact("fp16", "tensorrt-engine", "fp32", {})
    assert {"fp32", "fp16", "bf16", "int8"} <= set(latency_rows.row_precisions())
    groups = latency_suite.backend_devices(["torch", "tensorrt", "onnxruntime"], ["cpu", "cuda"])
    assert groups == [("torch", "cpu"), ("torch", "cuda"), ("tensorrt", "cuda"), ("onnxruntime", "cpu"),
                      ("onnxruntime", "cuda")]


def test_a_cuda_row_without_a_gpu_says_so(tmp_path):
    if machine_info()["gpu"] != "none":
        pytest.skip("this machine has a GPU: the cuda row runs")
    settings = latency_rows.Settings()
    model = latency_rows.Model("fair", 8, (64, 64), None, settings, tmp_path)
    spec = latency_rows.RowSpec("fair", 8, "torch", "fp32", 1, (64, 64), device="cuda")
    with pytest.raises(latency_rows.RowSkipped, match="torch on cuda needs an NVIDIA GPU"):
        latency_rows.prepare_job(spec, model, settings)


def test_later_passes_keep_the_fastest(tmp_path):
    settings = latency_rows.Settings(warmup=0, iters=2, in_process=True)
    model = latency_rows.Model("fair", 8, (64, 64), None, settings, tmp_path)
    jobs = {}
    row = latency_rows.run_row(latency_rows.RowSpec("fair", 8, "torch", "fp32", 1, (64, 64)), model, settings, jobs)
    assert row["status"] == "ok", row["reason"]
    for _ in range(2):
        latency_rows.rerun_row(row, jobs[id(row)], settings)
    assert len(row["p50_ms_passes"]) == 3
    assert row["p50_ms"] == min(row["p50_ms_passes"])


def test_isolated_row_reports_a_broken_artifact(tmp_path):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    job = {"backend": "onnxruntime", "kind": "onnx", "device": "cpu", "precision": "fp32",
           "batch": 1, "image_size": [64, 64], "artifact": str(bad), "warmup": 0, "iters": 1}
    res = latency_runners.run_isolated(job, timeout=300)
    assert res["status"] == "error" and res["reason"]


# ---- the MAC counter on a graph whose count is known by hand -------------------------------------------------


def test_onnx_mac_count_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    w_conv = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w_conv")
    w_dw = numpy_helper.from_array(rng.normal(size=(8, 1, 3, 3)).astype(np.float32), "w_dw")
    w_ct = numpy_helper.from_array(rng.normal(size=(8, 4, 2, 2)).astype(np.float32), "w_ct")
    m_r = numpy_helper.from_array(rng.normal(size=(32, 20)).astype(np.float32), "m_r")
    g_b = numpy_helper.from_array(rng.normal(size=(10, 6)).astype(np.float32), "g_b")
    shape = numpy_helper.from_array(np.array([-1, 10], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c1"], pads=[1, 1, 1, 1]),  # (N,8,16,32)
        helper.make_node("Conv", ["c1", "w_dw"], ["c2"], pads=[1, 1, 1, 1], group=8),  # depthwise
        helper.make_node("ConvTranspose", ["c2", "w_ct"], ["c3"], strides=[2, 2]),  # (N,4,32,64)
        helper.make_node("Slice", ["c3", "s0", "s1", "s2"], ["c4"]),  # (N,4,32,32)
        helper.make_node("MatMul", ["c4", "m_r"], ["mm"]),  # (N,4,32,20)
        helper.make_node("ReduceMean", ["mm"], ["pooled"], axes=[3], keepdims=0),  # (N,4,32)
        helper.make_node("Slice", ["pooled", "t0", "t1", "t2"], ["p10"]),  # (N,4,10)
        helper.make_node("Reshape", ["p10", "shape"], ["flat"]),  # (4N,10)
        helper.make_node("Gemm", ["flat", "g_b"], ["y"]),  # (4N,6)
    ]
    consts = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("s0", [0]), ("s1", [32]), ("s2", [3]), ("t0", [0]), ("t1", [10]), ("t2", [2]))]
    graph = helper.make_graph(
        nodes, "macs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w_conv, w_dw, w_ct, m_r, g_b, shape] + consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "macs.onnx"
    onnx.save(model, str(path))
    expected = {
        "Conv": 8 * 16 * 32 * (3 * 9) + 8 * 16 * 32 * (1 * 9),
        "ConvTranspose": 8 * 16 * 32 * (4 * 4),
        "MatMul": 4 * 32 * 20 * 32,
        "Gemm": 4 * 6 * 10,
    }
    stats = onnx_stats(path)
    assert stats["unresolved_nodes"] == []
    for op, macs in expected.items():
        assert stats["gmacs_by_op"][op] * 1e9 == pytest.approx(macs), op
    assert stats["gmacs"] * 1e9 == pytest.approx(sum(expected.values()))
    assert stats["size_bytes"] == path.stat().st_size
    # a node whose shapes are unknown is reported, not guessed
    bare = helper.make_node("MatMul", ["a", "b"], ["c"])
    assert node_macs(bare, {}) is None


# ---- timing loop, statistics, memory probe ---------------------------------------------------------------------


def test_time_infer_excludes_warmup_and_synchronises():
    calls, syncs, cpu = [], [], []
    lat, notes = time_infer(lambda f: calls.append(1), np.zeros((1, 4, 4, 3), np.uint8), warmup=4,
                                    iters=5, synchronize=lambda: syncs.append(1), cpu_ms=cpu)
    assert len(calls) == 9 and len(lat) == 5 and len(cpu) == 5 and notes == []
    assert len(syncs) == 6  # once after the warm-up, once after every timed call


def test_time_infer_stops_on_budget():
    import time

    lat, notes = time_infer(lambda f: time.sleep(0.01), None, warmup=0, iters=100, max_seconds=0.02)
    assert 3 <= len(lat) < 100 and "stopped after" in notes[0]


def test_latency_stats_percentiles_and_fps():
    st = latency_stats([10.0] * 98 + [20.0, 1000.0], batch=8)
    assert st["p50_ms"] == 10.0 and st["p90_ms"] == 10.0 and st["p99_ms"] > 20.0
    assert st["fps"] == pytest.approx(8 / (np.mean([10.0] * 98 + [20.0, 1000.0]) / 1e3))
    assert st["iters"] == 100


def test_peak_rss_sees_a_native_allocation():
    mem = PeakRSS().start()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    block.sum()
    peak = mem.peak_bytes()
    del block
    if mem.method == "vmhwm":
        assert peak >= 48 * 2**20
    else:
        assert peak >= 0


# ---- command line errors, table and plot ---------------------------------------------------------------------


def test_bad_input_exits_with_one_line(tmp_path):
    for args, text in ((["--backend", "cuda-magic"], "unknown backend"),
                       (["--runs", str(tmp_path / "nope")], "is not a run folder"),
                       (["--method", "nope"], "unknown method")):
        proc = subprocess.run([sys.executable, "benchmarks/latency.py", "--c", "8", "--image-size", "64",
                               "--no-progress"] + args, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr


def _fake_result():
    base = latency_rows.empty_row(latency_rows.RowSpec("fair", 8, "onnxruntime", "fp32", 1, (64, 64)))
    ok = dict(base, status="ok", params=270000, gmacs=0.04, size_bytes=2**20, p50_ms=2.0, p90_ms=2.5,
              p99_ms=3.0, mean_ms=2.1, fps=476.2, peak_rss_bytes=10 * 2**20, image_auroc=0.95, aupro=0.8)
    torch_row = dict(ok, backend="torch", fps=100.0, image_auroc=0.94)
    skipped = dict(base, backend="tensorrt", device="cuda", reason="backend 'tensorrt' is not available")
    return {"machine": machine_info(), "settings": {}, "notes": ["a | note"], "rows": [torch_row, ok, skipped]}


def test_tables_show_numbers_and_reasons(tmp_path):
    res = _fake_result()
    text = table.render_text(res)
    assert "476.2" in text and "skipped: backend 'tensorrt' is not available" in text and "95.0" in text
    assert "tensorrt (cuda)" in text
    md = table.render_markdown(res)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 3 and all(ln.count("|") == lines[0].count("|") for ln in lines)
    assert "a \\| note" in md
    assert table.speedups(res["rows"]) == ["fair_c8 batch 1: onnxruntime/fp32 4.76x torch/fp32"]
    write_json(tmp_path / "r.json", table.plain(res))
    assert json.loads((tmp_path / "r.json").read_text())["rows"][2]["reason"]


def test_plot_writes_png_with_auroc_panel(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.plot import plot_result

    out = tmp_path / "fps.png"
    titles = plot_result(_fake_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert titles == ["FPS vs parameters", "FPS vs image AUROC"]


def test_physical_cores_is_sane():
    assert 1 <= physical_cores() <= machine_info()["logical_cores"]


# ---- a trained run: accuracy through the row's backend, and the INT8 row with calibration ----------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latrun")
    data, run = root / "data", root / "run"
    for cmd in (
        ["-m", "train.demo_data", "--out", str(data), "--categories", "brick", "--size", "64", "--train", "12",
         "--test-good", "4", "--test-defect", "1", "--no-progress"],
        ["-m", "train", "--method", "fair", "--c", "8", "--image-size", "64", "--data", str(data), "--category",
         "brick", "--out", str(run), "--steps", "2", "--batch-size", "4", "--no-progress"],
    ):
        proc = subprocess.run([sys.executable] + cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    out = root / "lat.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/latency.py", "--runs", str(run), "--data", str(data), "--category", "brick",
         "--backend", "onnxruntime", "--precision", "fp32", "int8", "--batch-sizes", "2", "--warmup", "0", "--iters", "2",
         "--calib-images", "8", "--json", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_trained_run_rows_report_accuracy(trained_run):
    rows = trained_run["rows"]
    assert [(r["c"], r["precision"]) for r in rows] == [(8, "fp32"), (8, "int8")]  # only the run's width
    assert {r["backend"] for r in rows} == {"onnxruntime"}
    fp32 = rows[0]
    assert fp32["status"] == "ok" and fp32["run"]
    assert 0.0 <= fp32["image_auroc"] <= 1.0 and 0.0 <= fp32["aupro"] <= 1.0
    assert fp32["accuracy_images"] > 0
    assert 0.0 <= fp32["recall_at_fpr_0.01"] <= 1.0  # verdicts beside AUROC; no threshold in a fresh export
    assert fp32["threshold_fpr"] is None and fp32["threshold_recall"] is None
    int8 = rows[1]
    assert int8["status"] == "ok", int8["reason"]
    assert int8["image_auroc"] is not None and any("Q/DQ placement" in n for n in int8["notes"])
