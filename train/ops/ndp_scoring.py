"""NDP-Net's scoring (Eq. 11 and Sec. III-D): AM_final = sum_i w_i * up(AM_i) (weights 0.2, 0.2, 0.6, bilinear
up-sampling to the input size), then a k x k mean filter (zero padding, FAIR's :func:`box_filter`) and a k x k
median filter (edge padding, :func:`median_filter`); image score = max of the map."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.ops.median import median_filter
from train.ops.scoring import box_filter

MAP_WEIGHTS = (0.2, 0.2, 0.6)


class NDPScorer(nn.Module):
    def __init__(self, mean_filter: int = 5, median_filter_size: int = 5, weights: Sequence[float] = MAP_WEIGHTS):
        super().__init__()
        for name, k in (("mean_filter", mean_filter), ("median_filter", median_filter_size)):
            if int(k) < 1 or int(k) % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {k}")
        self.mean_filter = int(mean_filter)
        self.median_filter = int(median_filter_size)
        self.weights = tuple(float(w) for w in weights)

    def fuse(self, maps: Sequence[torch.Tensor], size) -> torch.Tensor:
        out = None
        for w, m in zip(self.weights, maps):
            if tuple(m.shape[-2:]) != tuple(size):
                m = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)
            out = w * m if out is None else out + w * m
        return out

    def forward(self, maps: Sequence[torch.Tensor], size) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.fuse(maps, size)
        if self.mean_filter > 1:
            x = box_filter(x, self.mean_filter)
        x = median_filter(x, self.median_filter)
        return x, torch.amax(x, dim=(1, 2, 3))
