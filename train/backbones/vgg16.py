"""VGG-16 (torchvision layout) as a frozen perceptual-loss network, from user-supplied ImageNet weights.

Only for NDP-Net's perceptual loss (the paper's choice). The weights file is given by path
(`--option perceptual_weights=PATH`, torch.hub name such as vgg16-397923af.pth whose hash prefix is checked
against the file's sha256); nothing is downloaded. Keys used: `features.<i>.weight/bias` (the classifier in the
file is ignored). Output: the ReLU maps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (strides 1, 2, 4, 8, 16).
Input: float RGB in [0, 1], normalised inside with the ImageNet mean/std torchvision's VGG was trained with.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import torch
from torch import nn

from train.backbones.weights import FrozenBackbone, check_named_hash, load_matching, read_state_dict

# torchvision's "D" configuration: channel counts, "M" = 2x2 max-pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# The relu*_last of each block: indices into `features` (conv at i, ReLU at i + 1).
_TAPS = (3, 8, 15, 22, 29)


class VGG16Features(FrozenBackbone):
    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, weights: str):
        super().__init__()
        layers: List[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        path = Path(weights)
        check_named_hash(path)
        load_matching(self, read_state_dict(path), str(path))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.channels = self.CHANNELS
        self.freeze()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
                if len(out) == len(_TAPS):
                    break
        return out
