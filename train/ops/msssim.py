"""MS-SSIM + L1 of Zhao, Gallo, Frosio & Kautz (2017), the loss and the anomaly map of noise-to-norm.

Multi-sigma form, at full resolution (no image pyramid): for Gaussian windows sigma_1..sigma_M =
0.5, 1, 2, 4, 8, per pixel p and channel,

    MS-SSIM(p) = l_M(p) * prod_j cs_j(p)            (paper Eq. 7; l and cs from train.ops.ssim)

with C1 = 0.01^2 and C2 = 0.03^2 for images in [0, 1] (the paper's text writes 0.01 / 0.03; Zhao's and Wang's
constants are (K * L)^2 with K = 0.01 / 0.03 and L = 1). The per-pixel loss (Zhao's "mix"; paper Eq. 9) is

    loss(p) = alpha * (1 - MS-SSIM(p)) + (1 - alpha) * (G_sigmaM * |x - y|)(p),      alpha = 0.84

where G_sigmaM * |x - y| is the L1 error weighted by the Gaussian of the largest sigma around p (Zhao computes
the loss for the centre pixel of a patch; sliding that over the image is a convolution). Training averages it
over pixels, channels and batch (Eq. 8 and 9).

Anomaly map: the paper (Sec. 3.3, last sentence) says only that "anomaly localization [is computed] by computing
the MS-SSIM and l1 error for each pixel", without the combination. We use the same per-pixel expression as the
loss, loss(p) above, averaged over the three colour channels, so that inspection scores exactly the error the
network was trained to minimise. The paper mentions no mean filter; the image score is the map's maximum.

Windows: each Gaussian is truncated at 3 sigma (size 2 * int(3 sigma + 0.5) + 1: 5, 7, 13, 25, 49 taps), the
same truncation as `scipy.ndimage.gaussian_filter(truncate=3.0)`; borders are reflect-padded as in
`train.ops.ssim` (needs H, W > 24 for sigma = 8).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from train.errors import ConfigError
from train.ops.ssim import C1, C2, _blur, _components, gaussian_kernel1d

SIGMAS: Tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
ALPHA = 0.84


def window_size(sigma: float, truncate: float = 3.0) -> int:
    """Taps of a Gaussian truncated at `truncate` sigma (scipy.ndimage's radius rule)."""
    return 2 * int(truncate * float(sigma) + 0.5) + 1


class MSSSIM(nn.Module):
    """Per-pixel MS-SSIM, the MS-SSIM + L1 loss and the per-pixel anomaly map, for images in [0, 1].

    The Gaussian kernels are non-persistent float32 buffers (constants of the exported graph).
    """

    def __init__(
        self,
        sigmas: Sequence[float] = SIGMAS,
        alpha: float = ALPHA,
        c1: float = C1,
        c2: float = C2,
    ):
        super().__init__()
        sigmas = tuple(float(s) for s in sigmas)
        if not sigmas:
            raise ConfigError("MS-SSIM needs at least one Gaussian sigma, e.g. 0.5 1 2 4 8")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"MS-SSIM loss weight alpha={alpha} is outside [0, 1]; the paper uses 0.84")
        self.sigmas = sigmas
        self.alpha = float(alpha)
        self.c1, self.c2 = float(c1), float(c2)
        for j, s in enumerate(sigmas):
            self.register_buffer(f"kernel{j}", gaussian_kernel1d(s, window_size(s)), persistent=False)
        self.min_side = window_size(max(sigmas)) // 2 + 1

    def _kernel(self, j: int) -> torch.Tensor:
        return getattr(self, f"kernel{j}")

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # sizes are fixed at export; keep the trace free of python-int conversions
            return
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if min(h, w) < self.min_side:
            raise ConfigError(
                f"image {h}x{w} is too small for MS-SSIM with sigma={max(self.sigmas)} "
                f"(needs sides >= {self.min_side}); use a larger --image-size"
            )

    def ms_ssim_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-pixel, per-channel MS-SSIM (N, C, H, W): l of the largest sigma times every sigma's cs."""
        self._check(x, y)
        prod = None
        lum = None
        for j in range(len(self.sigmas)):
            lum, cs = _components(x, y, self._kernel(j), self.c1, self.c2)
            prod = cs if prod is None else prod * cs
        return lum * prod

    def weighted_l1(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G_sigmaM * |x - y|, per pixel and channel (N, C, H, W)."""
        return _blur(torch.abs(x - y), self._kernel(len(self.sigmas) - 1))

    def pixel_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """alpha * (1 - MS-SSIM(p)) + (1 - alpha) * G_sigmaM * L1(p), per pixel and channel (N, C, H, W)."""
        return self.alpha * (1.0 - self.ms_ssim_map(x, y)) + (1.0 - self.alpha) * self.weighted_l1(x, y)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (a scalar): the mean of `pixel_loss`."""
        return self.pixel_loss(x, y).mean()

    def anomaly_map(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W): the per-pixel loss averaged over channels."""
        return self.pixel_loss(reconstruction, image).mean(dim=1, keepdim=True)

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.anomaly_map(reconstruction, image)
