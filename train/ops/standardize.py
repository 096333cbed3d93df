"""Per-pixel standardisation of an anomaly map by the maps of good images (a fixed camera over a line).

    z(x) = (map(x) - mean_good(x)) / std_good(x),    score = max_x z(x)

A reconstruction model leaves systematic errors where the part itself is hard to restore (specular edges,
the dark border of the field of view, threads that always sit in the same place): on a fixed camera they
are the same in every frame, and they bury small defects in the image score (the max). Dividing by how much
the map varies at each pixel over good frames removes them and keeps what is new. It only makes sense when
the part sits at the same place in every frame; `python -m train.map_stats` fits it for a run and
`train.runs.load_graph` puts it into the inspection graph (two constant (h, w) tensors: one Sub and one Mul
in the exported graph).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

#: Numerical guard: a pixel whose map never varies over the good images (e.g. a saturated border) gets at least
#: this fraction of the median standard deviation, so that a tiny change there cannot give an unbounded z.
STD_FLOOR_OF_MEDIAN = 0.01


def floored_inverse_std(std: torch.Tensor) -> torch.Tensor:
    """1 / std per pixel, with std raised to at least STD_FLOOR_OF_MEDIAN of its median (and 1e-12)."""
    median = float(std.median())
    floor = STD_FLOOR_OF_MEDIAN * median if median > 0 else 1e-12
    return 1.0 / torch.clamp(std, min=floor)


class MapStandardizer(nn.Module):
    """anomaly_map (N, 1, h, w) -> (z-map (N, 1, h, w), score (N,) = max of the z-map)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        if mean.shape != std.shape or mean.dim() != 2:
            raise ValueError(f"mean and std must both be (h, w), got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean.to(torch.float32)[None, None].clone())
        self.register_buffer("inv_std", floored_inverse_std(std.to(torch.float32))[None, None])

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.mean.shape[-2]), int(self.mean.shape[-1])

    def forward(self, anomaly_map: torch.Tensor):
        z = (anomaly_map - self.mean) * self.inv_std
        return z, torch.amax(z, dim=(1, 2, 3))


class MapStatistics:
    """Per-pixel mean and (unbiased) standard deviation of maps, accumulated batch by batch in float64."""

    def __init__(self) -> None:
        self.n = 0
        self._sum = self._squares = None

    def update(self, maps: torch.Tensor) -> None:
        """maps (B, 1, h, w) of good images."""
        m = maps.detach().to("cpu", torch.float64)[:, 0]
        if self._sum is None:
            self._sum, self._squares = torch.zeros_like(m[0]), torch.zeros_like(m[0])
        elif m.shape[1:] != self._sum.shape:
            raise ValueError(f"map size changed from {tuple(self._sum.shape)} to {tuple(m.shape[1:])}")
        self._sum += m.sum(dim=0)
        self._squares += (m * m).sum(dim=0)
        self.n += int(m.shape[0])

    def result(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), (h, w) float32 each."""
        self._check()
        mean = self._sum / self.n
        var = torch.clamp(self._squares / self.n - mean * mean, min=0.0) * (self.n / (self.n - 1))
        return mean.to(torch.float32), var.sqrt().to(torch.float32)

    def pooled(self) -> Tuple[float, float]:
        """(mean, std) over every pixel of every map: one pair for the whole map."""
        self._check()
        count = self.n * self._sum.numel()
        mean = float(self._sum.sum()) / count
        var = max(float(self._squares.sum()) / count - mean * mean, 0.0) * count / (count - 1)
        return mean, var ** 0.5

    def _check(self) -> None:
        if self.n < 2:
            raise ValueError(f"need the maps of at least 2 good images, got {self.n}")
