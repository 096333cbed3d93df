"""Noise blending of noise-to-norm (Eq. 1 of the paper): x = (1 - lam) * x0 + lam * eps.

x0 is the image normalised per channel with mean 0.5 and std 0.5 (x0 = (image - 0.5) / 0.5, so [0, 1] -> [-1, 1]),
eps ~ N(0.5, 0.5) (mean 0.5, std 0.5), lam in [0, 1). Written literally as the paper states it: the noise has mean
0.5 while x0 is centred near 0; the network learns that offset.

- Training (`self.training`): a fresh field each call, drawn from a passed CPU generator (the training loop's, so a
  seeded run is reproducible and resumable) or from the module's own.
- Evaluation / export: a fixed field, a constant of the graph, regenerated from `seed` at construction (a
  non-persistent buffer: reproducible, and not stored with the weights), so a frame always gets the same score.
- An explicit `noise` tensor (standard normal, (N, C, H, W) or (1, C, H, W)) replaces either; it is the graph's
  optional run-time noise input. eps = 0.5 + 0.5 * noise.
- lam == 0: the clean path, x = x0; no field is made and any given `noise` is ignored.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from train.errors import ConfigError

NOISE_MEAN = 0.5
NOISE_STD = 0.5
NORM_MEAN = 0.5
NORM_STD = 0.5


def noise_field(
    shape: Tuple[int, ...], generator: Optional[torch.Generator] = None, seed: Optional[int] = None
) -> torch.Tensor:
    """A standard-normal CPU field of `shape`, from `generator`, or from a new generator seeded with `seed`."""
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed or 0))
    return torch.randn(tuple(int(s) for s in shape), generator=generator, dtype=torch.float32)


class NoiseBlend(nn.Module):
    """image (N, C, H, W) float in [0, 1] -> blended, normalised input of the reconstruction network."""

    def __init__(self, image_size: Tuple[int, int], lam: float = 0.3, seed: int = 0, channels: int = 3):
        super().__init__()
        lam = float(lam)
        if not 0.0 <= lam < 1.0:
            raise ConfigError(f"noise coefficient lam={lam} is outside [0, 1); use e.g. 0.3 (the paper's best)")
        h, w = (int(image_size), int(image_size)) if isinstance(image_size, int) else map(int, image_size)
        self.image_size = (h, w)
        self.lam = lam
        self.seed = int(seed)
        self.channels = int(channels)
        # The training-time stream when no generator is passed (seeded differently from the eval field).
        self._own_generator = torch.Generator().manual_seed(self.seed + 1)
        if lam > 0:
            field = noise_field((1, self.channels, h, w), seed=self.seed)
            self.register_buffer("eval_noise", field, persistent=False)
        else:
            self.register_buffer("eval_noise", None, persistent=False)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, lam={self.lam}, seed={self.seed}"

    def fresh_noise(self, like: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A new standard-normal field shaped like `like`, drawn on the CPU (so any device gives one stream)."""
        field = noise_field(tuple(like.shape), generator=generator or self._own_generator)
        return field.to(device=like.device, dtype=like.dtype)

    def forward(
        self,
        image: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        x0 = (image - NORM_MEAN) * (1.0 / NORM_STD)
        if self.lam == 0.0:
            return x0
        if noise is None:
            if self.training:
                noise = self.fresh_noise(image, generator)
            else:
                noise = self.eval_noise
                if not torch.jit.is_tracing() and tuple(noise.shape[-2:]) != tuple(image.shape[-2:]):
                    raise ConfigError(
                        f"image size {tuple(image.shape[-2:])} differs from the model's {self.image_size}; "
                        "resize the input (the inspection graph does) or build the model for that size"
                    )
        eps = noise * NOISE_STD + NOISE_MEAN
        return x0 * (1.0 - self.lam) + eps * self.lam
