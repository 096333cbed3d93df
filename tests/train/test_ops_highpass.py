"""High-pass inputs against NumPy's FFT (frequency filters) and OpenCV's Sobel."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from train.errors import ConfigError
from train.ops.highpass import (
    HIGHPASS_NAMES,
    FrequencyHighPass,
    SobelHighPass,
    make_highpass,
)


def _numpy_highpass(rgb: np.ndarray, kind: str, d0: float, order: int = 2) -> np.ndarray:
    """The paper's recipe, written independently: gray, fft2, fftshift, multiply, ifftshift, ifft2, real part."""
    gray = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]  # (N, H, W)
    m, n = gray.shape[-2:]
    rows, cols = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    dist = np.hypot(rows - m // 2, cols - n // 2)  # distance to the shifted spectrum's zero frequency
    if kind == "ihpf":
        h = np.where(dist <= d0, 0.0, 1.0)
    elif kind == "ghpf":
        h = 1.0 - np.exp(-dist ** 2 / (2 * d0 ** 2))
    else:
        h = np.zeros_like(dist)
        nz = dist > 0
        h[nz] = 1.0 / (1.0 + (d0 / dist[nz]) ** (2 * order))
    spec = np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1))
    out = np.fft.ifft2(np.fft.ifftshift(h * spec, axes=(-2, -1)))
    return out.real[:, None]


# Non-square and odd sizes included; d0 = 8 keeps the ideal filter non-trivial on the small images.
@pytest.mark.parametrize("size", [(32, 32), (64, 48), (33, 47), (256, 256), (224, 544)])
@pytest.mark.parametrize("kind", ["bhpf", "ghpf", "ihpf"])
def test_frequency_highpass_matches_numpy_fft(size, kind):
    d0 = 30.0 if min(size) >= 128 else 8.0
    rgb = np.random.default_rng([size[0], size[1], len(kind)]).random((2, 3) + size)
    ref = _numpy_highpass(rgb, kind, d0)
    hp = FrequencyHighPass(size, kind=kind, d0=d0)
    with torch.no_grad():
        ours = hp(torch.from_numpy(rgb).float()).numpy()
    assert ours.shape == (2, 1) + size and hp.out_channels == 1
    err = np.abs(ours - ref).max()
    assert np.abs(ref).max() > 0.01  # the filter passes something: the comparison is not 0 vs 0
    assert err <= 1e-4, f"{kind} {size}: max abs error {err:.2e} vs numpy FFT (measured <= 9e-7)"


def test_frequency_highpass_removes_dc_and_keeps_fp16_scale():
    hp = FrequencyHighPass((64, 64), kind="bhpf", d0=30.0)
    flat = torch.full((1, 3, 64, 64), 0.7)
    assert hp(flat).abs().max() < 1e-5  # a flat image has only DC: nothing passes
    # orthonormal scaling: the largest intermediate is sqrt(M N) * mean, far below FP16's 65504 at 256x256
    big = FrequencyHighPass((256, 256), kind="bhpf")
    spec = big.left @ torch.ones(256, 256) @ big.right
    assert spec.abs().max() <= 256.0 + 1e-2


def test_buffers_are_not_weights():
    hp = make_highpass("bhpf", (32, 40))
    assert len(hp.state_dict()) == 0
    assert all(b.dtype == torch.float32 for b in hp.buffers())


def test_wrong_size_is_a_config_error():
    hp = FrequencyHighPass((32, 32))
    with pytest.raises(ConfigError, match="32x32"):
        hp(torch.zeros(1, 3, 16, 16))


def _cv2_sobel(gray: np.ndarray, variant: str) -> np.ndarray:
    k = int(variant[-1])
    axes = variant[len("sobel-"):-1]
    out = []
    if "x" in axes:
        out.append(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=k))  # default border: BORDER_REFLECT_101
    if "y" in axes:
        out.append(cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=k))
    return np.stack(out)


@pytest.mark.parametrize("variant", [n for n in HIGHPASS_NAMES if n.startswith("sobel")])
def test_sobel_matches_cv2(variant):
    rgb = np.random.default_rng(3).random((40, 52, 3)).astype(np.float32)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ref = _cv2_sobel(gray, variant)
    hp = make_highpass(variant, (40, 52))
    assert isinstance(hp, SobelHighPass) and hp.out_channels == ref.shape[0]
    with torch.no_grad():
        ours = hp(torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()))[0].numpy()
    err = np.abs(ours - ref).max()
    assert err <= 1e-4, f"{variant}: max abs error {err:.2e} vs cv2.Sobel (measured <= 6.7e-6)"


def test_factory_names_and_unknown():
    for name in HIGHPASS_NAMES:
        hp = make_highpass(name, (16, 16))
        assert hp.out_channels in (1, 2)
        assert hp(torch.rand(1, 3, 16, 16)).shape == (1, hp.out_channels, 16, 16)
    with pytest.raises(ConfigError, match="known: bhpf"):
        make_highpass("laplace", (16, 16))
