"""Perlin noise and masks: shapes for any size, determinism from the generator, {0, 1} masks, lattice zeros."""
from __future__ import annotations

import pytest
import torch

from train.synthesis.perlin import perlin_mask, perlin_masks, perlin_noise, rotate_fields


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape,res", [((64, 64), (4, 4)), ((100, 70), (3, 32)), ((17, 33), (32, 1)), ((48, 80), (1, 1))])
def test_noise_shape_range_and_determinism(shape, res):
    a = perlin_noise(shape, res, _g(5))
    b = perlin_noise(shape, res, _g(5))
    assert a.shape == shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, perlin_noise(shape, res, _g(6)))
    assert a.abs().max() <= 1.5 and torch.isfinite(a).all()


def test_noise_is_zero_on_the_lattice_and_continuous():
    n = perlin_noise((64, 96), (4, 6), _g(1))  # cells of 16x16
    assert n[::16, ::16].abs().max() < 1e-6
    assert n.std() > 0.05
    # smooth: neighbouring pixels differ far less than the value range
    assert (n[1:] - n[:-1]).abs().max() < 0.2 and (n[:, 1:] - n[:, :-1]).abs().max() < 0.2


def test_noise_on_a_padded_field_is_the_crop_of_the_multiple_size():
    # 50 rows with 4 cells -> cells of 13 rows; the same as the top of a 52-row field with the same gradients
    a = perlin_noise((50, 40), (4, 4), _g(3))
    b = perlin_noise((52, 40), (4, 4), _g(3))
    torch.testing.assert_close(a, b[:50])


def test_masks_binary_deterministic_any_size():
    for shape in [(64, 64), (48, 112), (37, 21)]:
        m = perlin_mask(shape, _g(2))
        assert m.shape == shape and m.dtype == torch.float32
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(m, perlin_mask(shape, _g(2)))
    ms = perlin_masks(16, (64, 64), _g(4))
    assert ms.shape == (16, 64, 64)
    assert ms.sum() > 0  # some defect area over 16 masks
    assert (ms.mean(dim=(1, 2)) < 0.6).all()
    assert not torch.equal(ms[0], ms[1])


def test_scale_range_controls_blob_size():
    coarse = perlin_masks(12, (64, 64), _g(0), min_scale_exp=0, max_scale_exp=1)  # one cell: few big regions
    fine = perlin_masks(12, (64, 64), _g(0), min_scale_exp=5, max_scale_exp=6)  # 32 cells per axis
    def edges(m):
        return ((m[:, 1:] != m[:, :-1]).float().sum() / m.sum().clamp(min=1)).item()
    assert edges(fine) > edges(coarse)


def test_rotation_keeps_aspect_ratio_in_pixel_space():
    f = torch.zeros((1, 40, 80))
    f[0, 19:21, 30:50] = 1.0  # a horizontal bar, 20 px long
    r = rotate_fields(f, torch.tensor([90.0]))
    ys, xs = torch.nonzero(r[0] > 0.5, as_tuple=True)
    assert (ys.max() - ys.min()) >= 16 and (xs.max() - xs.min()) <= 4  # now vertical and still ~20 px
