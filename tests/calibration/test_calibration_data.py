"""calibration.data: the test-split guard and the deterministic image selections."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from calibration.data import (good_train_samples, holdout, is_plain_folder, labelled_folder_samples,
                              refuse_test_split, spread)
from calibration.errors import CalibrationError, TestSplitRefused


def _img(folder, name):
    os.makedirs(folder, exist_ok=True)
    cv2.imwrite(os.path.join(folder, name), np.full((8, 8, 3), 100, np.uint8))


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "mvtec"
    for i in range(7):
        _img(str(root / "cat" / "train" / "good"), f"{i:03d}.png")
    _img(str(root / "cat" / "test" / "good"), "000.png")
    _img(str(root / "cat" / "test" / "hole"), "000.png")
    _img(str(root / "cat" / "ground_truth" / "hole"), "000_mask.png")
    return root


def test_refuses_paths_inside_a_test_split(data):
    for bad in ("cat/test", "cat/test/good", "cat/test/hole", "cat/ground_truth/hole"):
        with pytest.raises(TestSplitRefused, match="test split"):
            refuse_test_split(data / bad)
    with pytest.raises(TestSplitRefused):
        refuse_test_split(data / "cat", "test")  # category 'test' of a category folder: still its test split
    refuse_test_split(data, "cat")
    refuse_test_split(data / "cat" / "train" / "good")


def test_a_folder_merely_named_test_is_not_a_split(tmp_path):
    folder = tmp_path / "test" / "goods"  # no sibling train/ or ground_truth/, no good/ inside
    _img(str(folder), "a.png")
    refuse_test_split(folder)
    assert [os.path.basename(s.path) for s in good_train_samples(folder)] == ["a.png"]
    assert is_plain_folder(folder, None)


def test_good_train_samples_reads_train_good_only(data):
    samples = good_train_samples(data, "cat")
    assert [os.path.basename(s.path) for s in samples] == [f"{i:03d}.png" for i in range(7)]
    assert all(os.sep + "train" + os.sep in s.path and s.label == 0 for s in samples)
    assert not is_plain_folder(data, "cat") and not is_plain_folder(data / "cat", None)


def test_spread_and_holdout_are_deterministic(data):
    samples = good_train_samples(data, "cat")
    names = lambda ss: [os.path.basename(s.path) for s in ss]  # noqa: E731
    assert names(spread(samples, 3)) == ["000.png", "003.png", "006.png"]
    assert names(spread(samples, 50)) == names(samples)
    assert names(holdout(samples, 0.2)) == ["005.png", "006.png"]  # ceil(0.2 * 7) = 2, last in sorted order
    assert names(holdout(samples, 0.01)) == ["006.png"]
    with pytest.raises(CalibrationError):
        holdout(samples, 0.0)


def test_labelled_validation_folder(tmp_path, data):
    val = tmp_path / "val"
    _img(str(val / "good"), "g.png")
    _img(str(val / "scratch"), "s.png")
    _img(str(val / "ground_truth" / "scratch"), "s_mask.png")
    root, samples = labelled_folder_samples(val)
    assert root == val
    assert [(os.path.basename(s.path), s.label, s.defect_type) for s in samples] == [
        ("g.png", 0, "good"), ("s.png", 1, "scratch")]
    with pytest.raises(TestSplitRefused):
        labelled_folder_samples(data, "cat")  # a category with train/ and test/ is not a validation folder
    _img(str(tmp_path / "only_good" / "good"), "g.png")
    with pytest.raises(CalibrationError, match="needs both"):
        labelled_folder_samples(tmp_path / "only_good")


def test_refuses_a_folder_inside_a_visa_data_set(tmp_path):
    root = tmp_path / "visa"
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("object,split,label,image,mask\n"
                                                "candle,train,normal,candle/Data/Images/Normal/000.JPG,\n")
    _img(str(root / "candle" / "Data" / "Images" / "Normal"), "000.JPG")
    with pytest.raises(TestSplitRefused, match="VisA"):
        refuse_test_split(root / "candle" / "Data" / "Images" / "Normal")
    with pytest.raises(TestSplitRefused, match="VisA"):
        refuse_test_split(root / "candle")
    refuse_test_split(root, "candle")  # the csv decides the split: fine
