"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework...", ICPR 2021).

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
from train.methods import register_method
from train.methods._features import BACKBONE_OPTIONS, FeatureMethod, FitClock, feature_batches, make_backbone, parse_strides
from train.ops.map_scorer import UpsampleBlurScorer
from train.ops.mahalanobis import GaussianAccumulator, mahalanobis_squared
from train.ops.patch_features import upsample_concat


class ChannelSubsetEmbedding(nn.Module):
    """Backbone layers -> (N, d, h, w): resize to the finest grid, concat, keep a fixed random channel subset."""

    def __init__(self, in_dim: int, keep: int, seed: int):
        super().__init__()
        keep = int(keep)
        if not 0 < keep <= in_dim:
            raise ConfigError(f"option channels={keep}: must be between 1 and the {in_dim} backbone channels")
        g = torch.Generator().manual_seed(int(seed))
        # Non-persistent: the subset is a function of (seed, channels), both in the run's config.
        self.register_buffer("index", torch.randperm(in_dim, generator=g)[:keep].sort().values, persistent=False)
        self.out_dim = keep
        self.all_channels = keep == in_dim

    def forward(self, features):
        x = upsample_concat(features, pool=1)
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
        self.embed = ChannelSubsetEmbedding(sum(self.backbone.channels), options["channels"], options["seed"])
        finest = min(strides)
        grid = (int(image_size[0]) // finest, int(image_size[1]) // finest)
        self.memory = GaussianMemory(grid, self.embed.out_dim)
        self.scorer = UpsampleBlurScorer(image_size, options["sigma"])

    def forward(self, image: torch.Tensor):
        return self.scorer(self.memory(self.embed(self.backbone(image))))


@register_method
class Padim(FeatureMethod):
    name = "padim"
    defaults = {
        **BACKBONE_OPTIONS,
        "layers": [4, 8, 16],  # feature strides (paper: ResNet layers 1-3)
        "channels": 100,  # random channel subset (paper: 100 of 448 for ResNet18; here of 176 for Lite0)
        "regulariser": 0.01,  # added to the covariance diagonal (paper: 0.01 I)
        "seed": 0,
        "sigma": 4.0,  # Gaussian smoothing of the map in pixels
    }
    scoring_options = ("sigma",)

    def build_model(self, c, image_size, options):
        return PadimModel(image_size, options)

    def fit(self, model: PadimModel, batches, options, device, progress: bool) -> Dict[str, Any]:
        acc = None
        for emb in feature_batches(model, batches, device, progress, "padim features"):
            if acc is None:
                acc = GaussianAccumulator(emb.shape[2] * emb.shape[3], emb.shape[1])
            acc.add(emb.flatten(2).transpose(1, 2))
        if acc is None:
            raise ConfigError("padim: no training images to fit on")
        clock = FitClock()
        mean, inv_cov = acc.finish(float(options["regulariser"]))
        model.memory.mean.copy_(mean.to(torch.float32))
        model.memory.inv_cov.copy_(inv_cov.to(torch.float32))
        return {"images_fitted": acc.count, "positions": int(mean.shape[0]), "feature_dim": int(mean.shape[1]),
                "inverse_seconds": clock.seconds()}

    def update(self, model: PadimModel, images, options, device, progress: bool, context) -> Dict[str, Any]:
        """The streaming Gaussian goes on: the fit's accumulator is recovered from the stored mean and inverse
        covariance and the fitted image count (`GaussianAccumulator.from_gaussian`), the new images are added,
        and the Gaussians are finished again: the same as a fit over the old and new images together."""
        from train.fit import ImageBatches

        fit = context.get("fit") or {}
        count = fit.get("images_fitted") or fit.get("images")
        if not count:
            raise ConfigError("padim update: the run's history has no fitted image count (images_fitted): refit it")
        reg = float(options["regulariser"])
        acc = GaussianAccumulator.from_gaussian(model.memory.mean, model.memory.inv_cov, int(count), reg)
        batches = ImageBatches(images, int(context["config"].batch_size), device)
        for emb in feature_batches(model, batches, device, progress, "padim update"):
            acc.add(emb.flatten(2).transpose(1, 2))
        clock = FitClock()
        mean, inv_cov = acc.finish(reg)
        model.memory.mean.copy_(mean.to(torch.float32))
        model.memory.inv_cov.copy_(inv_cov.to(torch.float32))
        return {"images_added": int(len(images)), "images_fitted": acc.count, "inverse_seconds": clock.seconds()}
