"""calibration.threshold on a line's terms: a few bad "good" images do not move the threshold far (the plain
quantile jumps), images the model was fitted on are refused, and good frames can come from a video through the
runtime's frame path. The tiny hand-made graph of test_calibration_threshold keeps it fast."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.tail import clopper_pearson, robust_threshold, tail_quantile
from calibration.threshold import calibrate_threshold, main as threshold_main
from runtime.manifest import load_manifest, manifest_path_for, write_manifest
from tests.calibration.test_calibration_threshold import S, good_frames, tiny_model, write_frames
from imagesets.fingerprints import write_image_record


@pytest.fixture
def model(tmp_path):
    return tiny_model(str(tmp_path / "tiny.onnx"))


def _clean_and_planted(seed=0, n=300, planted=4):
    rng = np.random.default_rng(seed)
    clean = rng.gamma(9.0, 1.0, n) + 10.0  # a skewed good-score distribution, like a model's
    spread = np.quantile(clean, 0.99) - np.median(clean)
    planted_scores = np.median(clean) + spread * rng.uniform(6.0, 9.0, planted)  # score like defects
    return clean, np.r_[clean, planted_scores], spread


def test_planted_outliers_move_the_estimate_little_and_the_quantile_far():
    """Bound: with 4 planted outliers among 300 good scores, the estimate moves by at most 10 % of the good
    spread (0.99 quantile - median) of the clean set; the plain 0.99 quantile moves by more than 100 %."""
    for seed in range(5):
        clean, planted, spread = _clean_and_planted(seed)
        ref = robust_threshold(clean, 0.01)
        got = robust_threshold(planted, 0.01)
        assert got["estimate"] == "tail" and len(got["outliers"]) == 4 and "far above the rest" in got["why"]
        assert sorted(got["outliers"]) == [300, 301, 302, 303]
        assert abs(got["value"] - ref["value"]) <= 0.10 * spread
        assert np.quantile(planted, 0.99) - np.quantile(clean, 0.99) > 1.0 * spread
        assert got["quantile_all_images"] == pytest.approx(np.quantile(planted, 0.99))


def test_tail_model_matches_known_tails():
    """The GPD tail model's quantile against the exact one: exponential (shape 0) and normal scores."""
    rng = np.random.default_rng(1)
    expo = rng.exponential(2.0, 2000)
    assert tail_quantile(expo, 0.001)["value"] == pytest.approx(-2.0 * math.log(0.001), rel=0.1)
    normal = rng.normal(10.0, 1.0, 2000)
    assert tail_quantile(normal, 0.01)["value"] == pytest.approx(12.326, abs=0.1)  # norm.ppf(0.99)


def test_clopper_pearson_matches_the_beta_quantiles():
    assert clopper_pearson(0, 150)["high"] == pytest.approx(1 - 0.025 ** (1 / 150), rel=1e-6)
    ci = clopper_pearson(3, 100)  # scipy.stats.beta.ppf(0.025, 3, 98), beta.ppf(0.975, 4, 97)
    assert ci["low"] == pytest.approx(0.0062300, rel=1e-4) and ci["high"] == pytest.approx(0.0851761, rel=1e-4)


def test_outlying_good_images_are_flagged_written_and_left_out(model, tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "good"
    amp = rng.gamma(9.0, 1.0, size=(200, 1, 1, 1))  # quiet good frames: scores about 0.2, none near 1
    write_frames(str(folder), np.clip(128 + rng.normal(0, 1, (200, S, S, 3)) * amp, 0, 255).astype(np.uint8))
    clean = calibrate_threshold(model, str(folder), target_fpr=0.01, progress=False, write=False)
    loud = np.where(rng.random((3, S, S, 3)) < 0.5, 0, 255).astype(np.uint8)  # score 1.0: defects among the good
    write_frames(str(folder), loud, start=900)
    res = calibrate_threshold(model, str(folder), target_fpr=0.01, progress=False)
    est = res["provenance"]["estimate"]
    assert [o["image"] for o in est["outliers"]] == ["0900.png", "0901.png", "0902.png"]
    assert res["threshold"].value < 1.0 and abs(res["threshold"].value - clean["threshold"].value) < 0.05
    report = json.loads((tmp_path / "tiny.outliers" / "outliers.json").read_text())
    assert len(report["outliers"]) == 3 and all((tmp_path / "tiny.outliers" / o["overlay"]).is_file()
                                                for o in report["outliers"])
    prov = load_manifest(model).threshold_provenance.to_dict()
    assert prov["estimate"]["estimate"] == "tail" and prov["estimate"]["fpr_interval"]["high"] < 0.05
    assert any("far above the rest" in w for w in prov["warnings"])


def _run_dir(tmp_path, model, files, root):
    run = tmp_path / "run"
    run.mkdir()
    write_image_record(run, files, root)
    m = load_manifest(model)
    m.source_run = str(run)
    write_manifest(model, m)
    return run


def test_calibration_refuses_images_the_model_was_fitted_on(model, tmp_path, capsys):
    rng = np.random.default_rng(3)
    root = tmp_path / "data"
    write_frames(str(root / "cat" / "train" / "good"), good_frames(rng, 20))
    good = root / "cat" / "train" / "good"
    files = sorted(str(p) for p in good.iterdir())
    # the run was fitted on all 20 (no hold-out): the default hold-out (last 4) is among them
    _run_dir(tmp_path, model, files, root)
    before = open(manifest_path_for(model)).read()
    with pytest.raises(CalibrationError, match=r"4 of the 4 calibration images were used to fit or train the model"):
        calibrate_threshold(model, str(root), "cat", target_fpr=0.05, progress=False)
    # a copy under another name is the same content: refused too
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "renamed.png").write_bytes(open(files[0], "rb").read())
    rc = threshold_main(["--model", model, "--data", str(copies), "--target-fpr", "0.05", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: 1 of the 1 calibration images") and \
        "renamed.png" in err[0]
    assert open(manifest_path_for(model)).read() == before


def test_calibration_accepts_the_held_out_images_and_says_so(model, tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "data"
    write_frames(str(root / "cat" / "train" / "good"), good_frames(rng, 30))
    files = sorted(str(p) for p in (root / "cat" / "train" / "good").iterdir())
    _run_dir(tmp_path, model, files[:24], root)  # what `python -m train` fits by default (--holdout 0.2)
    res = calibrate_threshold(model, str(root), "cat", target_fpr=0.05, progress=False)
    assert res["provenance"]["good_images"]["unseen"].startswith("checked: none of these images")


def test_source_video_goes_through_the_runtime_frame_path(model, tmp_path):
    """Good frames from an MJPG video at another size: decoded, resized and ordered as the runtime does."""
    rng = np.random.default_rng(5)
    frames = good_frames(rng, 40)
    video = str(tmp_path / "line.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (2 * S, 2 * S))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG here")
    for f in frames:
        writer.write(cv2.resize(f, (2 * S, 2 * S), interpolation=cv2.INTER_NEAREST))
    writer.release()
    res = calibrate_threshold(model, source=video, frames=30, target_fpr=0.1, progress=False)
    desc = res["provenance"]["good_images"]
    assert desc["source"] == "frames" and desc["kind"] == "video" and desc["used"] == 30
    assert "not checkable" in desc["unseen"] and "video file" in load_manifest(model).threshold.data
    assert res["good_scores"].shape == (30,) and np.isfinite(res["threshold"].value)
    assert threshold_main(["--model", model, "--source", "0", "--target-fpr", "0.1"]) == 2  # live: needs --frames
    assert threshold_main(["--model", model, "--source", video, "--category", "x", "--target-fpr", "0.1"]) == 2


def test_a_derived_artifact_is_calibrated_like_its_parent(model, tmp_path, capsys):
    """--like PARENT repeats the parent's rule and good images through the artifact's own backend (here an
    unchanged copy: the thresholds agree exactly) and records how far the two lie apart."""
    import shutil

    folder = tmp_path / "good"
    write_frames(str(folder), good_frames(np.random.default_rng(6), 60))
    calibrate_threshold(model, str(folder), target_fpr=0.05, progress=False)
    child = str(tmp_path / "child.onnx")
    shutil.copyfile(model, child)
    m = load_manifest(model)
    m.threshold = m.threshold_provenance = None
    m.artifact = "child.onnx"
    write_manifest(child, m)
    assert threshold_main(["--model", child, "--like", model, "--no-progress"]) == 0
    got, parent = load_manifest(child), load_manifest(model)
    assert got.threshold.value == pytest.approx(parent.threshold.value)
    assert got.threshold_provenance.good_images["files"] == parent.threshold_provenance.good_images["files"]
    diff = got.threshold_provenance.estimate["parent"]
    assert diff["parent_threshold"] == pytest.approx(parent.threshold.value) and diff["difference_normalised"] == 0
    assert threshold_main(["--model", child, "--like", model, "--target-fpr", "0.1"]) == 2
    assert threshold_main(["--model", model, "--like", child + ".missing"]) == 2


def test_threshold_modules_never_import_torch():
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys, calibration.threshold, calibration.tail, calibration.verdicts, calibration.source_frames, "
            "calibration.threshold_images, calibration.recalibrate, calibration.outlier_report, "
            "imagesets.fingerprints, imagesets.camera_variations, imagesets.auto_size; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    env = dict(os.environ, PYTHONPATH=repo)
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=repo).returncode == 0
