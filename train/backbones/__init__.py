"""Frozen ImageNet feature extractors for the feature-based methods (PatchCore, PaDiM).

`build_backbone(name, strides, image_size, weights)` returns a module mapping float RGB (N,3,H,W) in [0,1] to
a list of feature maps at the requested strides, with `.strides` and `.channels`. The input normalisation is
inside the module, so the exported graph needs nothing else. No weights = a ConfigError, never a random
backbone; nothing is downloaded.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from torch import nn

from train.errors import ConfigError

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18", "wide_resnet50_2")


def build_backbone(name: str, strides: Sequence[int], image_size: Tuple[int, int],
                   weights: Optional[str] = None) -> nn.Module:
    if name.startswith("efficientnet_lite") and name in BACKBONES:
        from train.backbones.efficientnet_lite import EfficientNetLiteFeatures

        return EfficientNetLiteFeatures(name, strides, image_size, weights)
    if name in ("resnet18", "wide_resnet50_2"):
        from train.backbones.resnet import ResNetFeatures

        return ResNetFeatures(name, strides, weights)
    raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


__all__ = ["BACKBONES", "build_backbone"]
