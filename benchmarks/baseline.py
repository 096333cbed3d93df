"""The per-pixel Gaussian baseline: what a trained model must beat on an aligned part.

    python -m benchmarks.baseline --data DIR --category CAT --image-size 224x544 [--mean-filter 21] [--json OUT]

Fit: per pixel and colour channel, the mean and standard deviation of the good training images (RGB in [0, 1]
at --image-size), with the accumulator of `train.map_stats`. Map: the squared z-score averaged over the
channels, then FAIR's k x k zero-padded mean filter (`train.ops.scoring.box_filter`); image score = max of the
map. It needs no training, and it is strong
wherever the camera and the part do not move (the part's own structure cancels out), which is why a
reconstruction model has to be measured against it on real data (docs/results.md: the ball_screw rows).
Evaluated by `calibration.evaluate` on the test split, as `benchmarks.accuracy` evaluates a model.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from calibration.evaluate import evaluate, json_ready
from benchmarks.report import metrics_table
from runtime.errors import cli_exit
from runtime.files import write_json
from train.errors import ConfigError
from train.ops.scoring import box_filter
from train.ops.standardize import MapStatistics

#: Floor of the per-pixel standard deviation (in [0, 1] units): a pixel that never changes over the good
#: images (saturated, or a fixed black border) would otherwise give an infinite z-score for any change.
STD_FLOOR = 1.0 / 255.0


class PixelGaussian:
    """Per-pixel, per-channel Gaussian of good frames; called like an `infer` function of `evaluate`."""

    def __init__(self, mean_filter: int = 21, std_floor: float = STD_FLOOR):
        if mean_filter < 1 or mean_filter % 2 == 0:
            raise ConfigError(f"--mean-filter must be a positive odd number, got {mean_filter}")
        self.mean_filter = int(mean_filter)
        self.std_floor = float(std_floor)
        self.mean: Optional[torch.Tensor] = None
        self.std: Optional[torch.Tensor] = None

    def fit(self, frames: np.ndarray, batch_size: int = 32) -> "PixelGaussian":
        """frames: uint8 (N, H, W, 3) good images, N >= 2."""
        if frames.ndim != 4 or frames.shape[0] < 2:
            raise ConfigError(f"the Gaussian baseline needs at least 2 good images, got {frames.shape[0]}")
        channels = [MapStatistics() for _ in range(frames.shape[-1])]
        for start in range(0, frames.shape[0], batch_size):  # no (N, 3, H, W) float copy of the whole set
            x = _as_float(frames[start:start + batch_size])
            for c, stats in enumerate(channels):
                stats.update(x[:, c:c + 1])
        means, stds = zip(*(stats.result() for stats in channels))
        self.mean = torch.stack(means)[None]  # (1, 3, H, W)
        self.std = torch.clamp(torch.stack(stds), min=self.std_floor)[None]
        return self

    def __call__(self, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise ConfigError("fit() the baseline on good images first")
        if frames.shape[1:] != (self.mean.shape[2], self.mean.shape[3], self.mean.shape[1]):
            raise ConfigError(f"frames {frames.shape[1:]} do not match the fitted size {tuple(self.mean.shape[1:])}")
        z = (_as_float(frames) - self.mean) / self.std
        maps = box_filter((z * z).mean(dim=1, keepdim=True), self.mean_filter)
        return maps.numpy(), torch.amax(maps, dim=(1, 2, 3)).numpy()


def _as_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(torch.float32) / 255.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.baseline",
                                description="Per-pixel Gaussian baseline (no training) on a test split.")
    p.add_argument("--data", required=True, metavar="ROOT", help="data root (MVTec/MPDD layout or VisA)")
    p.add_argument("--category", default=None, metavar="CAT", help="category under --data")
    p.add_argument("--image-size", required=True, help="N or HxW, as the model's --image-size")
    p.add_argument("--mean-filter", type=int, default=21, help="k of the k x k mean filter (default 21, as FAIR)")
    p.add_argument("--json", default=None, metavar="PATH", help="where to write the results JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_baseline(args: argparse.Namespace) -> Dict[str, Any]:
    from train.config import parse_image_size
    from imagesets import find_samples, load_images, load_masks

    size_hw = parse_image_size(args.image_size)
    progress = not args.no_progress
    good = find_samples(args.data, args.category, "train")
    test = find_samples(args.data, args.category, "test")
    if not good or not test:
        raise ConfigError(f"need train/good and test images for category {args.category!r} in {args.data}")
    model = PixelGaussian(args.mean_filter).fit(load_images(good, size_hw, progress=progress))
    frames = load_images(test, size_hw, progress=progress)
    result = evaluate(model, frames, [int(s.label) for s in test], load_masks(test, size_hw),
                      [str(s.defect_type) for s in test], progress=progress)
    return {"baseline": "per-pixel gaussian", "data": str(args.data), "category": args.category,
            "image_size": list(size_hw), "mean_filter": args.mean_filter, "n_train": len(good),
            **json_ready(result)}


def _run(args: argparse.Namespace) -> int:
    report = run_baseline(args)
    if args.json:
        write_json(args.json, report, f"--json {args.json}")
    h, w = report["image_size"]
    print(metrics_table(report, f"{report['category']}  (per-pixel Gaussian, {h}x{w}, "
                                f"{report['n_train']} good training images, mean filter {report['mean_filter']})"))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
