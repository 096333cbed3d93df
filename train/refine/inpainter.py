"""Train F2PAD's learned initialiser (a masked-restoration net) on a category's good images only.

    python -m train.refine.inpainter --data ROOT --category CAT --image-size HxW --out DIR
                                     [--holdout 0.2] [--steps 1000] [--c 16] [--crop 96x96] [--batch-size 4]
                                     [--radius 4,32] [--lr 0.002] [--seed 0] [--threads 1] [--no-progress]

Each step: random crops of good training images, random holes (`inpaint_net.random_holes`) pre-filled by Telea,
L1 on the hole's pixels (outside them the output is the input by construction). `--holdout` leaves out the same
last images as `python -m train --holdout`, so the held-out images stay unseen by both the backbone and the initialiser (F2PAD's settings are chosen on
them: `python -m train.refine.select`). Writes DIR/inpainter.safetensors and DIR/inpainter.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Tuple

import numpy as np

from runtime.cli_flags import add_no_progress, positive_int
from runtime.errors import cli_exit
from train.errors import ConfigError, DataError


def radius_pair(text: str) -> Tuple[float, float]:
    """argparse `type=` of --radius MIN,MAX (pixels, 0 < MIN <= MAX)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in pixels, e.g. 4,32; got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.refine.inpainter", description=(
        "Train F2PAD's learned initialiser: a UNet that fills masked regions of a category's good images "
        "(use it with `python -m train.refine --inpainter DIR --option init=learned`)."))
    p.add_argument("--data", required=True, metavar="ROOT", help="data root (MVTec layout) with CAT/train/good")
    p.add_argument("--category", required=True, help="category under --data")
    p.add_argument("--image-size", required=True, metavar="HxW",
                   help="the backbone run's image size (images are resized to it before cropping), e.g. 224x544")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for inpainter.safetensors + inpainter.json")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of good images left out, the same rule as `python -m train --holdout` (0: all)")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps")
    p.add_argument("--c", type=positive_int, default=16, help="UNet base width")
    p.add_argument("--crop", default="96x96", metavar="HxW", help="training crop (multiples of 16)")
    p.add_argument("--batch-size", type=int, default=4, help="crops per step")
    p.add_argument("--radius", type=radius_pair, default=(4.0, 32.0), metavar="MIN,MAX",
                   help="semi-axes of the random holes in pixels at --image-size (about the size of the "
                        "backbone's defect blobs)")
    p.add_argument("--lr", type=float, default=0.002, help="Adam's learning rate (cosine decay to 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of crops, holes and weights")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    add_no_progress(p, "no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def training_images(data: str, category: str, size_hw, holdout: float) -> np.ndarray:
    """uint8 (N, H, W, 3): the good training images at the run's size, less the --holdout part."""
    from imagesets.subsets import split_holdout
    from train.data import find_samples
    from train.refine.inputs import load_resized

    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout must be in [0, 1), got {holdout}")
    samples = [s for s in find_samples(data, category, "train") if not s.is_defect]
    if holdout and len(samples) > 1:
        samples, _ = split_holdout(samples, holdout)
    if not samples:
        raise DataError(f"no good training images in {data} (category {category})")
    return np.stack([load_resized(Path(s.path), size_hw) for s in samples])


def random_crops(images: np.ndarray, crop_hw, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random crops (with a random horizontal flip) of random images, uint8 (n, h, w, 3)."""
    _, h, w, _ = images.shape
    ch, cw = min(crop_hw[0], h), min(crop_hw[1], w)
    out = np.empty((n, ch, cw, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        patch = img[y:y + ch, x:x + cw]
        out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
    return out


def train_inpainter(images: np.ndarray, c: int, crop_hw, steps: int, batch: int, radius, lr: float, seed: int,
                    progress: bool = False):
    """A trained InpaintNet and the mean loss of the last tenth of the steps."""
    import torch
    from tqdm import tqdm

    from train.refine.inpaint_net import InpaintNet, prefill, random_holes

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = InpaintNet(c)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    tail = []
    net.train()
    for step in tqdm(range(steps), desc="inpainter", unit="step", disable=not progress):
        crops = random_crops(images, crop_hw, batch, rng)
        holes = random_holes(batch, crops.shape[1:3], radius, rng)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        seen = torch.from_numpy(prefill(crops, holes)).permute(0, 3, 1, 2).float().div(255.0)
        hole = torch.from_numpy(holes)[:, None]
        err = (net(seen, hole) - x).abs().mean(dim=1, keepdim=True)
        inside = (err * hole).sum() / hole.sum().clamp(min=1.0)
        opt.zero_grad()
        inside.backward()
        opt.step()
        sched.step()
        if step >= steps - max(1, steps // 10):
            tail.append(float(inside.detach()))
    return net.eval(), float(np.mean(tail))


def _run(args) -> int:
    import torch

    from train.config import parse_image_size
    from train.refine.inpaint_net import Inpainter

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    size_hw = parse_image_size(args.image_size)
    crop_hw = parse_image_size(args.crop)
    if args.threads:
        torch.set_num_threads(args.threads)
    images = training_images(args.data, args.category, size_hw, args.holdout)
    start = time.perf_counter()
    net, hole_l1 = train_inpainter(images, args.c, crop_hw, args.steps, args.batch_size, args.radius, args.lr,
                                   args.seed, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    settings = dict(c=args.c, image_size=list(size_hw), crop=list(crop_hw), steps=args.steps,
                    batch_size=args.batch_size, radius=list(args.radius), lr=args.lr, seed=args.seed,
                    data=str(args.data), category=args.category, holdout=args.holdout, images=int(len(images)),
                    hole_l1=round(hole_l1, 5), train_seconds=round(seconds, 1), threads=torch.get_num_threads(),
                    torch=torch.__version__)
    Inpainter(net, settings).save(Path(args.out))
    print(f"trained the inpainter on {len(images)} good images of {args.category} in {seconds:.0f} s "
          f"({args.steps} steps, {torch.get_num_threads()} thread(s)); hole L1 {hole_l1:.4f} over the last "
          f"tenth; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
