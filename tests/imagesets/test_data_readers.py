"""Readers for the MVTec/MPDD layout, VisA's 1cls.csv and a plain folder; layout detection and loading."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imagesets import ImageCache, Sample, find_samples, list_categories, load_images, load_masks
from train.errors import ConfigError, DataError


def _img(path: Path, h=20, w=30, value=100, gray=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w) if gray else (h, w, 3), value, np.uint8)
    ok, buf = cv2.imencode(path.suffix, arr)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _mask(path: Path, h=20, w=30, box=(2, 6, 3, 9)):
    m = np.zeros((h, w), np.uint8)
    m[box[0]:box[1], box[2]:box[3]] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", m)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _mvtec(root: Path, cat="widget", mpdd=False):
    c = root / cat
    for i in range(3):
        _img(c / "train" / "good" / f"{i:03d}.png", 20 + i, 30)  # sizes vary
    _img(c / "train" / "good" / "003.JPG", 25, 25, gray=True)
    (c / "train" / "good" / "notes.txt").write_text("not an image")
    _img(c / "test" / "good" / "000.png")
    for d in ("crack", "hole"):
        for i in range(2):
            _img(c / "test" / d / f"{i:03d}.png")
            name = f"{i:03d}.png" if mpdd else f"{i:03d}_mask.png"
            _mask(c / "ground_truth" / d / name)
    return c


def test_mvtec_train_and_test(tmp_path):
    _mvtec(tmp_path)
    train = find_samples(str(tmp_path), "widget", "train")
    assert [Path(s.path).name for s in train] == ["000.png", "001.png", "002.png", "003.JPG"]
    assert all(s.label == 0 and s.defect_type == "good" and s.mask_path is None for s in train)
    test = find_samples(str(tmp_path), "widget", "test")
    assert [(s.defect_type, s.label) for s in test] == [("good", 0)] + [("crack", 1)] * 2 + [("hole", 1)] * 2
    for s in test[1:]:
        assert Path(s.mask_path).name == Path(s.path).stem + "_mask.png"
        assert Path(s.mask_path).parent.name == s.defect_type
    assert isinstance(test[0], Sample)
    with pytest.raises(Exception):
        test[0].label = 1  # frozen


def test_mpdd_style_masks_without_suffix(tmp_path):
    _mvtec(tmp_path, mpdd=True)
    test = find_samples(tmp_path, "widget", "test")
    assert sum(s.label for s in test) == 4
    assert all(Path(s.mask_path).name == Path(s.path).name for s in test if s.label)


def test_category_folder_itself_and_category_listing(tmp_path):
    c = _mvtec(tmp_path)
    _mvtec(tmp_path, "gadget")
    assert list_categories(tmp_path) == ["gadget", "widget"]
    assert len(find_samples(c, None, "train")) == 4  # DATA is the category folder
    assert len(find_samples(c, "widget", "test")) == 5
    with pytest.raises(DataError, match="gadget, widget.*give a category"):
        find_samples(tmp_path, None, "train")  # a root of categories is never read as a plain folder


def test_missing_mask_names_image_and_expected_path(tmp_path):
    c = _mvtec(tmp_path)
    (c / "ground_truth" / "hole" / "001_mask.png").unlink()
    with pytest.raises(DataError) as e:
        find_samples(tmp_path, "widget", "test")
    msg = str(e.value)
    assert "hole/001.png" in msg.replace("\\", "/")
    assert "ground_truth/hole/001_mask.png" in msg.replace("\\", "/")
    assert "\n" not in msg


def test_unknown_category_lists_known_ones(tmp_path):
    _mvtec(tmp_path, "bottle")
    _mvtec(tmp_path, "cable")
    with pytest.raises(DataError, match="'screw' not found.*bottle, cable"):
        find_samples(tmp_path, "screw", "train")


def test_empty_and_mislaid_splits(tmp_path):
    c = tmp_path / "cat"
    (c / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images in .*train[/\\]good; expected the MVTec layout CATEGORY/train/good"):
        find_samples(tmp_path, "cat", "train")
    _img(c / "train" / "a.png")  # images directly in train/
    with pytest.raises(DataError, match=r"found 1 images directly in .*move them into train/good"):
        find_samples(tmp_path, "cat", "train")
    with pytest.raises(DataError, match=r"no test folder"):
        find_samples(tmp_path, "cat", "test")
    _img(c / "test" / "b.png")
    with pytest.raises(DataError, match=r"directly in .*test.*sort them"):
        find_samples(tmp_path, "cat", "test")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="neither train/ nor test/"):
        find_samples(tmp_path, "other", "train")


def test_missing_data_folder_and_bad_split(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_samples(tmp_path / "nope", "cat", "train")
    with pytest.raises(ConfigError, match="split 'val'"):
        find_samples(tmp_path, "cat", "val")


def test_plain_folder_recursive_train_only(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "sub" / "b.bmp", 10, 40)
    _img(tmp_path / "sub" / "deeper" / "c.TIF", gray=True)
    _img(tmp_path / ".hidden" / "d.png")
    (tmp_path / "readme.md").write_text("x")
    s = find_samples(tmp_path, None, "train")
    assert [Path(x.path).name for x in s] == ["a.png", "b.bmp", "c.TIF"]
    assert all(x.label == 0 and x.mask_path is None for x in s)
    with pytest.raises(DataError, match="training only"):
        find_samples(tmp_path, None, "test")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images in"):
        find_samples(empty, None, "train")


def _visa(root: Path):
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        for i in range(3):
            p = f"{obj}/Data/Images/Normal/{i:03d}.JPG"
            _img(root / p)
            rows.append(f"{obj},{'train' if i < 2 else 'test'},normal,{p},")
        p, m = f"{obj}/Data/Images/Anomaly/000.JPG", f"{obj}/Data/Masks/Anomaly/000.png"
        _img(root / p)
        _mask(root / m)
        rows.append(f"{obj},test,anomaly,{p},{m}")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")


def test_visa_csv(tmp_path):
    _visa(tmp_path)
    assert list_categories(tmp_path) == ["candle", "pcb1"]
    train = find_samples(tmp_path, "candle", "train")
    assert len(train) == 2 and all(s.label == 0 for s in train)
    test = find_samples(tmp_path, "pcb1", "test")
    assert [(s.label, s.defect_type) for s in test] == [(0, "good"), (1, "anomaly")]
    assert Path(test[1].mask_path).is_file() and Path(test[1].path).is_file()
    with pytest.raises(DataError, match="'capsules' is not in .*candle, pcb1"):
        find_samples(tmp_path, "capsules", "train")
    with pytest.raises(DataError, match="VisA.*candle, pcb1"):
        find_samples(tmp_path, None, "train")
    (tmp_path / "pcb1/Data/Masks/Anomaly/000.png").unlink()
    with pytest.raises(DataError, match="has no mask"):
        find_samples(tmp_path, "pcb1", "test")


def test_visa_bad_header(tmp_path):
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,a.png\n")
    with pytest.raises(DataError, match="lacks the column.*label"):
        find_samples(tmp_path, "candle", "train")


def test_load_images_and_masks_resize_to_one_array(tmp_path):
    _mvtec(tmp_path)
    test = find_samples(tmp_path, "widget", "test")
    imgs = load_images(test, (16, 24), progress=False)
    assert imgs.shape == (5, 16, 24, 3) and imgs.dtype == np.uint8
    assert (imgs == 100).all()
    masks = load_masks(test, (10, 15))
    assert masks.shape == (5, 10, 15) and masks.dtype == bool
    assert not masks[0].any()  # good image: all zeros
    # mask box rows 2:6, cols 3:9 of 20x30 -> rows 1:3, cols 1.5:4.5 at half size
    assert masks[1].sum() > 0 and masks[1][1:3, 2:4].all() and not masks[1][5:, :].any()
    train = find_samples(tmp_path, "widget", "train")  # varying sizes and a grayscale JPEG
    arr = load_images(train, (32, 32), progress=True)
    assert arr.shape == (4, 32, 32, 3)


def test_image_cache_decodes_once(tmp_path):
    _mvtec(tmp_path)
    s = find_samples(tmp_path, "widget", "train")
    cache = ImageCache()
    a = cache.images(s, (16, 16), progress=False)
    b = cache.images(s, (16, 16), progress=False)
    assert a is b and not a.flags.writeable
    assert cache.images(s, (8, 8), progress=False).shape == (4, 8, 8, 3)


def test_corrupt_image_in_data_set_names_it(tmp_path):
    c = _mvtec(tmp_path)
    (c / "train" / "good" / "001.png").write_bytes(b"garbage")
    s = find_samples(tmp_path, "widget", "train")
    with pytest.raises(DataError, match=r"001\.png could not be decoded"):
        load_images(s, (16, 16), progress=False)
