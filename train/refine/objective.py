"""F2PAD's objective (Eq. 12) for one crop: L(X) + lambda1 R1(Y - X) + lambda2 prior(X) + TV(X) + range(X).

X and Y are (1, 3, h, w) in ImageNet-normalised units; the feature score takes RGB in [0, 1]. The pixel terms
are summed over the optimised region only (outside it X = Y and they are constants). lambda1 = c / |M0|, the
backbone's estimated anomaly size (Sec. IV-A3: a smaller lambda1 for larger anomalies), measured here as the
fraction of the image's pixels in M0 so that c does not depend on the image size.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from train.refine.penalties import log_penalty, range_penalty, vectorial_tv
from train.refine.pixel_prior import IMAGENET_MEAN, IMAGENET_STD, PixelPrior
from train.refine.settings import RefineSettings


def imagenet_stats(device, dtype=torch.float32):
    mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def sparsity_weight(c: float, anomaly_pixels: int, image_pixels: int) -> float:
    """lambda1 = c / estimated anomaly size (the fraction of the image's pixels in the backbone's mask M0)."""
    return float(c) * int(image_pixels) / max(1, int(anomaly_pixels))


class Objective(nn.Module):
    def __init__(self, score: nn.Module, prior: Optional[PixelPrior], y: torch.Tensor, region: torch.Tensor,
                 lam1: float, settings: RefineSettings):
        super().__init__()
        self.score, self.prior = score, prior
        self.register_buffer("y", y)
        self.register_buffer("region", region.to(y.dtype))
        mean, std = imagenet_stats(y.device, y.dtype)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.lam1 = float(lam1) if settings.use_sparsity else 0.0
        self.settings = settings
        self.last: Dict[str, float] = {}

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        x_unit = self.to_unit(x)
        terms = {"feature": self.score(x_unit)}
        if self.lam1 > 0:
            terms["sparsity"] = self.lam1 * log_penalty(self.y - x, s.log_eps, self.region)
        if s.use_prior and self.prior is not None:
            terms["prior"] = s.prior_weight * (self.prior(x) * self.region).sum()
            terms["tv"] = s.tv_weight * vectorial_tv(x, self.region)
        terms["range"] = s.range_weight * range_penalty(x_unit, torch.zeros_like(self.mean),
                                                        torch.ones_like(self.mean), self.region)
        self.last = {k: float(v.detach()) for k, v in terms.items()}
        return sum(terms.values())
