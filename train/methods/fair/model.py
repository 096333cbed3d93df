"""FAIR's anomaly model (frequency-aware image restoration, Liu et al.).

Inspection: high-pass the frame itself, restore it, score the restoration
against the frame with MSGMS + CIELAB colour distance and a 21x21 mean filter; the image score is the max.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from train.nets.unet import UNet
from train.ops.highpass import make_highpass
from train.ops.scoring import FairScorer


class FairModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] -> (anomaly_map (N,1,H,W), score (N,))."""

    def __init__(self, c: int, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        self.highpass = make_highpass(
            options["filter"], image_size, d0=options["d0"], order=options["order"]
        )
        self.net = UNet(self.highpass.out_channels, c)
        self.scorer = FairScorer(lab_weight=options["lab_weight"], mean_filter=options["mean_filter"])

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(self.highpass(image))

    def forward(self, image: torch.Tensor):
        return self.scorer(self.restore(image), image)
