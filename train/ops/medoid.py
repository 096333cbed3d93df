"""The medoid of a set of feature vectors: the member with the smallest summed distance to all the others."""
from __future__ import annotations

import torch


def medoid_index(features: torch.Tensor) -> int:
    """(M, D) float -> index of the row minimising sum_j ||f_i - f_j||_2 (Euclidean; the first on ties)."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"medoid_index expects a non-empty (M, D) matrix, got {tuple(features.shape)}")
    f = features.to(torch.float64)
    d = torch.cdist(f, f)
    return int(torch.argmin(d.sum(dim=1)))
