"""k x k median filter that exports to plain ONNX ops (Slice, Concat, TopK): ONNX has no median operator.

The window is gathered as k*k shifted views of an edge-padded map (Concat of Slices), and the median is the
(k*k + 1)/2-th smallest value along that axis: ``TopK(k*k//2 + 1, largest=False)`` and its last entry. Edge
padding (repeat the border pixel) is built from Slices and Concat, not Pad's 'edge' mode, so TensorRT 8.5 reads
it. It equals ``scipy.ndimage.median_filter(x, size=k, mode='nearest')`` (tested against numpy).
"""
from __future__ import annotations

import torch


def edge_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Repeat the border rows/columns of (N, C, H, W) r times on every side."""
    if r == 0:
        return x
    top, bottom = x[:, :, :1].expand(-1, -1, r, -1), x[:, :, -1:].expand(-1, -1, r, -1)
    x = torch.cat([top, x, bottom], dim=2)
    left, right = x[:, :, :, :1].expand(-1, -1, -1, r), x[:, :, :, -1:].expand(-1, -1, -1, r)
    return torch.cat([left, x, right], dim=3)


def median_filter(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Median over each k x k window of a (N, 1, H, W) map (edge padding), same shape out."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"median filter size must be a positive odd number, got {k}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"median_filter expects (N, 1, H, W), got {tuple(x.shape)}")
    if k == 1:
        return x
    h, w = x.shape[-2:]
    padded = edge_pad(x, k // 2)
    windows = torch.cat([padded[:, :, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)], dim=1)
    smallest = torch.topk(windows, k * k // 2 + 1, dim=1, largest=False, sorted=True).values
    return smallest[:, -1:]
