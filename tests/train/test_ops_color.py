"""Colour conversions against OpenCV (gray) and scikit-image (CIELAB, the exact CIE formula)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from train.ops.color import rgb_to_ab, rgb_to_gray, rgb_to_lab


def _images():
    rng = np.random.default_rng(0)
    return {
        "uniform": rng.random((48, 64, 3)),
        "dark": rng.random((16, 24, 3)) * 0.05,  # exercises the linear branches of sRGB and f(t)
        "ramp": np.linspace(0.0, 1.0, 16 * 16 * 3).reshape(16, 16, 3),
        "primaries": np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]]], float),
    }


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))


@pytest.mark.parametrize("name", list(_images()))
def test_gray_matches_cv2(name):
    img = _images()[name].astype(np.float32)
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    ours = rgb_to_gray(_t(img))
    assert ours.shape == (1, 1) + img.shape[:2]
    err = np.abs(ours[0, 0].numpy() - ref).max()
    assert err <= 1e-6, f"gray vs cv2 RGB2GRAY: max abs error {err:.2e} (measured 1.2e-7)"


@pytest.mark.parametrize("name", list(_images()))
def test_lab_matches_skimage(name):
    img = _images()[name]
    ref = rgb2lab(img)
    ours = rgb_to_lab(_t(img))[0].numpy().transpose(1, 2, 0)
    err = np.abs(ours - ref).max()
    assert err <= 1e-3, f"Lab vs skimage rgb2lab: max abs error {err:.2e} (measured <= 5.2e-5 in float32)"


def test_lab_close_to_cv2_lut():
    # OpenCV's float RGB2Lab interpolates a look-up table (not the exact formula): measured 0.38 from ours on
    # this image (0.61 between OpenCV and scikit-image on a 256x256 one), so it is a loose sanity check only.
    img = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    ours = rgb_to_lab(_t(img))[0].numpy().transpose(1, 2, 0)
    err = np.abs(ours - ref).max()
    assert err <= 1.0, f"Lab vs cv2 RGB2Lab: max abs error {err:.2e}"


def test_lab_finite_with_gradients_out_of_range():
    # Values outside [0, 1] must not produce NaN values or NaN gradients (torch.where evaluates both branches).
    x = torch.tensor([-0.5, -1e-3, 0.0, 1e-4, 0.04045, 0.5, 1.0, 1.5]).reshape(1, 1, 1, 8).repeat(1, 3, 1, 1)
    x.requires_grad_(True)
    lab = rgb_to_lab(x)
    lab.sum().backward()
    assert torch.isfinite(lab).all() and torch.isfinite(x.grad).all()


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB batch"):
        rgb_to_lab(torch.zeros(1, 1, 4, 4))


def test_ab_is_the_chroma_of_lab():
    # The scorer's colour term uses rgb_to_ab (one conv); it must be exactly Lab's a*, b* channels.
    img = _t(np.random.default_rng(2).random((20, 30, 3)))
    ab = rgb_to_ab(img)
    assert ab.shape == (1, 2, 20, 30)
    assert torch.allclose(ab, rgb_to_lab(img)[:, 1:], atol=1e-5, rtol=0)
