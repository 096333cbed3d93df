"""F2PAD's accuracy and cost on a labelled category: backbone alone vs backbone + F2PAD (and ablations).

    python -m benchmarks.f2pad --run RUN --data DIR --category CAT [--defects N] [--threshold-images N]
                               [--variants full no_sparsity no_prior init_only] [--option KEY=VALUE ...]
                               [--inpainter DIR] [--settings FILE] [--variants ... learned_init_only
                               learned_full selected] [--threads 1] [--device auto|cpu|cuda] [--json OUT]
                               [--no-progress]

The paper's protocol (Tao et al. 2024, Sec. IV-A): the backbone's binary mask at the pixel threshold that
maximises F1 over the test set (following PaDiM), then IoU and DICE x 100 of binary masks, here the mean over
the refined defective images of the per-image values. The threshold is fitted on the maps of all test images
(or an even spread of `--threshold-images`), the defective images refined are an even spread of `--defects`.
`selected` runs the settings that `python -m train.refine.select` chose on synthetic defects (--settings, default
RUN/refine_settings.json; its options win over --option). The last lines say plainly which variants do not beat
the backbone alone on IoU and DICE.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List

import numpy as np

from runtime.cli_flags import add_device, add_no_progress
from runtime.errors import cli_exit
from runtime.files import write_json

VARIANTS = {
    "full": {},
    "no_sparsity": {"use_sparsity": False},
    "no_prior": {"use_prior": False},
    "init_only": {"init_only": True},
    "learned_init_only": {"init": "learned", "init_only": True},
    "learned_full": {"init": "learned"},
    "selected": None,  # the settings file's options
}


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return float(2.0 * np.logical_and(pred, truth).sum() / total) if total else 1.0


def variant_options(name: str, args, shared):
    """(refine options, inpainter folder) of one variant: --option under the variant's own, or for `selected`
    --option under the settings file's."""
    from train.refine.selected import default_path, read_selected

    if VARIANTS[name] is None:
        options, folder = read_selected(args.settings or default_path(args.run))
        return {**shared, **options}, args.inpainter or folder
    return {**shared, **VARIANTS[name]}, args.inpainter


def verdict(rows) -> List[str]:
    """One line per refined variant that is not above the backbone on both IoU and DICE, and a summary."""
    base = rows[0]
    lines, wins = [], []
    for r in rows[1:]:
        if r["iou"] > base["iou"] and r["dice"] > base["dice"]:
            wins.append(r["variant"])
        else:
            lines.append(f"{r['variant']} does NOT beat the {base['variant']} alone: IoU {r['iou']:.1f} vs "
                         f"{base['iou']:.1f}, DICE {r['dice']:.1f} vs {base['dice']:.1f}")
    if rows[1:]:
        lines.append(f"above the backbone on IoU and DICE: {', '.join(wins)}" if wins else
                     "no F2PAD variant here beats the backbone alone on IoU and DICE")
    return lines


def build_parser() -> argparse.ArgumentParser:
    from train.config import option_argument

    p = argparse.ArgumentParser(prog="python -m benchmarks.f2pad", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="fitted patchcore/padim run")
    p.add_argument("--data", required=True, help="data root (MVTec layout)")
    p.add_argument("--category", required=True, help="category with test/ and ground_truth/")
    p.add_argument("--defects", type=int, default=8, help="defective test images to refine (even spread)")
    p.add_argument("--threshold-images", type=int, help="test images for the F1-optimal threshold (default all)")
    p.add_argument("--variants", nargs="+", default=["full"], choices=list(VARIANTS), help="F2PAD variants")
    p.add_argument("--option", action="append", default=[], type=option_argument, metavar="KEY=VALUE",
                   help="refine settings shared by every variant (train/refine/settings.py)")
    p.add_argument("--inpainter", metavar="DIR", help="trained inpainter for the learned_* variants "
                                                       "(python -m train.refine.inpainter)")
    p.add_argument("--settings", metavar="FILE", help="settings file of python -m train.refine.select for the "
                                                      "selected variant (default RUN/refine_settings.json)")
    p.add_argument("--prior-components", type=int, default=5, help="pixel-prior mixture components")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_device(p, default="cpu", torch=True, help="where to run the backbone and the refiner")
    p.add_argument("--json", help="write the rows here")
    add_no_progress(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args) -> int:
    import torch
    from tqdm import tqdm

    from calibration.metrics import pixel_f1_max
    from imagesets import find_samples
    from imagesets.dataset import load_images, load_masks
    from imagesets.subsets import spread
    from train.loop import resolve_device
    from train.refine.cli import load_inpainter
    from train.refine.inputs import good_images
    from train.refine.pixel_prior import fit_pixel_prior, sample_pixels
    from train.refine.refiner import Refiner, anomaly_map_of
    from train.refine.settings import RefineSettings
    from train.runs import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    model, config = load_model(args.run, device=device)
    size = tuple(config.image_size)
    tests = find_samples(args.data, args.category, "test")
    picked = spread(tests, args.threshold_images)
    images = load_images(picked, size, progress=False)
    masks = load_masks(picked, size)
    maps = np.stack([anomaly_map_of(model, im, device) for im in tqdm(images, desc="maps", unit="img", disable=args.no_progress)])
    f1, threshold = pixel_f1_max(masks, maps, return_threshold=True)
    defective = spread([s for s in tests if s.is_defect], args.defects)
    d_images = load_images(defective, size, progress=False)
    d_masks = load_masks(defective, size)
    d_maps = [anomaly_map_of(model, im, device) for im in d_images]
    rows: List[Dict[str, object]] = []
    base = [(iou(m > threshold, t), dice(m > threshold, t)) for m, t in zip(d_maps, d_masks)]
    rows.append(dict(variant="backbone", iou=100 * np.mean([b[0] for b in base]),
                     dice=100 * np.mean([b[1] for b in base]), seconds=None, iterations=None,
                     per_image_iou=[round(100 * b[0], 1) for b in base]))
    start = time.perf_counter()
    prior = fit_pixel_prior(sample_pixels(good_images(config.data, config.category, size, 40), 20000, 0),
                            args.prior_components, 0)
    prior_seconds = time.perf_counter() - start
    shared = dict(args.option)
    for name in args.variants:
        options, inpainter_dir = variant_options(name, args, shared)
        settings = RefineSettings.with_options(options)
        refiner = Refiner(model, config.method, size, prior, settings, device,
                          load_inpainter(inpainter_dir if settings.init == "learned" else None, settings, device))
        scores, seconds, iters = [], [], []
        for image, amap, truth in tqdm(list(zip(d_images, d_maps, d_masks)), desc=name, unit="img",
                                       disable=args.no_progress):
            result = refiner.refine(image, amap, threshold)
            scores.append((iou(result.mask, truth), dice(result.mask, truth)))
            seconds.append(result.facts["seconds"])
            iters.append(result.facts["iterations"])
        rows.append(dict(variant=name, options=options, iou=100 * np.mean([s[0] for s in scores]),
                         dice=100 * np.mean([s[1] for s in scores]), seconds=float(np.mean(seconds)),
                         iterations=float(np.mean(iters)), per_image_iou=[round(100 * s[0], 1) for s in scores]))
    print(f"{config.method} on {args.category}: {len(defective)} defective images refined; F1-optimal pixel "
          f"threshold {threshold:.4g} (pixel F1 {f1:.3f} over {len(picked)} test images); prior fit "
          f"{prior_seconds:.1f} s")
    print(f"{'variant':12s} {'IoU':>6s} {'DICE':>6s} {'s/img':>7s} {'iters':>7s}")
    for r in rows:
        sec = f"{r['seconds']:7.2f}" if r["seconds"] is not None else "      -"
        it = f"{r['iterations']:7.1f}" if r["iterations"] is not None else "      -"
        print(f"{r['variant']:12s} {r['iou']:6.1f} {r['dice']:6.1f} {sec} {it}")
    for line in verdict(rows):
        print(line)
    if args.json:
        report = dict(run=str(args.run), category=args.category, threshold=threshold, pixel_f1=f1, options=shared,
                      rows=rows)
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
