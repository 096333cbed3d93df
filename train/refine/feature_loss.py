"""L(X) of F2PAD (Sec. III-B): the feature method's own anomaly score of X, summed over feature positions.

Built from the fitted model of a run (its frozen backbone, patch embedding and memory), on a crop of the image
whose origin and size are multiples of the backbone's deepest stride, so the crop's feature grid is a window of
the full image's grid (the backbone's "same" padding depends only on the stride when the size divides by it).

- PatchCore (Eq. 5): each counted position p keeps the k nearest memory-bank rows of the INITIAL X0's feature
  at p as its candidate set; the score is the Euclidean distance of X's feature to the nearest candidate.
- PaDiM (Eq. 7): the squared Mahalanobis distance to the Gaussian of the position (mean, inverse covariance
  of the run), indexed on the full image's grid.

Only positions whose cell overlaps the optimised region count (Sec. III-E2: "only the anomaly scores affected
by the region being optimised"); the others are constant in X up to the backbone's context.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.errors import ConfigError
from train.ops.knn import squared_distances
from train.ops.mahalanobis import mahalanobis_squared

REFINABLE = ("patchcore", "padim")


def deepest_stride(model) -> int:
    return int(max(model.backbone.strides))


def finest_stride(model) -> int:
    return int(min(model.backbone.strides))


def counted_positions(region: torch.Tensor, stride: int) -> torch.Tensor:
    """(1, 1, h, w) optimised region -> (h/stride * w/stride,) bool: cells that overlap it, grown by one cell."""
    cells = F.max_pool2d(region.float(), stride, stride)
    cells = F.max_pool2d(cells, 3, 1, padding=1)
    return cells.flatten() > 0


class PatchCoreScore(nn.Module):
    def __init__(self, model, x0: torch.Tensor, region: torch.Tensor, k: int):
        super().__init__()
        self.backbone, self.embed = model.backbone, model.embed
        self.stride = finest_stride(model)
        self.register_buffer("counted", counted_positions(region, self.stride))
        bank = model.memory.bank
        with torch.no_grad():
            f0 = self._features(x0)[self.counted]  # (P, D)
            k = max(1, min(int(k), len(bank)))
            nearest = squared_distances(f0, bank).topk(k, dim=-1, largest=False).indices  # (P, k)
        self.register_buffer("candidates", bank[nearest])  # (P, k, D)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.embed(self.backbone(x))  # (1, D, h, w)
        return f.flatten(2)[0].transpose(0, 1)  # (h*w, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(x)[self.counted]  # (P, D)
        d2 = ((f.unsqueeze(1) - self.candidates) ** 2).sum(-1).amin(dim=1)
        return torch.sqrt(d2 + 1e-12).sum()


class PadimScore(nn.Module):
    def __init__(self, model, region: torch.Tensor, origin: Tuple[int, int], image_size: Tuple[int, int]):
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


def feature_score(method: str, model, x0: torch.Tensor, region: torch.Tensor, origin: Tuple[int, int],
                  image_size: Tuple[int, int], candidates: int) -> nn.Module:
    """The L(X) module for a crop: `x0` and the module's input are (1, 3, h, w) RGB in [0, 1]; `region` is the
    (1, 1, h, w) optimised region of the crop whose top-left pixel sits at `origin` of the full image."""
    if method == "patchcore":
        return PatchCoreScore(model, x0, region, candidates)
    if method == "padim":
        return PadimScore(model, region, origin, image_size)
    raise ConfigError(f"F2PAD refines the maps of {' or '.join(REFINABLE)} runs; this run is {method!r}")
