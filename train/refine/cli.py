"""Command line of the F2PAD refiner (offline, PyTorch; beside training, never in runtime/).

    python -m train.refine --run RUN (--folder DIR | --flagged INSPECT_OUT) --out DIR --threshold T
                           [--device auto|cpu|cuda] [--seed S] [--option KEY=VALUE ...]
                           [--data ROOT [--category CAT]] [--prior-images N] [--prior-components K] [--images N]
                           [--settings FILE] [--inpainter DIR]

X0 comes from OpenCV (option init=telea|ns) or from a learned inpainter (init=learned with --inpainter DIR,
trained by `python -m train.refine.inpainter`); --settings reads the per-category choice of
`python -m train.refine.select` (its options, inpainter and nothing else; --option wins over it).

Writes per image DIR/<folder>_<stem>_{mask,x,a,overlay}.png and one line of DIR/refine.jsonl; the pixel prior
is fitted at refine time on good images (the run's training images unless --data says otherwise) and cached as
DIR/pixel_prior.safetensors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from runtime.cli_flags import add_device, add_no_progress
from runtime.errors import cli_exit, writing
from train.config import option_argument

PRIOR_FILE = "pixel_prior.safetensors"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.refine", description=(
        "F2PAD: refine the anomaly masks of a PatchCore/PaDiM run per image by gradient descent on the pixels "
        "(Tao et al. 2024). Offline; seconds to minutes per image."))
    p.add_argument("--run", required=True, help="run folder of a fitted patchcore or padim model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", metavar="DIR", help="folder of images to refine")
    src.add_argument("--flagged", metavar="INSPECT_OUT",
                     help="the --out folder of `python -m runtime`: refine the frames its inspect.jsonl flagged")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks, X, A, overlays and refine.jsonl")
    p.add_argument("--threshold", type=float, required=True,
                   help="pixel threshold on the run's anomaly map that gives the initial mask M0 (the paper uses "
                        "the F1-optimal one on labelled images; benchmarks/f2pad.py computes it)")
    add_device(p, torch=True, help="where to refine")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior's pixel sampling and of torch")
    p.add_argument("--option", action="append", default=[], type=option_argument, metavar="KEY=VALUE",
                   help="refine settings (train/refine/settings.py), e.g. c=2.0 lr=0.01 max_iters=300")
    p.add_argument("--data", metavar="ROOT", help="good images for the pixel prior: a data root (with --category) "
                                                  "or a plain folder of good images (default: the run's data)")
    p.add_argument("--category", help="category under --data (default: the run's when --data is not given)")
    p.add_argument("--prior-images", type=int, default=40, help="good images sampled for the pixel prior")
    p.add_argument("--prior-pixels", type=int, default=20000, help="pixels drawn from them")
    p.add_argument("--prior-components", type=int, default=5, help="mixture components (before empty ones drop)")
    p.add_argument("--inpainter", metavar="DIR", help="trained inpainter for option init=learned "
                                                       "(python -m train.refine.inpainter)")
    p.add_argument("--settings", metavar="FILE", help="settings chosen by python -m train.refine.select "
                                                      "(e.g. RUN/refine_settings.json); --option wins over it")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 on a busy machine)")
    p.add_argument("--images", type=image_count, metavar="N", help="refine only the first N images")
    add_no_progress(p, "no progress bar")
    return p


def image_count(text: str) -> int:
    """argparse `type=` of --images N; a folder there (the flag's old meaning) says where folders go now."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count N, got {text!r} (a folder of images to refine is "
                                         f"--folder DIR)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1, got {n}")
    return n


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def prior_data(args, config):
    """(data, category) of the pixel prior's good images: --data (with its --category) or the run's."""
    if args.data:
        return args.data, args.category
    return config.data, args.category if args.category is not None else config.category


def pixel_prior_for(args, config, size_hw, out_dir: Path):
    """The cached prior in --out when it was fitted with the same settings, else a fresh fit (then cached)."""
    from train.refine.inputs import good_images
    from train.refine.pixel_prior import PixelPrior, fit_pixel_prior, sample_pixels

    data, category = prior_data(args, config)
    settings = {"source": f"{data}:{category}", "size": f"{size_hw[0]}x{size_hw[1]}", "images": args.prior_images,
                "pixels": args.prior_pixels, "components": args.prior_components, "seed": args.seed}
    prior = PixelPrior.load(out_dir / PRIOR_FILE, settings)
    if prior is not None:
        return prior
    images = good_images(data, category, size_hw, args.prior_images)
    prior = fit_pixel_prior(sample_pixels(images, args.prior_pixels, args.seed), args.prior_components, args.seed)
    with writing(out_dir / PRIOR_FILE):
        prior.save(out_dir / PRIOR_FILE, settings)
    return prior


def load_inpainter(folder, settings, device):
    """The trained inpainter when init=learned (else None; a folder given without init=learned is an error)."""
    from train.errors import ConfigError
    from train.refine.inpaint_net import Inpainter

    if settings.init != "learned":
        if folder:
            raise ConfigError(f"--inpainter {folder} is only used with --option init=learned (init is "
                              f"{settings.init!r})")
        return None
    if not folder:
        raise ConfigError("option init=learned needs --inpainter DIR (python -m train.refine.inpainter)")
    return Inpainter.load(folder, device)


def _run(args) -> int:
    import torch
    from tqdm import tqdm

    from train.loop import resolve_device
    from train.refine.inputs import flagged_images, images_in, load_resized
    from train.refine.outputs import RESULTS, write_result
    from train.refine.refiner import Refiner, anomaly_map_of
    from train.refine.settings import RefineSettings
    from train.runs import load_model

    from train.refine.selected import merged_options

    options, inpainter_dir = merged_options(args.settings, args.inpainter, args.option)
    settings = RefineSettings.with_options(options)
    if args.settings:
        print(f"settings from {args.settings}: " + " ".join(f"{k}={v}" for k, v in sorted(options.items())))
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = images_in(args.folder) if args.folder else flagged_images(args.flagged)
    sources = sources[: args.images] if args.images else sources
    model, config = load_model(args.run, device=str(device))
    size_hw = tuple(config.image_size)
    out_dir = Path(args.out)
    with writing(f"--out {out_dir}"):
        out_dir.mkdir(parents=True, exist_ok=True)
    prior = pixel_prior_for(args, config, size_hw, out_dir) if settings.use_prior else None
    inpainter = load_inpainter(inpainter_dir, settings, device)
    refiner = Refiner(model, config.method, size_hw, prior, settings, device, inpainter)
    seconds = []
    with writing(f"--out {out_dir}"), open(out_dir / RESULTS, "w", encoding="utf-8") as log:
        for path in tqdm(sources, desc="f2pad", unit="img", disable=args.no_progress):
            image = load_resized(path, size_hw)
            result = refiner.refine(image, anomaly_map_of(model, image, device), args.threshold)
            seconds.append(write_result(out_dir, path, image, result, log)["seconds"])
    print(f"refined {len(seconds)} image(s) into {out_dir}: {sum(seconds) / len(seconds):.2f} s per image "
          f"on {device}")
    return 0
