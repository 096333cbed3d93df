"""Greedy coreset subsampling (PatchCore, Roth et al. 2022, Alg. 1: iterative k-center selection).

Each step adds the point farthest from the chosen set, so the coreset covers the feature space with the
smallest worst-case gap. As in the paper, distances are computed on a seeded Gaussian random projection of
the features (Johnson-Lindenstrauss) to keep the O(n * k) loop affordable; the first point is drawn with the
same seed, so a given seed gives the same coreset.
"""
from __future__ import annotations

import torch
from tqdm import tqdm


def greedy_coreset(features: torch.Tensor, count: int, seed: int = 0, projection_dim: int = 128,
                   progress: bool = False) -> torch.Tensor:
    """Indices (count,) int64 into `features` (n, d) of a greedy k-center coreset."""
    n = int(features.shape[0])
    count = int(max(1, min(count, n)))
    generator = torch.Generator().manual_seed(int(seed))
    x = features.to(torch.float32)
    if projection_dim and projection_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim ** 0.5
        x = x @ proj.to(x.device)
    chosen = torch.empty(count, dtype=torch.int64)
    current = int(torch.randint(n, (1,), generator=generator))
    min_dist = torch.full((n,), float("inf"), device=x.device)
    dist = torch.empty(n, device=x.device)
    x_sq = (x * x).sum(1)
    for i in tqdm(range(count), desc="coreset", unit="pt", disable=not progress, mininterval=1.0):
        chosen[i] = current
        centre = x[current]
        # |x|^2 - 2 x.c + |c|^2 in two fused passes (addmv, add_) into one preallocated buffer: the loop
        # is memory-bound, so every avoided temporary counts.
        torch.addmv(x_sq, x, centre, alpha=-2.0, out=dist)
        dist.add_(centre.dot(centre))
        torch.minimum(min_dist, dist, out=min_dist)
        current = int(torch.argmax(min_dist))
    return chosen
