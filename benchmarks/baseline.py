"""The per-pixel Gaussian baseline: what a trained model must beat on an aligned part.

    python -m benchmarks.baseline --data DIR --category CAT --image-size 224x544 [--mean-filter 21] [--json OUT]

Fit: per pixel and colour channel, the mean and standard deviation of the good training images (RGB in [0, 1]
at --image-size). Map: the squared z-score averaged over the channels, then the same k x k zero-padded mean
filter as FAIR's scoring; image score = max of the map. It needs no training and no torch, and it is strong
wherever the camera and the part do not move (the part's own structure cancels out), which is why a
reconstruction model has to be measured against it on real data (see `../shared/data/ball_screw`).
Evaluated by `benchmarks.evaluate` on the test split, as `benchmarks.accuracy` evaluates a model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from benchmarks.evaluate import evaluate, json_ready
from benchmarks.report import metrics_table
from train.errors import ConfigError, InspectError

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
        self.mean: Optional[np.ndarray] = None
        self.std: Optional[np.ndarray] = None

    def fit(self, frames: np.ndarray) -> "PixelGaussian":
        """frames: uint8 (N, H, W, 3) good images, N >= 2."""
        if frames.ndim != 4 or frames.shape[0] < 2:
            raise ConfigError(f"the Gaussian baseline needs at least 2 good images, got {frames.shape[0]}")
        total = np.zeros(frames.shape[1:], np.float64)
        squares = np.zeros(frames.shape[1:], np.float64)
        for f in frames:  # one image at a time: no (N, H, W, 3) float64 copy
            x = f.astype(np.float64) / 255.0
            total += x
            squares += x * x
        n = frames.shape[0]
        self.mean = total / n
        var = np.maximum(squares / n - self.mean ** 2, 0.0) * n / (n - 1)
        self.std = np.maximum(np.sqrt(var), self.std_floor)
        return self

    def __call__(self, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise ConfigError("fit() the baseline on good images first")
        if frames.shape[1:] != self.mean.shape:
            raise ConfigError(f"frames {frames.shape[1:]} do not match the fitted size {self.mean.shape}")
        z = (frames.astype(np.float64) / 255.0 - self.mean) / self.std
        raw = (z * z).mean(axis=-1).astype(np.float32)  # (N, H, W)
        k = self.mean_filter
        maps = np.stack([cv2.boxFilter(m, -1, (k, k), normalize=True, borderType=cv2.BORDER_CONSTANT)
                         for m in raw])
        return maps[:, None], maps.reshape(maps.shape[0], -1).max(axis=1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.baseline",
                                description="Per-pixel Gaussian baseline (no training) on a test split.")
    p.add_argument("--data", required=True, help="data root (MVTec/MPDD layout or VisA)")
    p.add_argument("--category", default=None)
    p.add_argument("--image-size", required=True, help="N or HxW, as the model's --image-size")
    p.add_argument("--mean-filter", type=int, default=21, help="k of the k x k mean filter (default 21, as FAIR)")
    p.add_argument("--json", default=None, help="where to write the results JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run_baseline(args: argparse.Namespace) -> Dict[str, Any]:
    from train.config import parse_image_size
    from train.data import find_samples, load_images, load_masks

    size_hw = parse_image_size(args.image_size)
    progress = not args.quiet
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_baseline(args)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    except (InspectError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    h, w = report["image_size"]
    print(metrics_table(report, f"{report['category']}  (per-pixel Gaussian, {h}x{w}, "
                                f"{report['n_train']} good training images, mean filter {report['mean_filter']})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
