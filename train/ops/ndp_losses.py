"""NDP-Net's training losses (Luo et al., IEEE TIM 2023), each a pure function of tensors.

- :func:`defect_perception_loss` (Eq. 2): per encoder layer, the channel mean of the squared feature difference
  between the clean and the defective image, min-max normalised per image to [0, 1], against the defect mask
  resized to that layer (area average); squared error averaged over pixels, then over layers.
- :func:`focal_loss` (L_seg, Eq. 10): binary focal loss on probabilities, mean over pixels.
- :func:`perceptual_l1` (Eqs. 13/16): mean over feature layers of the mean absolute feature difference.
- :func:`feature_repair_loss` (Eq. 9): mean over layers of the MSE between repaired and clean features (the
  paper's 1/(l2 - l1) over three layers is a constant factor; a plain mean is used).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

#: Added to the range of the min-max normalisation (an image without a defect has a zero difference map).
NORM_EPS = 1e-8


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """(N, 1, H, W) mask in [0, 1] -> (N, 1, h, w): the area average (a fraction where a pixel straddles the
    defect border), identity at the same size."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=tuple(size), mode="area")


def minmax_per_image(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) -> the same map scaled per image to [0, 1] ((x - min) / (max - min + eps))."""
    lo = torch.amin(x, dim=(1, 2, 3), keepdim=True)
    hi = torch.amax(x, dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo + NORM_EPS)


def defect_perception_loss(clean_features: Sequence[torch.Tensor], defect_features: Sequence[torch.Tensor],
                           mask: torch.Tensor) -> torch.Tensor:
    losses = []
    for fo, fd in zip(clean_features, defect_features):
        diff = ((fo - fd) ** 2).mean(dim=1, keepdim=True)
        target = resize_mask(mask, diff.shape[-2:])
        losses.append(((minmax_per_image(diff) - target) ** 2).mean())
    return torch.stack(losses).mean()


def focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5,
               eps: float = 1e-6) -> torch.Tensor:
    """Binary focal loss -a_t (1 - p_t)^gamma log p_t with p_t = p on defect pixels and 1 - p elsewhere,
    a_t = alpha on defect pixels and 1 - alpha elsewhere (alpha 0.5: no class weighting, a constant 1/2);
    `target` may be fractional (a resized mask): the loss is then the target-weighted mix of both terms."""
    p = prob.clamp(eps, 1.0 - eps)
    pos = -alpha * (1.0 - p) ** gamma * torch.log(p)
    neg = -(1.0 - alpha) * p ** gamma * torch.log(1.0 - p)
    return (target * pos + (1.0 - target) * neg).mean()


def perceptual_l1(features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([(a - b).abs().mean() for a, b in zip(features_a, features_b)]).mean()


def feature_repair_loss(repaired: Sequence[torch.Tensor], clean: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([F.mse_loss(r, c) for r, c in zip(repaired, clean)]).mean()
