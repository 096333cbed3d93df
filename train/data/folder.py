"""A plain folder of good images (training only): every image file under the folder, recursively."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

from train.data.images import IMAGE_EXTENSIONS, is_image_file
from train.data.samples import GOOD, Sample
from train.errors import DataError


def list_images(folder: "str | os.PathLike", recursive: bool = True) -> List[Path]:
    """Image files under ``folder`` (hidden files and folders skipped), sorted by path for a stable order."""
    root = Path(folder)
    if recursive:
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / f for f in filenames if is_image_file(f))
    else:
        found = [p for p in root.iterdir() if p.is_file() and is_image_file(p)] if root.is_dir() else []
    return sorted(found, key=lambda p: p.as_posix())


def read_folder(folder: "str | os.PathLike") -> List[Sample]:
    """Every image under ``folder`` as a good training sample."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass a folder of good images")
    files = list_images(root)
    if not files:
        exts = " ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no images in {root} (searched recursively for {exts}); pass a folder of good images")
    return [Sample(str(p), GOOD, "good", None) for p in files]
