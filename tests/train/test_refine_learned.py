"""F2PAD's learned initialiser and per-category selection: a few training steps give an inpainter that fills a
hole in a striped image closer to the truth than a flat fill or OpenCV's Telea; the selection, on synthetic
defects in unseen good images, writes settings that `python -m train.refine --settings` then runs with."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.helpers.features import SIZE, fitted, needs_lite0, tiny_images


def striped(n: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """uint8 (n, size, size, 3): horizontal stripes 3 px wide, two fixed colours, a random phase per image."""
    rows = np.arange(size)[:, None]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        band = ((rows + int(rng.integers(6))) // 3) % 2
        out[i] = np.where(band[..., None], [200, 60, 40], [40, 90, 180]).astype(np.uint8)
    return out


def test_a_few_steps_fill_a_hole_better_than_a_flat_fill_and_telea():
    from train.refine.init import inpaint
    from train.refine.inpaint_net import Inpainter
    from train.refine.inpainter import train_inpainter

    rng = np.random.default_rng(0)
    net, _ = train_inpainter(striped(16, rng), c=8, crop_hw=(32, 32), steps=120, batch=8, radius=(3.0, 6.0),
                             lr=0.005, seed=0)
    inpainter = Inpainter(net, {"c": 8})
    truth = striped(1, np.random.default_rng(7))[0]
    hole = np.zeros((32, 32), bool)
    cv2.circle(hole.view(np.uint8), (16, 16), 6, 1, -1)
    learned = inpainter.fill(truth, hole)
    telea = inpaint(truth, hole, "telea", 5)
    flat = truth.copy()
    flat[hole] = 128

    def err(x):
        return float(np.abs(x[hole].astype(float) - truth[hole].astype(float)).mean())

    assert np.array_equal(learned[~hole], truth[~hole])  # outside the hole: the image itself
    assert err(learned) < err(flat)
    assert err(learned) < err(telea)


def test_synthetic_defects_stay_in_their_window_and_have_masks():
    from train.refine.synthetic import synthetic_set

    good = [np.full((48, 80, 3), 120, np.uint8) for _ in range(2)]
    cases = synthetic_set(good, 4, 32, seed=1)
    assert [k for _, _, k in cases] == ["scratch", "blob", "stain", "missing"]
    for image, mask, _ in cases:
        assert mask.any() and mask.shape == (48, 80)
        changed = np.abs(image.astype(int) - 120).sum(axis=2) > 0
        assert mask[changed].mean() > 0.3 and changed[mask].mean() > 0.9


def _save(folder, images):
    folder.mkdir()
    for i, g in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(g, cv2.COLOR_RGB2BGR))


@needs_lite0
def test_selection_writes_settings_that_the_refiner_reads(tmp_path):
    from train import runs
    from train.config import RunConfig
    from train.refine.selected import read_selected

    _, opts, model, _ = fitted("patchcore")
    run = tmp_path / "run"
    run.mkdir()
    runs.save_config(run, RunConfig(method="patchcore", c=None, image_size=SIZE, options=opts))
    runs.save_weights(run, model)
    good = [(t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for t in tiny_images(4, seed=9)]
    _save(tmp_path / "good", good)
    out = tmp_path / "chosen.json"
    done = subprocess.run([sys.executable, "-m", "train.refine.select", "--run", str(run), "--good",
                           str(tmp_path / "good"), "--images", "2", "--full-images", "1", "--iters", "2", "3",
                           "--option", "min_iters=0", "--option", "dilate=2", "--option", "context=16",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    options, inpainter = read_selected(out)
    assert inpainter is None and options["init"] in ("telea", "ns")
    assert record["provenance"]["synthetic_images"] == 2 and len(record["grid"]) >= 5
    assert "chosen:" in done.stdout

    _save(tmp_path / "images", good[:1])
    refined = tmp_path / "refined"
    done = subprocess.run([sys.executable, "-m", "train.refine", "--run", str(run), "--folder",
                           str(tmp_path / "images"), "--out", str(refined), "--threshold", "0.0", "--data",
                           str(tmp_path / "good"), "--prior-components", "2", "--prior-pixels", "400",
                           "--settings", str(out), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"mask_threshold={options['mask_threshold']}" in done.stdout
    assert (refined / "refine.jsonl").is_file()


def test_a_settings_file_that_is_not_one_is_a_clear_error(tmp_path):
    from train.errors import ConfigError
    from train.refine.selected import merged_options

    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a settings file"):
        merged_options(bad, None, [])
    good = tmp_path / "s.json"
    good.write_text(json.dumps({"options": {"c": 0.01, "init": "learned"}, "inpainter": "INP"}))
    options, folder = merged_options(good, None, [("c", 0.5)])
    assert options == {"c": 0.5, "init": "learned"} and folder == "INP"
