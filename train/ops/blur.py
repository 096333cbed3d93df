"""Gaussian smoothing of an anomaly map as two 1-D convolutions (PatchCore/anomalib: sigma 4).

Borders: zero padding divided by the blur of an all-ones image (normalised convolution), so edge pixels are
a weighted mean of the pixels that exist. Unlike reflect padding this exports as plain Conv + Mul with a
constant and parses on every TensorRT version.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.ops.ssim import gaussian_kernel1d


def kernel_size_for(sigma: float) -> int:
    """2 * round(4 sigma) + 1 taps (truncated at 4 sigma, as anomalib/scipy do)."""
    return 2 * int(4.0 * sigma + 0.5) + 1


class GaussianBlur(nn.Module):
    """(N, 1, H, W) -> (N, 1, H, W), separable Gaussian with normalised borders; sigma <= 0 is the identity."""

    def __init__(self, sigma: float, size: Tuple[int, int]):
        super().__init__()
        self.sigma = float(sigma)
        if self.sigma <= 0:
            return
        taps = kernel_size_for(self.sigma)
        g = gaussian_kernel1d(self.sigma, taps)
        self.pad = taps // 2
        self.register_buffer("kx", g.view(1, 1, 1, taps), persistent=False)
        self.register_buffer("ky", g.view(1, 1, taps, 1), persistent=False)
        ones = torch.ones(1, 1, int(size[0]), int(size[1]))
        self.register_buffer("inv_weight", 1.0 / self._conv(ones), persistent=False)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.kx, padding=(0, self.pad))
        return F.conv2d(x, self.ky, padding=(self.pad, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return x
        return self._conv(x) * self.inv_weight
