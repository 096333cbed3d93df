"""PatchCore's anomaly model (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit (no gradients): locally aware patch features of the good images from a frozen ImageNet backbone
(3x3-averaged layers at strides 8 and 16, the analogue of the paper's ResNet layers 2+3, upsampled to the
stride-8 grid and concatenated), then a greedy coreset of them becomes the memory bank.
Inspection: the distance of every patch to its nearest memory-bank feature is the patch map; upsampled to the
image and smoothed with a Gaussian (sigma 4) it is the anomaly map. Image score: the map's maximum
(default), or the paper's reweighting of the largest patch distance (`score=reweight`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from train.methods._feature_spec import parse_strides
from train.methods._features import make_backbone
from train.ops.flip_tta import FlipViews
from train.ops.knn import DEFAULT_CHUNK, nearest_index, nearest_squared_distance, squared_distances
from train.ops.map_scorer import UpsampleBlurScorer
from train.ops.tiling import TileViews
from train.ops.patch_features import upsample_concat


class PatchEmbedding(nn.Module):
    """Backbone layers -> (N, D, h, w) patch features: 3x3 mean, optionally each level scaled to unit length
    (`level_norm="unit"`), resize to the finest grid, concat, optionally a fixed seeded Gaussian random projection
    to `projection_dim` channels (a 1x1 matmul)."""

    def __init__(self, in_dim: int, pool: int, projection_dim: Optional[int], seed: int, level_norm: str = "none"):
        super().__init__()
        self.pool = int(pool)
        self.level_norm = str(level_norm)
        self.out_dim = in_dim
        if projection_dim:
            g = torch.Generator().manual_seed(int(seed) + 1)
            proj = torch.randn(int(projection_dim), in_dim, generator=g) / math.sqrt(int(projection_dim))
            self.register_buffer("projection", proj.view(int(projection_dim), in_dim, 1, 1), persistent=False)
            self.out_dim = int(projection_dim)
        else:
            self.projection = None

    def forward(self, features):
        x = upsample_concat(features, self.pool, self.level_norm)
        if self.projection is not None:
            x = nn.functional.conv2d(x, self.projection)
        return x


class MemoryBank(nn.Module):
    """(N, D, h, w) patch features -> (patch distance map (N,1,h,w), reweighted score (N,) or None).

    `bank` (K, D) is a buffer whose row count K is known only after fitting: `_load_from_state_dict` resizes it
    to the stored one, so a fitted run loads with strict checking of everything else.
    """

    def __init__(self, dim: int, chunk: int = DEFAULT_CHUNK, reweight: bool = False, neighbours: int = 9):
        super().__init__()
        self.register_buffer("bank", torch.zeros(0, int(dim)))
        self.chunk = int(chunk)
        self.reweight = bool(reweight)
        self.neighbours = int(neighbours)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "bank")
        if stored is not None and stored.dim() == 2 and stored.shape[1] == self.bank.shape[1]:
            self.bank = torch.empty_like(stored, dtype=self.bank.dtype, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank = bank.detach().to(self.bank.device, torch.float32).contiguous()

    def forward(self, features: torch.Tensor):
        n, d, h, w = features.shape
        queries = features.flatten(2).transpose(1, 2)  # (N, P, D)
        dist = torch.sqrt(nearest_squared_distance(queries, self.bank, self.chunk))  # (N, P)
        patch_map = dist.reshape(n, 1, h, w)
        if not self.reweight:
            return patch_map, None
        return patch_map, self._reweighted_score(queries, dist)

    def _reweighted_score(self, queries: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """Paper Eq. 7: s = (1 - exp|m_test - m*| / sum_{m in N_b(m*)} exp|m_test - m|) * s*, where m_test is
        the most anomalous patch, m* its nearest bank feature and N_b(m*) the b nearest bank features of m*
        (m* itself first)."""
        s_star, where = dist.max(dim=1)  # (N,)
        index = where.view(-1, 1, 1).expand(-1, 1, queries.shape[-1])
        m_test = torch.gather(queries, 1, index)  # (N, 1, D)
        m_star = self.bank[nearest_index(m_test, self.bank)]  # (N, 1, D)
        k = min(self.neighbours, len(self.bank))
        support = squared_distances(m_star, self.bank).topk(k, dim=-1, largest=False).indices  # (N, 1, k)
        d = torch.sqrt(((m_test.unsqueeze(2) - self.bank[support]) ** 2).sum(-1))  # (N, 1, k)
        weight = 1.0 - torch.softmax(d, dim=-1)[:, 0, 0]
        return weight * s_star


class PatchCoreModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] -> (anomaly_map (N,1,H,W), score (N,))."""

    def __init__(self, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        strides = parse_strides(options["layers"])
        # Tiles: the backbone sees tile-size images; the fit collects tile features (feature_batches).
        self.tiles = TileViews(options.get("tiles", "1x1"), image_size, max(16, max(strides)))
        self.backbone = make_backbone(options, strides, self.tiles.tile_size)
        self.embed = PatchEmbedding(sum(self.backbone.channels), options["neighbourhood"],
                                    options["projection_dim"], options["seed"], options["level_norm"])
        self.memory = MemoryBank(self.embed.out_dim, options["knn_chunk"], options["score"] == "reweight",
                                 options["num_neighbours"])
        self.scorer = UpsampleBlurScorer(image_size, options["sigma"])
        self.flips = FlipViews(options.get("flip", "none"))  # test-time flips: the views in one batch

    def forward(self, image: torch.Tensor):
        views = self.flips.expand(self.tiles.expand(image))
        patch_map, score = self.memory(self.embed(self.backbone(views)))
        patch_map = self.tiles.merge(self.flips.merge(patch_map))
        return self.scorer(patch_map, self.tiles.merge_scores(self.flips.merge_scores(score)))
