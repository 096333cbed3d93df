"""What the refiner reads: the images to refine (a folder, or the frames the runtime flagged in its
inspect.jsonl) and the good images its pixel prior is fitted on (the run's training images by default)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from imagesets.folder import list_images
from imagesets.images import read_image, resize_image
from train.errors import DataError

INSPECT_LOG = "inspect.jsonl"


def images_in(folder: str) -> List[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--folder {folder}: not a folder; pass a folder of images")
    files = list_images(root)
    if not files:
        raise DataError(f"--folder {folder}: no image files in it")
    return [Path(f) for f in files]


def flagged_images(inspect_out: str) -> List[Path]:
    """The image files of the frames that `python -m runtime --out INSPECT_OUT` marked anomalous.

    Its inspect.jsonl holds one {"type": "result", "name": PATH, "is_anomalous": bool, ...} line per frame
    (`name` is the file path for folder and file sources, as the runtime was given it)."""
    log = Path(inspect_out) / INSPECT_LOG
    if not log.is_file():
        raise DataError(f"--flagged {inspect_out}: no {INSPECT_LOG} in it; pass the --out folder of "
                        f"`python -m runtime`")
    found: List[Path] = []
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{log} line {number} is not JSON ({exc}); was the runtime interrupted?") from None
        if record.get("type") != "result" or record.get("is_anomalous") is not True:
            continue
        name = record.get("name")
        path = Path(name) if name else None
        if path is None or not path.is_file():
            raise DataError(f"{log} line {number}: flagged frame {record.get('frame')} has no image file "
                            f"({name!r}); only frames read from image files can be refined (run from the "
                            f"folder the runtime ran in)")
        found.append(path)
    if not found:
        raise DataError(f"{log}: no frame was flagged anomalous (a model without a threshold flags none)")
    return found


def load_resized(path: Path, size_hw) -> np.ndarray:
    return resize_image(read_image(path), tuple(size_hw))


def good_images(data: Optional[str], category: Optional[str], size_hw, count: int) -> List[np.ndarray]:
    """Up to `count` good training images (evenly spread), resized to the run's size."""
    from train.data import find_samples
    from imagesets.subsets import spread

    if not data:
        raise DataError("the run records no training data; pass --data DIR (a folder of good images)")
    if not os.path.exists(data):
        raise DataError(f"the good images {data} are not there; pass --data DIR (a folder of good images)")
    samples = [s for s in find_samples(data, category, "train") if not s.is_defect]
    if not samples:
        raise DataError(f"no good training images in {data} (category {category}); pass --data DIR")
    return [load_resized(Path(s.path), size_hw) for s in spread(samples, count)]
