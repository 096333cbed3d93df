"""Command line of the F2PAD refiner (offline, PyTorch; beside training, never in runtime/).

    python -m train.refine --run RUN (--images DIR | --flagged INSPECT_OUT) --out DIR --threshold T
                           [--device cpu|cuda] [--seed S] [--option KEY=VALUE ...]
                           [--good DIR] [--prior-images N] [--prior-components K] [--limit N]

Writes per image DIR/<folder>_<stem>_{mask,x,a,overlay}.png and one line of DIR/refine.jsonl; the pixel prior
is fitted at refine time on the run's good training images and cached as DIR/pixel_prior.safetensors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train.config import option_argument
from train.errors import ConfigError, InspectError

PRIOR_FILE = "pixel_prior.safetensors"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.refine", description=(
        "F2PAD: refine the anomaly masks of a PatchCore/PaDiM run per image by gradient descent on the pixels "
        "(Tao et al. 2024). Offline; seconds to minutes per image."))
    p.add_argument("--run", required=True, help="run folder of a fitted patchcore or padim model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images to refine")
    src.add_argument("--flagged", metavar="INSPECT_OUT",
                     help="the --out folder of `python -m runtime`: refine the frames its inspect.jsonl flagged")
    p.add_argument("--out", required=True, help="folder for the masks, X, A, overlays and refine.jsonl")
    p.add_argument("--threshold", type=float, required=True,
                   help="pixel threshold on the run's anomaly map that gives the initial mask M0 (the paper uses "
                        "the F1-optimal one on labelled images; benchmarks/f2pad.py computes it)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior's pixel sampling and of torch")
    p.add_argument("--option", action="append", default=[], type=option_argument, metavar="KEY=VALUE",
                   help="refine settings (train/refine/settings.py), e.g. c=2.0 lr=0.01 max_iters=300")
    p.add_argument("--good", help="folder of good images for the pixel prior (default: the run's training data)")
    p.add_argument("--prior-images", type=int, default=40, help="good images sampled for the pixel prior")
    p.add_argument("--prior-pixels", type=int, default=20000, help="pixels drawn from them")
    p.add_argument("--prior-components", type=int, default=5, help="mixture components (before empty ones drop)")
    p.add_argument("--mae", help="masked-autoencoder checkpoint for the initialisation (not implemented)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 on a busy machine)")
    p.add_argument("--limit", type=int, help="refine only the first N images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def pixel_prior_for(args, config, size_hw, out_dir: Path):
    """The cached prior in --out when it was fitted with the same settings, else a fresh fit (then cached)."""
    from train.refine.inputs import good_images, images_in, load_resized
    from train.refine.pixel_prior import PixelPrior, fit_pixel_prior, sample_pixels

    source = args.good or f"{config.data}:{config.category}"
    settings = {"source": source, "size": f"{size_hw[0]}x{size_hw[1]}", "images": args.prior_images,
                "pixels": args.prior_pixels, "components": args.prior_components, "seed": args.seed}
    prior = PixelPrior.load(out_dir / PRIOR_FILE, settings)
    if prior is not None:
        return prior
    if args.good:
        from train.data.subsets import spread

        images = [load_resized(p, size_hw) for p in spread(images_in(args.good), args.prior_images)]
    else:
        images = good_images(config.data, config.category, size_hw, args.prior_images)
    prior = fit_pixel_prior(sample_pixels(images, args.prior_pixels, args.seed), args.prior_components, args.seed)
    prior.save(out_dir / PRIOR_FILE, settings)
    return prior


def _run(args) -> int:
    import torch
    from tqdm import tqdm

    from train.loop import resolve_device
    from train.refine.init import mae_unavailable
    from train.refine.inputs import flagged_images, images_in, load_resized
    from train.refine.outputs import RESULTS, write_result
    from train.refine.refiner import Refiner, anomaly_map_of
    from train.refine.settings import RefineSettings
    from train.runs import load_model

    if args.mae:
        raise mae_unavailable(args.mae)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    settings = RefineSettings.with_options(dict(args.option))
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = images_in(args.images) if args.images else flagged_images(args.flagged)
    sources = sources[: args.limit] if args.limit else sources
    model, config = load_model(args.run, device=str(device))
    size_hw = tuple(config.image_size)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    prior = pixel_prior_for(args, config, size_hw, out_dir) if settings.use_prior else None
    refiner = Refiner(model, config.method, size_hw, prior, settings, device)
    seconds = []
    with open(out_dir / RESULTS, "w", encoding="utf-8") as log:
        for path in tqdm(sources, desc="f2pad", unit="img", disable=args.no_progress):
            image = load_resized(path, size_hw)
            result = refiner.refine(image, anomaly_map_of(model, image, device), args.threshold)
            seconds.append(write_result(out_dir, path, image, result, log)["seconds"])
    print(f"refined {len(seconds)} image(s) into {out_dir}: {sum(seconds) / len(seconds):.2f} s per image "
          f"on {device}")
    return 0
