"""Command line of the training side.

    python -m train --method fair --c 32 --data DIR --category CAT --out RUN [--image-size 256|HxW]
                    [--steps N | --epochs N] [--batch-size B] [--lr LR] [--device auto|cpu|cuda] [--seed S]
                    [--resume] [--filter bhpf|ghpf|ihpf|sobel-xy3|...] [--option KEY=VALUE ...]
                    [--holdout 0.2] [--fit-augment jpeg,brightness,shift [--fit-augment-copies K]]
    python -m train --method fair --c 32 --summary      -> one JSON line with params and gmacs

--c defaults to the method's width and is refused by a method without one (Method.has_width); a method with
training == "fit" (a train.methods.run.Fitter) takes one pass over the good images instead of --steps / --epochs.
The last 20 % of the good images (sorted by path) are held out by default for threshold calibration
(--holdout 0 trains on all); the run records a content hash of every image it learned from (images.json), which
`calibration.threshold` refuses.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from runtime.cli_flags import add_device, add_no_progress
from runtime.errors import cli_exit, writing
from train.errors import ConfigError

#: fraction of the good training images kept out of training by default, for threshold calibration
DEFAULT_HOLDOUT = 0.2


def build_parser() -> argparse.ArgumentParser:
    from train.methods import list_methods

    p = argparse.ArgumentParser(prog="python -m train", description="Train an anomaly model on good images only.")
    p.add_argument("--method", required=True, choices=list_methods(), help="registered method to train")
    p.add_argument("--c", type=int, default=None,
                   help="base width of the network (FAIR: 32/64/128; default: the method's, e.g. 32); "
                        "methods without a width (e.g. patchcore) refuse it")
    p.add_argument("--data", help="data root (MVTec/MPDD/VisA layout) or a plain folder of good images")
    p.add_argument("--category", help="category inside --data (omit for a plain folder)")
    p.add_argument("--out", metavar="DIR", help="run folder to write")
    p.add_argument("--image-size", default="256",
                   help="N or HxW, multiples of the method's size multiple (16 for fair/noise2norm; e.g. 256, "
                        "224x544), or auto (auto:S): the training images' aspect ratio at 256x256 (SxS) pixels")
    p.add_argument("--crop", help="train on random HxW crops of the --image-size images (wide images, CPU budgets; "
                   "gradient-trained methods only)")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help=f"keep this fraction of train/good (last in sorted order) out of training, for `python -m "
                        f"calibration.threshold` (same rule; default {DEFAULT_HOLDOUT}; 0 trains on every image, "
                        f"and calibration then needs other good images)")
    p.add_argument("--fit-augment", default=None, metavar="KINDS",
                   help="also fit/train on varied copies of the good images, what a camera changes: any of jpeg "
                        "(quality 30-90), brightness (gain, offset, contrast, gamma), shift (up to 4 px), comma-"
                        "separated, e.g. jpeg,brightness,shift")
    p.add_argument("--fit-augment-copies", type=int, default=1, metavar="K",
                   help="varied copies per image with --fit-augment (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimisation steps (gradient-trained methods; default 1000)")
    g.add_argument("--epochs", type=float, help="passes over the training images (converted to steps)")
    p.add_argument("--batch-size", type=int, help="images per step, or per batch of a fit pass (default: the method's)")
    p.add_argument("--lr", type=float, help="learning rate (gradient-trained methods; default: the method's)")
    add_device(p, torch=True, help="where to train")
    p.add_argument("--seed", type=int, default=0, help="seed of the data order, synthesis and any subsampling")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(a fitted run is complete: it says so)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--filter", help="FAIR high-pass: bhpf, ghpf, ihpf, sobel-xy3, sobel-x3, sobel-xy5, ...")
    p.add_argument("--lam", type=float, help="noise2norm: noise blending weight lambda")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="other method options")
    p.add_argument("--summary", action="store_true", help="print params and GMACs as one JSON line and exit")
    add_no_progress(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _method_options(args) -> dict:
    from train.config import parse_option

    options = dict(parse_option(o) for o in args.option)
    if args.filter is not None:
        options["filter"] = args.filter
    if args.lam is not None:
        options["lam"] = args.lam
    return options


def _run(args) -> int:
    from train.config import RunConfig, parse_image_size
    from train.methods import get_method

    method = get_method(args.method)
    c = method.width(args.c)
    from imagesets.auto_size import auto_image_size, is_auto

    auto = is_auto(args.image_size)
    size = None if auto else parse_image_size(args.image_size, method.size_multiple)
    options = method.options(_method_options(args))
    if args.summary and auto:
        raise ConfigError("--summary needs a fixed --image-size (N or HxW); auto reads the training images")
    if args.summary:
        from train.summary import summarize

        print(json.dumps(summarize(args.method, c, size, options)))
        return 0
    if method.training == "fit":
        given = [f"--{n.replace('_', '-')}" for n in ("steps", "epochs", "lr", "crop") if getattr(args, n) is not None]
        if given:
            raise ConfigError(f"method {args.method!r} is fitted in one pass over the good images: drop "
                              f"{', '.join(given)}")
    for name in ("data", "out"):
        if getattr(args, name) is None:
            raise ConfigError(f"--{name} is required for training (or use --summary)")

    from train.data import find_samples, load_images
    from imagesets.camera_variations import parse_kinds, with_variations
    from train.loop import steps_for_epochs, train

    kinds = parse_kinds(args.fit_augment)

    samples = find_samples(args.data, args.category, "train")
    if args.holdout is not None and not 0.0 <= args.holdout < 1.0:
        raise ConfigError(f"--holdout must be in [0, 1), got {args.holdout}")
    if args.holdout and len(samples) < 2:
        args.holdout = 0.0  # one image cannot be split; the run records it, so calibration will refuse it
    if args.holdout:
        from imagesets.subsets import split_holdout

        samples, held = split_holdout(samples, args.holdout)
        print(f"holding out {len(held)} of {len(samples) + len(held)} good training images for calibration")
        if not samples:
            raise ConfigError(f"--holdout {args.holdout} leaves no training images")
    if auto:
        size = auto_image_size(samples, method.size_multiple, args.image_size)
        print(f"--image-size {args.image_size}: {size[0]}x{size[1]} (the training images' aspect ratio)")
    images = load_images(samples, size, progress=not args.no_progress)
    images = with_variations(images, kinds, args.fit_augment_copies, seed=args.seed)
    augment = {"kinds": list(kinds), "copies": args.fit_augment_copies} if kinds else None
    batch = args.batch_size or method.train_defaults.get("batch_size", 8)
    if method.training == "fit":
        steps = 0  # no optimisation steps: one pass over the images
    elif args.steps is not None:
        steps = args.steps
    elif args.epochs is not None:
        steps = steps_for_epochs(args.epochs, len(images), batch)
    else:
        steps = 1000
    if args.resume and args.steps is None and args.epochs is None and method.training != "fit":
        from train.runs import load_config

        steps = load_config(Path(args.out)).steps
    config = RunConfig(
        method=args.method, c=c, image_size=size, seed=args.seed, steps=steps, batch_size=batch,
        lr=args.lr if args.lr is not None else method.train_defaults.get("lr", 1e-4),
        data=str(args.data), category=args.category, options=options,
        crop=parse_image_size(args.crop, method.size_multiple) if args.crop else None, holdout=args.holdout or None,
        fit_augment=augment,
    )
    t0 = time.time()
    with writing(f"the run folder --out {args.out}"):  # checkpoints and the run's files
        out = train(config, Path(args.out), images, device=args.device, resume=args.resume,
                    checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank trains; rank 0 reports
        from imagesets.fingerprints import write_image_record

        with writing(f"the run folder --out {args.out}"):  # what calibration must not use
            write_image_record(out, [s.path for s in samples], args.data)
        print(json.dumps({"run": str(out), "method": args.method, "c": c, "steps": steps,
                          "images": len(images), "image_size": list(size), "seconds": round(time.time() - t0, 1)}))
    return 0
