"""ResNet-18 and Wide-ResNet-50-2 in plain torch, laid out like torchvision's so its state-dict files load.

torchvision is not a dependency: the user supplies the published file (`resnet18-f37072fd.pth`,
`wide_resnet50_2-95faca4d.pth`, ...) with `--option backbone_weights=PATH`; its name's hash prefix is checked
against its sha256 (`train.backbones.weights`). Architecture facts (He et al. 2016; Zagoruyko & Komodakis
2016, as in torchvision): 7x7/2 stem + 3x3/2 max-pool, four stages at strides 4/8/16/32, the stride on the
3x3 convolution of a bottleneck (v1.5), a 1x1 conv + BN shortcut where shape changes. Inputs are scaled with
the ImageNet mean/std these weights were trained with.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from train.backbones.weights import FrozenBackbone, check_named_hash, load_matching, read_state_dict
from train.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _shortcut(cin: int, cout: int, stride: int) -> Optional[nn.Sequential]:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, width_factor: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes, stride)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, width_factor: int = 1):
        super().__init__()
        width = planes * width_factor
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


# name -> (block, blocks per stage, bottleneck width factor)
ARCHITECTURES = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6, 3), 2),
}
STAGE_STRIDES = (4, 8, 16, 32)


class ResNetFeatures(FrozenBackbone):
    """float RGB (N,3,H,W) in [0,1] -> list of stage outputs at `strides` (each of 4, 8, 16, 32)."""

    def __init__(self, arch: str, strides: Sequence[int], weights: Optional[str], pretrained: bool = True):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown ResNet {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
        bad = [s for s in strides if s not in STAGE_STRIDES]
        if bad or not strides:
            raise ConfigError(f"{arch} gives features at strides {list(STAGE_STRIDES)}, got {list(strides)}")
        if pretrained and not weights:
            raise ConfigError(f"backbone {arch!r} needs its ImageNet weights file (nothing is downloaded): give "
                              f"--option backbone_weights=PATH/{arch}-<hash>.pth (torchvision's published file)")
        block, depths, width_factor = ARCHITECTURES[arch]
        self.strides = tuple(int(s) for s in strides)
        n_stages = max(STAGE_STRIDES.index(s) for s in self.strides) + 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, channels = 64, []
        for k in range(n_stages):
            planes = 64 * 2 ** k
            blocks = []
            for j in range(depths[k]):
                blocks.append(block(cin, planes, (1 if k == 0 else 2) if j == 0 else 1, width_factor))
                cin = planes * block.expansion
            setattr(self, f"layer{k + 1}", nn.Sequential(*blocks))
            channels.append(cin)
        self.n_stages = n_stages
        self.channels = tuple(channels[STAGE_STRIDES.index(s)] for s in self.strides)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            check_named_hash(weights)
            load_matching(self, read_state_dict(weights), str(weights))
        self.freeze()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1((x - self.mean) * self.inv_std))))
        stages = []
        for k in range(self.n_stages):
            x = getattr(self, f"layer{k + 1}")(x)
            stages.append(x)
        return [stages[STAGE_STRIDES.index(s)] for s in self.strides]
