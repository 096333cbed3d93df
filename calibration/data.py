"""Which images calibration may use, chosen deterministically, and the guard that keeps test splits out.

Calibration fits numbers (INT8 ranges, a threshold) and must never fit them on the images it is later judged
on. Every entry point therefore passes its data path through `refuse_test_split`, which refuses a path inside
a data set's ``test/`` split (or its ``ground_truth/``), and takes images only from the training split
(``CATEGORY/train/good``, VisA's train rows) or from a plain folder the user names.

Selections are deterministic: samples are sorted by path; ``spread`` takes evenly spaced images (covering the
whole folder, not its first files); ``holdout`` takes the last fraction in sorted order. Frames are decoded
and resized on the host exactly as the runtime does (`imagesets.load_images`: INTER_AREA to shrink,
INTER_LINEAR to enlarge) at the manifest's input size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from calibration.errors import CalibrationError, TestSplitRefused
from runtime.frames import rgb_to_model_order
from imagesets import find_samples, list_categories, list_images, load_images
from imagesets.samples import DEFECT, GOOD, Sample
from imagesets.subsets import split_holdout, spread as spread_samples
from imagesets.visa import is_visa

#: Folder names that mark evaluation data in the MVTec / MPDD layout.
TEST_FOLDERS = ("test", "ground_truth")
#: Sub-folders of a labelled validation folder that hold no images to score.
NOT_IMAGE_CLASSES = ("ground_truth", "masks", "mask")


def _looks_like_test_split(folder: Path) -> bool:
    """`folder` is named test/ground_truth and sits in a category folder (a sibling train/, test/ or
    ground_truth/), or is a test folder that holds good/."""
    name = folder.name.lower()
    if name not in TEST_FOLDERS:
        return False
    parent = folder.parent
    if any((parent / sib).is_dir() for sib in ("train", "ground_truth") if sib != name):
        return True
    return name == "test" and (folder / "good").is_dir()


def refuse_test_split(path: "str | os.PathLike", category: Optional[str] = None, what: str = "--data") -> None:
    """Raise TestSplitRefused when `path` (or `path/category`) lies inside a test split or ground truth, or is
    a folder inside a VisA data set (whose image folders mix the train and test splits)."""
    p = Path(os.path.expanduser(str(path))).resolve()
    for root in p.parents:
        if is_visa(root):
            raise TestSplitRefused(
                f"{what} {p} lies inside the VisA data set {root}, whose folders mix the train and test splits: "
                f"give {what} {root} and a category, so that split_csv/1cls.csv picks the training images")
    candidates = [p / category, p] if category else [p]
    for cand in candidates:
        for folder in [cand] + list(cand.parents):
            if not _looks_like_test_split(folder):
                continue
            if what == "--val":
                raise TestSplitRefused(
                    f"--val {cand} lies inside the test split {folder}: the F1 threshold must not be fitted on the "
                    f"images it is judged on; give a separate folder of labelled validation images (good/ and one "
                    f"sub-folder per defect type)")
            raise TestSplitRefused(
                f"{what} {cand} lies inside the test split {folder}: calibration uses good training images "
                f"only (give the data root and --category, e.g. {what} {folder.parent.parent} "
                f"--category {folder.parent.name}, which reads {folder.parent.name}/train/good)")


def _check_samples_outside_test(samples: Sequence[Sample], what: str) -> None:
    for s in samples:
        folder = Path(s.path).resolve().parent
        for f in [folder] + list(folder.parents):
            if _looks_like_test_split(f):
                raise TestSplitRefused(f"{what}: image {s.path} lies in the test split {f}; calibration uses "
                                       f"good training images only")


def is_plain_folder(data: "str | os.PathLike", category: Optional[str]) -> bool:
    """True when `data` is a plain folder of images (no MVTec / VisA layout, no category)."""
    root = Path(data)
    if category or is_visa(root):
        return False
    if (root / "train").is_dir() or (root / "test").is_dir():
        return False
    return not list_categories(root)


def good_train_samples(data: "str | os.PathLike", category: Optional[str] = None, what: str = "--data") -> List[Sample]:
    """Good training images of `category` under `data` (or every image of a plain folder), sorted by path."""
    refuse_test_split(data, category, what)
    samples = find_samples(data, category, "train")
    good = sorted((s for s in samples if s.label == GOOD), key=lambda s: s.path)
    if not good:
        where = f"{data}" + (f" (category {category})" if category else "")
        raise CalibrationError(f"no good training images found in {where}; give a data set with "
                               f"CATEGORY/train/good/*.png or a folder of good images")
    _check_samples_outside_test(good, what)
    return good


def spread(samples: Sequence[Sample], n: Optional[int]) -> List[Sample]:
    """`n` evenly spaced samples (first and last included); all of them when n is None or >= len: the rule of
    `imagesets.subsets.spread`, with calibration's error type."""
    if n is not None and n < 1:
        raise CalibrationError(f"--images must be >= 1, got {n}")
    return spread_samples(samples, n)


def holdout(samples: Sequence[Sample], fraction: float) -> List[Sample]:
    """The last ceil(fraction * n) samples in sorted order (at least one): the same rule as `python -m train
    --holdout`, so the threshold is fit on good images that run never trained on."""
    if not 0.0 < float(fraction) <= 1.0:
        raise CalibrationError(f"--holdout must be a fraction in (0, 1], got {fraction}")
    return split_holdout(samples, fraction)[1]


def labelled_folder_samples(val: "str | os.PathLike", val_category: Optional[str] = None) -> Tuple[Path, List[Sample]]:
    """Labelled validation images: ``VAL[/CATEGORY][/val]/good/*`` (label 0) and one sub-folder per defect
    type (label 1). Never a data set's test split. Returns (folder used, samples sorted by path)."""
    root = Path(os.path.expanduser(str(val)))
    if val_category:
        root = root / val_category
    refuse_test_split(root, None, "--val")
    if not root.is_dir():
        raise CalibrationError(f"--val folder {root} does not exist; give a folder with good/ and one "
                               f"sub-folder per defect type of labelled validation images")
    if (root / "val").is_dir():
        root = root / "val"
    elif (root / "train").is_dir() or (root / "test").is_dir():
        raise TestSplitRefused(f"--val {root} is a data set category (it has train/ or test/): the F1 rule needs "
                               f"labelled validation images that are not the test split; put them in a folder "
                               f"with good/ and DEFECT/ sub-folders (or {root}/val/)")
    if not (root / "good").is_dir():
        raise CalibrationError(f"--val folder {root} has no good/ sub-folder; expected good/ and one sub-folder "
                               f"per defect type")
    samples: List[Sample] = []
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for name in classes:
        if name.lower() in NOT_IMAGE_CLASSES:
            continue
        label = GOOD if name == "good" else DEFECT
        for p in list_images(root / name, recursive=False):
            samples.append(Sample(str(p), label, name, None))
    n_good = sum(s.label == GOOD for s in samples)
    n_bad = len(samples) - n_good
    if n_good == 0 or n_bad == 0:
        raise CalibrationError(f"--val folder {root} has {n_good} good and {n_bad} defect images; the F1 rule needs "
                               f"both (good/ and at least one DEFECT/ sub-folder with images)")
    return root, sorted(samples, key=lambda s: s.path)


def load_frames(samples: Sequence[Sample], size_hw: Tuple[int, int], channel_order: str,
                progress: bool = True) -> np.ndarray:
    """uint8 (N, H, W, 3) frames at the graph's input size, resized on the host as the runtime does, in the
    model's `channel_order` (its manifest's `input.channel_order`): what its backend's `infer` takes."""
    frames = load_images(list(samples), (int(size_hw[0]), int(size_hw[1])), progress=progress)
    return rgb_to_model_order(frames, channel_order)


def relative_paths(samples: Sequence[Sample], root: "str | os.PathLike") -> List[str]:
    """Sample paths relative to `root` (for provenance records)."""
    base = os.path.abspath(str(root))
    out = []
    for s in samples:
        p = os.path.abspath(s.path)
        out.append(os.path.relpath(p, base) if p.startswith(base + os.sep) else p)
    return out


__all__ = ["refuse_test_split", "good_train_samples", "spread", "holdout", "labelled_folder_samples",
           "load_frames", "is_plain_folder", "relative_paths"]
