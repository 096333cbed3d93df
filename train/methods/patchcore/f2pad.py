"""What F2PAD (train/refine) needs from PatchCore: L(X), the run's own score of a crop (paper Eq. 5).

Each counted position p keeps the k nearest memory-bank rows of the INITIAL X0's feature at p as its candidate
set; the score is the Euclidean distance of X's feature to the nearest candidate, summed over the positions.
"""
from __future__ import annotations

import torch
from torch import nn

from train.ops.knn import squared_distances
from train.refine.feature_loss import counted_positions, finest_stride


class PatchCoreScore(nn.Module):
    def __init__(self, model, x0: torch.Tensor, region: torch.Tensor, origin, image_size, candidates: int):
        super().__init__()
        self.backbone, self.embed = model.backbone, model.embed
        self.stride = finest_stride(model)
        self.register_buffer("counted", counted_positions(region, self.stride))
        bank = model.memory.bank
        with torch.no_grad():
            f0 = self._features(x0)[self.counted]  # (P, D)
            k = max(1, min(int(candidates), len(bank)))
            nearest = squared_distances(f0, bank).topk(k, dim=-1, largest=False).indices  # (P, k)
        self.register_buffer("candidates", bank[nearest])  # (P, k, D)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embed(self.backbone(x))  # (1, D, h, w)
        return f.flatten(2)[0].transpose(0, 1)  # (h*w, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(x)[self.counted]  # (P, D)
        d2 = ((f.unsqueeze(1) - self.candidates) ** 2).sum(-1).amin(dim=1)
        return torch.sqrt(d2 + 1e-12).sum()
