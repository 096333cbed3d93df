"""The reconstruction network of noise-to-norm: an M-net with pixel-shuffle sampling, residual attention and SKFF.

Layout (paper Fig. 2, with the standard forms of its blocks from refs/noise-to-norm-facts.md):

- Multi-scale input (M-net, Mehta & Sivaswamy 2017): the input is average-pooled to 1/2, 1/4, 1/8, 1/16; each
  encoder level below the first receives a 3x3-conv embedding of its own copy, concatenated with the
  down-sampled features of the level above.
- Down-sampling: pixel-unshuffle x2 then a 1x1 conv (together a learned 2x2 stride-2 conv); up-sampling: a 3x3
  conv then pixel-shuffle x2 (sub-pixel convolution). Both export as SpaceToDepth / DepthToSpace.
- Residual attention module (paper Fig. 3) after every concatenation: two paths, each starting with a 1x1 conv
  that sets the channel count; the body adds 3x3 convs and channel attention (GAP -> 1x1 -> ReLU -> 1x1 ->
  sigmoid, scaling the features); the paths are summed (residual).
- Encoder widths c, 2c, 4c, 8c at 1, 1/2, 1/4, 1/8 and an 8c bottleneck at 1/16 (capped, as in FAIR's UNet, which
  keeps c=32 near 4-5 M parameters); the decoder mirrors it with skip connections and yields four feature maps
  (1/8, 1/4, 1/2, 1).
- SKFF (MIRNet, r = 8) fuses those four maps after each is brought to width c (3x3 conv) and full resolution
  (bilinear resize), then a 3x3 conv gives 3 channels.

Output space: RGB in [0, 1] (the clean image's space), from a linear head. The loss (MS-SSIM with C1 = 0.01^2,
C2 = 0.03^2, and L1) is defined for images of dynamic range 1 in [0, 1], so the network is asked for exactly that
image; the head is linear (no sigmoid) so that black and white pixels do not sit in a saturated gradient, and the
anomaly model clamps to [0, 1] at inference only. The input is the normalised noisy image (roughly [-1, 1]).

Sizes: H and W must be multiples of 16 (four halvings); non-square is fine. Export-friendly throughout: conv,
PReLU/ReLU/LeakyReLU, sigmoid, softmax, mean, AveragePool, Resize, DepthToSpace/SpaceToDepth.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

LEVELS = 4  # encoder levels at 1, 1/2, 1/4, 1/8; plus the bottleneck at 1/16


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=False)


class ChannelAttention(nn.Module):
    """GAP -> 1x1 conv (C -> C/r) -> ReLU -> 1x1 conv (C/r -> C) -> sigmoid; scales the features."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.excite(torch.relu(self.squeeze(s))))


class ResidualAttention(nn.Module):
    """Residual attention module: shortcut 1x1 (cin -> cout) + body 1x1 -> 3x3 -> act -> 3x3 -> channel attention."""

    def __init__(self, cin: int, cout: int, reduction: int = 8):
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 1),
            _act(),
            nn.Conv2d(cout, cout, 3, padding=1),
            _act(),
            nn.Conv2d(cout, cout, 3, padding=1),
            ChannelAttention(cout, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class Down(nn.Module):
    """Pixel-unshuffle x2, then 1x1 conv (4*cin -> cout)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv = nn.Conv2d(4 * cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.unshuffle(x))


class Up(nn.Module):
    """3x3 conv (cin -> 4*cout), then pixel-shuffle x2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class SKFF(nn.Module):
    """Selective kernel feature fusion (MIRNet): K same-shaped maps -> one, by per-channel softmax attention."""

    def __init__(self, channels: int, branches: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.branches = branches
        self.squeeze = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.PReLU())
        self.select = nn.ModuleList(nn.Conv2d(hidden, channels, 1) for _ in range(branches))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        u = feats[0]
        for f in feats[1:]:
            u = u + f
        z = self.squeeze(u.mean(dim=(2, 3), keepdim=True))
        logits = torch.stack([sel(z) for sel in self.select], dim=1)  # (N, K, C, 1, 1)
        weights = torch.softmax(logits, dim=1)
        out = feats[0] * weights[:, 0]
        for k in range(1, self.branches):
            out = out + feats[k] * weights[:, k]
        return out


class MNet(nn.Module):
    """(N, in_channels, H, W) normalised noisy image -> (N, out_channels, H, W) reconstruction in [0, 1] space.

    H and W must be multiples of 16.
    """

    def __init__(self, c: int = 32, in_channels: int = 3, out_channels: int = 3, reduction: int = 8):
        super().__init__()
        if c < 1:
            raise ValueError(f"base width c must be positive, got {c}")
        self.c = int(c)
        widths = [c, 2 * c, 4 * c, 8 * c, 8 * c]  # levels 1 .. 1/8, bottleneck 1/16 (capped like FAIR's UNet)
        self.widths = widths
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.enc0 = ResidualAttention(widths[0], widths[0], reduction)
        self.downs = nn.ModuleList(Down(widths[i - 1], widths[i]) for i in range(1, LEVELS + 1))
        self.inject = nn.ModuleList(
            nn.Conv2d(in_channels, widths[i], 3, padding=1) for i in range(1, LEVELS + 1)
        )
        self.encs = nn.ModuleList(ResidualAttention(2 * widths[i], widths[i], reduction) for i in range(1, LEVELS + 1))
        # Decoder: level i (from LEVELS-1 down to 0) up-samples level i+1 and fuses the encoder skip of level i.
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in range(LEVELS))
        self.decs = nn.ModuleList(ResidualAttention(2 * widths[i], widths[i], reduction) for i in range(LEVELS))
        self.sides = nn.ModuleList(nn.Conv2d(widths[i], widths[0], 3, padding=1) for i in range(LEVELS))
        self.fuse = SKFF(widths[0], LEVELS, reduction)
        self.head = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Multi-scale inputs: x at 1/2, 1/4, 1/8, 1/16.
        pyramid: List[torch.Tensor] = []
        xi = x
        for _ in range(LEVELS):
            xi = F.avg_pool2d(xi, 2)
            pyramid.append(xi)
        skips: List[torch.Tensor] = [self.enc0(self.stem(x))]
        for i in range(LEVELS):
            down = self.downs[i](skips[-1])
            skips.append(self.encs[i](torch.cat([down, self.inject[i](pyramid[i])], dim=1)))
        feat = skips.pop()  # bottleneck at 1/16
        decoded: List[torch.Tensor] = []  # filled from 1/8 up to full resolution
        for i in reversed(range(LEVELS)):
            feat = self.decs[i](torch.cat([self.ups[i](feat), skips[i]], dim=1))
            decoded.insert(0, feat)
        sides = []
        for i in range(LEVELS):
            s = self.sides[i](decoded[i])
            if i > 0:
                s = F.interpolate(s, scale_factor=float(2**i), mode="bilinear", align_corners=False)
            sides.append(s)
        return self.head(self.fuse(sides))
