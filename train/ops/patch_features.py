"""Patch features from several backbone layers (PatchCore's locally aware patch features, PaDiM's embedding).

Each layer is averaged over its 3x3 neighbourhood (PatchCore: a patch feature sees its neighbours, which
adds context without losing resolution), optionally normalised per level, resized bilinearly to the finest
requested grid and concatenated along channels.

Per-level normalisation (`level_norm="unit"`): each level's vector at each position is scaled to unit length
before the concatenation. Without it the level with the largest activations (for EfficientNet-Lite the deep,
wide stride-16 level) dominates every L2 distance, and a fine stride-4 level added for small defects hardly
counts. With it every level weighs the same and the distance per level is a cosine distance. Export-friendly:
ReduceL2 (or Mul+ReduceSum+Sqrt) and Div.
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


LEVEL_NORMS = ("none", "unit")
_EPS = 1e-6  # keeps an all-zero (ReLU6-dead) position finite


def normalise_level(feature: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """(N, C, h, w) -> the same, each position's C-vector at unit L2 length for mode 'unit'."""
    if mode == "none":
        return feature
    if mode == "unit":
        return feature / (torch.sqrt((feature * feature).sum(dim=1, keepdim=True)) + _EPS)
    raise ValueError(f"level normalisation {mode!r}: use one of {', '.join(LEVEL_NORMS)}")


def upsample_concat(features: Sequence[torch.Tensor], pool: int = 1, level_norm: str = "none") -> torch.Tensor:
    """list of (N, C_i, h_i, w_i) -> (N, sum C_i, h_0, w_0) at the largest grid among them."""
    pooled: List[torch.Tensor] = [normalise_level(neighbourhood_pool(f, pool), level_norm) for f in features]
    h = max(int(f.shape[-2]) for f in pooled)
    w = max(int(f.shape[-1]) for f in pooled)
    resized = [f if tuple(f.shape[-2:]) == (h, w) else
               F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) for f in pooled]
    return torch.cat(resized, dim=1)
