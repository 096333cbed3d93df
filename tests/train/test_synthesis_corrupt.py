"""FAIR anomaly synthesis: determinism, masks in {0, 1}, untouched pixels outside the mask, branches, shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.synthesis import (augment_textures, large_cutpaste, load_texture_folder, make_training_batch,
                             random_rotate, synthesize_anomalies)
from train.synthesis import corrupt as corrupt_mod
from train.errors import DataError


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(n=8, h=64, w=64, seed=0):
    return torch.rand(n, 3, h, w, generator=_g(seed + 100))


def test_same_seed_same_result_different_seed_differs():
    x = _batch()
    c1, m1 = synthesize_anomalies(x, _g(7))
    c2, m2 = synthesize_anomalies(x, _g(7))
    assert torch.equal(c1, c2) and torch.equal(m1, m2)
    outs = [synthesize_anomalies(x, _g(s)) for s in range(4)]
    assert any(not torch.equal(outs[0][0], o[0]) for o in outs[1:])


@pytest.mark.parametrize("h,w", [(64, 64), (48, 80), (33, 50)])
def test_shapes_range_and_binary_masks(h, w):
    x = _batch(8, h, w)
    before = x.clone()
    for seed in range(3):
        c, m = synthesize_anomalies(x, _g(seed))
        assert c.shape == (8, 3, h, w) and m.shape == (8, 1, h, w)
        assert c.dtype == x.dtype and m.dtype == x.dtype
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert c.min() >= 0 and c.max() <= 1
        # outside the mask every pixel is exactly the clean one (both branches)
        outside = (m == 0).expand_as(c)
        assert torch.equal(c[outside], x[outside])
    assert torch.equal(x, before)  # input untouched


def test_branch_probabilities_roughly_fair():
    x = _batch(8, 32, 32)
    g = _g(11)
    corrupted_images, total = 0, 0
    for _ in range(40):
        _, m = synthesize_anomalies(x, g)
        corrupted_images += int((m.flatten(1).sum(1) > 0).sum())
        total += 8
    # about half corrupted (a few Perlin masks are empty, so a little less)
    assert 0.3 < corrupted_images / total < 0.6


def test_perlin_branch_blend_and_cutpaste_rectangles(monkeypatch):
    x = _batch(8, 64, 64)
    monkeypatch.setattr(corrupt_mod, "BETA_MAX", 0.0)  # beta = 0: the texture fully replaces the masked pixels
    g = _g(3)
    seen_perlin = seen_cut = False
    for _ in range(10):
        c, m = synthesize_anomalies(x, g)
        for i in range(8):
            mi = m[i, 0]
            if mi.sum() == 0:
                assert torch.equal(c[i], x[i])
                continue
            ys, xs = torch.nonzero(mi, as_tuple=True)
            box = mi[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            if bool(box.all()) and box.numel() > 0.2 * 64 * 64:
                seen_cut = True  # a large rectangle: CutPaste
            else:
                seen_perlin = True
                inside = mi > 0
                assert (c[i][:, inside] != x[i][:, inside]).any()
    assert seen_perlin and seen_cut


def test_large_cutpaste_patch_size_and_rectangular_mask():
    for seed in range(10):
        img = torch.rand(3, 40, 60, generator=_g(seed))
        c, m = large_cutpaste(img, _g(seed))
        assert c.shape == img.shape and m.shape == (1, 40, 60)
        ys, xs = torch.nonzero(m[0], as_tuple=True)
        hh, ww = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert m.sum() == hh * ww  # a rectangle
        assert 0.4 * 40 - 1 <= hh <= 0.9 * 40 + 1 and 0.4 * 60 - 1 <= ww <= 0.9 * 60 + 1  # >= half a patch visible
        assert torch.equal(c[:, m[0] == 0], img[:, m[0] == 0])


def test_random_rotate_square_and_non_square():
    x = _batch(16, 32, 32)
    r = random_rotate(x, _g(0), p=1.0)
    for i in range(16):
        assert torch.equal(r[i], torch.rot90(x[i], 1, (1, 2))) or torch.equal(r[i], torch.rot90(x[i], -1, (1, 2)))
    y = _batch(4, 32, 48)
    r = random_rotate(y, _g(0), p=1.0)
    assert r.shape == y.shape and torch.equal(r, torch.flip(y, (2, 3)))
    assert torch.equal(random_rotate(y, _g(0), p=0.0), y)


def test_make_training_batch_target_matches_corrupted_outside_mask():
    x = _batch(8, 48, 48)
    t, c, m = make_training_batch(x, _g(5), rotate_p=1.0)
    assert not torch.equal(t, x)  # rotated target
    outside = (m == 0).expand_as(c)
    assert torch.equal(c[outside], t[outside])
    t2, c2, m2 = make_training_batch(x, _g(5), rotate_p=1.0)
    assert torch.equal(c, c2) and torch.equal(t, t2)


def test_external_textures_any_size_and_batch_of_one():
    x = _batch(1, 40, 40)
    tex = torch.rand(3, 3, 17, 23, generator=_g(9))
    got_mask = False
    for seed in range(12):
        c, m = synthesize_anomalies(x, _g(seed), textures=tex)
        assert c.shape == x.shape
        assert torch.equal(c[(m == 0).expand_as(c)], x[(m == 0).expand_as(c)])
        got_mask |= bool(m.sum() > 0)
        c1, m1 = synthesize_anomalies(x, _g(seed))  # no textures, N=1: uses itself, still well-formed
        assert c1.shape == x.shape
    assert got_mask


def test_augment_textures_stays_in_range_and_changes_colour():
    t = torch.rand(6, 3, 16, 16, generator=_g(1)) * 0.5 + torch.tensor([0.4, 0.1, 0.1])[:, None, None]
    a = augment_textures(t, _g(2))
    assert a.shape == t.shape and a.min() >= 0 and a.max() <= 1
    assert (a.mean(dim=(2, 3)) - t.mean(dim=(2, 3))).abs().max() > 0.05


def test_load_texture_folder(tmp_path):
    import cv2
    for i, (h, w) in enumerate([(10, 20), (30, 30)]):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), np.full((h, w, 3), 255 * i, np.uint8))
    t = load_texture_folder(tmp_path, (8, 12), progress=False)
    assert t.shape == (2, 3, 8, 12) and t.dtype == torch.float32
    assert t[0].max() == 0 and t[1].min() == 1
    with pytest.raises(DataError):
        load_texture_folder(tmp_path / "missing", (8, 8))
