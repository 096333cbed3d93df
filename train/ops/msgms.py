"""Multi-scale gradient-magnitude similarity (MSGMS), the structural half of FAIR's anomaly map.

Per colour channel and scale s: Prewitt gradients (3x3 kernels / 3), magnitude g = sqrt(gx^2 + gy^2 + 1e-12),
    GMS = (2 g1 g2 + c) / (g1^2 + g2^2 + c),   c = 0.0026   (Xue et al., GMSD),
scale 1 at full resolution, scale s > 1 on both images 2x2-average-pooled (stride 2) s - 1 times, each GMS
up-sampled back bilinearly (align_corners=False). Map = mean over channels of (1 - mean over scales of GMS),
shape (N, 1, H, W).

Padding: zero padding of 1 for the Prewitt conv, as the reference (F.conv2d(padding=1)); near the border it
reads the frame edge as a gradient, identically in both images, so it cancels in GMS where they agree.

Order of operations: the channel mean is taken before up-sampling. Bilinear interpolation is linear with
weights summing to 1, so mean_c(up(1 - g)) = 1 - up(mean_c(g)): the same numbers as the reference, for a
third of the resize work.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MSGMS(nn.Module):
    """(img1, img2) both (N, channels, H, W) -> MSGMS anomaly map (N, 1, H, W); 0 where the images agree."""

    def __init__(self, scales: int = 2, c: float = 0.0026, channels: int = 3):
        super().__init__()
        if scales < 1:
            raise ValueError(f"MSGMS needs at least one scale, got {scales}")
        self.scales = int(scales)
        self.c = float(c)
        self.channels = int(channels)
        third = 1.0 / 3.0
        px = torch.tensor([[third, 0.0, -third]] * 3, dtype=torch.float32)
        # Depthwise (groups = channels) kernels, one per colour channel: no reshapes, so the exported graph
        # is two Convs per image and scale with no shape arithmetic around them.
        self.register_buffer("prewitt_x", px.expand(self.channels, 1, 3, 3).clone(), persistent=False)
        self.register_buffer("prewitt_y", px.t().expand(self.channels, 1, 3, 3).clone(), persistent=False)

    def _magnitude(self, x: torch.Tensor) -> torch.Tensor:
        gx = F.conv2d(x, self.prewitt_x, padding=1, groups=self.channels)
        gy = F.conv2d(x, self.prewitt_y, padding=1, groups=self.channels)
        return torch.sqrt(gx * gx + gy * gy + 1e-12)

    def _gms(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ga, gb = self._magnitude(a), self._magnitude(b)
        return (2.0 * ga * gb + self.c) / (ga * ga + gb * gb + self.c)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        # Eager check only: while tracing the shapes are symbolic and the check would be baked into the trace.
        if not torch.jit.is_tracing() and (
            img1.shape != img2.shape or img1.dim() != 4 or img1.shape[1] != self.channels
        ):
            raise ValueError(
                f"MSGMS needs two (N, {self.channels}, H, W) tensors of one shape, "
                f"got {tuple(img1.shape)} and {tuple(img2.shape)}"
            )
        size = img1.shape[-2:]
        total = self._gms(img1, img2).mean(dim=1, keepdim=True)
        for _ in range(1, self.scales):
            img1 = F.avg_pool2d(img1, kernel_size=2, stride=2)
            img2 = F.avg_pool2d(img2, kernel_size=2, stride=2)
            gms = self._gms(img1, img2).mean(dim=1, keepdim=True)
            total = total + F.interpolate(gms, size=size, mode="bilinear", align_corners=False)
        return 1.0 - total / self.scales
