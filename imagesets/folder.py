"""A plain folder of good images (training only): every image file under the folder, recursively."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

from imagesets.images import IMAGE_EXTENSIONS
from runtime import sources
from imagesets.samples import GOOD, Sample
from imagesets.errors import DataError


def list_images(folder: "str | os.PathLike", recursive: bool = True) -> List[Path]:
    """Image files under ``folder`` (hidden files and folders skipped), sorted by path for a stable order: the
    runtime's folder listing (`runtime.sources.list_images`) as paths; none when the folder does not exist."""
    root = Path(folder)
    return [Path(p) for p in sources.list_images(root, recursive)] if root.is_dir() else []


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
