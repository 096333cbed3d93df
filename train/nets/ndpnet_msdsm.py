"""NDP-Net's multi-scale defect segmentation module (MSDSM, Sec. III-D): one small head per encoder layer 1-3.

DSM_i sees the concatenated layer-i features of the input and of its reconstruction (both through the frozen
encoder) and gives a defect probability map AM_i at that layer's resolution. The paper shows the heads only in
a figure; ours: 2 x (conv3x3 -> BN -> ReLU) at the layer's width, then conv1x1 -> 1 channel -> sigmoid.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from train.nets.unet import conv_bn_relu


class DSM(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(2 * channels, channels), conv_bn_relu(channels, channels),
                                  nn.Conv2d(channels, 1, 1))

    def forward(self, image_features: torch.Tensor, recon_features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(torch.cat([image_features, recon_features], dim=1)))


class MSDSM(nn.Module):
    """([layer 1..3 of the input], [layer 1..3 of the reconstruction]) -> [AM_1, AM_2, AM_3] probabilities."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleList([DSM(int(w)) for w in widths])

    def forward(self, image_features: Sequence[torch.Tensor], recon_features: Sequence[torch.Tensor]
                ) -> List[torch.Tensor]:
        return [head(a, b) for head, a, b in zip(self.heads, image_features, recon_features)]
