"""MVTec AD / MPDD layout::

    ROOT/train/good/*.png
    ROOT/test/good/*.png
    ROOT/test/DEFECT/STEM.png
    ROOT/ground_truth/DEFECT/STEM_mask.png     (MPDD sometimes names it STEM.png; both are accepted)

where ROOT is ``DATA/CATEGORY``. Any image extension is read; hidden files are skipped; order is sorted
(good first, then defect types alphabetically, files by name).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from imagesets.folder import list_images
from imagesets.images import IMAGE_EXTENSIONS
from imagesets.samples import DEFECT, GOOD, Sample
from imagesets.errors import DataError

_MASK_EXTS = (".png",) + tuple(sorted(e for e in IMAGE_EXTENSIONS if e != ".png"))


def find_mask(root: Path, defect: str, stem: str) -> Optional[Path]:
    """The mask of ``test/DEFECT/STEM.*``: ``ground_truth/DEFECT/STEM_mask.<ext>`` or ``.../STEM.<ext>``
    (any image extension, PNG preferred, either case)."""
    gt = root / "ground_truth" / defect
    if not gt.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in gt.iterdir() if p.is_file()}
    for name in (stem + "_mask", stem):
        for ext in _MASK_EXTS:
            hit = by_lower.get((name + ext).lower())
            if hit is not None:
                return hit
    return None


def _layout_hint() -> str:
    return "expected the MVTec layout CATEGORY/train/good/*.png, CATEGORY/test/{good,DEFECT}/*.png"


def _read_train(root: Path) -> List[Sample]:
    good = root / "train" / "good"
    files = list_images(good, recursive=False) if good.is_dir() else []
    if not files:
        loose = list_images(root / "train", recursive=False) if (root / "train").is_dir() else []
        extra = (f" (found {len(loose)} images directly in {root / 'train'}: move them into train/good)"
                 if loose else "")
        raise DataError(f"no images in {good}; {_layout_hint()}{extra}")
    return [Sample(str(p), GOOD, "good", None) for p in files]


def _read_test(root: Path) -> List[Sample]:
    test = root / "test"
    if not test.is_dir():
        raise DataError(f"no test folder {test}; {_layout_hint()}")
    defects = sorted(d.name for d in test.iterdir() if d.is_dir() and not d.name.startswith("."))
    samples: List[Sample] = []
    for defect in ["good"] + [d for d in defects if d != "good"]:
        folder = test / defect
        if not folder.is_dir():
            continue
        for p in list_images(folder, recursive=False):
            if defect == "good":
                samples.append(Sample(str(p), GOOD, "good", None))
                continue
            mask = find_mask(root, defect, p.stem)
            if mask is None:
                expected = root / "ground_truth" / defect / f"{p.stem}_mask.png"
                raise DataError(f"defect image {p} has no mask: expected {expected} (or {p.stem}.png there); "
                                f"add the mask or move the image out of {folder}")
            samples.append(Sample(str(p), DEFECT, defect, str(mask)))
    if not samples:
        loose = list_images(test, recursive=False)
        extra = (f" (found {len(loose)} images directly in {test}: sort them into test/good and test/DEFECT)"
                 if loose else "")
        raise DataError(f"no images in {test}/*/; {_layout_hint()}{extra}")
    return samples


def read_mvtec(root: "str | os.PathLike", split: str) -> List[Sample]:
    """Samples of one category folder ``root`` (= DATA/CATEGORY) for ``split`` 'train' or 'test'."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"category folder {root} does not exist; {_layout_hint()}")
    return _read_train(root) if split == "train" else _read_test(root)
