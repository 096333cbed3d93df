"""Per-position Gaussians (PaDiM, Defard et al. 2021): streaming fit and Mahalanobis distance.

Fit: sum and sum of outer products per position in float64, so 1000+ images never need to be held at once;
covariance = (S2 - n mu mu^T) / (n - 1) + eps I (eps = 0.01 as in the paper), inverted in float64.
Optional shrinkage (a in [0, 1)): Sigma_a = (1 - a) Sigma + a m I with m the mean variance of the position
(Ledoit-Wolf's target with a fixed intensity). With about as many good images as channels (a few hundred
images, 100-200 channels) the sample covariance is poorly conditioned and its smallest eigenvalues, which the
inverse amplifies most, are the noisiest; shrinking towards m I damps them.
Distance: (x - mu)^T Sigma^-1 (x - mu) per position as a batched MatMul over positions, a Mul and a
ReduceSum (no Einsum in the graph, which TensorRT parses only in part).
"""
from __future__ import annotations

from typing import Tuple

import torch


class GaussianAccumulator:
    """Streaming per-position mean and covariance of (N, P, D) feature batches."""

    def __init__(self, positions: int, dim: int):
        self.count = 0
        self.sum = torch.zeros(positions, dim, dtype=torch.float64)
        self.outer = torch.zeros(positions, dim, dim, dtype=torch.float64)

    @classmethod
    def from_gaussian(cls, mean: torch.Tensor, inv_cov: torch.Tensor, count: int,
                      regulariser: float = 0.01, shrinkage: float = 0.0) -> "GaussianAccumulator":
        """The accumulator a fit over `count` images left behind, recovered from what it stored (mean (P, D),
        inverse regularised covariance (P, D, D)): sum = n mu, S2 = (n - 1)(Sigma - eps I) + n mu mu^T. Adding
        new images to it and finishing gives the Gaussian of all images (PaDiM's streaming update)."""
        if count < 2:
            raise ValueError(f"the stored Gaussian must come from at least 2 images, got {count}")
        mu = mean.detach().to("cpu", torch.float64)
        cov = torch.linalg.inv(inv_cov.detach().to("cpu", torch.float64))
        cov = unshrink(cov - regulariser * torch.eye(cov.shape[-1], dtype=torch.float64), shrinkage)
        acc = cls(mu.shape[0], mu.shape[1])
        acc.count = int(count)
        acc.sum = mu * count
        acc.outer = cov * (count - 1) + count * mu[:, :, None] * mu[:, None, :]
        return acc

    def add(self, features: torch.Tensor) -> None:
        """features (N, P, D)."""
        f = features.detach().to("cpu", torch.float64).transpose(0, 1)  # (P, N, D)
        self.sum += f.sum(1)
        self.outer += torch.matmul(f.transpose(1, 2), f)
        self.count += int(features.shape[0])

    def finish(self, regulariser: float = 0.01, shrinkage: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean (P, D), inverse covariance (P, D, D)), float64."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.count}")
        mean = self.sum / self.count
        cov = (self.outer - self.count * mean[:, :, None] * mean[:, None, :]) / (self.count - 1)
        cov = shrink(cov, shrinkage) + regulariser * torch.eye(cov.shape[-1], dtype=torch.float64)
        return mean, torch.linalg.inv(cov)


def _check_shrinkage(shrinkage: float) -> float:
    a = float(shrinkage)
    if not 0.0 <= a < 1.0:
        raise ValueError(f"covariance shrinkage must be in [0, 1), got {shrinkage}")
    return a


def shrink(cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(P, D, D) -> (1 - a) cov + a m I, m = each position's mean variance (trace / D)."""
    a = _check_shrinkage(shrinkage)
    if a == 0.0:
        return cov
    m = cov.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None]
    return (1.0 - a) * cov + a * m * torch.eye(cov.shape[-1], dtype=cov.dtype)


def unshrink(cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """The inverse of `shrink` (shrinking keeps the trace, so m is read from the shrunk matrix)."""
    a = _check_shrinkage(shrinkage)
    if a == 0.0:
        return cov
    m = cov.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None]
    return (cov - a * m * torch.eye(cov.shape[-1], dtype=cov.dtype)) / (1.0 - a)


def mahalanobis_squared(features: torch.Tensor, mean: torch.Tensor, inv_cov: torch.Tensor) -> torch.Tensor:
    """features (N, P, D), mean (P, D), inv_cov (P, D, D) -> (N, P) squared Mahalanobis distances."""
    diff = (features - mean).transpose(0, 1)  # (P, N, D)
    # Relu, not clamp(min=0): no Clip constant shared with the backbone's FP16 ReLU6 (see train.ops.knn).
    return torch.relu((torch.matmul(diff, inv_cov) * diff).sum(-1).transpose(0, 1))
