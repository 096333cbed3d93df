"""Accuracy of a trained run (or of its exported ONNX) on a test split.

    python -m benchmarks.accuracy --run RUN --data DIR --category CAT --json OUT [--batch-size 8]
                                  [--device auto|cpu|cuda] [--overlays DIR | --no-overlays] [--onnx MODEL.onnx]
                                  [--option KEY=VALUE ...] [--no-map-stats]

The torch path evaluates the run's inspection graph (`train.runs.load_graph`) under `torch.inference_mode()`;
`--onnx` evaluates an exported ONNX with ONNX Runtime (CPU) instead. Both go through the same
`calibration.evaluate.evaluate`, fed with RGB uint8 frames at the run's image size (for `--onnx`: the ONNX's own
input size when it is static, else the run's). Prints a table and writes the JSON and overlay PNGs.
`--option mean_filter=7` evaluates the run's weights with another value of a scoring option (see the method's
`scoring_options`), to choose it without training again.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from calibration.evaluate import evaluate, json_ready
from benchmarks.report import metrics_table, write_overlays
from runtime.manifest import model_label
from train.config import option_argument
from train.errors import ConfigError, InspectError, RunError

InferFn = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]


# ------------------------------------------------------------------------------------------- backends


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked but torch sees no CUDA GPU; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r} is not one of auto, cpu, cuda")
    return name


def torch_infer(graph, device: str) -> InferFn:
    """Wrap an inspection graph (uint8 NHWC -> map, score) as a numpy `infer` callable."""
    import torch

    def infer(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
            amap, score = graph(x)
            return amap.float().cpu().numpy(), score.float().cpu().numpy()

    return infer


class OnnxInfer:
    """ONNX Runtime (CPU) session as an `infer` callable. The graph must take one uint8 (N, H, W, 3) frame
    input; of its outputs the 4-D one is the map and the 1-D one the score (names are not relied on). A
    static batch size is honoured by splitting and padding batches."""

    def __init__(self, path) -> None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--onnx {path} does not exist; export one with `python -m export.onnx --run RUN --out {path}`")
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is a core dependency
            raise ConfigError("--onnx needs onnxruntime: pip install onnxruntime") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise RunError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}; re-export it") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RunError(
                f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); evaluation feeds only the "
                f"frame: export the graph with its default (fixed) extra inputs"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[3], int) and shape[3] != 3) or inputs[0].type != "tensor(uint8)":
            raise RunError(f"{path} input {inputs[0].name} is {inputs[0].type} {shape}; expected uint8 (N, H, W, 3)")
        self.input_name = inputs[0].name
        self.static_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        hw = shape[1:3]
        self.input_size = tuple(hw) if all(isinstance(v, int) and v > 0 for v in hw) else None
        self.provider = self.session.get_providers()[0]

    def _run(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})
        maps = [o for o in outs if np.ndim(o) == 4]
        scores = [o for o in outs if np.ndim(o) == 1]
        if len(maps) != 1 or len(scores) != 1:
            shapes = [np.shape(o) for o in outs]
            raise RunError(f"the ONNX outputs {shapes} are not one map (N, 1, h, w) and one score (N,); re-export it")
        return maps[0], scores[0]

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        b0 = self.static_batch
        if b0 is None or b0 == batch.shape[0]:
            return self._run(batch)
        maps, scores = [], []
        for start in range(0, batch.shape[0], b0):
            part = batch[start : start + b0]
            n = part.shape[0]
            if n < b0:  # pad with copies of the last frame, drop their outputs
                part = np.concatenate([part, np.repeat(part[-1:], b0 - n, axis=0)])
            m, s = self._run(part)
            maps.append(m[:n])
            scores.append(s[:n])
        return np.concatenate(maps), np.concatenate(scores)


# ------------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description="Image AUROC, pixel AUROC, AUPRO (FPR <= 0.3, normalised) and F1-max of a trained run on a "
        "test split, overall and per defect type; writes a JSON and overlay PNGs.",
    )
    p.add_argument("--run", help="trained run folder (config.json + model.safetensors); optional with --onnx")
    p.add_argument("--data", required=True, help="data root (MVTec/MPDD layout or VisA with split_csv/1cls.csv)")
    p.add_argument("--category", required=True, help="category to evaluate, e.g. bottle")
    p.add_argument("--json", required=True, help="where to write the results JSON")
    p.add_argument("--batch-size", type=int, default=8, help="frames per inference batch (default 8)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device (default auto)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=option_argument,
                   help="change a scoring option of the run for this evaluation, repeatable (FAIR: mean_filter=7, "
                        "lab_weight=3e-4); options the network was trained with cannot change")
    p.add_argument("--no-map-stats", action="store_true",
                   help="leave the run's per-pixel map standardisation (python -m train.map_stats) out of the graph")
    p.add_argument("--onnx", help="evaluate this exported ONNX with ONNX Runtime (CPU) instead of the torch graph")
    p.add_argument("--overlays", help="folder for overlay PNGs (default: overlays/ beside the JSON)")
    p.add_argument("--no-overlays", action="store_true", help="write no overlay PNGs")
    p.add_argument("--overlays-per-set", type=int, default=4, metavar="K",
                   help="overlays per set: K highest-scored good, K highest- and K lowest-scored defective (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_accuracy(args: argparse.Namespace) -> Dict[str, Any]:
    """Everything `main` does, raising InspectError on bad input; returns the JSON-ready report."""
    from train.data import find_samples, load_images, load_masks

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.overlays_per_set < 0:
        raise ConfigError(f"--overlays-per-set must be >= 0, got {args.overlays_per_set}")
    progress = not args.quiet
    config = None
    report: Dict[str, Any] = {}
    if args.onnx and args.option:
        raise ConfigError("--option changes the torch graph of --run; an exported --onnx has its scoring built in "
                          "(export again from a run with those options)")
    if args.onnx:
        infer: InferFn = OnnxInfer(args.onnx)
        if args.run:
            from train.runs import load_config

            config = load_config(args.run)
        size_hw = infer.input_size or (tuple(config.image_size) if config is not None else None)
        if size_hw is None:
            raise ConfigError(f"{args.onnx} has a dynamic input size: pass --run RUN so the run's image size is used")
        report.update(backend="onnxruntime", device=infer.provider, onnx=str(args.onnx))
    else:
        if not args.run:
            raise ConfigError("give --run RUN (a trained run folder), or --onnx MODEL.onnx")
        from train.runs import load_graph

        device = pick_device(args.device)
        graph, config = load_graph(args.run, device, scoring=dict(args.option) or None,
                                   map_stats=not args.no_map_stats)
        infer = torch_infer(graph, device)
        size_hw = tuple(config.image_size)
        report.update(backend="torch", device=device, onnx=None, map_stats=graph.standardizer is not None)

    samples = find_samples(args.data, args.category, "test")
    if not samples:
        raise ConfigError(f"no test images for category {args.category!r} in {args.data}")
    frames = load_images(samples, size_hw, progress=progress)
    masks = load_masks(samples, size_hw)
    labels = [int(s.label) for s in samples]
    types = [str(s.defect_type) for s in samples]
    result = evaluate(infer, frames, labels, masks, types, batch_size=args.batch_size, progress=progress)

    report = {
        "run": str(args.run) if args.run else None,
        "method": getattr(config, "method", None),
        "c": getattr(config, "c", None),  # null for a method without a width
        "model": model_label(config.method, config.c) if config is not None else None,
        "options": getattr(config, "options", None),
        "data": str(args.data),
        "category": args.category,
        "image_size": [int(size_hw[0]), int(size_hw[1])],
        **report,
        "batch_size": args.batch_size,
        **json_ready(result),
        "paths": [str(s.path) for s in samples],
    }
    out = Path(args.json)
    if not args.no_overlays and args.overlays_per_set > 0:
        folder = Path(args.overlays) if args.overlays else out.parent / "overlays"
        names = [f"{s.defect_type}_{Path(s.path).stem}" for s in samples]
        written = write_overlays(folder, frames, result["maps"], masks, result["scores"], labels, names,
                                 k=args.overlays_per_set)
        report["overlays"] = [str(p) for p in written]
    _atomic_write(out, json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_accuracy(args)
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable JSON/overlay folder and the like
        print(f"error: {e}", file=sys.stderr)
        return 2
    title = ((f"{report['model']}  " if report.get("model") else "") +
             f"{report['category']}  ({report['backend']} on {report['device']}, "
             f"{report['image_size'][0]}x{report['image_size'][1]}, {report['n_images']} images)")
    print(metrics_table(report, title))
    print(f"wrote {args.json}" + (f" and {len(report['overlays'])} overlays" if report.get("overlays") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
