"""Which good images `calibration.threshold` scores, and the guard that keeps out images the model learned from.

- ``--data`` in the MVTec / MPDD / VisA layout: the last ``--holdout`` fraction (default 0.2) of train/good in
  sorted path order, the rule `python -m train` holds out by default.
- ``--data`` a plain folder: all of its images (``--holdout`` takes the last fraction instead).
- ``--images N`` keeps N of them, evenly spaced.

Whatever the selection, every image file is hashed and compared with the run's record of the images it was
fitted or trained on (``images.json`` in the run folder, `imagesets.fingerprints`, found through the manifest's
``source_run``): a match is refused with one line naming the images. A run without a record (trained before
runs kept one) cannot be checked; the provenance and a warning say so.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from calibration.data import (good_train_samples, holdout as take_holdout, is_plain_folder, load_frames, relative_paths,
                              spread)
from calibration.errors import CalibrationError
from imagesets.fingerprints import read_image_record, seen_images

DEFAULT_HOLDOUT = 0.2


def good_images(data: "str | os.PathLike", category: Optional[str], holdout: Optional[float],
                images: Optional[int]) -> Tuple[list, Dict[str, Any]]:
    """The good images to score and a description of the rule that picked them."""
    pool = good_train_samples(data, category, "--data")
    root = os.path.abspath(os.fspath(data))
    if is_plain_folder(data, category):
        chosen = take_holdout(pool, holdout) if holdout is not None else pool
        desc: Dict[str, Any] = {
            "source": "folder", "data": root, "available": len(pool),
            "selection": ("all images of the folder" if holdout is None else
                          f"the last {holdout:.0%} of the folder in sorted path order"),
        }
    else:
        frac = DEFAULT_HOLDOUT if holdout is None else float(holdout)
        chosen = take_holdout(pool, frac)
        desc = {
            "source": "holdout", "data": root, "category": category, "split": "train/good", "fraction": frac,
            "available": len(pool),
            "selection": f"the last {frac:.0%} of the good training images in sorted path order",
        }
    if images is not None:
        if int(images) < 1:
            raise CalibrationError(f"--images must be >= 1, got {images}")
        if int(images) < len(chosen):
            chosen = spread(chosen, int(images))
            desc["selection"] += f", {len(chosen)} of them evenly spaced (--images)"
    desc["used"] = len(chosen)
    desc["files"] = relative_paths(chosen, data)
    return chosen, desc


def check_unseen(paths: Sequence[str], source_run: Optional[str], desc: Dict[str, Any]) -> Optional[str]:
    """Refuse `paths` the run learned from (CalibrationError naming them); record the check in `desc`. Returns
    a warning when the run keeps no record of its images."""
    if not source_run:
        desc["unseen"] = "not checked: the manifest names no training run"
        return None
    record = read_image_record(source_run)
    if record is None:
        desc["unseen"] = "not checked: the model's run keeps no record of the images it learned from"
        return ("the model's run (manifest source_run) keeps no record of its training images, so these images "
                "could not be checked against the images it was trained on: the false-alarm rate may exceed the "
                "target if it saw them; "
                "train again (runs now record content hashes) or use good images it cannot have seen")
    seen = seen_images(paths, record)
    if seen:
        shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        raise CalibrationError(
            f"{len(seen)} of the {len(paths)} calibration images were used to fit or train the model ({shown}): "
            f"their scores run low and the threshold would let false alarms through; calibrate on good images it "
            f"never saw (the default hold-out of `python -m train`, --source with new frames, or a folder)")
    desc["unseen"] = (f"checked: none of these images is among the {len(record)} the run learned from "
                      f"(content sha256)")
    return None


def data_text(desc: Dict[str, Any]) -> str:
    if desc.get("source") == "frames":
        return f"{desc['spec']}: {desc['selection']} ({desc['used']} frames)"
    where = desc["data"]
    if desc.get("category"):
        where = os.path.join(where, desc["category"], "train", "good")
    return f"{where}: {desc['selection']} ({desc['used']} of {desc['available']} images)"


def paths_of(samples: Sequence[Any]) -> List[str]:
    return [str(s.path) for s in samples]


def good_frames(manifest, data, category, source, frames, every, holdout, images, progress):
    """(frames in the model's order, names, description, warnings) of the good images; images the run
    learned from are refused here, before the model is loaded."""
    size_hw, order = manifest.input.size, manifest.input.channel_order
    warnings: List[str] = []
    if source is not None:
        from calibration.source_frames import read_source_frames

        batch, names, desc = read_source_frames(str(source), frames, size_hw, order, every, progress)
        if desc["kind"] == "folder":
            warning = check_unseen(names, manifest.source_run, desc)
            names = [os.path.relpath(n, desc["data"]) for n in names]
        else:
            warning = None
            desc["unseen"] = ("not checkable: video, stream or camera frames have no files to hash; show the "
                              "source good parts the model was not fitted on")
        desc["files"] = names
    else:
        goods, desc = good_images(data, category, holdout, images)
        warning = check_unseen(paths_of(goods), manifest.source_run, desc)
        batch, names = load_frames(goods, size_hw, order, progress), list(desc["files"])
    if warning:
        warnings.append(warning)
    return batch, names, desc, warnings


__all__ = ["DEFAULT_HOLDOUT", "good_images", "check_unseen", "data_text", "paths_of", "good_frames"]
