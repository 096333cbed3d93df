"""train.demo_data: MVTec layout that the readers accept, byte-identical output for one seed, visible defects."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train import demo_data
from imagesets import find_samples, load_images, load_masks, read_image, read_mask
from train.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(size=48, n_train=3, n_test_good=2, n_test_defect=1, progress=False)


def _hashes(root: Path):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_textures_are_bundled_offline():
    for name in demo_data.CATEGORIES:
        t = demo_data.load_texture(name)
        assert t.ndim == 2 and t.shape[0] >= 256 and 0 <= t.min() < t.max() <= 1


def test_layout_is_read_by_the_mvtec_reader(tmp_path):
    demo_data.generate(tmp_path, ["brick", "grass"], **SMALL)
    for cat in ("brick", "grass"):
        train = find_samples(tmp_path, cat, "train")
        test = find_samples(tmp_path, cat, "test")
        assert len(train) == 3 and len(test) == 2 + 4
        assert sorted({s.defect_type for s in test}) == ["blob", "good", "missing", "scratch", "stain"]
        for s in test:
            if s.label:
                assert Path(s.mask_path) == tmp_path / cat / "ground_truth" / s.defect_type / "000_mask.png"
                m = read_mask(s.mask_path)
                assert m.shape == (48, 48) and m.any()
        assert read_image(train[0].path).shape == (48, 48, 3)
    assert not (tmp_path / "gravel").exists()


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    demo_data.generate(tmp_path / "a", ["gravel"], seed=3, **SMALL)
    demo_data.generate(tmp_path / "b", ["gravel"], seed=3, **SMALL)
    demo_data.generate(tmp_path / "c", ["gravel"], seed=4, **SMALL)
    ha, hb, hc = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(ha) == 3 + 2 + 4 + 4 + 1 and ha == hb
    assert ha["gravel/train/good/000.png"] != hc["gravel/train/good/000.png"]
    # a category's images do not depend on which other categories are written
    demo_data.generate(tmp_path / "d", ["brick", "gravel"], seed=3, **SMALL)
    hd = _hashes(tmp_path / "d")
    assert all(hd[k] == v for k, v in ha.items())
    # regenerating into the same folder replaces it cleanly
    demo_data.generate(tmp_path / "a", ["gravel"], seed=3, size=48, n_train=1, n_test_good=1, n_test_defect=0,
                       progress=False)
    assert len(list((tmp_path / "a" / "gravel" / "train" / "good").iterdir())) == 1


def test_categories_differ_in_colour(tmp_path):
    demo_data.generate(tmp_path, list(demo_data.CATEGORIES), **SMALL)
    means = {c: load_images(find_samples(tmp_path, c, "train"), (48, 48), progress=False).reshape(-1, 3).mean(0)
             for c in demo_data.CATEGORIES}
    assert np.argmax(means["brick"]) == 0 and np.argmax(means["grass"]) == 1 and np.argmax(means["gravel"]) == 2


@pytest.mark.parametrize("kind", demo_data.DEFECT_TYPES)
def test_defects_are_visible_inside_the_mask_and_local(kind):
    gray = demo_data.load_texture("brick")
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(12):
        tile = demo_data.make_tile(gray, 128, demo_data.TINTS["brick"], rng)
        out, mask = demo_data.make_defect(tile, kind, rng)
        assert out.shape == tile.shape and mask.shape == (128, 128) and mask.dtype == bool
        assert 4 <= mask.sum() < 0.25 * mask.size
        d = np.abs(out - tile).max(axis=2)
        assert d[mask].mean() > 3 * max(d[~mask].mean(), 1e-4)  # the change is where the mask says
        diffs.append(d[mask].mean())
        assert 0 <= out.min() and out.max() <= 1
    diffs = np.array(diffs)
    assert diffs.min() > 0.01  # never invisible
    assert diffs.mean() < 0.6  # and not all saturated
    assert diffs.max() > 1.5 * diffs.min()  # a mix of subtle and clear


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo category marble; choose from brick, grass, gravel"):
        demo_data.generate(tmp_path, ["marble"], **SMALL)
    with pytest.raises(ConfigError, match="--size"):
        demo_data.generate(tmp_path, ["brick"], size=8, n_train=1, n_test_good=0, n_test_defect=0, progress=False)
    (tmp_path / "brick").mkdir()
    (tmp_path / "brick" / "mine.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not written by train.demo_data"):
        demo_data.generate(tmp_path, ["brick"], **SMALL)
    assert (tmp_path / "brick" / "mine.txt").exists()


def test_command_line(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "train.demo_data", "--out", str(out), "--categories", "grass",
                        "--size", "32", "--train", "2", "--test-good", "1", "--test-defect", "1"],
                       cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "1 category (grass)" in lines[0] and "2 train" in lines[0]
    assert len(load_masks(find_samples(out, "grass", "test"), (32, 32))) == 5
    r = subprocess.run([sys.executable, "-m", "train.demo_data", "--out", str(out), "--categories", "wood"],
                       cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "wood" in r.stderr
