"""The real ball_screw data set read as it is: counts from its README. It is not in the repository: the tests
read it from EDGE_INSPECT_DATA (a data root that holds ball_screw/, MVTec layout), else from a `shared/data`
folder beside the checkout (as the project's CI has it), and skip when neither holds it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imagesets import find_samples, list_categories, load_images, load_masks, read_image, read_mask

DATA = Path(os.environ.get("EDGE_INSPECT_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not (DATA / "ball_screw").is_dir(),
                                 reason=f"real data set absent: {DATA / 'ball_screw'} (set EDGE_INSPECT_DATA to its "
                                        f"data root)")]


def test_counts_match_the_readme():
    assert "ball_screw" in list_categories(DATA)
    train = find_samples(DATA, "ball_screw", "train")
    test = find_samples(DATA, "ball_screw", "test")
    assert len(train) == 288 and all(s.label == 0 for s in train)
    good = [s for s in test if s.label == 0]
    pitting = [s for s in test if s.label == 1]
    assert len(good) == 75 and len(pitting) == 167
    assert {s.defect_type for s in pitting} == {"pitting"}
    assert all(Path(s.mask_path).name == Path(s.path).stem + "_mask.png" for s in pitting)


def test_images_and_masks_decode_at_their_size_and_resize():
    test = find_samples(DATA, "ball_screw", "test")
    s = next(x for x in test if x.label == 1)
    img, mask = read_image(s.path), read_mask(s.mask_path)
    assert img.shape == (460, 1130, 3) and img.dtype == np.uint8
    assert mask.shape == (460, 1130) and 0 < mask.sum() < mask.size * 0.05  # pits are tiny
    few = [x for x in test if x.label == 1][:3]
    assert load_images(few, (224, 544), progress=False).shape == (3, 224, 544, 3)
    assert load_masks(few, (224, 544)).any(axis=(1, 2)).all()
