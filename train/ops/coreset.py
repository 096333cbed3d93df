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


def extend_coreset(chosen: torch.Tensor, candidates: torch.Tensor, count: int, seed: int = 0,
                   projection_dim: int = 128, chunk: int = 4096) -> torch.Tensor:
    """Indices (<= count,) int64 into `candidates` (m, d) that continue a greedy k-center coreset whose points
    so far are `chosen` (k, d): the same rule as `greedy_coreset` (each step adds the candidate farthest from
    everything chosen, on the same seeded projection), started from the existing set instead of a random
    point. Candidates that `chosen` already covers exactly are never added (the loop stops at distance ~0)."""
    m = int(candidates.shape[0])
    count = int(max(0, min(count, m)))
    if count == 0:
        return torch.empty(0, dtype=torch.int64)
    generator = torch.Generator().manual_seed(int(seed))
    x, c = candidates.to(torch.float32), chosen.to(torch.float32)
    if projection_dim and projection_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim ** 0.5
        x, c = x @ proj.to(x.device), c @ proj.to(c.device)
    x_sq = (x * x).sum(1)
    min_dist = torch.full((m,), float("inf"), device=x.device)
    for start in range(0, int(c.shape[0]), chunk):  # distance of every candidate to its nearest chosen point
        part = c[start:start + chunk]
        d = x_sq[:, None] - 2.0 * (x @ part.T) + (part * part).sum(1)[None, :]
        torch.minimum(min_dist, d.min(dim=1).values, out=min_dist)
    # |x|^2 - 2 x.c + |c|^2 is not exactly 0 for a point and itself: below this it counts as covered
    covered = 1e-6 * float(x_sq.mean()) + 1e-12
    picked = []
    for _ in range(count):
        current = int(torch.argmax(min_dist))
        if not float(min_dist[current]) > covered:
            break
        picked.append(current)
        centre = x[current]
        torch.minimum(min_dist, x_sq - 2.0 * (x @ centre) + centre.dot(centre), out=min_dist)
        min_dist[current] = 0.0
    return torch.tensor(picked, dtype=torch.int64)
