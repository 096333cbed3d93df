"""Content hashes of the images a run was fitted or trained on, so that calibration can refuse them.

A threshold fitted on images the model has seen sits too low (their scores run low) and the line sees more false
alarms than it was promised. Paths do not tell (a copy, a renamed folder), content does: the run folder gets
``images.json`` with the sha256 of every image file it learned from, and `calibration.threshold` hashes the
images it is about to use and refuses any that match. Stdlib only (calibration imports this without torch).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from runtime.files import write_json

#: file in a run folder: {"sha256": {hash: path relative to the data root}, "root": data root, "count": n}
IMAGES = "images.json"


def file_sha256(path: "str | os.PathLike") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_record(paths: Iterable["str | os.PathLike"], root: "str | os.PathLike") -> Dict[str, object]:
    """The record of a run's training images: their content hashes and paths relative to `root`."""
    base = os.path.abspath(os.fspath(root))
    hashes: Dict[str, str] = {}
    for p in paths:
        full = os.path.abspath(os.fspath(p))
        rel = os.path.relpath(full, base) if full.startswith(base + os.sep) else full
        hashes[file_sha256(full)] = rel
    return {"root": base, "count": len(hashes), "sha256": hashes}


def write_image_record(run_dir: "str | os.PathLike", paths: Iterable["str | os.PathLike"],
                       root: "str | os.PathLike") -> Path:
    out = Path(run_dir) / IMAGES
    write_json(out, image_record(paths, root))
    return out


def read_image_record(run_dir: "str | os.PathLike | None") -> Optional[Dict[str, str]]:
    """{sha256: path} of the images a run learned from, or None when the run has no record (an older run)."""
    if not run_dir:
        return None
    try:
        with open(Path(run_dir) / IMAGES) as f:
            return dict(json.load(f)["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def seen_images(paths: Iterable["str | os.PathLike"], record: Dict[str, str]) -> List[str]:
    """The paths among `paths` whose content is in `record` (images the run learned from)."""
    return [os.fspath(p) for p in paths if file_sha256(p) in record]


__all__ = ["IMAGES", "file_sha256", "image_record", "write_image_record", "read_image_record", "seen_images"]
