"""Drift and blank frames (runtime.drift): a tiny model calibrated by `calibration.threshold` on good frames; a
steady stream of more good frames reports no drift, a brightness step does, a blank frame is never a pass."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.threshold import calibrate_threshold
from runtime import Inspector
from runtime.drift import DriftBand, frame_alert
from runtime.manifest import load_manifest
from tests.helpers.tiny_models import make_model

ROOT = Path(__file__).resolve().parents[2]
H, W = 32, 48


def good_frames(rng, n, brightness=0):
    """Textured mid-grey frames (BGR); `brightness` shifts every pixel (a lighting step)."""
    base = 110 + rng.normal(0, 1, (n, H, W, 3)) * rng.uniform(14, 22, (n, 1, 1, 1))
    return np.clip(base + brightness, 0, 255).astype(np.uint8)


def write_frames(folder, frames, start=0):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{start + i:05d}.png"), f)
    return folder


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny model whose threshold (target FPR 0.05) and good-score quantiles come from 200 good frames."""
    d = tmp_path_factory.mktemp("drift")
    model = make_model(str(d), channel_order="BGR", batch_max=8)
    rng = np.random.default_rng(0)
    write_frames(str(d / "calib"), good_frames(rng, 200))
    calibrate_threshold(model, str(d / "calib"), target_fpr=0.05, progress=False)
    return d, model


def test_calibration_records_the_good_score_quantiles_the_band_is_built_on(calibrated):
    _, model = calibrated
    m = load_manifest(model)
    scores = m.threshold_provenance.scores
    assert scores["good_q05"] < scores["good_q50"] < scores["good_q95"] <= scores["good_max"]
    band = DriftBand.from_manifest(m, m.threshold.value)
    assert "quantiles" in band.source and band.calibration_images == 200
    assert band.rank(scores["good_q50"]) == pytest.approx(0.5) and band.rank(scores["good_q90"]) == pytest.approx(0.9)
    assert band.rank(scores["good_max"] + 1) == 1.0 and band.rank(scores["good_min"] - 1) == 0.0
    low, high = band.median_range(200)
    assert scores["good_q05"] < low < scores["good_q50"] < high < scores["good_q95"]
    assert band.floor < scores["good_min"]
    assert band.outside({0.5: scores["good_q50"], 0.1: scores["good_q10"]}, 200) == []
    assert band.outside({0.1: scores["good_q50"]}, 200)  # a narrower spread: q10 where the median was


def test_steady_stream_reports_no_drift_and_a_brightness_step_does(calibrated, tmp_path):
    _, model = calibrated
    rng = np.random.default_rng(1)
    steady = write_frames(str(tmp_path / "steady"), good_frames(rng, 240))
    with Inspector(model, backend="onnxruntime") as insp:
        st = insp.stream(steady, batch_size=4, drift_window=60)
        results = list(st)
        assert len(results) == 240
        assert not [e for e in st.events if e["event"] in ("drift", "blank", "out-of-range")]
        assert st.drift.last["frames"] == 60  # it did judge: the window was full

        frames = np.concatenate([good_frames(rng, 100), good_frames(rng, 140, brightness=60)])
        stepped = write_frames(str(tmp_path / "stepped"), frames)
        st = insp.stream(stepped, batch_size=4, drift_window=60)
        results = list(st)
    drift = [e for e in st.events if e["event"] == "drift"]
    assert len(drift) == 1, [e["event"] for e in st.events]
    e = drift[0]
    assert e["index"] >= 100  # after the step, not before
    assert e["q50"] > e["band"]["median_high"] or e["share_above"] > e["share_limit"]
    assert st.summary()["drift_events"] == 1


def test_a_blank_frame_is_never_a_silent_pass(calibrated, tmp_path):
    _, model = calibrated
    black = np.zeros((H, W, 3), np.uint8)
    white = np.full((H, W, 3), 255, np.uint8)
    with Inspector(model, backend="onnxruntime") as insp:
        for frame in (black, white):
            r = insp.inspect(frame)
            assert r.alert == "blank" and r.is_anomalous is True and r.verdict == "blank"
            assert r.to_dict()["alert"] == "blank"
        assert insp.inspect(good_frames(np.random.default_rng(2), 1)[0]).alert is None
        rng = np.random.default_rng(3)
        frames = list(good_frames(rng, 5)) + [black] + list(good_frames(rng, 5))
        folder = write_frames(str(tmp_path / "withblank"), frames)
        st = insp.stream(folder)
        results = list(st)
    assert [r.alert for r in results].count("blank") == 1 and results[5].is_anomalous is True
    blank = [e for e in st.events if e["event"] == "blank"]
    assert len(blank) == 1 and blank[0]["index"] == 5 and "not judged good" in blank[0]["message"]


def test_a_non_finite_score_is_out_of_range_even_without_a_band():
    frame = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert frame_alert(frame, math.nan, None)[0] == "out-of-range"
    assert frame_alert(frame, math.inf, None)[0] == "out-of-range"
    assert frame_alert(np.zeros((8, 8, 3), np.uint8), 0.5, None) is None  # no good-score distribution: no guess


def test_cli_writes_drift_and_blank_events_to_the_log(calibrated, tmp_path):
    _, model = calibrated
    rng = np.random.default_rng(4)
    frames = list(good_frames(rng, 40)) + [np.zeros((H, W, 3), np.uint8)] + list(good_frames(rng, 60, brightness=60))
    src = write_frames(str(tmp_path / "src"), frames)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "runtime", "--model", model, "--source", src, "--out", str(out),
                        "--save", "none", "--drift-window", "30", "--backend", "onnxruntime"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("frame     40") and "BLANK" in line for line in r.stdout.splitlines())
    assert sum(line.startswith("warning: drift: ") for line in r.stderr.splitlines()) == 1
    records = [json.loads(x) for x in (out / "inspect.jsonl").read_text().splitlines()]
    kinds = [x["event"] for x in records if x["type"] == "event"]
    assert kinds.count("blank") == 1 and kinds.count("drift") == 1
    summary = records[-1]
    assert summary["type"] == "summary" and summary["drift_events"] == 1 and summary["alerts"]["blank"] == 1


def test_live_view_state_carries_the_band_and_the_rolling_quantiles(calibrated, tmp_path):
    import urllib.request

    from runtime.serve import LiveView

    _, model = calibrated
    src = write_frames(str(tmp_path / "live"), good_frames(np.random.default_rng(5), 40))
    with Inspector(model, backend="onnxruntime") as insp:
        live = LiveView(0, insp, src)
        try:
            st = insp.stream(src, drift_window=20)
            for r in st:
                live.on_result(r, st)
            with urllib.request.urlopen(live.url + "state.json", timeout=30) as resp:
                state = json.loads(resp.read())
        finally:
            live.close()
    drift = state["drift"]
    assert (drift["band"]["median_low"], drift["band"]["median_high"]) == insp.drift_band.median_range(20)
    assert drift["window"] == 20 and not drift["drifting"]
    assert len(drift["trace"]) == 40 - 10 + 1 and drift["trace"][-1][0] == 39  # (frame, q10, q50, q90, share)
    assert state["editable"] is False


def test_band_falls_back_to_the_normalisation_and_then_to_none(tmp_path):
    with_norm = load_manifest(make_model(str(tmp_path), name="norm", threshold=3.0, normalization=(2.0, 0.2)))
    band = DriftBand.from_manifest(with_norm, 3.0)
    assert "normalisation" in band.source and band.rank(2.0) == pytest.approx(0.5)
    assert band.score_at(0.95) == pytest.approx(2.0 + 1.645 * 0.2) and band.floor == pytest.approx(2.0 - 6 * 0.2)
    bare = DriftBand.from_manifest(load_manifest(make_model(str(tmp_path), name="bare")), None)
    assert not bare.known and bare.source.startswith("none")
