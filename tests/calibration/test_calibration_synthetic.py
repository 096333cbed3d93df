"""calibration.synthetic: seeded synthetic defects on calibration frames."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.synthetic import KINDS, add_defect, with_defects


def _frames(n=8, size=32):
    rng = np.random.default_rng(0)
    return (100 + rng.integers(0, 20, (n, size, size, 3))).astype(np.uint8)


def test_every_frame_gets_one_local_defect_deterministically():
    frames = _frames()
    a, b = with_defects(frames, seed=3), with_defects(frames, seed=3)
    assert a.dtype == np.uint8 and a.shape == frames.shape
    assert np.array_equal(a, b)  # seeded
    assert not np.array_equal(a, with_defects(frames, seed=4))
    changed = (a != frames).any(axis=-1).mean(axis=(1, 2))
    assert np.all(changed > 0) and np.all(changed < 0.5)  # a defect, not a new image
    assert np.array_equal(frames, _frames())  # input untouched


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind(kind):
    frames = _frames(2)
    donor = np.full_like(frames[1], 250)
    out = add_defect(frames[0], donor, np.random.default_rng(1), kind)
    assert out.shape == frames[0].shape and (out != frames[0]).any()
    with pytest.raises(ValueError):
        add_defect(frames[0], donor, np.random.default_rng(1), "smudge")
