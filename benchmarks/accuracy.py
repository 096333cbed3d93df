"""Accuracy of a trained run, or of an exported model, on a test split, through the runtime's backends.

    python -m benchmarks.accuracy --run RUN --data ROOT --category CAT --json OUT [--batch-size 8]
                                  [--device auto|cpu|cuda] [--overlays DIR | --no-overlays]
                                  [--option KEY=VALUE ...] [--no-map-stats]
    python -m benchmarks.accuracy --model MODEL.onnx --data ROOT --category CAT --json OUT
                                  [--backend onnxruntime|openvino|tensorrt|torch|triton] [--run RUN]

Every inference goes through `runtime.backends`, so what is measured is what ships:
- `--run RUN` alone: the run's inspection graph (`train.runs.load_graph`) in memory, on the torch backend
  (`TorchBackend.from_graph`, described by `export.manifest.graph_manifest`).
- `--model PATH`: the exported artifact and its manifest, opened with `create_backend` on `--backend` (default
  onnxruntime, the backend `calibration.threshold` scores with by default, on the CPU unless `--device` says
  otherwise). `--run` beside it only names the run in the report (and is the torch backend's run).
Both are fed RGB uint8 frames at the manifest's frame size (reversed for a BGR model) and evaluated by the
same `calibration.evaluate.evaluate`. Besides AUROC/AUPRO it reports verdicts: recall at 0.1/1/5 % false alarms,
and the false-alarm rate and recall realised at the manifest's threshold (or `--threshold T`). Prints a table and writes the JSON and overlay PNGs. `--option
mean_filter=7` evaluates the run's weights with another value of a scoring option (see the method's
`scoring_options`), to choose it without training again.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from benchmarks.report import metrics_table, write_overlays
from calibration.evaluate import evaluate, json_ready
from runtime.backends import DEVICES, REGISTRY, create_backend, select_backend
from runtime.errors import cli_exit, writing
from runtime.files import write_json
from runtime.frames import rgb_to_model_order
from runtime.manifest import load_manifest, model_label, verify_artifact
from train.config import option_argument
from train.errors import ConfigError

InferFn = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]
#: the backend for `--model` when `--backend` is not given: the calibration's default, so an AUROC and a
#: threshold of one artifact are computed by the same code
MODEL_BACKEND = "onnxruntime"


# ------------------------------------------------------------------------------------------- the backend
def open_backend(args: argparse.Namespace) -> Tuple[Any, Any, Dict[str, Any]]:
    """(backend (not loaded), the run's RunConfig or None, report fields) for the command line's choice."""
    options = {"threads": args.threads} if args.threads is not None else {}
    if args.model:
        if args.option or args.no_map_stats:
            raise ConfigError("--option and --no-map-stats change the torch graph of --run; an exported --model has "
                              "its scoring built in (export again from a run with those options)")
        path = str(args.model)
        if not os.path.isfile(path):
            raise ConfigError(f"--model {path} does not exist; export one with `python -m export.onnx --run RUN "
                              f"--out {path}`")
        manifest = load_manifest(path)
        verify_artifact(path, manifest)
        choice = select_backend(manifest.artifact_kind, args.backend or MODEL_BACKEND, args.device)
        if choice.name == "torch" and args.run:
            options["run_dir"] = str(args.run)
        backend = create_backend(choice.name, path, manifest, device=choice.device, **options)
        config = None
        if args.run:
            from train.runs import load_config

            config = load_config(args.run)
        return backend, config, {"backend": choice.name, "model_path": path}
    if not args.run:
        raise ConfigError("give --run RUN (a trained run folder), or --model MODEL.onnx")
    if args.backend not in (None, "torch"):
        raise ConfigError(f"--backend {args.backend} runs an exported model: give --model MODEL.onnx (a --run alone "
                          f"runs on torch)")
    from export.manifest import graph_manifest
    from runtime.backends.torch import TorchBackend
    from train.runs import load_graph

    graph, config = load_graph(args.run, "cpu", scoring=dict(args.option) or None, map_stats=not args.no_map_stats)
    backend = TorchBackend.from_graph(graph, graph_manifest(config, graph, source_run=str(args.run)),
                                      device=args.device, threads=args.threads)
    return backend, config, {"backend": "torch", "model_path": None, "map_stats": graph.standardizer is not None}


def frame_feeder(backend: Any) -> InferFn:
    """`backend.infer` fed in the model's channel order (the test images are read as RGB)."""
    order = backend.manifest.input.channel_order
    return lambda batch: backend.infer(rgb_to_model_order(batch, order))


# ------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description="Image AUROC, pixel AUROC, AUPRO (FPR <= 0.3, normalised) and F1-max of a trained run or an "
                    "exported model on a test split, overall and per defect type; writes a JSON and overlay PNGs.",
    )
    p.add_argument("--run", metavar="RUN",
                   help="trained run folder (config.json + model.safetensors): alone, its torch graph is evaluated; "
                        "with --model it names the run in the report")
    p.add_argument("--model", metavar="PATH",
                   help="exported model (MODEL.onnx, .engine, .xml with MODEL.json beside it) to evaluate through a "
                        "runtime backend instead of the torch graph")
    p.add_argument("--backend", default=None, choices=tuple(REGISTRY),
                   help=f"runtime backend (default: {MODEL_BACKEND} for --model, the backend calibration.threshold "
                        f"scores with; torch for --run alone)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="device of the backend (default auto: torch uses CUDA when it sees a GPU; for --model, "
                        "the runtime's choice for the backend)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of the backend (default: the physical cores)")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="data root (MVTec/MPDD layout or VisA with split_csv/1cls.csv)")
    p.add_argument("--category", required=True, metavar="CAT", help="category to evaluate, e.g. bottle")
    p.add_argument("--json", required=True, metavar="PATH", help="where to write the results JSON")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="frames per inference batch (default 8)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=option_argument,
                   help="change a scoring option of the run for this evaluation, repeatable (FAIR: mean_filter=7, "
                        "lab_weight=3e-4); options the network was trained with cannot change")
    p.add_argument("--no-map-stats", action="store_true",
                   help="leave the run's per-pixel map standardisation (python -m train.map_stats) out of the graph")
    p.add_argument("--overlays", metavar="DIR", help="folder for overlay PNGs (default: overlays/ beside the JSON)")
    p.add_argument("--no-overlays", action="store_true", help="write no overlay PNGs")
    p.add_argument("--overlays-per-set", type=int, default=4, metavar="K",
                   help="overlays per set: K highest-scored good, K highest- and K lowest-scored defective (default 4)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="pass/fail threshold whose false-alarm rate and recall are reported (default: the "
                        "manifest's, from python -m calibration.threshold; a --run alone has none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_accuracy(args: argparse.Namespace) -> Dict[str, Any]:
    """Everything `main` does, raising InspectError on bad input; returns the JSON-ready report."""
    from imagesets import find_samples, load_images, load_masks

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.overlays_per_set < 0:
        raise ConfigError(f"--overlays-per-set must be >= 0, got {args.overlays_per_set}")
    progress = not args.no_progress
    backend, config, fields = open_backend(args)
    size_hw = backend.manifest.input.size
    samples = find_samples(args.data, args.category, "test")
    if not samples:
        raise ConfigError(f"no test images for category {args.category!r} in {args.data}")
    frames = load_images(samples, size_hw, progress=progress)
    masks = load_masks(samples, size_hw)
    labels = [int(s.label) for s in samples]
    types = [str(s.defect_type) for s in samples]
    threshold = args.threshold
    if threshold is None and backend.manifest.threshold is not None:
        threshold = backend.manifest.threshold.value
    with backend:
        result = evaluate(frame_feeder(backend), frames, labels, masks, types, batch_size=args.batch_size,
                          progress=progress, threshold=threshold)
        described = backend.describe()

    report = {
        "run": str(args.run) if args.run else None,
        "method": getattr(config, "method", backend.manifest.method),
        "c": getattr(config, "c", backend.manifest.c),  # null for a method without a width
        "model": model_label(backend.manifest.method, backend.manifest.c),
        "options": getattr(config, "options", backend.manifest.options),
        "data": str(args.data),
        "category": args.category,
        "image_size": [int(size_hw[0]), int(size_hw[1])],
        "backend": fields["backend"],
        "device": backend.device,
        "runs_on": described,
        "model_path": fields["model_path"],
        **({"map_stats": fields["map_stats"]} if "map_stats" in fields else {}),
        "batch_size": args.batch_size,
        **json_ready(result),
        "paths": [str(s.path) for s in samples],
    }
    out = Path(args.json)
    if not args.no_overlays and args.overlays_per_set > 0:
        folder = Path(args.overlays) if args.overlays else out.parent / "overlays"
        names = [f"{s.defect_type}_{Path(s.path).stem}" for s in samples]
        with writing(f"overlays to {folder}"):
            written = write_overlays(folder, frames, result["maps"], masks, result["scores"], labels, names,
                                     k=args.overlays_per_set)
        report["overlays"] = [str(p) for p in written]
        report["overlays_dir"] = str(folder)
    write_json(out, report)
    return report


def _run(args: argparse.Namespace) -> int:
    report = run_accuracy(args)
    title = (f"{report['model']}  {report['category']}  ({report['runs_on']}, "
             f"{report['image_size'][0]}x{report['image_size'][1]}, {report['n_images']} images)")
    print(metrics_table(report, title))
    shown = (f" and {len(report['overlays'])} overlay PNGs in {report['overlays_dir']}/" if report.get("overlays")
             else "")
    print(f"wrote {args.json}{shown}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
