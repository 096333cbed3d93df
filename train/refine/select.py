"""Choose F2PAD's settings for one category from good images and synthetic defects only (never test labels).

    python -m train.refine.select --run RUN [--good DIR] [--inpainter DIR] [--images 12] [--full-images 3]
                                  [--window S] [--iters 150 400] [--option KEY=VALUE ...] [--seed 0]
                                  [--threads 1] [--out FILE] [--no-progress]

Synthetic defects (`synthetic.py`) are painted into good images the backbone was not fitted on: the run's
--holdout images, or a folder of other good images (--good). On them: the backbone's maps, their F1-optimal pixel
threshold (the benchmark's protocol, on the synthetic masks), then a small grid scored by mean IoU against the
synthetic masks:
  * init-only (X0 alone, mask |Y - X0| > t) for init telea and learned (with --inpainter), all --images;
  * full solves on an even spread of --full-images: c for each init, then lambda2 around the best, then the
    iteration cap 400 instead of 150. Without the second solve (it changes X and A, never the mask), so the
    mask threshold t is applied to the one solution afterwards (exact).
The winner is a full setting only when it beats the best init-only one on the same images. It is written with
its provenance and the whole grid to --out (default RUN/refine_settings.json), which
`python -m train.refine --settings` and `python -m benchmarks.f2pad --variants selected` read.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from runtime.cli_flags import add_no_progress, positive_int
from runtime.errors import cli_exit
from train.config import option_argument

MASK_THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.8, 1.2)  # on |A| (L2 over channels, ImageNet-normalised units)
C_GRID = (0.0001, 0.0005, 0.002)  # lambda1 = c / anomaly fraction; 0.002 is the hand-set default (0.008 lost
#                                   everywhere in a first ball_screw grid)
PRIOR_GRID = (0.1, 1.0)  # lambda2 beside the default 0.01, tried at the best c (0.001 lost in that grid)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.refine.select", description=(
        "Choose F2PAD's per-category settings on synthetic defects in good images the backbone has not seen "
        "(no test labels); write them for python -m train.refine --settings."))
    p.add_argument("--run", required=True, help="fitted patchcore or padim run (its --holdout images are used)")
    p.add_argument("--good", metavar="DIR", help="folder of good images the run was not fitted on (default: the "
                                                 "run's held-out training images)")
    p.add_argument("--inpainter", metavar="DIR", help="trained inpainter: adds init=learned to the grid")
    p.add_argument("--images", type=positive_int, default=12, help="synthetic defective images (init-only grid)")
    p.add_argument("--full-images", type=positive_int, default=3,
                   help="of them, how many the full solves run on (an even spread; each costs seconds to a minute)")
    p.add_argument("--window", type=positive_int,
                   help="side in pixels of the square the defect painter draws in (default: the image's shorter "
                        "side; smaller makes smaller defects)")
    p.add_argument("--iters", type=positive_int, nargs=2, default=(150, 400), metavar=("GRID", "LONG"),
                   help="iteration caps: GRID for the grid, LONG tried at its best (default 150 400)")
    p.add_argument("--option", action="append", default=[], type=option_argument, metavar="KEY=VALUE",
                   help="refine settings under every grid point (train/refine/settings.py), e.g. dilate=4")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic defects")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--out", metavar="FILE", help="settings file to write (default RUN/refine_settings.json)")
    add_no_progress(p, "no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def unseen_good_images(args, config, size_hw) -> List[np.ndarray]:
    """--good's images, else the run's held-out training images (resized to the run's size)."""
    from imagesets.subsets import split_holdout
    from train.data import find_samples
    from train.errors import ConfigError
    from train.refine.inputs import images_in, load_resized

    if args.good:
        return [load_resized(p, size_hw) for p in images_in(args.good)]
    if not config.holdout:
        raise ConfigError(f"--run {args.run} was fitted on all its good images (no --holdout): pass --good DIR, "
                          f"a folder of good images it has not seen")
    samples = [s for s in find_samples(config.data, config.category, "train") if not s.is_defect]
    _, held = split_holdout(samples, config.holdout)
    return [load_resized(Path(s.path), size_hw) for s in held]


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


class Grid:
    """Runs one refine setting over synthetic cases and records a row per mask threshold."""

    def __init__(self, model, method, size_hw, prior, device, inpainter, threshold, progress, shared):
        self.args = (model, method, size_hw, prior)
        self.shared = shared
        self.device, self.inpainter, self.threshold, self.progress = device, inpainter, threshold, progress
        self.rows: List[Dict[str, object]] = []

    def run(self, options: Dict[str, object], cases, subset: List[int]) -> List[Dict[str, object]]:
        from tqdm import tqdm

        from train.refine.init import dilate
        from train.refine.refiner import Refiner, anomaly_norm
        from train.refine.settings import RefineSettings

        settings = RefineSettings.with_options(dict(self.shared, **options, second_solve=False))
        refiner = Refiner(*self.args, settings, self.device, self.inpainter if settings.init == "learned" else None)
        norms, regions, seconds = [], [], []
        label = " ".join(f"{k}={v}" for k, v in options.items())
        for image, amap, _ in tqdm(cases, desc=label, unit="img", disable=not self.progress, leave=False):
            result = refiner.refine(image, amap, self.threshold)
            norms.append(anomaly_norm(result.a))
            regions.append(dilate(result.initial_mask, settings.dilate) if not settings.init_only else None)
            seconds.append(float(result.facts["seconds"]))
        new = []
        for t in MASK_THRESHOLDS:
            masks = [(n > t) if r is None else ((n > t) & r) for n, r in zip(norms, regions)]
            scores = [iou(m, truth) for m, (_, _, truth) in zip(masks, cases)]
            row = dict(options=dict(options, mask_threshold=t), images=len(cases), iou=100 * float(np.mean(scores)),
                       subset_iou=100 * float(np.mean([scores[i] for i in subset])) if subset else None,
                       seconds=float(np.mean(seconds)))
            new.append(row)
        self.rows.extend(new)
        return new


def best(rows, key="iou"):
    return max(rows, key=lambda r: r[key])


def _run(args) -> int:
    import torch
    from tqdm import tqdm

    from calibration.metrics import pixel_f1_max
    from imagesets.subsets import spread
    from runtime.files import write_json
    from train.loop import resolve_device
    from train.refine.cli import load_inpainter
    from train.refine.inputs import good_images
    from train.refine.pixel_prior import fit_pixel_prior, sample_pixels
    from train.refine.refiner import anomaly_map_of
    from train.refine.selected import default_path
    from train.refine.settings import RefineSettings
    from train.refine.synthetic import synthetic_set
    from train.runs import load_model

    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device("cpu"))
    model, config = load_model(args.run, device=device)
    size = tuple(config.image_size)
    good = unseen_good_images(args, config, size)
    window = args.window or min(size)
    cases = [(im, None, m) for im, m, _ in synthetic_set(good, args.images, window, args.seed)]
    cases = [(im, anomaly_map_of(model, im, device), m) for im, _, m in
             tqdm(cases, desc="maps", unit="img", disable=args.no_progress)]
    f1, threshold = pixel_f1_max(np.stack([c[2] for c in cases]), np.stack([c[1] for c in cases]), True)
    backbone = [iou(a > threshold, t) for _, a, t in cases]
    subset_idx = [int(i) for i in spread(list(range(len(cases))), min(args.full_images, len(cases)))]
    prior_images = good_images(config.data, config.category, size, 40) if config.data else good[:40]
    prior = fit_pixel_prior(sample_pixels(prior_images, 20000, 0), 5, 0)
    inpainter = load_inpainter(args.inpainter, RefineSettings(init="learned"), device) if args.inpainter else None
    shared = dict(args.option)
    RefineSettings.with_options(shared)  # a bad --option fails here, before any solve
    grid = Grid(model, config.method, size, prior, device, inpainter, threshold, not args.no_progress, shared)
    inits = ["telea"] + (["learned"] if inpainter else [])
    for init in inits:
        grid.run(dict(init=init, init_only=True), cases, subset_idx)
    best_only = best([r for r in grid.rows if r["options"]["init_only"]])
    sub = [cases[i] for i in subset_idx]
    here = list(range(len(sub)))
    full: List[Dict[str, object]] = []
    for init in inits:
        for c in C_GRID:
            full += grid.run(dict(init=init, c=c, max_iters=args.iters[0]), sub, here)
    top = {k: v for k, v in best(full)["options"].items() if k != "mask_threshold"}
    for weight in PRIOR_GRID:
        full += grid.run(dict(top, prior_weight=weight), sub, here)
    top = {k: v for k, v in best(full)["options"].items() if k != "mask_threshold"}
    full += grid.run(dict(top, max_iters=args.iters[1]), sub, here)
    best_full = best(full)
    chosen = best_full if best_full["iou"] > best_only["subset_iou"] else best_only
    backbone_iou = 100 * float(np.mean(backbone))
    backbone_sub = 100 * float(np.mean([backbone[i] for i in subset_idx]))
    chosen_iou = chosen["iou"]
    against = backbone_iou if chosen is best_only else backbone_sub
    record = dict(options={**shared, **chosen["options"]},
                  inpainter=str(args.inpainter) if chosen["options"].get("init") == "learned" else None,
                  threshold=float(threshold),
                  provenance=dict(run=str(args.run), good=args.good or f"the run's --holdout {config.holdout} images",
                                  synthetic_images=len(cases), full_images=len(subset_idx), window=window,
                                  seed=args.seed, painters="train.demo_data.make_defect", pixel_f1=float(f1),
                                  backbone_iou=backbone_iou, backbone_subset_iou=backbone_sub,
                                  chosen_iou=chosen_iou, beats_backbone=bool(chosen_iou > against),
                                  seconds=round(time.perf_counter() - start, 1)),
                  grid=grid.rows)
    out = Path(args.out) if args.out else default_path(args.run)
    write_json(out, record, f"--out {out}")
    _report(grid.rows, record, backbone_iou, backbone_sub, out)
    return 0


def _report(rows, record, backbone_iou, backbone_sub, out) -> None:
    p = record["provenance"]
    print(f"{p['synthetic_images']} synthetic defects ({p['full_images']} for the full solves), M0 threshold "
          f"{record['threshold']:.4g} (pixel F1 {p['pixel_f1']:.3f}); backbone IoU {backbone_iou:.1f} "
          f"(on the full-solve images {backbone_sub:.1f})")
    print(f"{'setting':60s} {'n':>3s} {'IoU':>6s} {'s/img':>7s}")
    for r in rows:
        label = " ".join(f"{k}={v}" for k, v in r["options"].items())
        print(f"{label:60s} {r['images']:3d} {r['iou']:6.1f} {r['seconds']:7.2f}")
    label = " ".join(f"{k}={v}" for k, v in record["options"].items())
    print(f"chosen: {label} (IoU {p['chosen_iou']:.1f}); wrote {out} in {p['seconds']:.0f} s")
    if not p["beats_backbone"]:
        print("F2PAD does NOT beat the backbone alone on these synthetic defects with any setting tried")


if __name__ == "__main__":
    raise SystemExit(main())
