"""benchmarks.baseline: the per-pixel Gaussian against numpy, and its command line on a tiny data set."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest


from benchmarks.baseline import STD_FLOOR, PixelGaussian, main
from train.errors import ConfigError


def test_pixel_gaussian_matches_numpy():
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    good[:, 0, 0, :] = 77  # a pixel that never changes: its std is floored
    test = rng.integers(0, 256, (2, 10, 12, 3), dtype=np.uint8)
    model = PixelGaussian(mean_filter=3).fit(good)
    x = good.astype(np.float64) / 255.0
    std = np.maximum(x.std(axis=0, ddof=1), STD_FLOOR)
    z = (test.astype(np.float64) / 255.0 - x.mean(axis=0)) / std
    raw = (z * z).mean(axis=-1).astype(np.float32)
    ref = np.stack([cv2.filter2D(m, -1, np.full((3, 3), 1 / 9, np.float32), borderType=cv2.BORDER_CONSTANT)
                    for m in raw])
    maps, scores = model(test)
    assert maps.shape == (2, 1, 10, 12)
    np.testing.assert_allclose(maps[:, 0], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, ref.reshape(2, -1).max(axis=1), rtol=1e-6)
    with pytest.raises(ConfigError, match="at least 2"):
        PixelGaussian().fit(good[:1])
    with pytest.raises(ConfigError, match="odd"):
        PixelGaussian(mean_filter=4)


def test_baseline_cli_finds_the_bright_defects(tiny_mvtec, tmp_path, capsys):
    data = tiny_mvtec
    out = tmp_path / "base.json"
    assert main(["--data", str(data), "--category", "tiles", "--image-size", "48", "--mean-filter", "3",
                 "--json", str(out), "--no-progress"]) == 0
    assert "per-pixel Gaussian" in capsys.readouterr().out
    report = json.loads(out.read_text())
    # The defects are saturated blobs on noise: far outside every pixel's good range.
    assert report["image_auroc"] == 1.0 and report["pixel_auroc"] > 0.95
    assert report["n_train"] == 4 and report["image_size"] == [48, 48]
    assert main(["--data", str(tmp_path / "none"), "--category", "tiles", "--image-size", "48", "--no-progress"]) == 2
