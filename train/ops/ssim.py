"""SSIM with a Gaussian window, and its luminance / contrast-structure parts (for losses and MS-SSIM).

Formula (Wang et al. 2004), per channel, with a Gaussian-weighted local mean E[.]:
    l  = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)
    cs = (2 cov_xy + c2)   / (var_x + var_y + c2)        (population variance, i.e. skimage's
                                                         use_sample_covariance=False)
    ssim_map = l * cs
Constants c1 = 0.01^2, c2 = 0.03^2 assume images in [0, 1] (data_range = 1).

Padding: 'reflect' (mirror without repeating the edge pixel, OpenCV's BORDER_REFLECT_101), applied before the
'valid' convolutions so the output keeps the input size. Zero padding would darken mu near the border and give
the network a loss that is distorted at the frame edges; reflect keeps border statistics plausible. Inside a margin of
size // 2 pixels the padding does not matter, and there the map equals scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)` (which
itself drops that margin from its mean). Reflect padding needs H, W > size // 2.

The Gaussian blur is separable: one depthwise 1 x K conv and one K x 1 conv over all five statistics
(x, y, x^2, y^2, x*y) at once, instead of a K x K conv per statistic.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

C1 = 0.01 ** 2
C2 = 0.03 ** 2


def gaussian_kernel1d(sigma: float, size: int) -> torch.Tensor:
    """A normalised 1-D Gaussian of `size` taps centred on the middle tap, float32."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian window size must be a positive odd number, got {size}")
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    r = (size - 1) / 2.0
    t = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (g / g.sum()).to(torch.float32)


def _blur(stack: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of every channel of `stack` (N, C, H, W), reflect padding, same size."""
    # Python ints (constants under tracing): the exported depthwise weights need a static shape.
    c = int(stack.shape[1])
    k = int(kernel.shape[0])
    p = k // 2
    x = F.pad(stack, (p, p, p, p), mode="reflect")
    kern = kernel.to(dtype=x.dtype, device=x.device)
    # Depthwise convs (groups=C): ~20x faster on CPU than folding channels into the batch axis.
    x = F.conv2d(x, kern.reshape(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, kern.reshape(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _components(
    x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, c1: float, c2: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    if not torch.jit.is_tracing() and (x.shape != y.shape or x.dim() != 4):
        raise ValueError(
            f"SSIM needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    c = x.shape[1]
    mu = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel)
    mu_x, mu_y, e_xx, e_yy, e_xy = torch.split(mu, c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = e_xx - mu_xx
    var_y = e_yy - mu_yy
    cov = e_xy - mu_xy
    luminance = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    return luminance, cs


def ssim_components(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 1.5,
    size: int = 11,
    c1: float = C1,
    c2: float = C2,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(luminance_map, contrast_structure_map), each (N, C, H, W), for images in [0, 1]."""
    return _components(x, y, gaussian_kernel1d(sigma, size), c1, c2)


def ssim_map(x, y, sigma: float = 1.5, size: int = 11, c1: float = C1, c2: float = C2) -> torch.Tensor:
    """Per-pixel, per-channel SSIM, (N, C, H, W)."""
    lum, cs = ssim_components(x, y, sigma, size, c1, c2)
    return lum * cs


def ssim(x, y, sigma: float = 1.5, size: int = 11, c1: float = C1, c2: float = C2) -> torch.Tensor:
    """Mean SSIM over batch, channels and pixels (a scalar)."""
    return ssim_map(x, y, sigma, size, c1, c2).mean()


class SSIMLoss(nn.Module):
    """1 - mean SSIM, the structural part of FAIR's reconstruction loss (MSE + (1 - SSIM))."""

    def __init__(self, sigma: float = 1.5, size: int = 11, c1: float = C1, c2: float = C2):
        super().__init__()
        self.c1, self.c2 = float(c1), float(c2)
        self.register_buffer("kernel", gaussian_kernel1d(sigma, size), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lum, cs = _components(x, y, self.kernel, self.c1, self.c2)
        return 1.0 - (lum * cs).mean()
