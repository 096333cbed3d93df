"""Nearest-neighbour distance to a memory bank as matrix products, chunked over the bank.

||q - b||^2 = |q|^2 - 2 q.b + |b|^2: one MatMul per chunk of bank rows and a ReduceMin, so the exported graph
holds only MatMul, ReduceMin/Min, Add/Mul and Sqrt (every TensorRT version and OpenVINO take them) and the
largest intermediate is (N, P, chunk) instead of (N, P, K). Rounding can make the expansion slightly
negative, hence the clamp at 0 before the square root, written as Relu: a Clip would read a constant 0 that
the ONNX simplifier shares with the backbone's ReLU6 Clips, and the FP16 converter then cannot cast it.
"""
from __future__ import annotations

import torch

DEFAULT_CHUNK = 2048


def squared_distances(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(..., M, D) x (K, D) -> (..., M, K) squared Euclidean distances (clamped at 0)."""
    q_sq = (queries * queries).sum(-1, keepdim=True)
    b_sq = (bank * bank).sum(-1)
    return torch.relu(q_sq - 2.0 * torch.matmul(queries, bank.transpose(0, 1)) + b_sq)


def nearest_squared_distance(queries: torch.Tensor, bank: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """(..., M, D) x (K, D) -> (..., M): squared distance of every query to its nearest bank row.

    The chunk loop is unrolled at export (K is fixed once the bank is fitted).
    """
    rows = len(bank)  # a Python int even while tracing: the chunk loop unrolls over the fixed bank
    if rows == 0:
        from train.errors import RunError

        raise RunError("the memory bank is empty: fit the model first (python -m train --method ... --out RUN)")
    best = None
    for start in range(0, rows, chunk):
        part = squared_distances(queries, bank[start:start + chunk]).amin(dim=-1)
        best = part if best is None else torch.minimum(best, part)
    return best


def nearest_index(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(..., M, D) x (K, D) -> (..., M) int64 index of the nearest bank row (unchunked; for few queries)."""
    return squared_distances(queries, bank).argmin(dim=-1)
