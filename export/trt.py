"""Build a TensorRT engine of a method's inspection graph.

    python -m export.trt --method fair --c 32 [--run RUN] [--precision fp32|fp16|int8] [--profile 1:8:32]
                         [--workspace MB] [--out DIR] [--random-weights] [--data DIR --category CAT]
                         [--frame-size HxW] [--channel-order RGB|BGR] [--image-size 256] [--noise-input]

Without --run it takes the newest run for that method and c under --runs-root (default `runs/`, each
`runs/*/config.json` is read); --c defaults to the method's width and is refused by a method without one.
--opset defaults to the method's. Steps (`export.artifacts`, the pipeline `benchmarks/latency.py` uses too), each
leaving files in --out (default `engines/`):
1. `NAME.onnx` + `NAME.json` (FP32 graph, `export.onnx`), NAME = METHOD_cC, or METHOD for a method without a
   width (e.g. fair_c32, patchcore);
2. the graph the engine is built from: FP16 (`NAME_fp16.onnx`, `export.fp16`) or Q/DQ INT8
   (`NAME_int8.onnx`, `calibration.int8.quantize_onnx`), each with its manifest; precision lives in the graph;
3. the operator check for TensorRT 8.5 / 10.x / 11 (`export.opcheck`);
4. the engine `NAME_PRECISION.engine` + manifest (TensorRT version, GPU, compute capability, profile, TF32 off)
   and the timing cache `timing.trtVERSION.smCC.cache`. Without TensorRT (a CPU machine, CI) it stops before this step with one line
   that says how to install it, and exit status 3: the ONNX files are what you copy to the target.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Tuple

from export.errors import ExportError
from runtime.cli_flags import positive_int
from runtime.manifest import CHANNEL_ORDERS

EXIT_NO_TENSORRT = 3
INSTALL_HINT = "`pip install tensorrt` on x86, JetPack (python3-libnvinfer) on Jetson"


def parse_profile(text: str) -> Tuple[int, int, int]:
    """'1:8:32' -> (1, 8, 32); 'N' -> (N, N, N). min <= opt <= max, all >= 1."""
    parts = str(text).split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not (1 <= vals[0] <= vals[1] <= vals[2]):
        raise ExportError(f"--profile {text!r} is not MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:8:32)")
    return vals[0], vals[1], vals[2]


def newest_run(method: str, c: Optional[int], root="runs") -> Optional[Path]:
    """The most recently trained run folder under `root` whose config.json has this method and c (None for a
    method without a width) and whose weights exist, or None."""
    root = Path(root)
    best, best_time = None, -1.0
    for cfg in sorted(root.glob("*/config.json")):
        try:
            d = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        weights = cfg.parent / "model.safetensors"
        if d.get("method") != method or d.get("c") != c or not weights.is_file():
            continue
        t = weights.stat().st_mtime
        if t > best_time:
            best, best_time = cfg.parent, t
    return best


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.trt",
                                description="Export a method's inspection graph and build a TensorRT engine "
                                            "(TensorRT 8.5 / 10.x / 11).")
    p.add_argument("--method", help="method name (e.g. fair); required without --run")
    p.add_argument("--c", type=int, help="network width (e.g. 32; default: the method's); methods without a "
                   "width refuse it")
    p.add_argument("--run", help="trained run folder (default: the newest matching run under --runs-root)")
    p.add_argument("--runs-root", default="runs", help="where to look for runs (default: runs/)")
    p.add_argument("--random-weights", action="store_true",
                   help="no trained run: random weights, for timing only (scores are meaningless)")
    p.add_argument("--image-size", default="256", help="model size for --random-weights (N or HxW)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="precision of the graph the engine is built from (fp16/int8: the method's declared parts)")
    p.add_argument("--profile", default="1:8:32", metavar="MIN:OPT:MAX",
                   help="the engine's batch optimisation profile (default 1:8:32; N = N:N:N)")
    p.add_argument("--workspace", type=int, default=None, metavar="MB", help="builder workspace limit in MiB")
    p.add_argument("--out", default="engines", metavar="DIR",
                   help="folder for the ONNX graphs, the engine, their manifests and the timing cache (default: "
                        "engines/)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the method's, e.g. 17)")
    p.add_argument("--frame-size", default=None, metavar="HxW", help="camera frame size (graph resizes)")
    p.add_argument("--channel-order", default="RGB", choices=CHANNEL_ORDERS,
                   help="channel order of the frames (OpenCV gives BGR)")
    p.add_argument("--noise-input", action="store_true",
                   help="the method's optional extra inputs (noise2norm: a run-time noise field)")
    p.add_argument("--data", help="INT8: data root (MVTec layout) whose good training images calibrate")
    p.add_argument("--category", help="INT8: category inside --data")
    p.add_argument("--images", type=positive_int, default=64, help="INT8: number of calibration images (default 64)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (INT8 calibration)")
    return p


def _source(args):
    """(GraphSource, file stem, notes): the run given, the newest matching run, or random weights."""
    from export.artifacts import GraphSource
    from train.methods import get_method
    from train.runs import load_config

    if args.run:
        config = load_config(Path(args.run))
        for key in ("method", "c"):
            given = getattr(args, key)
            if given is not None and str(given) != str(getattr(config, key)):
                raise ExportError(f"--{key} {given} does not match run {args.run} ({key}={getattr(config, key)}); "
                                  f"drop --{key} or pick another run")
        return (GraphSource(run=str(args.run), frame_size=args.frame_size, channel_order=args.channel_order),
                get_method(config.method).label(config.c), [])
    if args.method is None:
        raise ExportError("give --method (e.g. --method fair --c 32), or --run RUN")
    method = get_method(args.method)
    c = method.width(args.c)
    label = method.label(c)
    if args.random_weights:
        return (GraphSource(method=args.method, c=c, image_size=args.image_size, frame_size=args.frame_size,
                            channel_order=args.channel_order),
                label, ["random weights: for timing only, the scores mean nothing"])
    run = newest_run(args.method, c, args.runs_root)
    if run is None:
        width = f" --c {c}" if c is not None else ""
        raise ExportError(
            f"no trained run of {label} under {args.runs_root}/: train one with "
            f"`python -m train --method {args.method}{width} --data DIR --category CAT --out "
            f"{args.runs_root}/{label}`, pass --run RUN, or use --random-weights for timing only")
    print(f"using run {run} (newest {label} under {args.runs_root}/)")
    return GraphSource(run=str(run), frame_size=args.frame_size, channel_order=args.channel_order), label, []


def _wrote(path: Path) -> None:
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) + manifest")


def _run(args) -> int:
    from export.artifacts import Calibration, ModelArtifacts
    from export.opcheck import DEFAULT_TARGETS, check_onnx
    from runtime import trt_version
    from runtime.errors import BackendUnavailable

    profile = parse_profile(args.profile)
    if args.workspace is not None and args.workspace < 1:
        raise ExportError(f"--workspace {args.workspace} must be a positive number of MiB")
    if args.precision == "int8" and not args.data:
        raise ExportError("--precision int8 needs --data DIR (good training images) and --category CAT")
    source, stem, notes = _source(args)
    out = Path(args.out)
    calibration = (Calibration(args.data, args.category, args.images, progress=not args.no_progress)
                   if args.data else None)
    arts = ModelArtifacts(out, stem, source, calibration=calibration,
                          export_options={"opset": args.opset, "noise_input": args.noise_input, "profile": profile,
                                          "notes": notes})
    _wrote(arts.onnx("fp32"))
    src = arts.onnx(args.precision)
    if args.precision != "fp32":
        _wrote(src)

    installed = trt_version.installed_version()
    targets = list(DEFAULT_TARGETS) + ([installed] if installed else [])
    report = check_onnx(src, targets)
    print(report.summary())
    if installed and not report.ok_for(installed):
        raise ExportError(f"{src} does not parse with the installed TensorRT {installed} (see above)")

    try:
        trt_version.import_tensorrt()
    except BackendUnavailable as e:
        print(f"error: TensorRT is not installed here ({e.detail.splitlines()[0] if e.detail else 'no tensorrt'}): "
              f"the ONNX and manifest are in {out}/; to build the engine install TensorRT ({INSTALL_HINT}) and "
              f"rerun this command on the target GPU", file=sys.stderr)
        return EXIT_NO_TENSORRT

    print(f"building the {args.precision} engine of {src.name} in {out}/ (TensorRT {installed}, profile "
          f"{profile[0]}:{profile[1]}:{profile[2]}); this takes a few minutes the first time, seconds with the "
          f"timing cache")
    engine, res = arts.engine(args.precision, profile, workspace_mb=args.workspace, verbose=args.verbose)
    print(f"wrote {engine} ({engine.stat().st_size / 2**20:.1f} MiB) + manifest; built in {res.seconds:.0f} s on "
          f"{res.gpu} (sm {res.compute_capability}), timing cache {res.timing_cache}")
    print(f"threshold: none yet; calibrate the engine on its own scores: python -m calibration.threshold --model "
          f"{engine} --backend tensorrt --device cuda (--like MODEL.onnx, a calibrated ONNX of this run, or --data "
          f"DIR / --source VIDEO --target-fpr 0.01)")
    return 0


def main(argv=None) -> int:
    from runtime.errors import cli_exit

    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
