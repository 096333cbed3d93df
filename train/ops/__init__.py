"""Export-friendly pre-processing and scoring ops (torch modules).

Each file holds one job: `color` (RGB -> gray, RGB -> CIELAB or its a*b*), `highpass` (frequency and Sobel high-pass
inputs), `ssim` (SSIM and its components for losses), `msgms` (multi-scale gradient-magnitude similarity),
`scoring` (FAIR's anomaly map and image score); for the feature-based methods (PatchCore, PaDiM): `patch_features`
(neighbourhood pooling + multi-layer concat), `knn` (chunked nearest-neighbour distance), `coreset` (greedy
k-center, fit only), `mahalanobis` (streaming Gaussians, Mahalanobis distance), `blur` (Gaussian smoothing),
`map_scorer` (patch map -> image-size map and score). Everything here is used for training *and* exported to ONNX
unchanged, so it is written with conv, matmul, elementwise, pooling and pad only: no FFT/DFT op, no python
branching on tensor values, constants as non-persistent float32 buffers (they never land in the weights file).
"""
from __future__ import annotations

from train.ops.color import rgb_to_ab, rgb_to_gray, rgb_to_lab
from train.ops.highpass import HIGHPASS_NAMES, FrequencyHighPass, SobelHighPass, make_highpass
from train.ops.msgms import MSGMS
from train.ops.scoring import FairScorer
from train.ops.ssim import SSIMLoss, gaussian_kernel1d, ssim, ssim_components, ssim_map

__all__ = [
    "rgb_to_ab", "rgb_to_gray", "rgb_to_lab",
    "HIGHPASS_NAMES", "FrequencyHighPass", "SobelHighPass", "make_highpass",
    "MSGMS", "FairScorer",
    "SSIMLoss", "gaussian_kernel1d", "ssim", "ssim_components", "ssim_map",
]
