"""Faults through `python -m runtime`: non-finite thresholds and foreign exceptions give one `error:` line
and exit 2; without a threshold the summary says so; a source lost mid-stream still gets its summary (stdout
and inspect.jsonl), reconnects are visible on stderr, `--max-reconnects` bounds them, passwords never appear."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.tiny_models import make_model

from runtime.manifest import manifest_path_for

ROOT = Path(__file__).resolve().parents[2]
HAVE_OV = importlib.util.find_spec("openvino") is not None

# A camera that delivers `FRAMES` frames, then is gone for good (every reopen fails): run in the CLI's process
LOST_CAMERA = """
import sys, numpy as np
import runtime.capture as capture
state = {"opens": 0, "reads": 0}
class Cam:
    def __init__(self, target, api, params=None):
        state["opens"] += 1
        self.ok = state["opens"] == 1
    def isOpened(self): return self.ok
    def read(self):
        state["reads"] += 1
        return (True, np.full((32, 48, 3), 7, np.uint8)) if state["reads"] <= FRAMES else (False, None)
    def release(self): pass
capture._default_factory = Cam
from runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*args, code=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "runtime"] if code is None else [sys.executable, "-c", code]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("clif")
    model = make_model(str(d), threshold=3.0, batch_max=4)
    (d / "plain").mkdir()
    plain = make_model(str(d / "plain"), name="plain")  # no threshold
    video = d / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 32))
    for i in range(4):
        w.write(np.full((32, 48, 3), 40 * i, np.uint8))
    w.release()
    return d, model, plain, video


def _one_error_line(r, message):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_cli_refuses_a_non_finite_threshold(setup, value):
    d, model, plain, video = setup
    _one_error_line(run_cli("--model", model, "--source", video, f"--threshold={value}", "--backend", "onnxruntime"),
                    "threshold must be a finite number")


def test_cli_summary_without_a_threshold_says_so(setup):
    d, model, plain, video = setup
    r = run_cli("--model", plain, "--source", video, "--backend", "onnxruntime", "--no-progress", "--out", d / "o1")
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("summary:")][0]
    assert "no threshold (verdicts unknown)" in line and "anomalous" not in line
    summary = [json.loads(x) for x in (d / "o1" / "inspect.jsonl").read_text().splitlines()][-1]
    assert summary["type"] == "summary" and summary["anomalies"] is None and summary["threshold"] is None


@pytest.mark.parametrize("options,message", [
    (["--backend", "onnxruntime", "--backend-option", "threads=abc"], "threads must be a positive integer"),
] + ([(["--backend", "openvino", "--backend-option", "inference_precision=xx"], "inference_precision must be one"),
      (["--backend", "openvino", "--backend-option", "threads=abc"], "threads must be a positive integer")]
     if HAVE_OV else []))
def test_cli_bad_backend_option_values(setup, options, message):
    d, model, plain, video = setup
    _one_error_line(run_cli("--model", model, "--source", video, *options), message)


@pytest.mark.parametrize("backend", ["onnxruntime"] + (["openvino"] if HAVE_OV else []))
def test_cli_manifest_size_mismatch_and_deep_nesting(setup, tmp_path, backend):
    model = make_model(str(tmp_path))
    mpath = manifest_path_for(model)
    d = json.load(open(mpath))
    d["input"]["width"] = 50
    json.dump(d, open(mpath, "w"))
    _one_error_line(run_cli("--model", model, "--source", setup[3], "--backend", backend),
                    "but the manifest says (N, 32, 50, 3)")
    open(mpath, "w").write("{\"a\": " * 50000 + "1" + "}" * 50000)
    _one_error_line(run_cli("--model", model, "--source", setup[3], "--backend", backend), "nested too deeply")


def test_cli_writes_its_summary_when_the_source_is_lost(setup):
    d, model, plain, video = setup
    out = d / "lost"
    code = LOST_CAMERA.replace("FRAMES", "3")
    r = run_cli("--model", model, "--source", "rtsp://admin:Secret!1@127.0.0.1:9/cam", "--out", out,
                "--max-reconnects", "2", "--backend", "onnxruntime", "--save", "none", code=code)
    _one_error_line(r, "could not reconnect after 2 attempts")
    summary_line = [ln for ln in r.stdout.splitlines() if ln.startswith("summary:")]
    assert len(summary_line) == 1 and summary_line[0].startswith("summary: 3 frames")
    records = [json.loads(x) for x in (out / "inspect.jsonl").read_text().splitlines()]
    summary = [x for x in records if x["type"] == "summary"]
    assert len(summary) == 1 and summary[0]["frames"] == 3 and "could not reconnect" in summary[0]["error"]
    kinds = [x["event"] for x in records if x["type"] == "event"]
    assert kinds == ["dropped_source", "reconnect_attempt", "reconnect_attempt", "reconnect_failed"]
    # the user sees the reconnects on stderr, not only in the jsonl
    assert len(re.findall(r"reconnect attempt \d/2", r.stderr)) == 2 and "stopped delivering frames" in r.stderr
    everything = r.stdout + r.stderr + (out / "inspect.jsonl").read_text()
    assert "Secret" not in everything and "admin:***@127.0.0.1" in summary[0]["source"]


def test_cli_max_reconnects_must_not_be_negative(setup):
    d, model, plain, video = setup
    _one_error_line(run_cli("--model", model, "--source", video, "--max-reconnects", "-1"), "--max-reconnects")
