"""Patch features from several backbone layers (PatchCore's locally aware patch features, PaDiM's embedding).

Each layer is averaged over its 3x3 neighbourhood (PatchCore: a patch feature sees its neighbours, which
adds context without losing resolution), resized bilinearly to the finest requested grid and concatenated
along channels.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch.nn import functional as F


def neighbourhood_pool(feature: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Mean over the size x size neighbourhood, same grid (size <= 1: unchanged)."""
    if size <= 1:
        return feature
    return F.avg_pool2d(feature, size, stride=1, padding=size // 2)


def upsample_concat(features: Sequence[torch.Tensor], pool: int = 1) -> torch.Tensor:
    """list of (N, C_i, h_i, w_i) -> (N, sum C_i, h_0, w_0) at the largest grid among them."""
    pooled: List[torch.Tensor] = [neighbourhood_pool(f, pool) for f in features]
    h = max(int(f.shape[-2]) for f in pooled)
    w = max(int(f.shape[-1]) for f in pooled)
    resized = [f if tuple(f.shape[-2:]) == (h, w) else
               F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) for f in pooled]
    return torch.cat(resized, dim=1)
