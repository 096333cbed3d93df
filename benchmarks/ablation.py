"""Ablation of one method option on one data set: train one run per value (same steps, same seed), evaluate
each on the test split, print a table and write JSON.

    python -m benchmarks.ablation --method noise2norm --option lam 0 0.3 --data DIR --category CAT \
        --c 16 --image-size 128 --steps 100 --out runs/ablation-lam [--json OUT]

The noise-to-norm paper's ablation (Table 4: lambda=0 gives 73.2 image AUROC on MPDD, lambda=0.3 gives 94.9)
is `--option lam 0 0.3`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from runtime.backends import DEVICES
from runtime.errors import cli_exit
from runtime.files import write_json
from train.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, help="method to train, e.g. noise2norm or fair")
    p.add_argument("--option", nargs="+", required=True, metavar=("NAME", "VALUE"),
                   help="option name followed by the values to compare")
    p.add_argument("--data", required=True, metavar="ROOT", help="data root (MVTec/MPDD/VisA layout)")
    p.add_argument("--category", metavar="CAT", help="category under --data")
    p.add_argument("--c", type=int, default=None,
                   help="network width (default: the method's; methods without a width refuse it)")
    p.add_argument("--image-size", default="256", help="N or HxW, multiples of the method's size multiple")
    p.add_argument("--steps", type=int, default=200, help="steps per run (gradient-trained methods)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the method's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the method's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="training device (default auto)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the runs (one sub-folder per value)")
    p.add_argument("--json", metavar="PATH", help="write the table as JSON")
    return p


def _run(args: argparse.Namespace) -> int:
    if len(args.option) < 2:
        raise ConfigError("--option needs a name and at least one value (e.g. --option lam 0 0.3)")
    from train.methods import get_method

    args.c = get_method(args.method).width(args.c)
    rows = run(args)
    name = args.option[0]
    from runtime.manifest import model_label

    print(f"\n{model_label(args.method, args.c)} {args.image_size} {args.steps} steps seed {args.seed}, "
          f"{args.category or args.data}")
    print(f"{name:>10}  {'image AUROC':>12}  {'pixel AUROC':>12}  {'AUPRO':>8}")
    for r in rows:
        print(f"{str(r['value']):>10}  {r['image_auroc']:12.4f}  {r['pixel_auroc']:12.4f}  {r['aupro']:8.4f}")
    if args.json:
        write_json(args.json, {"method": args.method, "option": name, "c": args.c, "steps": args.steps,
                               "seed": args.seed, "rows": rows}, f"--json {args.json}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def run(args):
    import numpy as np

    from calibration.evaluate import evaluate
    from export.manifest import graph_manifest
    from runtime.backends.torch import TorchBackend
    from train.config import RunConfig, parse_image_size, parse_option
    from imagesets import find_samples, load_images, load_masks
    from train.loop import train
    from train.methods import get_method
    from train.runs import load_graph

    method = get_method(args.method)
    size = parse_image_size(args.image_size, method.size_multiple)
    name, values = args.option[0], [parse_option(f"{args.option[0]}={v}")[1] for v in args.option[1:]]
    train_images = load_images(find_samples(args.data, args.category, "train"), size)
    test = find_samples(args.data, args.category, "test")
    frames, masks = load_images(test, size), load_masks(test, size)
    labels = np.array([s.label for s in test])
    types = [s.defect_type for s in test]
    rows = []
    for value in values:
        config = RunConfig(method=args.method, c=args.c, image_size=size, seed=args.seed, steps=args.steps,
                           batch_size=args.batch_size or method.train_defaults.get("batch_size", 8),
                           lr=args.lr if args.lr is not None else method.train_defaults.get("lr", 1e-4),
                           data=str(args.data), category=args.category, options={name: value})
        run_dir = Path(args.out) / f"{name}={value}"
        if not (run_dir / "model.safetensors").exists():
            train(config, run_dir, train_images, device=args.device)
        graph, run_config = load_graph(run_dir, "cpu")
        with TorchBackend.from_graph(graph, graph_manifest(run_config, graph, str(run_dir))) as backend:
            metrics = evaluate(backend.infer, frames, labels, masks, types)
        rows.append({"value": value, "run": str(run_dir), "image_auroc": metrics["image_auroc"],
                     "pixel_auroc": metrics["pixel_auroc"], "aupro": metrics["aupro"]})
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
