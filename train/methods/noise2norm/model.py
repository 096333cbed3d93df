"""Noise-to-norm's anomaly model (paper-noise-to-norm.txt): an M-net reconstructs a noise-blended image.

Training: blend a good image with a fresh Gaussian field (x = (1 - lam) x0 + lam eps), reconstruct it, and
minimise MS-SSIM + L1 (Zhao et al.) against the clean image. Inspection: blend the frame with a fixed, seeded
field (a constant of the graph; an optional `noise` input replaces it), reconstruct, and score the
reconstruction against the frame with the per-pixel MS-SSIM + L1 error; the image score is the map's maximum.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from train.nets.mnet import MNet
from train.ops.msssim import MSSSIM, SIGMAS
from train.ops.noise import NoiseBlend


class Noise2NormModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] [, noise (N|1,3,H,W) standard normal] -> (anomaly_map (N,1,H,W), score (N,))."""

    def __init__(self, c: int, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        self.image_size = tuple(int(v) for v in image_size)
        self.blend = NoiseBlend(self.image_size, lam=options["lam"], seed=options["noise_seed"], channels=3)
        self.net = MNet(c)
        self.metric = MSSSIM(SIGMAS, alpha=options["alpha"])

    def reconstruct(
        self,
        image: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """The M-net's reconstruction of the noise-blended image, in [0, 1] RGB space (not clamped)."""
        return self.net(self.blend(image, noise, generator))

    def forward(self, image: torch.Tensor, noise: Optional[torch.Tensor] = None):
        recon = torch.clamp(self.reconstruct(image, noise), 0.0, 1.0)
        anomaly_map = self.metric.anomaly_map(recon, image)
        score = torch.amax(anomaly_map, dim=(1, 2, 3))
        return anomaly_map, score
