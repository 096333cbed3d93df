"""NDP-Net's encoder (5 layers) and decoder (the paper states neither architecture; these are our choices).

Encoder: five blocks of 2 x (conv3x3 -> BN -> ReLU) at widths c, 2c, 4c, 8c, 8c and strides 1, 2, 4, 8, 16
(max-pooling between blocks), the layout of FAIR's UNet. Layer 1 at full resolution lets MSDSM's first map
work at the input size, as the paper's Eq. 11 implies.
Decoder: the (repaired) layer-5 features are its input and the (repaired) layers 3 and 4 enter by skip
concatenation (Fig. 1); layers 1-2 have no skip, so a defect cannot bypass the repair through a shortcut.
Each stage: bilinear up-sampling to the next layer's size -> (concat) -> double conv; a 3x3 head with a sigmoid
gives the RGB reconstruction in [0, 1].
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from train.nets.unet import double_conv


def encoder_widths(c: int) -> List[int]:
    return [c, 2 * c, 4 * c, 8 * c, 8 * c]


class Encoder(nn.Module):
    """(N, 3, H, W) -> list of 5 feature maps at strides 1, 2, 4, 8, 16 (or the first `depth` of them)."""

    def __init__(self, c: int, in_channels: int = 3):
        super().__init__()
        self.widths = encoder_widths(c)
        self.blocks = nn.ModuleList()
        cin = in_channels
        for w in self.widths:
            self.blocks.append(double_conv(cin, w))
            cin = w

    def forward(self, x: torch.Tensor, depth: int = 5) -> List[torch.Tensor]:
        out = []
        for i, block in enumerate(self.blocks[:depth]):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            out.append(x)
        return out


class Decoder(nn.Module):
    """(layer-3, layer-4, layer-5 features) plus the layer-1/2 sizes -> RGB reconstruction in [0, 1]."""

    def __init__(self, c: int):
        super().__init__()
        w = encoder_widths(c)
        self.stage4 = double_conv(w[4] + w[3], w[2])
        self.stage3 = double_conv(w[2] + w[2], w[1])
        self.stage2 = double_conv(w[1], w[0])
        self.stage1 = double_conv(w[0], w[0])
        self.head = nn.Conv2d(w[0], 3, 3, padding=1)

    @staticmethod
    def _up(x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, deep: Sequence[torch.Tensor], image_size) -> torch.Tensor:
        f3, f4, f5 = deep
        h, w = int(image_size[0]), int(image_size[1])
        x = self.stage4(torch.cat([self._up(f5, f4.shape[-2:]), f4], dim=1))
        x = self.stage3(torch.cat([self._up(x, f3.shape[-2:]), f3], dim=1))
        x = self.stage2(self._up(x, (h // 2, w // 2)))
        x = self.stage1(self._up(x, (h, w)))
        return torch.sigmoid(self.head(x))
