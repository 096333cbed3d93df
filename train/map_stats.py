"""Fit a run's per-pixel map standardisation on its good training images (fixed camera, part in place).

    python -m train.map_stats --run RUN [--data DIR --category CAT] [--images N] [--batch-size 8]
                              [--split fit|holdout] [--device auto|cpu|cuda] [--remove] [--no-progress]

Runs the trained model over the run's good training images (the same ones it trained on: `train/good` minus
the `--holdout` part, so that threshold calibration still sees unseen images; or, with `--split holdout`, that
held-out part: images the model never saw, whose maps spread as new good frames' do, which a memory bank or a
Gaussian fitted on the training images underestimates), and writes the per-pixel mean
and standard deviation of the anomaly map to RUN/map_stats.safetensors, tied to the weights and the scoring
options. From then on `load_graph` (evaluation, export, the PyTorch runtime backend) outputs z-scores: see
`train.ops.standardize`. `--remove` deletes the file again. Export after fitting, and calibrate the threshold
after exporting (scores change scale).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from runtime.cli_flags import add_device, add_no_progress
from runtime.errors import cli_exit, writing
from train.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.map_stats",
                                description="Fit the per-pixel standardisation of a run's anomaly map on good images.")
    p.add_argument("--run", required=True, help="trained run folder")
    p.add_argument("--data", help="data root (default: the run's)")
    p.add_argument("--category", help="category under --data (default: the run's when --data is not given)")
    p.add_argument("--images", type=int, default=None, help="use at most N images, evenly spread (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--split", choices=("fit", "holdout"), default="fit",
                   help="fit: the good images the run was fitted/trained on (default); holdout: the run's --holdout "
                        "part, unseen by the model (better statistics for fitted feature methods; a threshold "
                        "calibrated on the same images is then slightly optimistic)")
    add_device(p, torch=True, help="where to run the model")
    p.add_argument("--remove", action="store_true", help="delete the run's map statistics instead")
    add_no_progress(p)
    return p


def fit(args: argparse.Namespace) -> dict:
    from train import runs
    from train.data import find_samples, load_images
    from imagesets.subsets import split_holdout, spread as spread_samples
    from train.loop import resolve_device
    from train.ops.standardize import MapStatistics

    run = Path(args.run)
    config = runs.load_config(run)
    if args.remove:
        path = run / runs.MAP_STATS
        existed = path.is_file()
        with writing(path):
            path.unlink(missing_ok=True)
        return {"run": str(run), "removed": existed}
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = args.data or config.data
    category = args.category if args.data or args.category is not None else config.category
    if not data:
        raise ConfigError(f"run {run} records no data folder: pass --data (and --category)")
    samples = find_samples(data, category, "train")
    if config.holdout:
        fitted, held = split_holdout(samples, config.holdout)
        samples = held if args.split == "holdout" else fitted
    elif args.split == "holdout":
        raise ConfigError(f"--split holdout: run {run} was fitted without --holdout, so no good image is unseen; "
                          f"use --split fit or fit the run again with --holdout 0.2")
    if args.images is not None and args.images < 2:
        raise ConfigError(f"--images must be >= 2, got {args.images}")
    samples = spread_samples(samples, args.images)
    if len(samples) < 2:
        raise ConfigError(f"need at least 2 good images to fit map statistics, found {len(samples)} in {data}")

    device = resolve_device(args.device)
    graph, config = runs.load_graph(run, str(device), map_stats=False)
    frames = load_images(samples, tuple(config.image_size), progress=not args.no_progress)
    stats = MapStatistics()
    with torch.inference_mode():
        for start in tqdm(range(0, len(frames), args.batch_size), desc="map statistics", unit="batch",
                          disable=args.no_progress, leave=False):
            maps, _ = graph(torch.from_numpy(frames[start:start + args.batch_size]).to(device))
            stats.update(maps)
    mean, std = stats.result()
    with writing(run / runs.MAP_STATS):
        path = runs.save_map_statistics(run, config, mean, std, stats.n, args.split)
    return {"run": str(run), "map_stats": str(path), "images": stats.n, "split": args.split,
            "image_size": list(config.image_size),
            "mean_of_mean": float(mean.mean()), "median_std": float(std.median())}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    report = fit(args)
    if "removed" in report:
        print(f"{report['run']}: map statistics {'removed' if report['removed'] else 'were not there'}")
    else:
        print(f"wrote {report['map_stats']}: {report['images']} good images ({report['split']}), map mean {report['mean_of_mean']:.4g}, "
              f"median std {report['median_std']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
