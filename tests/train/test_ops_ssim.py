"""SSIM against scikit-image's Gaussian-window SSIM (an independent implementation, scipy filters)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from train.ops.ssim import SSIMLoss, gaussian_kernel1d, ssim, ssim_components, ssim_map

PAD = 5  # 11-tap window: beyond 5 px from the border the padding choice cannot matter


def _smooth_pair(seed: int, c: int, h: int, w: int):
    """Two related smooth images in [0, 1], (h, w, c) float64: a box-blurred noise field and a perturbed copy."""
    rng = np.random.default_rng(seed)
    base = rng.random((h + 4, w + 4, c))
    # independent smoothing: 5x5 moving average with numpy sums
    sm = sum(base[i : i + h, j : j + w] for i in range(5) for j in range(5)) / 25.0
    other = np.clip(sm + 0.08 * rng.standard_normal(sm.shape), 0.0, 1.0)
    return sm, other


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32))


def _skimage(a, b):
    mean, full = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=2, full=True,
    )
    return mean, full


def test_gaussian_kernel_normalised_symmetric():
    k = gaussian_kernel1d(1.5, 11)
    assert k.dtype == torch.float32 and k.shape == (11,)
    assert abs(float(k.sum()) - 1.0) < 1e-6
    assert torch.allclose(k, k.flip(0))
    t = np.arange(11) - 5.0
    ref = np.exp(-0.5 * (t / 1.5) ** 2)
    ref /= ref.sum()
    assert np.abs(k.numpy() - ref).max() < 1e-7


@pytest.mark.parametrize("c,h,w", [(3, 48, 48), (1, 40, 56)])
def test_ssim_matches_skimage_inside_margin(c, h, w):
    a, b = _smooth_pair(0, c, h, w)
    mean_ref, full_ref = _skimage(a, b)
    ours = ssim_map(_t(a), _t(b))[0].numpy().transpose(1, 2, 0)
    inner = (slice(PAD, -PAD), slice(PAD, -PAD))
    err = np.abs(ours[inner] - full_ref[inner]).max()
    # float32 rounding of E[x^2] - mu^2 dominates: measured 2.5e-5 (2.3e-7 when run in float64)
    assert err < 1e-4, f"SSIM map vs skimage inside the 5-px margin: max abs error {err:.2e}"
    # skimage's scalar is the mean over exactly that cropped region
    mean_ours = float(ours[inner].mean())
    assert abs(mean_ours - mean_ref) < 1e-5, f"cropped mean {mean_ours} vs skimage {mean_ref}"
    # the full-image mean (with reflect borders) stays close too: measured 8e-3
    full_mean = float(ssim(_t(a), _t(b)))
    assert abs(full_mean - mean_ref) < 0.02, f"full-image mean {full_mean} vs skimage {mean_ref}"


def test_components_product_and_identity():
    a, b = _smooth_pair(1, 3, 32, 32)
    lum, cs = ssim_components(_t(a), _t(b))
    assert lum.shape == cs.shape == (1, 3, 32, 32)
    assert torch.allclose(lum * cs, ssim_map(_t(a), _t(b)))
    lum1, cs1 = ssim_components(_t(a), _t(a))
    assert torch.allclose(lum1, torch.ones_like(lum1), atol=1e-6)
    assert torch.allclose(cs1, torch.ones_like(cs1), atol=1e-4)


def test_loss_module_matches_function_and_has_no_state():
    a, b = _smooth_pair(2, 3, 32, 32)
    loss = SSIMLoss()
    assert len(loss.state_dict()) == 0  # the window is a non-persistent buffer
    x, y = _t(a).requires_grad_(True), _t(b)
    val = loss(x, y)
    assert val.dim() == 0
    assert abs(val.item() - (1.0 - float(ssim(_t(a), y)))) < 1e-6
    val.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
