"""MS-SSIM + L1 (Zhao et al.) against an independent numpy / scipy computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from train.errors import ConfigError
from train.ops.msssim import ALPHA, MSSSIM, SIGMAS, window_size

C1, C2 = 0.01**2, 0.03**2


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    # 'mirror' = d c b | a b c d | c b a, torch's 'reflect'; truncate=3 gives the same taps as window_size().
    return gaussian_filter(a, sigma, mode="mirror", truncate=3.0)


def _reference(x: np.ndarray, y: np.ndarray, sigmas=SIGMAS, alpha=ALPHA):
    """Per-pixel loss map (C, H, W) of one image pair (C, H, W) float64, written from the paper's equations."""
    out_ms = np.empty_like(x)
    out_l1 = np.empty_like(x)
    for ch in range(x.shape[0]):
        a, b = x[ch], y[ch]
        prod_cs = np.ones_like(a)
        for s in sigmas:
            mu_a, mu_b = _blur(a, s), _blur(b, s)
            var_a = _blur(a * a, s) - mu_a**2
            var_b = _blur(b * b, s) - mu_b**2
            cov = _blur(a * b, s) - mu_a * mu_b
            lum = (2 * mu_a * mu_b + C1) / (mu_a**2 + mu_b**2 + C1)  # Eq. 2
            prod_cs *= (2 * cov + C2) / (var_a + var_b + C2)  # Eq. 4
        out_ms[ch] = lum * prod_cs  # Eq. 7: l of the largest sigma times every cs
        out_l1[ch] = _blur(np.abs(a - b), sigmas[-1])
    return alpha * (1 - out_ms) + (1 - alpha) * out_l1, out_ms


def _pair(seed: int, c: int = 3, h: int = 48, w: int = 64):
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((c, h, w)), (0, 1.5, 1.5))
    x = (x - x.min()) / (x.max() - x.min())
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    y[:, 10:20, 20:34] = 0.9  # a local defect
    return x, y


def test_window_sizes_follow_scipy_truncation():
    assert [window_size(s) for s in SIGMAS] == [5, 7, 13, 25, 49]


def test_msssim_map_and_loss_match_numpy_reference():
    pairs = [_pair(0), _pair(1)]
    x = torch.tensor(np.stack([p[0] for p in pairs]), dtype=torch.float32)
    y = torch.tensor(np.stack([p[1] for p in pairs]), dtype=torch.float32)
    metric = MSSSIM()
    ref = [_reference(p[0], p[1]) for p in pairs]
    ref_pixel = np.stack([r[0] for r in ref])
    ref_ms = np.stack([r[1] for r in ref])
    ms = metric.ms_ssim_map(x, y).double().numpy()
    pix = metric.pixel_loss(x, y).double().numpy()
    assert np.abs(ms - ref_ms).max() < 2e-4
    assert np.abs(pix - ref_pixel).max() < 2e-4
    loss = float(metric.loss(x, y))
    assert loss == pytest.approx(float(ref_pixel.mean()), abs=1e-5)
    amap = metric.anomaly_map(x, y)
    assert amap.shape == (2, 1, 48, 64)
    assert np.abs(amap.double().numpy() - ref_pixel.mean(axis=1, keepdims=True)).max() < 2e-4
    # The defect is where the map peaks (away from the borders' own errors).
    peak = np.unravel_index(int(amap[0, 0].argmax()), (48, 64))
    assert 6 <= peak[0] <= 24 and 14 <= peak[1] <= 40


def test_identical_images_give_zero_loss_and_alpha_weights_terms():
    x, _ = _pair(2)
    t = torch.tensor(x[None], dtype=torch.float32)
    assert float(MSSSIM().loss(t, t)) == pytest.approx(0.0, abs=1e-5)
    # alpha = 1: only the MS-SSIM term; alpha = 0: only the Gaussian-weighted L1 (mean ~ mean |x - y|).
    x2, y2 = _pair(3)
    a, b = torch.tensor(x2[None], dtype=torch.float32), torch.tensor(y2[None], dtype=torch.float32)
    ms = MSSSIM(alpha=1.0).loss(a, b)
    l1 = MSSSIM(alpha=0.0).loss(a, b)
    mix = MSSSIM().loss(a, b)
    assert float(mix) == pytest.approx(0.84 * float(ms) + 0.16 * float(l1), rel=1e-5)
    assert float(l1) == pytest.approx(float((a - b).abs().mean()), rel=0.05)


def test_loss_gradient_flows():
    x, y = _pair(4)
    a = torch.tensor(x[None], dtype=torch.float32, requires_grad=True)
    MSSSIM().loss(a, torch.tensor(y[None], dtype=torch.float32)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and float(a.grad.abs().sum()) > 0


def test_too_small_image_and_bad_alpha_are_config_errors():
    with pytest.raises(ConfigError, match="too small"):
        MSSSIM().loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="alpha"):
        MSSSIM(alpha=1.5)
