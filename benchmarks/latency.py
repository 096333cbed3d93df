"""Latency, throughput, size and (optionally) accuracy of inspection graphs across backends and precisions.

    python benchmarks/latency.py --method fair --c 32 64 128 [--backend torch onnxruntime openvino tensorrt ...]
        [--precision fp32 fp16 bf16 int8] [--batch-sizes 1 8] [--image-size 256] [--runs RUN ...]
        [--warmup N --iters N] [--passes N] [--threads N] [--json OUT] [--markdown [FILE]] [--plot OUT.png]
        [--data DIR --category CAT]

One row = (method, c, backend, precision, batch). Each row is produced by a small *row runner*: it opens the
backend on the row's artifact (the torch graph itself, or the exported FP32 / FP16 / Q/DQ INT8 ONNX, or a
TensorRT engine, all made by `export.artifacts`), warms it up, times `infer(frames_uint8) -> (maps, scores)`
and, when a trained run is given, evaluates it on the test split through that same backend. What is timed is
the whole inspection graph, uint8 NHWC frames in, anomaly map and score out, copied back to host numpy arrays:
cast and scale, high-pass, the network, MSGMS + CIELAB scoring, mean filter and max. Image decoding and resizing
on the host are not timed (the frames are already at the model's size). A row that cannot run here (library
missing, no GPU, no calibration data) stays in the table with the reason.

The pieces: `latency_rows` (a row: spec, model artifacts, job, filling it), `latency_runners` (executing a job,
in a child process of its own), `latency_timing` (timing loop, memory), `latency_suite` (all rows, passes,
notes), this file (the command line). Benchmarks as data: rows are plain dicts, written as JSON (``{"machine",
"settings", "notes", "rows"}``), printed as a table (``benchmarks.table``) and plotted (``benchmarks.plot``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from benchmarks.latency_rows import CALIBRATION_IMAGES, ROW_TIMEOUT_S, Settings, row_precisions  # noqa: E402
from benchmarks.latency_suite import BenchmarkError, benchmark  # noqa: E402
from runtime.cli_flags import positive_int  # noqa: E402
from runtime.files import write_json  # noqa: E402
from train.config import option_argument  # noqa: E402  (torch-free)

DEFAULT_BACKENDS = ["torch", "onnxruntime", "openvino", "tensorrt"]


# ---------------------------------------------------------------------------------------------------------
# command line


def _backend_name(text: str) -> str:
    from runtime.backends import backend_names

    t = text.lower()
    if t not in backend_names():
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; known: {', '.join(backend_names())}")
    return t


def _precision(text: str) -> str:
    t = text.lower()
    if t not in row_precisions():
        raise argparse.ArgumentTypeError(f"unknown precision {text!r}; known: {', '.join(row_precisions())}")
    return t


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from runtime.backends import DEVICES, backend_names

    p = argparse.ArgumentParser(
        prog="python benchmarks/latency.py",
        description="Latency / FPS / size / memory (and accuracy with --runs) of inspection graphs per backend "
                    "and precision. Timed: the whole graph, uint8 frames in, map + score out.")
    p.add_argument("--method", default="fair", help="registered method (default fair)")
    p.add_argument("--c", type=positive_int, nargs="+", default=None,
                   help="base widths (FAIR: 32 64 128); default the method's (32), or only the widths of --runs "
                        "when given; methods without a width (e.g. patchcore) refuse it")
    p.add_argument("--backend", type=_backend_name, choices=backend_names(), nargs="+", default=DEFAULT_BACKENDS,
                   metavar="BACKEND",
                   help=f"runtime backends: {', '.join(backend_names())} (default: {' '.join(DEFAULT_BACKENDS)})")
    p.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"],
                   help="where the backends compute, one row group per device (default cpu; auto: cuda when an "
                        "NVIDIA GPU is present, else cpu); a backend that needs a GPU (tensorrt) runs on cuda "
                        "whatever this says; e.g. --backend torch --device cpu cuda for torch on both")
    p.add_argument("--precision", type=_precision, nargs="+", default=["fp32"],
                   help="fp32, fp16 (FP16 ONNX), int8 (Q/DQ ONNX; needs --data for calibration), bf16 (the FP32 "
                        "graph computed in bf16: openvino, torch; CPUs with AMX/AVX512-BF16)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1], metavar="N",
                   help="batch sizes, one row each (default 1)")
    p.add_argument("--image-size", default="256",
                   help="N or HxW, multiples of the method's size multiple (16 for fair; default 256)")
    p.add_argument("--runs", nargs="*", default=[], metavar="RUN",
                   help="trained run folders: their rows use the trained weights and report AUROC/AUPRO")
    p.add_argument("--data", help="data root (MVTec layout): test split for accuracy, train split for INT8 "
                                  "calibration")
    p.add_argument("--category", help="category inside --data")
    p.add_argument("--calib-images", type=positive_int, default=CALIBRATION_IMAGES,
                   help=f"INT8 calibration images from the train split (default {CALIBRATION_IMAGES})")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed runs first (default 3)")
    p.add_argument("--iters", type=positive_int, default=30, help="timed runs (default 30)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop timing a row after this many seconds (at least 3 runs; default 120)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: physical cores)")
    p.add_argument("--passes", type=positive_int, default=1,
                   help="time every row this many times, one pass over all rows after another, and keep each "
                        "row's pass with the lowest p50 (for a shared, noisy machine; default 1)")
    p.add_argument("--option", type=option_argument, action="append", default=[], metavar="KEY=VALUE",
                   help="method option for the random-weight models (e.g. filter=sobel-xy3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and test frames")
    p.add_argument("--work-dir", help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--in-process", action="store_true",
                   help="run every row in this process (default: one child process per row, which isolates "
                        "thread pools, memory peaks and backends that hang)")
    p.add_argument("--row-timeout", type=float, default=ROW_TIMEOUT_S,
                   help=f"seconds before a row's process is ended (default {ROW_TIMEOUT_S:g})")
    p.add_argument("--json", metavar="OUT", help="write {machine, settings, notes, rows} as JSON")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                   help="also print (or write to FILE) the table as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="FPS vs params (and vs AUROC) scatter, labelled by model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from runtime.errors import cli_exit

    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args) -> int:
    from train.config import parse_image_size
    from train.methods import get_method

    method = get_method(args.method)  # unknown name -> ConfigError listing the known ones
    size = parse_image_size(args.image_size, method.size_multiple)
    if args.category and not args.data:
        raise BenchmarkError("--category needs --data (the data root that holds it)")
    if args.data and not Path(args.data).is_dir():
        raise BenchmarkError(f"--data {args.data} is not a folder; give the data root (MVTec layout)")
    if args.max_seconds <= 0:
        raise BenchmarkError(f"--max-seconds must be > 0, got {args.max_seconds}")
    if args.row_timeout <= 0:
        raise BenchmarkError(f"--row-timeout must be > 0, got {args.row_timeout}")
    for run in args.runs:
        if not Path(run).is_dir():
            raise BenchmarkError(f"--runs: {run} is not a run folder; train one with `python -m train ... --out RUN`")
    settings = Settings(
        warmup=args.warmup, iters=args.iters, max_seconds=args.max_seconds, data=args.data,
        category=args.category, calib_images=args.calib_images, threads=args.threads,
        options=dict(args.option), seed=args.seed, progress=not args.no_progress, in_process=args.in_process,
        row_timeout=args.row_timeout, passes=args.passes,
    )
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    if args.c is not None:
        cs = [method.width(c) for c in args.c]  # a width-less method refuses --c (ConfigError)
    else:
        cs = [] if args.runs else [method.width(None)]
    from runtime.machine import gpus

    devices = [("cuda" if gpus() else "cpu") if d == "auto" else d for d in args.device]
    result = benchmark(args.method, dedup(cs), dedup(args.backend), dedup(args.precision), dedup(args.batch_sizes),
                       size, settings, runs=args.runs, work_dir=args.work_dir, devices=dedup(devices))
    from benchmarks import table

    print(table.render_text(result))
    if args.markdown:
        md = table.render_markdown(result)
        if args.markdown == "-":
            print()
            print(md)
        else:
            Path(args.markdown).write_text(md + "\n")
    if args.json:
        write_json(args.json, table.plain(result), f"--json {args.json}")
    if args.plot:
        from benchmarks.plot import plot_result

        plot_result(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
