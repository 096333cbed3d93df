"""F2PAD's pixel prior (Sec. III-C2, Eqs. 9-10): a mixture of Gaussians over the colours of good pixels.

Fitted at refine time (not at the feature method's fit time, so runs made before this module exist work
unchanged) on pixels drawn at random from the run's good training images, by variational Bayes (the paper's
ref [44]; scikit-learn's BayesianGaussianMixture). The mixture weights are deliberately dropped (equal priors,
as in the paper) and the per-pixel term is the smallest squared Mahalanobis distance to a component:

    R2_prior(X) = sum_ij min_k (x_ij - mu_k)^T Sigma_k^-1 (x_ij - mu_k)

Components the variational fit left empty (weight below `min_weight`) are dropped: with equal priors their
broad prior-shaped Gaussians would otherwise pull pixels anywhere. Colours are ImageNet-normalised RGB.
Saved as safetensors (means, precisions) with the fit settings in the metadata.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from train.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 ImageNet-normalised (..., 3)."""
    return ((images.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32))
            / np.array(IMAGENET_STD, np.float32))


class PixelPrior(nn.Module):
    """(N, 3, H, W) normalised colours -> (N, 1, H, W) min over components of the squared Mahalanobis distance."""

    def __init__(self, means: torch.Tensor, precisions: torch.Tensor):
        super().__init__()
        if means.ndim != 2 or means.shape[1] != 3 or precisions.shape != (means.shape[0], 3, 3):
            raise ConfigError(f"pixel prior needs means (K, 3) and precisions (K, 3, 3), got "
                              f"{tuple(means.shape)} and {tuple(precisions.shape)}")
        self.register_buffer("means", means.to(torch.float32))
        self.register_buffer("precisions", precisions.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, 1, c)  # (P, 1, 3)
        diff = pixels - self.means  # (P, K, 3)
        dist = torch.einsum("pki,kij,pkj->pk", diff, self.precisions, diff)
        return dist.amin(dim=1).reshape(n, h, w).unsqueeze(1)

    def save(self, path: Path, metadata: Dict[str, str]) -> None:
        from safetensors.torch import save_file

        save_file({"means": self.means.cpu().contiguous(), "precisions": self.precisions.cpu().contiguous()},
                  str(path), metadata={k: str(v) for k, v in metadata.items()})

    @classmethod
    def load(cls, path: Path, expect: Optional[Dict[str, str]] = None) -> Optional["PixelPrior"]:
        """The prior stored at `path`, or None when it is absent or was fitted with other settings."""
        from safetensors import safe_open

        if not Path(path).is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if expect and any(meta.get(k) != str(v) for k, v in expect.items()):
                return None
            return cls(f.get_tensor("means"), f.get_tensor("precisions"))


def sample_pixels(images: Sequence[np.ndarray], count: int, seed: int) -> np.ndarray:
    """`count` pixels drawn uniformly (with a seeded generator) from a list of uint8 (H, W, 3) images,
    spread evenly over the images; returns normalised float32 (count', 3)."""
    if not images:
        raise ConfigError("pixel prior: no good images to sample pixels from")
    rng = np.random.default_rng(seed)
    per_image = max(1, int(np.ceil(count / len(images))))
    picked = []
    for img in images:
        flat = img.reshape(-1, 3)
        picked.append(flat[rng.integers(0, len(flat), size=min(per_image, len(flat)))])
    return normalise_uint8(np.concatenate(picked))


def fit_pixel_prior(pixels: np.ndarray, components: int, seed: int, min_weight: float = 1e-3) -> PixelPrior:
    """Variational-Bayes Gaussian mixture (full covariances) on (P, 3) normalised pixels, weights dropped."""
    from sklearn.mixture import BayesianGaussianMixture

    if len(pixels) < 10 * components:
        raise ConfigError(f"pixel prior: {len(pixels)} pixels are too few for {components} components")
    gmm = BayesianGaussianMixture(n_components=int(components), covariance_type="full", max_iter=200,
                                  random_state=int(seed), reg_covar=1e-4)
    gmm.fit(pixels.astype(np.float64))
    keep = gmm.weights_ >= min_weight
    if not keep.any():
        keep = gmm.weights_ == gmm.weights_.max()
    return PixelPrior(torch.from_numpy(gmm.means_[keep]), torch.from_numpy(gmm.precisions_[keep]))
