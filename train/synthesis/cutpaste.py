"""Large CutPaste (FAIR): a patch with sides 80–90 % of the image, rotated or flipped, pasted at a random
offset, clipped at the border; the mask is the rectangle the pasted patch covers."""
from __future__ import annotations

from typing import Tuple

import torch


def _randint(lo: int, hi: int, generator: torch.Generator) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=generator))


def _transform(patch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate by 90/180/270° (90/270 only when the patch is square, so its shape is kept) or flip it."""
    square = patch.shape[-1] == patch.shape[-2]
    ops = ["rot180", "hflip", "vflip"] + (["rot90", "rot270"] if square else [])
    op = ops[_randint(0, len(ops) - 1, generator)]
    if op == "rot90":
        return torch.rot90(patch, 1, dims=(-2, -1))
    if op == "rot270":
        return torch.rot90(patch, -1, dims=(-2, -1))
    if op == "rot180":
        return torch.flip(patch, dims=(-2, -1))
    if op == "hflip":
        return torch.flip(patch, dims=(-1,))
    return torch.flip(patch, dims=(-2,))


def large_cutpaste(image: torch.Tensor, generator: torch.Generator,
                   scale: Tuple[float, float] = (0.8, 0.9)) -> Tuple[torch.Tensor, torch.Tensor]:
    """``image`` (C, H, W) -> (corrupted (C, H, W), mask (1, H, W) float {0, 1}).

    The patch has sides ``f·H`` by ``f·W`` with one f drawn from ``scale`` (so a square image gets a square
    patch, which may also be turned by 90°); its top-left corner lands anywhere from half a patch outside the
    top/left border to half a patch outside the bottom/right border, and whatever falls outside is clipped."""
    c, h, w = image.shape
    f = scale[0] + (scale[1] - scale[0]) * float(torch.rand((1,), generator=generator))
    ph, pw = max(1, round(f * h)), max(1, round(f * w))
    sy, sx = _randint(0, h - ph, generator), _randint(0, w - pw, generator)
    patch = _transform(image[:, sy:sy + ph, sx:sx + pw], generator)
    ty = _randint(-(ph // 2), h - (ph + 1) // 2, generator)
    tx = _randint(-(pw // 2), w - (pw + 1) // 2, generator)
    y0, y1 = max(ty, 0), min(ty + ph, h)
    x0, x1 = max(tx, 0), min(tx + pw, w)
    corrupted = image.clone()
    mask = torch.zeros((1, h, w), dtype=image.dtype, device=image.device)
    corrupted[:, y0:y1, x0:x1] = patch[:, y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    mask[:, y0:y1, x0:x1] = 1.0
    return corrupted, mask
