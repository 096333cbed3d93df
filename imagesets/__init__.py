"""Data sets, torch-free (numpy, OpenCV and the runtime's image rules): training, calibration and the benchmarks
read through it. Readers for the MVTec AD / MPDD layout, VisA's ``split_csv/1cls.csv`` and a plain folder of good
images, all returning a list of :class:`Sample`; decoding them into arrays at the model's size.

``find_samples(data, category, split)`` picks the layout:

1. VisA when ``DATA/split_csv/1cls.csv`` exists (category required);
2. MVTec/MPDD when ``DATA/CATEGORY/train`` or ``DATA/CATEGORY/test`` exists (or DATA is itself the folder
   named CATEGORY);
3. with no category: MVTec when DATA itself is a category folder (has ``train/`` or ``test/``); an error when
   DATA holds category folders; otherwise a plain folder of good images (training only; every image under
   DATA, recursively).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from imagesets.dataset import ImageCache, load_images, load_masks
from imagesets.errors import ConfigError, DataError
from imagesets.folder import list_images, read_folder
from imagesets.images import (IMAGE_EXTENSIONS, is_image_file, read_image, read_mask, resize_image,
                               resize_interpolation, resize_mask)
from imagesets.mvtec import read_mvtec
from imagesets.samples import DEFECT, GOOD, Sample
from imagesets.visa import is_visa, read_visa, visa_categories

SPLITS = ("train", "test")

__all__ = [
    "IMAGE_EXTENSIONS", "ImageCache", "Sample", "GOOD", "DEFECT", "SPLITS", "find_samples", "list_categories",
    "load_images", "load_masks", "read_image", "read_mask", "resize_image", "resize_mask", "resize_interpolation",
    "is_image_file", "list_images", "read_folder", "read_mvtec", "read_visa", "is_visa", "visa_categories",
    "DataError", "ConfigError",
]


def _is_category_dir(p: Path) -> bool:
    return (p / "train").is_dir() or (p / "test").is_dir()


def list_categories(data: "str | os.PathLike") -> List[str]:
    """Categories under a data root: VisA's objects, or the sub-folders that have ``train/`` or ``test/``."""
    root = Path(data)
    if is_visa(root):
        return visa_categories(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_category_dir(p))


def find_samples(data: "str | os.PathLike", category: Optional[str], split: str) -> List[Sample]:
    """The samples of ``split`` ('train' or 'test') of ``category`` under the data root ``data``."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass the folder that holds the categories")
    if is_visa(root):
        if not category:
            raise DataError(f"{root} is a VisA data set: give a category, one of {', '.join(visa_categories(root))}")
        return read_visa(root, category, split)
    if category:
        cat = root / category
        if cat.is_dir() and _is_category_dir(cat):
            return read_mvtec(cat, split)
        if root.name == category and _is_category_dir(root):  # DATA given as the category folder itself
            return read_mvtec(root, split)
        known = list_categories(root)
        if cat.is_dir():
            raise DataError(f"category folder {cat} has neither train/ nor test/; expected the MVTec layout "
                            f"CATEGORY/train/good/*.png, CATEGORY/test/{{good,DEFECT}}/*.png")
        there = ", ".join(known) if known else "none (no sub-folder with train/ or test/)"
        raise DataError(f"category {category!r} not found in {root}; categories there: {there}")
    if _is_category_dir(root):
        return read_mvtec(root, split)
    known = list_categories(root)
    if known:  # reading such a root as a plain folder would train on its test defects
        raise DataError(f"{root} holds the categories {', '.join(known)}: give a category")
    if split == "train":
        return read_folder(root)
    raise DataError(f"no test split in {root}: a plain image folder is for training only; give a data set in "
                    f"the MVTec or VisA layout and a category")
