"""NDP-Net's anomaly synthesis (paper Eq. 1): a hard paste of a foreign image through a DRAEM Perlin mask,

    I_ad = I_o * (1 - I_m) + I_n * I_m      (no blending factor)

on a fraction `p` of the images (the rest stay clean, mask 0, as in DRAEM). The foreign image I_n is an
ImageNet photo in the paper; offline it is a texture from an external folder when given, else another image of
the batch, moved (flips, rotation, circular shift) and colour-augmented by FAIR's texture augmentation
(`train.synthesis.corrupt`). All randomness comes from the passed CPU generator, in a fixed order.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from train.synthesis.corrupt import foreign_textures
from train.synthesis.perlin import perlin_masks


def paste_anomalies(clean: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                    textures: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``clean`` (N, 3, H, W) in [0, 1] -> (defective (N, 3, H, W), mask (N, 1, H, W) in {0, 1})."""
    n, _, h, w = clean.shape
    dev, dt = clean.device, clean.dtype
    defective = clean.clone()
    mask = torch.zeros((n, 1, h, w), dtype=dt, device=dev)
    hit = torch.nonzero(torch.rand((n,), generator=generator) < p).flatten()
    k = int(hit.numel())
    if k == 0:
        return defective, mask
    m = perlin_masks(k, (h, w), generator)[:, None].to(dev, dt)
    source = foreign_textures(clean, hit, generator, textures)
    idx = hit.to(dev)
    defective[idx] = clean[idx] * (1.0 - m) + source * m
    mask[idx] = m
    return defective, mask
