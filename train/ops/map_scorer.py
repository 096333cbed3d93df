"""Patch-grid distance map -> image-size anomaly map and image score (PatchCore, PaDiM).

Bilinear upsampling to the model's input size, Gaussian smoothing (sigma 4 px by default, as in
PatchCore/anomalib), and the image score as the maximum of the smoothed map, the toolkit's convention
(DESIGN.md: score = max of the map) and what `train.map_stats` standardises.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.ops.blur import GaussianBlur


class UpsampleBlurScorer(nn.Module):
    def __init__(self, image_size: Tuple[int, int], sigma: float = 4.0):
        super().__init__()
        self.size = (int(image_size[0]), int(image_size[1]))
        self.blur = GaussianBlur(sigma, self.size)

    def forward(self, patch_map: torch.Tensor, score: Optional[torch.Tensor] = None):
        """patch_map (N,1,h,w) -> (anomaly_map (N,1,H,W), score (N,)); `score` given = used as is."""
        anomaly_map = self.blur(F.interpolate(patch_map, size=self.size, mode="bilinear", align_corners=False))
        if score is None:
            score = anomaly_map.amax(dim=(1, 2, 3))
        return anomaly_map, score
