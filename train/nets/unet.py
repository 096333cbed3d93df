"""The plain UNet of FAIR's reference code, with base width c.

Encoder: five blocks of 2 x (conv3x3 -> BN -> ReLU) at widths c, 2c, 4c, 8c, 8c, max-pooling between them
(bottleneck at 1/16). Decoder: four stages of bilinear x2 up-sampling -> conv3x3 -> BN -> ReLU, **added** to the
encoder feature of that level (additive skips keep the parameter count at FAIR's Table 5 figures), then
conv (skip width) -> conv (narrower), each with BN and ReLU. Output: conv3x3 -> 3 channels, no activation.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class UpAdd(nn.Module):
    """Up-sample x2 (bilinear, align_corners=True as the reference), conv to the skip's width, add, refine."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up_conv = conv_bn_relu(cin, cskip)
        # The reference refines at the skip's width first, then narrows: this is what gives 4.32 M at c=32.
        self.refine = nn.Sequential(conv_bn_relu(cskip, cskip), conv_bn_relu(cskip, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.refine(self.up_conv(x) + skip)


class UNet(nn.Module):
    def __init__(self, in_channels: int, c: int = 32, out_channels: int = 3):
        super().__init__()
        widths: List[int] = [c, 2 * c, 4 * c, 8 * c, 8 * c]
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.enc.append(double_conv(cin, w))
            cin = w
        # decoder widths 8c->4c, 4c->2c, 2c->c, c->c
        self.dec = nn.ModuleList(
            [
                UpAdd(widths[4], widths[3], widths[2]),
                UpAdd(widths[2], widths[2], widths[1]),
                UpAdd(widths[1], widths[1], widths[0]),
                UpAdd(widths[0], widths[0], widths[0]),
            ]
        )
        self.head = nn.Conv2d(c, out_channels, 3, padding=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The reference's init: conv N(0, 0.02); BN weight N(1, 0.02), bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for stage in self.dec:
            x = stage(x, skips.pop())
        return self.head(x)
