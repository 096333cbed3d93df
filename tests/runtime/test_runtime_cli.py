"""`python -m runtime`: a small video through the CLI writes a JSONL log, overlays and a summary; bad input gives
one `error:` line and a non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import make_model

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model = make_model(str(d), threshold=3.0, normalization=(2.0, 0.2), batch_max=4)
    video = d / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    rng = np.random.default_rng(0)
    for i in range(7):
        w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) if i % 2 else np.full((48, 64, 3), 90, np.uint8))
    w.release()
    return d, model, video


def test_cli_on_a_video_writes_jsonl_overlays_and_summary(setup):
    d, model, video = setup
    out = d / "out"
    r = run_cli("--model", model, "--source", video, "--out", out, "--batch-size", "2", "--backend", "onnxruntime")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"model {model}: backend onnxruntime on cpu")
    frame_lines = [ln for ln in lines if ln.startswith("frame ")]
    assert len(frame_lines) == 7
    assert all(("ANOMALY" in ln) or (" ok " in ln) or ("BLANK" in ln) for ln in frame_lines)
    assert lines[-1].startswith("summary: 7 frames") and "backend onnxruntime" in lines[-1]
    records = [json.loads(ln) for ln in (out / "inspect.jsonl").read_text().splitlines()]
    results = [x for x in records if x["type"] == "result"]
    summary = [x for x in records if x["type"] == "summary"]
    assert [x["frame"] for x in results] == list(range(7))
    assert len(summary) == 1 and summary[0]["frames"] == 7 and summary[0]["backend"] == "onnxruntime"
    for key in ("fps", "p50_ms", "p99_ms", "anomalies", "drops", "bad_frames"):
        assert key in summary[0]
    assert summary[0]["anomalies"] == sum(x["is_anomalous"] for x in results)
    for x in results:
        # the flat frames score far below the manifest's good scores (mean 2.0, std 0.2): blank, never a pass
        assert x["is_anomalous"] == (x["score"] >= 3.0 or x["alert"] == "blank")
        assert x["normalized_score"] == pytest.approx((x["score"] - 2.0) / (3.0 - 2.0), rel=1e-6)
        png = cv2.imread(str(out / x["overlay"]))
        assert png is not None and png.shape == (48, 64, 3)
    assert sorted(os.listdir(out / "overlays")) == [f"frame_{i:06d}.png" for i in range(7)]


def test_cli_on_a_folder_reads_sub_folders_and_names_overlays_by_file(setup):
    d, model, _ = setup
    src = d / "parts"
    (src / "good").mkdir(parents=True)
    (src / "scratch").mkdir()
    img = np.full((48, 64, 3), 90, np.uint8)
    for rel in ("good/001.png", "scratch/001.png", "top.png"):
        assert cv2.imwrite(str(src / rel), img)
    out = d / "out_folder"
    r = run_cli("--model", model, "--source", src, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out / "overlays")) == ["frame_000000_good_001.png", "frame_000001_scratch_001.png",
                                                    "frame_000002_top.png"]


def test_cli_threshold_max_frames_and_save_anomalous(setup):
    d, model, video = setup
    out = d / "out2"
    r = run_cli("--model", model, "--source", video, "--out", out, "--threshold", "-1", "--max-frames", "3",
                "--save", "anomalous", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith("frame ")]  # --no-progress
    assert "summary: 3 frames" in r.stdout and "3 anomalous" in r.stdout
    assert len(os.listdir(out / "overlays")) == 3  # every frame is anomalous at threshold -1


@pytest.mark.parametrize("args, message", [
    (["--model", "MISSING.onnx", "--source", "VIDEO"], "does not exist"),
    (["--model", "MODEL", "--source", "/no/such/source"], "is not a camera index"),
    (["--model", "MODEL", "--source", "VIDEO", "--backend", "tensorrt"], "python -m export.trt"),
    (["--model", "MODEL", "--source", "VIDEO", "--batch-size", "0"], "--batch-size"),
    (["--model", "MODEL", "--source", "VIDEO", "--max-frames", "-2"], "--max-frames"),
    (["--model", "MODEL", "--source", "VIDEO", "--backend", "onnxruntime", "--backend-option", "cuda_graph=1"],
     "backend onnxruntime has no option cuda_graph (its options: threads, providers, tensorrt_ep)"),
])
def test_cli_bad_input_gives_one_error_line(setup, args, message):
    d, model, video = setup
    args = [{"MODEL": model, "VIDEO": str(video), "MISSING.onnx": str(d / "missing.onnx")}.get(a, a) for a in args]
    r = run_cli(*args)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], r.stderr


def test_cli_backend_option_needs_key_value(setup):
    d, model, video = setup
    r = run_cli("--model", model, "--source", video, "--backend-option", "threads")
    assert r.returncode == 2 and "--backend-option: expected KEY=VALUE, got 'threads'" in r.stderr


def test_cli_help():
    r = run_cli("--help")
    assert r.returncode == 0 and "--source" in r.stdout and "--backend" in r.stdout


def test_backend_option_values_are_read_as_json():
    from runtime.cli import backend_option

    assert backend_option("threads=2") == ("threads", 2)
    assert backend_option("cuda_graph=false") == ("cuda_graph", False)  # a string "false" would be truthy
    assert backend_option("inference_precision=bf16") == ("inference_precision", "bf16")
