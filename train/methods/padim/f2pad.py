"""What F2PAD (train/refine) needs from PaDiM: L(X), the run's own score of a crop (paper Eq. 7): the squared
Mahalanobis distance to each counted position's Gaussian (the run's mean and inverse covariance, indexed on the
full image's grid), summed over the positions."""
from __future__ import annotations

import torch
from torch import nn

from train.ops.mahalanobis import mahalanobis_squared
from train.refine.feature_loss import counted_positions, finest_stride


class PadimScore(nn.Module):
    def __init__(self, model, x0: torch.Tensor, region: torch.Tensor, origin, image_size, candidates: int):
        super().__init__()
        self.backbone, self.embed = model.backbone, model.embed
        s = finest_stride(model)
        grid_w = int(image_size[1]) // s
        h, w = int(region.shape[-2]) // s, int(region.shape[-1]) // s
        rows = torch.arange(h, device=region.device).view(-1, 1) + int(origin[0]) // s
        cols = torch.arange(w, device=region.device).view(1, -1) + int(origin[1]) // s
        counted = counted_positions(region, s)
        index = (rows * grid_w + cols).flatten()[counted]
        self.register_buffer("counted", counted)
        self.register_buffer("mean", model.memory.mean[index])
        self.register_buffer("inv_cov", model.memory.inv_cov[index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embed(self.backbone(x)).flatten(2).transpose(1, 2)[:, self.counted]  # (1, P, D)
        return mahalanobis_squared(f, self.mean, self.inv_cov).sum()
