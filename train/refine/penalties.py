"""The pixel-space penalties of F2PAD's objective (Tao et al., arXiv 2407.06519, Eqs. 8, 11 and the valid range).

All act on (N, 3, H, W) tensors in ImageNet-normalised units (the paper's convention, footnote 3) and return a
scalar sum, optionally restricted to a (N, 1, H, W) weight/mask. Our text copy of the paper lost the formulas;
the forms below are the standard ones of the cited references and are marked as inferred in
shared/refs/f2pad-facts.md:

- LOG sparsity (refs [40, 43]): sum_ij log(1 + ||A_ij|| / eps), grouped per pixel over the 3 channels (one
  mask value per pixel, as the mask M_ij of Eq. 2 is per pixel).
- Vectorial TV (ref [45], the plain "colour TV" form): sum_ij sqrt(sum_c (dx X_c)^2 + (dy X_c)^2 + delta^2),
  forward differences, the last row/column differences taken as 0.
- Valid range: squared excess outside [low, high] per channel value.

`delta` keeps the square roots differentiable at 0 (the gradient of ||A|| at A = 0 is otherwise NaN).
"""
from __future__ import annotations

from typing import Optional

import torch

SMOOTH = 1e-6


def _masked_sum(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    return values.sum() if mask is None else (values * mask).sum()


def pixel_norm(a: torch.Tensor, delta: float = SMOOTH) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W): the smoothed Euclidean norm over channels."""
    return torch.sqrt((a * a).sum(dim=1, keepdim=True) + delta * delta)


def log_penalty(a: torch.Tensor, eps: float, mask: Optional[torch.Tensor] = None,
                delta: float = SMOOTH) -> torch.Tensor:
    """R1(A) = sum over pixels of log(1 + ||A_ij|| / eps) (group LOG over the channels)."""
    return _masked_sum(torch.log1p(pixel_norm(a, delta) / float(eps)), mask)


def vectorial_tv(x: torch.Tensor, mask: Optional[torch.Tensor] = None, delta: float = SMOOTH) -> torch.Tensor:
    """sum over pixels of sqrt(sum_c (dx x_c)^2 + (dy x_c)^2 + delta^2), forward differences."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    grad_sq = (dx * dx + dy * dy).sum(dim=1, keepdim=True)
    return _masked_sum(torch.sqrt(grad_sq + delta * delta), mask)


def range_penalty(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """sum of relu(low - x)^2 + relu(x - high)^2; `low`/`high` broadcast per channel (1, C, 1, 1)."""
    excess = torch.relu(low - x) ** 2 + torch.relu(x - high) ** 2
    return _masked_sum(excess.sum(dim=1, keepdim=True), mask)
