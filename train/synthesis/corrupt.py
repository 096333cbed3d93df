"""FAIR's anomaly synthesis for a batch (the FAIR paper's "Training" section).

Per image: 50 % the large-CutPaste branch, 50 % the Perlin branch; in either branch a 50 % chance of no
corruption (so a quarter of the images get each kind of anomaly and half stay clean). The Perlin branch fills
a DRAEM Perlin mask ``m`` with a texture::

    corrupted = image·(1 − m) + (1 − β)·texture·m + β·image·m,   β ~ U[0, 0.8)

Textures are, by default, other images of the same batch (FAIR's no-DTD setting), moved (flip/rotation and a
random circular shift, so an object's texture does not land on the same object part) and augmented with a hue
rotation in YIQ space, brightness/contrast jitter and channel dropout; an external texture tensor (e.g. from
:func:`train.synthesis.textures.load_texture_folder`) can replace them.

The 30 % chance of a ±90° rotation of the training image is :func:`random_rotate`, kept apart from
:func:`synthesize_anomalies` because it changes the *target* too: the training loop must rotate the clean
batch first and use the rotated batch as the target (or call :func:`make_training_batch`, which does both).

All randomness comes from the passed CPU ``torch.Generator`` (drawn in a fixed order), so a seeded run is
deterministic; the images may live on any device.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from train.synthesis.cutpaste import large_cutpaste
from train.synthesis.perlin import perlin_masks

# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.595716, -0.274453, -0.321263],
                         [0.211456, -0.522591, 0.311135]], dtype=torch.float32)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)

BETA_MAX = 0.8
ROTATE_P = 0.3
CHANNEL_DROPOUT_P = 0.3


def random_rotate(images: torch.Tensor, generator: torch.Generator, p: float = ROTATE_P) -> torch.Tensor:
    """Rotate each image of (N, C, H, W) with probability ``p``: by ±90° when H == W; for non-square sizes by
    180° instead (a 90° turn would change the shape; 180° keeps it and is the closest equivalent)."""
    n, _, h, w = images.shape
    hit = torch.rand((n,), generator=generator) < p
    direction = torch.rand((n,), generator=generator) < 0.5
    if not bool(hit.any()):
        return images
    out = images.clone()
    dev = images.device
    if h == w:
        for k, sel in ((1, hit & direction), (-1, hit & ~direction)):
            idx = torch.nonzero(sel).flatten().to(dev)
            if idx.numel():
                out[idx] = torch.rot90(images[idx], k, dims=(-2, -1))
    else:
        idx = torch.nonzero(hit).flatten().to(dev)
        out[idx] = torch.flip(images[idx], dims=(-2, -1))
    return out


def _move_textures(tex: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip/rotate by 180° and circularly shift each texture by a random offset."""
    k, _, h, w = tex.shape
    flips = torch.randint(0, 4, (k,), generator=generator).tolist()
    dy = torch.randint(0, h, (k,), generator=generator).tolist()
    dx = torch.randint(0, w, (k,), generator=generator).tolist()
    out = []
    for i in range(k):
        t = tex[i]
        if flips[i] == 1:
            t = torch.flip(t, dims=(-1,))
        elif flips[i] == 2:
            t = torch.flip(t, dims=(-2,))
        elif flips[i] == 3:
            t = torch.flip(t, dims=(-2, -1))
        out.append(torch.roll(t, shifts=(dy[i], dx[i]), dims=(-2, -1)))
    return torch.stack(out)


def augment_textures(tex: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colour augmentation of (K, 3, H, W) textures in [0, 1]: hue rotation (any angle, YIQ), contrast
    ×U[0.6, 1.4] about the mean, brightness +U[-0.2, 0.2], and with probability 0.3 one channel set to zero."""
    k = tex.shape[0]
    if k == 0:
        return tex
    theta = (torch.rand((k,), generator=generator) * 2.0 - 1.0) * math.pi
    contrast = 0.6 + 0.8 * torch.rand((k,), generator=generator)
    brightness = 0.4 * torch.rand((k,), generator=generator) - 0.2
    drop = torch.rand((k,), generator=generator) < CHANNEL_DROPOUT_P
    drop_ch = torch.randint(0, 3, (k,), generator=generator)

    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.zeros((k, 3, 3))
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    mats = _YIQ2RGB @ rot @ _RGB2YIQ  # (k, 3, 3)
    keep = torch.ones((k, 3))
    keep[drop, drop_ch[drop]] = 0.0
    mats = mats * keep[:, :, None]  # dropping an output channel = zeroing that row

    dev, dt = tex.device, tex.dtype
    x = torch.einsum("kij,kjhw->kihw", mats.to(dev, dt), tex)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    c = contrast.to(dev, dt)[:, None, None, None]
    b = brightness.to(dev, dt)[:, None, None, None]
    x = (x - mean) * c + mean + b
    x = x * keep.to(dev, dt)[:, :, None, None]  # keep dropped channels at zero after the brightness shift
    return x.clamp_(0.0, 1.0)


def _fit(tex: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tex.shape[-2:] == (h, w):
        return tex
    return F.interpolate(tex, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def foreign_textures(clean: torch.Tensor, idx: torch.Tensor, generator: torch.Generator,
                     textures: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The foreign image pasted into each of the images ``clean[idx]``: a random texture of ``textures`` (any
    size, resized) when given, else another image of the batch (itself only when the batch has one image);
    moved (`_move_textures`) and colour-augmented (`augment_textures`). (K, 3, H, W) on clean's device."""
    n, _, h, w = clean.shape
    k = int(idx.numel())
    if textures is not None:
        pick = torch.randint(0, textures.shape[0], (k,), generator=generator)
        tex = _fit(textures[pick.to(textures.device)].to(clean.device, clean.dtype), h, w)
    else:
        shift = torch.randint(1, n, (k,), generator=generator) if n > 1 else torch.zeros(k, dtype=torch.long)
        tex = clean[((idx + shift) % n).to(clean.device)]
    return augment_textures(_move_textures(tex, generator), generator)


def synthesize_anomalies(clean: torch.Tensor, generator: torch.Generator,
                         textures: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``clean`` (N, 3, H, W) float in [0, 1] -> (corrupted (N, 3, H, W), mask (N, 1, H, W) float {0, 1}).

    Pixels outside the mask are exactly the clean ones. ``textures`` (M, 3, h, w) in [0, 1], any size (resized
    to H×W), replaces the default of using other images of the batch. The clean batch is not modified."""
    if clean.ndim != 4 or clean.shape[1] != 3:
        raise ValueError(f"clean must be (N, 3, H, W), got {tuple(clean.shape)}")
    n, _, h, w = clean.shape
    dev, dt = clean.device, clean.dtype
    corrupted = clean.clone()
    mask = torch.zeros((n, 1, h, w), dtype=dt, device=dev)
    if n == 0:
        return corrupted, mask

    cutpaste_branch = torch.rand((n,), generator=generator) < 0.5
    corrupt = torch.rand((n,), generator=generator) >= 0.5
    beta = torch.rand((n,), generator=generator) * BETA_MAX
    perlin_idx = torch.nonzero(~cutpaste_branch & corrupt).flatten()
    cut_idx = torch.nonzero(cutpaste_branch & corrupt).flatten()

    k = int(perlin_idx.numel())
    if k:
        m = perlin_masks(k, (h, w), generator)[:, None]  # (k, 1, H, W), CPU
        tex = foreign_textures(clean, perlin_idx, generator, textures)
        m = m.to(dev, dt)
        b = beta[perlin_idx].to(dev, dt)[:, None, None, None]
        img = clean[perlin_idx.to(dev)]
        blended = img * (1.0 - m) + (1.0 - b) * tex * m + b * img * m
        corrupted[perlin_idx.to(dev)] = torch.where(m > 0, blended, img)
        mask[perlin_idx.to(dev)] = m

    for i in cut_idx.tolist():
        corrupted[i], mask[i] = large_cutpaste(clean[i], generator)
    return corrupted, mask


def make_training_batch(clean: torch.Tensor, generator: torch.Generator, textures: Optional[torch.Tensor] = None,
                        rotate_p: float = ROTATE_P) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FAIR's full recipe for one batch: (target, corrupted, mask) with ``target = random_rotate(clean)`` and
    ``corrupted, mask = synthesize_anomalies(target)``."""
    target = random_rotate(clean, generator, rotate_p)
    corrupted, mask = synthesize_anomalies(target, generator, textures)
    return target, corrupted, mask
