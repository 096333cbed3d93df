"""PaDiM's anomaly model (Defard et al., "PaDiM: a Patch Distribution Modeling Framework...", ICPR 2021).

Fit (no gradients): embeddings of the good images from a frozen ImageNet backbone (layers at strides 4, 8 and
16, upsampled to the stride-4 grid and concatenated; a seeded random subset of the channels, 100 by default),
and at every grid position a multivariate Gaussian (mean, covariance + 0.01 I) accumulated in one streaming
pass. Inspection: the Mahalanobis distance of each position's embedding to its Gaussian, upsampled to the
image and smoothed (sigma 4); image score = the map's maximum.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from train.errors import ConfigError
from train.methods._feature_spec import parse_strides
from train.methods._features import make_backbone
from train.ops.flip_tta import FlipViews
from train.ops.map_scorer import UpsampleBlurScorer
from train.ops.mahalanobis import mahalanobis_squared
from train.ops.patch_features import upsample_concat


class ChannelSubsetEmbedding(nn.Module):
    """Backbone layers -> (N, d, h, w): resize to the finest grid, concat, keep a fixed random channel subset."""

    def __init__(self, in_dim: int, keep: int, seed: int, level_norm: str = "none"):
        super().__init__()
        self.level_norm = str(level_norm)  # "unit": each level scaled to unit length before the concat
        keep = int(keep)
        if not 0 < keep <= in_dim:
            raise ConfigError(f"option channels={keep}: must be between 1 and the {in_dim} backbone channels")
        g = torch.Generator().manual_seed(int(seed))
        # Non-persistent: the subset is a function of (seed, channels), both in the run's config.
        self.register_buffer("index", torch.randperm(in_dim, generator=g)[:keep].sort().values, persistent=False)
        self.out_dim = keep
        self.all_channels = keep == in_dim

    def forward(self, features):
        x = upsample_concat(features, 1, self.level_norm)
        return x if self.all_channels else x.index_select(1, self.index)


class GaussianMemory(nn.Module):
    """(N, d, h, w) -> (N, 1, h, w) Mahalanobis distance to the per-position Gaussian (mean, inverse cov)."""

    def __init__(self, grid: Tuple[int, int], dim: int):
        super().__init__()
        positions = int(grid[0]) * int(grid[1])
        self.grid = (int(grid[0]), int(grid[1]))
        self.register_buffer("mean", torch.zeros(positions, dim))
        self.register_buffer("inv_cov", torch.eye(dim).repeat(positions, 1, 1))

    def forward(self, features: torch.Tensor):
        n, d, h, w = features.shape
        x = features.flatten(2).transpose(1, 2)  # (N, P, d)
        return torch.sqrt(mahalanobis_squared(x, self.mean, self.inv_cov)).reshape(n, 1, h, w)


class PadimModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] -> (anomaly_map (N,1,H,W), score (N,))."""

    def __init__(self, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        strides = parse_strides(options["layers"])
        self.backbone = make_backbone(options, strides, image_size)
        self.embed = ChannelSubsetEmbedding(sum(self.backbone.channels), options["channels"], options["seed"],
                                            options["level_norm"])
        finest = min(strides)
        grid = (int(image_size[0]) // finest, int(image_size[1]) // finest)
        self.memory = GaussianMemory(grid, self.embed.out_dim)
        self.scorer = UpsampleBlurScorer(image_size, options["sigma"])
        self.flips = FlipViews(options.get("flip", "none"))  # test-time flips: the views in one batch

    def forward(self, image: torch.Tensor):
        return self.scorer(self.flips.merge(self.memory(self.embed(self.backbone(self.flips.expand(image))))))
