"""calibration.threshold: rules, the manifest round trip, the FPR it achieves on held-out good images, and the
refusal of test splits. A tiny hand-made graph (score = max over pixels of the mean |x - 128| / 128) keeps it
fast, so a meaningful number of frames fits in a unit test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from calibration.errors import CalibrationError, TestSplitRefused
from calibration.threshold import (build_parser, calibrate_threshold, f1_threshold, fpr_threshold,
                                   main as threshold_main)
from runtime.backends import REGISTRY, create_backend, is_available
from runtime.manifest import (InputSpec, Manifest, load_manifest, manifest_path_for, sha256_file, verify_artifact,
                              write_manifest)

S = 16  # frame size


def tiny_model(path):
    """frame (N,S,S,3) uint8 -> map (N,1,S,S) = mean_c |x - 128| / 128, score (N,) = max of the map."""
    c128 = helper.make_tensor("c128", TensorProto.FLOAT, [], [128.0])
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT, name="/Cast"),
        helper.make_node("Sub", ["f", "c128"], ["d"], name="/Sub"),
        helper.make_node("Abs", ["d"], ["a"], name="/Abs"),
        helper.make_node("Div", ["a", "c128"], ["n"], name="/Div"),
        helper.make_node("ReduceMean", ["n"], ["m"], axes=[3], keepdims=1, name="/ReduceMean"),
        helper.make_node("Transpose", ["m"], ["anomaly_map"], perm=[0, 3, 1, 2], name="/Transpose"),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0, name="/ReduceMax"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", S, S, 3])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, S, S]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], initializer=[c128])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    write_manifest(path, Manifest(artifact="", artifact_kind="onnx", sha256="", method="tiny", c=1,
                                  input=InputSpec(height=S, width=S)))
    return path


def good_frames(rng, n):
    """Good frames: noise around mid-grey whose amplitude varies per image (a continuous score distribution)."""
    amp = rng.gamma(4.0, 6.0, size=(n, 1, 1, 1))
    return np.clip(128 + rng.normal(0, 1, (n, S, S, 3)) * amp, 0, 255).astype(np.uint8)


def write_frames(folder, frames, start=0):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{start + i:04d}.png"), f[:, :, ::-1])


@pytest.fixture()
def model(tmp_path):
    return tiny_model(str(tmp_path / "tiny.onnx"))


def test_fpr_rule_is_the_interpolated_quantile():
    s = np.arange(101, dtype=float)  # 0..100
    assert fpr_threshold(s, 0.1) == pytest.approx(90.0)
    assert fpr_threshold(s, 0.015) == pytest.approx(98.5)
    with pytest.raises(CalibrationError):
        fpr_threshold([1.0], 0.1)


def test_f1_rule_against_brute_force():
    rng = np.random.default_rng(3)
    scores = np.r_[rng.normal(0, 1, 60), rng.normal(1.5, 1, 40)]
    labels = np.r_[np.zeros(60), np.ones(40)].astype(int)
    best = f1_threshold(scores, labels)

    def f1_at(t):
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        return 2 * tp / (pred.sum() + labels.sum())

    brute = max(f1_at(t) for t in np.unique(scores))
    assert best["f1"] == pytest.approx(brute)
    assert f1_at(best["value"]) == pytest.approx(brute)  # the midpoint classifies the same way
    sep = f1_threshold([0.1, 0.2, 0.3, 0.9, 1.0], [0, 0, 0, 1, 1])
    assert sep["f1"] == 1.0 and sep["value"] == pytest.approx(0.6)


def test_threshold_written_and_read_back_without_rebuild(model, tmp_path):
    rng = np.random.default_rng(0)
    folder = str(tmp_path / "good")
    write_frames(folder, good_frames(rng, 120))
    sha = sha256_file(model)
    res = calibrate_threshold(model, folder, target_fpr=0.05, progress=False)
    m = load_manifest(model)
    t = m.threshold
    assert t.rule == "target_fpr" and t.target_fpr == 0.05 and t.images == 120
    assert t.value == pytest.approx(float(np.quantile(res["good_scores"], 0.95)))
    assert t.normalization.good_mean == pytest.approx(res["good_scores"].mean())
    assert t.normalization.good_std == pytest.approx(res["good_scores"].std(ddof=1))
    assert folder in t.data and "all images" in t.data and t.date
    assert t.normalize(t.value) == pytest.approx(1.0) and t.normalize(t.normalization.good_mean) == pytest.approx(0.0)
    prov = m.threshold_provenance.to_dict()
    assert prov["good_images"]["source"] == "folder" and len(prov["good_images"]["files"]) == 120
    assert prov["model_sha256"] == sha and prov["warnings"] == []
    assert sha256_file(model) == sha  # the graph is untouched: recalibrating needs no rebuild
    verify_artifact(model, m)


def test_fpr_on_held_out_good_images_is_near_the_target(model, tmp_path):
    rng = np.random.default_rng(1)
    folder = str(tmp_path / "good")
    write_frames(folder, good_frames(rng, 400))
    calibrate_threshold(model, folder, target_fpr=0.05, progress=False)
    value = load_manifest(model).threshold.value
    unseen = good_frames(np.random.default_rng(2), 2000)
    with create_backend("onnxruntime", model, load_manifest(model), threads=1) as backend:
        scores = backend.infer(unseen)[1]
    fpr = float(np.mean(scores >= value))
    assert 0.03 <= fpr <= 0.07, fpr


def test_holdout_of_train_good_is_deterministic_and_flagged(model, tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "data"
    write_frames(str(root / "cat" / "train" / "good"), good_frames(rng, 50))
    write_frames(str(root / "cat" / "test" / "good"), good_frames(rng, 5))
    res = calibrate_threshold(model, str(root), "cat", target_fpr=0.01, progress=False)
    prov = res["provenance"]["good_images"]
    assert prov["source"] == "holdout" and prov["fraction"] == 0.2 and prov["used"] == 10
    assert prov["files"] == [os.path.join("cat", "train", "good", f"{i:04d}.png") for i in range(40, 50)]
    text = " ".join(res["warnings"])
    assert "poor estimate" in text  # 10 images for a 1 % quantile
    assert "last 20%" in load_manifest(model).threshold.data


def test_f1_rule_with_labelled_validation_folder(model, tmp_path):
    rng = np.random.default_rng(5)
    good_dir, val = str(tmp_path / "good"), tmp_path / "val"
    write_frames(good_dir, good_frames(rng, 60))
    write_frames(str(val / "good"), good_frames(rng, 20))
    bad = np.clip(128 + rng.normal(0, 90, (20, S, S, 3)), 0, 255).astype(np.uint8)
    write_frames(str(val / "scratch"), bad)
    res = calibrate_threshold(model, good_dir, f1=True, val=str(val), progress=False)
    t = load_manifest(model).threshold
    assert t.rule == "f1" and t.target_fpr is None and t.images == 40
    assert res["provenance"]["validation"]["good"] == 20 and res["provenance"]["validation"]["defect"] == 20
    assert res["provenance"]["validation"]["f1"] > 0.9
    assert t.value > t.normalization.good_mean


def test_refuses_test_splits_and_bad_options(model, tmp_path, capsys):
    rng = np.random.default_rng(6)
    root = tmp_path / "data"
    write_frames(str(root / "cat" / "train" / "good"), good_frames(rng, 10))
    write_frames(str(root / "cat" / "test" / "good"), good_frames(rng, 4))
    write_frames(str(root / "cat" / "test" / "crack"), good_frames(rng, 4))
    before = open(manifest_path_for(model)).read()
    with pytest.raises(TestSplitRefused, match="test split"):
        calibrate_threshold(model, str(root / "cat" / "test" / "good"), target_fpr=0.01, progress=False)
    with pytest.raises(TestSplitRefused, match="test split"):
        calibrate_threshold(model, str(root), "cat", f1=True, val=str(root / "cat" / "test"), progress=False)
    with pytest.raises(TestSplitRefused, match="not the test split"):
        calibrate_threshold(model, str(root), "cat", f1=True, val=str(root), val_category="cat", progress=False)
    with pytest.raises(CalibrationError, match="--val"):
        calibrate_threshold(model, str(root), "cat", f1=True, progress=False)
    rc = threshold_main(["--model", model, "--data", str(root / "cat" / "test"), "--target-fpr", "0.01"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "test split" in err[0]
    assert open(manifest_path_for(model)).read() == before  # nothing written


def test_runtime_inspector_uses_the_calibrated_threshold(model, tmp_path):
    from runtime import Inspector

    rng = np.random.default_rng(7)
    folder = str(tmp_path / "good")
    write_frames(folder, good_frames(rng, 100))
    calibrate_threshold(model, folder, target_fpr=0.1, progress=False)
    t = load_manifest(model).threshold
    # a quiet good frame (a flat one is blank: never a pass once the good scores are known, runtime.drift)
    quiet = np.clip(128 + rng.normal(0, 1, (S, S, 3)) * 12, 0, 255).astype(np.uint8)
    loud = np.where(rng.random((S, S, 3)) < 0.5, 0, 255).astype(np.uint8)  # score 1: anomalous
    with Inspector(model, backend="onnxruntime", device="cpu", frame_order="RGB", warmup=False) as insp:
        assert insp.threshold == pytest.approx(t.value)
        good, bad = insp.inspect(quiet), insp.inspect(loud)
    assert good.is_anomalous is False and bad.is_anomalous is True
    assert bad.normalized_score == pytest.approx((bad.score - t.normalization.good_mean)
                                                 / (t.value - t.normalization.good_mean))


def test_backend_choices_are_the_runtime_registry():
    action = next(a for a in build_parser()._actions if a.dest == "backend")
    assert tuple(action.choices) == tuple(REGISTRY) and action.default == "onnxruntime"


@pytest.mark.skipif(not is_available("openvino"), reason="openvino not installed")
def test_openvino_scores_give_the_onnxruntime_threshold(model, tmp_path):
    folder = str(tmp_path / "good")
    write_frames(folder, good_frames(np.random.default_rng(3), 60))
    ort = calibrate_threshold(model, folder, target_fpr=0.05, progress=False, write=False)
    ov = calibrate_threshold(model, folder, target_fpr=0.05, progress=False, write=False, backend="openvino")
    assert ort["provenance"]["backend"].startswith("onnxruntime ")
    assert ov["provenance"]["backend"].startswith("openvino ")
    np.testing.assert_allclose(ov["good_scores"], ort["good_scores"], rtol=1e-6)
    assert abs(ov["threshold"].value - ort["threshold"].value) <= 1e-6


def test_cli_refuses_a_backend_that_cannot_run_the_artifact_and_an_unwritable_json(model, tmp_path, capsys):
    folder = str(tmp_path / "good")
    write_frames(folder, good_frames(np.random.default_rng(5), 12))
    rc = threshold_main(["--model", model, "--data", folder, "--target-fpr", "0.1", "--backend", "tensorrt",
                         "--dry-run", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "tensorrt backend runs engines" in err[-1]
    (tmp_path / "a_file").write_text("x")  # a folder that cannot be made: a file of that name is there
    rc = threshold_main(["--model", model, "--data", folder, "--target-fpr", "0.1", "--dry-run", "--no-progress",
                         "--json", str(tmp_path / "a_file" / "thr.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: cannot write --json")


@pytest.mark.parametrize("module", ["calibration.threshold", "runtime"])
def test_help_works_without_torch(module):
    # importing torch fails in the child (sys.modules entry None), as on a device with only the runtime's deps
    code = ("import runpy, sys\n"
            "sys.modules['torch'] = None\n"
            f"sys.argv = [{module!r}, '--help']\n"
            f"runpy.run_module({module!r}, run_name='__main__')\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert "usage: python -m " + module in out.stdout and "--model" in out.stdout


def test_a_bgr_model_is_scored_in_its_own_channel_order(tmp_path):
    """The score statistics calibration computes are the ones the deployed Inspector gives on the same image
    files: for a model exported for BGR frames the good images are fed to it in BGR."""
    from runtime import Inspector
    from tests.helpers.tiny_models import make_model

    os.makedirs(tmp_path / "m")
    model = make_model(str(tmp_path / "m"), channel_order="BGR")  # channel-sensitive 3x3 conv, 32x48
    rng = np.random.default_rng(11)
    frames = np.clip(rng.normal(128, 40, (10, 32, 48, 3)), 0, 255).astype(np.uint8)
    frames[..., 0] //= 3  # make the channels differ, so that a swapped order gives other scores
    folder = str(tmp_path / "good")
    write_frames(folder, frames)
    res = calibrate_threshold(model, folder, target_fpr=0.1, write=False, progress=False)
    insp = Inspector(model, backend="onnxruntime")
    files = sorted(os.listdir(folder))
    scores = np.array([insp.inspect(cv2.imread(os.path.join(folder, f)), frame_order="BGR").score for f in files])
    assert res["provenance"]["scores"]["good_mean"] == pytest.approx(float(scores.mean()), rel=1e-6)
    swapped = np.array([insp.inspect(cv2.imread(os.path.join(folder, f)), frame_order="RGB").score for f in files])
    assert abs(float(swapped.mean()) - float(scores.mean())) > 1e-3  # the test can see a wrong order
