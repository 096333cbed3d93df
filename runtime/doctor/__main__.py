"""python -m runtime.doctor [--model M] [--real PATH ...] [--json OUT] [--iters N] [--no-selftest]
[--keep-engines DIR]

Prints the report; exit status 0 when every backend that ran agreed with ONNX Runtime, 1 when one failed or
raised (the report says which), 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from runtime.cli_flags import positive_int
from runtime.errors import RuntimeInspectError, cli_exit
from runtime.files import write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.doctor",
                                description="Report what this machine can run (Python, OpenCV, CUDA, GPU, TensorRT, "
                                            "OpenVINO, CPU features, each backend) and check that every available "
                                            "backend computes what ONNX Runtime FP32 computes.")
    p.add_argument("--model", help="also check this exported model (.onnx or .engine/.plan with its .json) on every "
                                   "backend available here")
    p.add_argument("--real", nargs="+", default=[], metavar="PATH",
                   help="image files or folders of them to run --model on besides the synthetic frames (at most 8)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT ('-': print JSON instead "
                                                 "of text) for a bug report")
    p.add_argument("--iters", type=positive_int, default=20, help="timed runs per backend (default 20)")
    p.add_argument("--no-selftest", action="store_true",
                   help="skip the bundled self-test model (and the TensorRT smoke build)")
    p.add_argument("--keep-engines", metavar="DIR",
                   help="write the TensorRT engines the doctor builds into DIR instead of a temporary folder")
    return p


def _run(args: argparse.Namespace) -> int:
    from runtime.doctor.report import collect, format_text  # noqa: PLC0415

    if args.model and not os.path.isfile(args.model):
        raise RuntimeInspectError(f"--model {args.model}: no such file")
    if args.model:
        from runtime.manifest import load_manifest  # noqa: PLC0415

        load_manifest(args.model)  # a missing or invalid manifest is bad input (exit 2), not a finding
    if args.real and not args.model:
        raise RuntimeInspectError("--real needs --model: the real frames are run through that model")
    for path in args.real:
        if not os.path.exists(path):
            raise RuntimeInspectError(f"--real {path}: no such file or folder")
    report = collect(model=args.model, real=args.real, selftest=not args.no_selftest, iters=args.iters,
                     engine_dir=args.keep_engines)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report))
        if args.json:
            write_json(args.json, report, f"--json {args.json}")
    return 0 if report["ok"] else 1


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
