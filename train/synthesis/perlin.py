"""2-D gradient Perlin noise and DRAEM-style Perlin masks, in torch, all randomness from a CPU ``torch.Generator``.

Masks follow the FAIR/DRAEM recipe: noise with ``2**k`` cells per axis (k drawn independently per axis from
``[min_scale_exp, max_scale_exp)``), rotated by a random angle in [-90°, 90°) with zero fill, thresholded at 0.5.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)  # 6t^5 - 15t^4 + 10t^3


def perlin_noise(shape_hw: Tuple[int, int], res_hw: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Perlin noise of ``shape_hw`` with ``res_hw`` cells per axis, float32 (H, W), roughly in [-1, 1].

    H and W need not be multiples of the resolution: the noise is made at the next multiples and cropped."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    ry, rx = max(1, int(res_hw[0])), max(1, int(res_hw[1]))
    ch, cw = -(-h // ry), -(-w // rx)  # cell size in pixels (ceil): the padded field is (ry*ch, rx*cw)
    angles = 2.0 * math.pi * torch.rand((ry + 1, rx + 1), generator=generator)
    gy, gx = torch.cos(angles), torch.sin(angles)  # unit gradient at each lattice point

    # Work on the padded field as (ry, ch, rx, cw): cell index x offset inside the cell, so every corner term
    # is a broadcast of a per-cell gradient with a per-offset distance (no gathers).
    fy = (torch.arange(ch, dtype=torch.float32) / ch)[None, :, None, None]
    fx = (torch.arange(cw, dtype=torch.float32) / cw)[None, None, None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        cy = gy[dy:dy + ry, dx:dx + rx][:, None, :, None]
        cx = gx[dy:dy + ry, dx:dx + rx][:, None, :, None]
        return cy * (fy - dy) + cx * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    n0 = torch.lerp(corner(0, 0), corner(1, 0), u)  # along y at the cell's left edge
    n1 = torch.lerp(corner(0, 1), corner(1, 1), u)  # along y at the cell's right edge
    field = math.sqrt(2.0) * torch.lerp(n0, n1, v)  # (ry, ch, rx, cw)
    return field.reshape(ry * ch, rx * cw)[:h, :w].contiguous()


def _draw_scale(generator: torch.Generator, lo: int, hi: int) -> int:
    return 2 ** int(torch.randint(lo, hi, (1,), generator=generator))


def rotate_fields(fields: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate (N, H, W) fields about their centres by ``angles_deg`` (N,) in pixel space (aspect ratio kept),
    bilinear, zero outside."""
    n, h, w = fields.shape
    a = angles_deg.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid works in normalised coordinates; conjugate the rotation by the (W/2, H/2) scaling.
    theta = torch.zeros((n, 2, 3), dtype=torch.float32)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (h / w)
    theta[:, 1, 0] = sin * (w / h)
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    out = F.grid_sample(fields[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0]


def perlin_masks(n: int, shape_hw: Tuple[int, int], generator: torch.Generator, min_scale_exp: int = 0,
                 max_scale_exp: int = 6, threshold: float = 0.5) -> torch.Tensor:
    """``n`` independent Perlin masks, float32 (n, H, W) in {0, 1}. An empty mask can happen and is fine."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if n == 0:
        return torch.zeros((0, h, w))
    noise = []
    for _ in range(n):
        sy = _draw_scale(generator, min_scale_exp, max_scale_exp)
        sx = _draw_scale(generator, min_scale_exp, max_scale_exp)
        noise.append(perlin_noise((h, w), (sy, sx), generator))
    angles = torch.rand((n,), generator=generator) * 180.0 - 90.0
    rotated = rotate_fields(torch.stack(noise), angles)
    return (rotated > threshold).to(torch.float32)


def perlin_mask(shape_hw: Tuple[int, int], generator: torch.Generator, min_scale_exp: int = 0,
                max_scale_exp: int = 6, threshold: float = 0.5) -> torch.Tensor:
    """One Perlin mask, float32 (H, W) in {0, 1}: scale ``2**k`` per axis with k in [min, max) drawn
    independently, a random rotation, then ``noise > threshold``."""
    return perlin_masks(1, shape_hw, generator, min_scale_exp, max_scale_exp, threshold)[0]
