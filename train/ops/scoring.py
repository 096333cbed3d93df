"""FAIR's scoring: reconstruction vs input -> anomaly map and image score, all inside the exported graph.

    map   = MSGMS(recon, image) + lab_weight * ((a*_r - a*_i)^2 + (b*_r - b*_i)^2)     (L* ignored)
    map   = mean_filter x mean_filter box filter of map, zero padding (divisor always k^2)
    score = max of the map

MSGMS sees the raw reconstruction, as in the reference. For the colour term the reconstruction is clamped to
[0, 1] first: the network's output has no activation, and CIELAB of values outside the sRGB range is not a
colour (the reference's kornia conversion is undefined there too). The box filter is avg_pool2d with
count_include_pad=True, i.e. a convolution with a k x k kernel of 1/k^2 and zero padding, as the reference's
conv2d, split into a k x 1 and a 1 x k pass (:func:`box_filter`); the pooling form exports to two ONNX
AveragePools instead of a 21x21 constant-weight Conv.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.ops.color import rgb_to_ab
from train.ops.msgms import MSGMS


def box_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k mean with zero padding (divisor always k^2), as two 1-D passes: k x 1, then 1 x k.

    The same numbers as one k x k pool (a box kernel is separable; float rounding differs by ~1e-7), for 2k
    instead of k^2 reads per pixel. It matters beyond FLOPs: OpenVINO's CPU plugin has no fast kernel for a
    21 x 21 AveragePool (29 ms at 256^2 on our 2-core CPU, against 3 ms for the two 1-D pools)."""
    x = F.avg_pool2d(x, kernel_size=(k, 1), stride=1, padding=(k // 2, 0), count_include_pad=True)
    return F.avg_pool2d(x, kernel_size=(1, k), stride=1, padding=(0, k // 2), count_include_pad=True)


class FairScorer(nn.Module):
    """(recon, image) both (N, 3, H, W) RGB in [0, 1] -> (anomaly_map (N, 1, H, W), score (N,))."""

    def __init__(self, lab_weight: float = 3e-4, mean_filter: int = 21, scales: int = 2, c: float = 0.0026):
        super().__init__()
        if mean_filter < 1 or mean_filter % 2 == 0:
            raise ValueError(f"mean filter size must be a positive odd number, got {mean_filter}")
        self.lab_weight = float(lab_weight)
        self.mean_filter = int(mean_filter)
        self.msgms = MSGMS(scales=scales, c=c)

    def colour_distance(self, recon: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(Δa*)² + (Δb*)², (N, 1, H, W)."""
        d = rgb_to_ab(torch.clamp(recon, 0.0, 1.0)) - rgb_to_ab(image)
        return (d * d).sum(dim=1, keepdim=True)

    def forward(self, recon: torch.Tensor, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raw = self.msgms(recon, image) + self.lab_weight * self.colour_distance(recon, image)
        smooth = box_filter(raw, self.mean_filter)
        score = torch.amax(smooth, dim=(1, 2, 3))  # one ONNX ReduceMax
        return smooth, score
