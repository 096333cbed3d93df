"""One command that proves the GPU path: tests, engines, parity and latency, into one folder.

    python -m benchmarks.gpu_check [--out DIR] [--cpu-only] [--methods fair:32 fair:64 fair:128 patchcore padim]
        [--precision fp32 fp16 int8] [--image-size 256] [--batch-sizes 1 8] [--iters 30] [--budget 570]
    scripts/gpu_check.sh [same options]

Steps (`benchmarks.gpu_check_steps`): the doctor's report; every `gpu`/`trt` test (and the files that skip
without TensorRT); per model, ONNX Runtime FP32 against OpenVINO, PyTorch (CPU and CUDA) and TensorRT FP32 /
FP16 / INT8 engines (each engine against ONNX Runtime on its own graph, timed with and without a CUDA graph);
`benchmarks/latency.py`'s tensorrt and torch-CUDA rows. Sized for about 10 minutes on one data-centre GPU
(`--budget` seconds, after which the remaining parts are skipped and said so). Without a GPU, or with
`--cpu-only`, it runs what it can (doctor, tests, CPU parity) and lists what it skipped and why.

The folder: `results.json` (everything), `table.md` (parity and timings), `SKIPPED.md`, `doctor.json` /
`doctor.txt`, `tests.xml`, `latency_METHOD.{json,md}`, `logs/` (each command's output), `engines/`. Exit status
0 when nothing failed (skips are not failures), 1 when something did, 2 on bad input.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from runtime.cli_flags import positive_int
from runtime.errors import cli_exit, writing
from runtime.files import atomic_write, write_json

MODELS = ("fair:32", "fair:64", "fair:128", "patchcore", "padim")
PRECISIONS = ("fp32", "fp16", "int8")
STEPS = ("doctor", "tests", "parity", "latency")


def _model(text: str) -> str:
    method, _, width = text.partition(":")
    if not method or (width and not width.isdigit()):
        raise argparse.ArgumentTypeError(f"model {text!r}: expected METHOD or METHOD:C, e.g. fair:32, patchcore")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                description="Prove the GPU path on this machine: GPU/TensorRT tests, TensorRT "
                                            "engines with parity against ONNX Runtime, latency rows; everything "
                                            "into one folder, with what was skipped and why.")
    p.add_argument("--out", default=None, metavar="DIR", help="result folder (default gpu_check_YYYYmmdd_HHMMSS)")
    p.add_argument("--cpu-only", action="store_true", help="do not touch the GPU even if one is present")
    p.add_argument("--methods", nargs="+", type=_model, default=list(MODELS),
                   help=f"METHOD or METHOD:C (default {' '.join(MODELS)})")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="engine precisions (default fp32 fp16 int8)")
    p.add_argument("--image-size", type=positive_int, default=256, help="model input side (default 256)")
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8], help="latency batch sizes (default 1 8); "
                                                                              "engines are built for 1..max")
    p.add_argument("--iters", type=positive_int, default=30, help="timed runs per leg and row (default 30)")
    p.add_argument("--budget", type=positive_int, default=570, help="seconds for the whole check (default 570)")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run (default all)")
    p.add_argument("--tests", nargs="+", default=None, metavar="FILE",
                   help="test files to run (default: every file with gpu/trt tests)")
    return p


def _fmt(v: Any, spec: str = ".2e") -> str:
    return "" if v is None else format(v, spec)


def parity_table(parity: Dict[str, Any]) -> List[str]:
    rows = ["| model | leg | status | map max abs err | score max abs err | p50 ms (batch 1) | p50 ms CUDA graph |",
            "|---|---|---|---|---|---|---|"]
    for m in parity.get("models", []):
        if m.get("error"):
            rows.append(f"| {m['model']} | | error | {m['error']} | | | |")
        for label, leg in m.get("legs", {}).items():
            outs = leg.get("outputs", {})
            lat = leg.get("latency_batch1", {}).get("p50_ms")
            graph = leg.get("latency_batch1_cuda_graph", {}).get("p50_ms")
            rows.append(f"| {m['model']} | {label} | {leg['status']}{': ' + leg['reason'] if leg.get('reason') else ''}"
                        f" | {_fmt(outs.get('anomaly_map', {}).get('max_abs'))} | "
                        f"{_fmt(outs.get('score', {}).get('max_abs'))} | {_fmt(lat, '.3f')} | {_fmt(graph, '.3f')} |")
    return rows


def write_outputs(out: Path, results: Dict[str, Any]) -> None:
    skipped = results["skipped"]
    lines = [f"# GPU check {results['created']}", "", f"GPU: {results['gpu']}", ""]
    if "parity" in results["steps"]:
        lines += ["## Parity against ONNX Runtime (and timings)", ""] + parity_table(results["steps"]["parity"]) + [""]
    tests = results["steps"].get("tests")
    if tests:
        lines += ["## Tests", "", f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped "
                                  f"({len(tests['files'])} files)", ""]
    for method, run in results["steps"].get("latency", {}).items():
        md = out / f"latency_{method}.md"
        lines += [f"## Latency: {method}", "", md.read_text() if md.is_file() else f"(no table; rc {run['rc']})", ""]
    with writing(str(out)):
        atomic_write(out / "table.md", "\n".join(lines) + "\n")
        atomic_write(out / "SKIPPED.md", f"# Skipped\n\nGPU path: {results['gpu_path']}\n\n"
                     + ("".join(f"- {what}: {why}\n" for what, why in skipped) or "nothing\n"))
    write_json(out / "results.json", results)


def _failed(results: Dict[str, Any]) -> List[str]:
    steps = results["steps"]
    bad = []
    if steps.get("doctor", {}).get("passed") is False:
        bad.append("doctor (see doctor.txt)")
    if steps.get("tests", {}).get("failed"):
        bad.append(f"tests: {', '.join(steps['tests']['failed_tests'][:5])}")
    for m in steps.get("parity", {}).get("models", []):
        bad += [f"{m['model']}: {label} {leg['status']}" for label, leg in m.get("legs", {}).items()
                if leg["status"] in ("fail", "error")]
        if m.get("error"):
            bad.append(f"{m['model']}: {m['error']}")
    bad += [f"latency {k}: rc {v['rc']}" for k, v in steps.get("latency", {}).items() if v["rc"] != 0]
    return bad


def _run(args: argparse.Namespace) -> int:
    from benchmarks import gpu_check_steps as steps
    from runtime.machine import machine_info

    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    out = Path(args.out or f"gpu_check_{stamp}")
    with writing(f"--out {out}"):
        out.mkdir(parents=True, exist_ok=True)
    gpu_reason = steps.gpu_status()
    if args.cpu_only:  # say what the GPU path would have been, too
        gpu_reason = f"--cpu-only was given (without it: {gpu_reason or 'a GPU and TensorRT are present'})"
    check = steps.Check(out, args.budget, gpu_reason)
    t0 = time.monotonic()
    profile = (1, max(args.batch_sizes), max(args.batch_sizes))
    print(f"GPU check into {out}: {'GPU path' if check.gpu else 'CPU-only (' + str(gpu_reason) + ')'}", flush=True)
    if "doctor" in args.steps:
        steps.step_doctor(check)
    if "tests" in args.steps:
        steps.step_tests(check, args.tests)
    if "parity" in args.steps:
        steps.step_parity(check, args.methods, args.image_size, args.precision, args.iters, profile)
    if "latency" in args.steps:
        steps.step_latency(check, args.methods, args.image_size, args.precision, args.batch_sizes, args.iters)
    info = machine_info()
    results = {"created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
               "gpu": info["gpu"] if check.gpu else f"none used ({gpu_reason})", "machine": info,
               "settings": {k: v for k, v in vars(args).items()}, "seconds": round(time.monotonic() - t0, 1),
               "gpu_path": "used" if check.gpu else f"unavailable: {gpu_reason}",
               "steps": check.steps, "skipped": check.skipped}
    results["failed"] = _failed(results)
    write_outputs(out, results)
    print(f"done in {results['seconds']} s: {out}/table.md, results.json, logs/")
    print(f"SKIPPED ({len(check.skipped)}; GPU path {results['gpu_path']}):")
    for what, why in check.skipped:
        print(f"  - {what}: {why}")
    if results["failed"]:
        print(f"FAILED ({len(results['failed'])}):")
        for what in results["failed"]:
            print(f"  - {what}")
        return 1
    print("nothing failed")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "MODELS", "PRECISIONS"]
