"""Combine fitted PatchCore / PaDiM runs into one run of method `combined`: one backbone pass, every run's head,
each head's map standardised on good images the heads were not fitted on, a weighted sum, one score.

    python -m train.combine --runs RUN_A RUN_B [...] --out RUN [--option standardize=pixel|global]
                            [--option score=max|sum] [--option weights=1,0.5] [--option flip=none|h|v|hv]
                            [--images N] [--batch-size 8] [--device auto|cpu|cuda] [--no-progress]

The runs must share the image size, the backbone, the data and the `--holdout` they were fitted with; the
statistics come from that held-out part of train/good (the images the heads never saw; the same images
`calibration.threshold` uses afterwards), at most `--images` of them. The result is a normal run folder
(config.json, model.safetensors, history.jsonl): `benchmarks.accuracy --run`, `export.onnx --run` and the runtime
take it as any other run. The fitted heads are copied, not refitted; each run's own map statistics are not used.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from runtime.cli_flags import add_device, add_no_progress
from runtime.errors import cli_exit, writing
from train.config import RunConfig, option_argument
from train.errors import ConfigError, RunError

#: What the combined runs must agree on (the config fields of one data set and one model size).
SHARED_FIELDS = ("image_size", "data", "category", "holdout")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.combine",
                                description="Combine fitted PatchCore/PaDiM runs into one graph with one score.")
    p.add_argument("--runs", nargs="+", required=True, help="fitted patchcore/padim run folders (two or more)")
    p.add_argument("--out", required=True, metavar="DIR", help="new run folder to write (must not hold a run)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=option_argument,
                   help="option of the combined method, repeatable: standardize=pixel|global, score=max|sum, "
                        "weights=1,0.5, flip=none|h|v|hv")
    p.add_argument("--images", type=int, default=None,
                   help="standardise on at most N held-out good images, evenly spread (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    add_device(p, torch=True, help="where to run the heads for the statistics")
    add_no_progress(p)
    return p


def _member_configs(run_dirs: Sequence[str]) -> List[RunConfig]:
    from train import runs

    if len(run_dirs) < 2:
        raise ConfigError("--runs: give two or more fitted runs to combine")
    configs = [runs.load_config(Path(r)) for r in run_dirs]
    for run, config in zip(run_dirs, configs):
        if config.method not in ("patchcore", "padim"):
            raise ConfigError(f"--runs: {run} is a {config.method!r} run; only patchcore and padim runs combine")
        if not (Path(run) / runs.WEIGHTS).is_file():
            raise RunError(f"--runs: {run} has no {runs.WEIGHTS} (not fitted yet?)")
    for field in SHARED_FIELDS:
        values = {json.dumps(getattr(c, field)) for c in configs}
        if len(values) > 1:
            raise ConfigError(f"--runs disagree on {field} ({', '.join(sorted(values))}): combine runs fitted on "
                              f"the same data, size and --holdout")
    if not configs[0].holdout:
        raise ConfigError("--runs were fitted without --holdout: the statistics need good images the heads never "
                          "saw; fit them again with --holdout 0.2")
    return configs


def _load_heads(model, run_dirs: Sequence[str]) -> None:
    """Each run's fitted head into the combined model; every run's backbone must be the one the model built."""
    from train import runs

    backbone = model.backbone.state_dict()
    for index, run in enumerate(run_dirs):
        state, _ = runs.read_tensors(Path(run) / runs.WEIGHTS, "fit the run again")
        for key, value in state.items():
            if key.startswith("backbone."):
                own = backbone.get(key[len("backbone."):])
                if own is None or own.shape != value.shape or not torch.equal(own, value):
                    raise RunError(f"--runs: the backbone of {run} differs from the others ({key}); combine runs "
                                   f"on the same backbone weights")
        head = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        missing, unexpected = model.heads[index].load_state_dict(head, strict=False)
        missing = [k for k in missing if not k.startswith("pick.")]
        if missing or unexpected:
            raise RunError(f"--runs: {run} does not fit its head: missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}")


def combine(args: argparse.Namespace) -> Dict[str, Any]:
    from imagesets.subsets import split_holdout, spread
    from train import runs
    from train.data import find_samples, load_images
    from train.fit import ImageBatches, peak_rss_mib
    from train.loop import resolve_device
    from train.methods import get_method
    from train.methods.combined.model import fit_statistics

    out = Path(args.out)
    if (out / runs.CONFIG).exists():
        raise ConfigError(f"--out {out} already holds a run; choose a new folder")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.images is not None and args.images < 2:
        raise ConfigError(f"--images must be >= 2, got {args.images}")
    configs = _member_configs(args.runs)
    first = configs[0]
    given = dict(args.option)
    if "members" in given:
        raise ConfigError("--option members: the members are the --runs")
    members = [{"method": c.method, "options": {k: v for k, v in c.options.items() if k != "flip"}}
               for c in configs]
    spec = get_method("combined")
    options = spec.options({**given, "members": members})
    config = RunConfig(method="combined", image_size=tuple(first.image_size), seed=first.seed, steps=0,
                       batch_size=args.batch_size, data=first.data, category=first.category,
                       options=dict(options), holdout=first.holdout, versions=dict(first.versions))
    model = spec.build_model(None, tuple(first.image_size), options)
    _load_heads(model, args.runs)

    _, held = split_holdout(find_samples(first.data, first.category, "train"), first.holdout)
    held = spread(held, args.images)
    if len(held) < 2:
        raise ConfigError(f"need at least 2 held-out good images for the statistics, found {len(held)}")
    frames = load_images(held, tuple(first.image_size), progress=not args.no_progress)
    device = resolve_device(args.device)
    t0 = time.time()
    n = fit_statistics(model, ImageBatches(frames, args.batch_size, device), device, not args.no_progress)
    record = {"step": 0, "fit": True, "images": 0, "seconds": round(time.time() - t0, 3),
              "peak_rss_mib": peak_rss_mib(), "combined_from": [str(r) for r in args.runs],
              "statistics_images": n, "statistics_from": "holdout"}
    out.mkdir(parents=True, exist_ok=True)
    with writing(out):
        runs.start_fresh(out)
        runs.save_config(out, config)
        runs.save_weights(out, model.cpu())
        runs.append_history(out, record)
    return {"run": str(out), "heads": [c.method for c in configs], "statistics_images": n,
            "options": {k: v for k, v in options.items() if k != "members"}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    report = combine(args)
    print(f"wrote {report['run']}: heads {' + '.join(report['heads'])}, statistics on "
          f"{report['statistics_images']} held-out good images, {json.dumps(report['options'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
