"""What a run records of its images (content hashes, for calibration to refuse) and the fit-time camera
variations (--fit-augment), through `python -m train` with a tiny one-pass method."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.train.test_method_contract import pixelstats  # noqa: F401  (the test-only fit method, registered)
from train.cli import main as train_main
from imagesets.camera_variations import with_variations
from imagesets.fingerprints import IMAGES, file_sha256


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "data" / "cat" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(10):
        cv2.imwrite(str(good / f"{i:03d}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return tmp_path / "data"


def _argv(method, data, run, *extra):
    return ["--method", method.name, "--data", str(data), "--category", "cat", "--out", str(run),
            "--image-size", "32", "--device", "cpu", "--no-progress", *extra]


def test_run_holds_out_by_default_and_records_what_it_fitted(pixelstats, data, tmp_path):
    run = tmp_path / "run"
    assert train_main(_argv(pixelstats, data, run)) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["holdout"] == 0.2 and config["fit_augment"] is None
    record = json.loads((run / IMAGES).read_text())
    files = sorted((data / "cat" / "train" / "good").iterdir())
    assert record["count"] == 8  # the last 2 of 10 are held out for calibration
    assert set(record["sha256"]) == {file_sha256(p) for p in files[:8]}
    assert not {file_sha256(p) for p in files[8:]} & set(record["sha256"])


def test_fit_augment_adds_varied_copies_and_is_recorded(pixelstats, data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(_argv(pixelstats, data, run, "--fit-augment", "jpeg,brightness,shift",
                            "--holdout", "0")) == 0
    history = json.loads((run / "history.jsonl").read_text().splitlines()[0])
    assert history["images"] == 20  # 10 images and one varied copy of each
    assert json.loads((run / "config.json").read_text())["fit_augment"] == {
        "kinds": ["jpeg", "brightness", "shift"], "copies": 1}
    assert train_main(_argv(pixelstats, data, tmp_path / "bad", "--fit-augment", "blur")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --fit-augment blur: unknown variation")


def test_camera_variations_are_seeded_and_change_what_they_say():
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    images = img[None]
    a, b = with_variations(images, ["shift"], 3, seed=5), with_variations(images, ["shift"], 3, seed=5)
    assert a.shape == (4, 64, 64, 3) and np.array_equal(a, b) and np.array_equal(a[0], img)
    # a shift moves the content: each copy equals the original somewhere offset by at most 4 px
    for copy in a[1:]:
        best = min(np.abs(copy[8:-8, 8:-8].astype(int) - img[8 + dy:56 + dy, 8 + dx:56 + dx].astype(int)).mean()
                   for dy in range(-4, 5) for dx in range(-4, 5))
        assert best == 0
    jpeg = with_variations(images, ["jpeg"], 1, seed=0)[1]
    assert 0 < np.abs(jpeg.astype(int) - img.astype(int)).mean() < 20
    bright = with_variations(images, ["brightness"], 4, seed=0)[1:]
    means = bright.reshape(4, -1).mean(1)
    assert np.all(np.abs(means - img.mean()) < 0.3 * img.mean()) and len(set(means.round(3))) == 4


def test_image_size_auto_keeps_the_aspect_ratio(pixelstats, tmp_path, capsys):
    rng = np.random.default_rng(2)
    good = tmp_path / "wide" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(good / f"{i}.png"), rng.integers(0, 255, (30, 75, 3), dtype=np.uint8))  # 2.5:1
    run = tmp_path / "run"
    argv = ["--method", pixelstats.name, "--data", str(tmp_path / "wide"), "--out", str(run), "--device", "cpu",
            "--no-progress", "--image-size", "auto:32"]
    assert train_main(argv) == 0
    h, w = json.loads((run / "config.json").read_text())["image_size"]
    assert (h, w) == (24, 48) and h % 8 == 0 and w % 8 == 0  # 2.0 is the nearest ratio at 32x32 px, multiple 8
    assert "--image-size auto:32: 24x48" in capsys.readouterr().out
    assert train_main(argv[:-1] + ["auto:x"]) == 2
