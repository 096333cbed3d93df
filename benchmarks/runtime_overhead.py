"""What the Inspector costs on top of its backend, and how long `import runtime` takes.

    python -m benchmarks.runtime_overhead --model MODEL.onnx [--backend onnxruntime] [--iters 50] [--json OUT]

Per frame it times (a) the bare backend call on a frame already at the model's size and channel order and
(b) `Inspector.inspect` on a camera-sized BGR frame (host resize, colour conversion, backend call, Result),
interleaved so load changes hit both alike; overhead = median(b) / median(a) - 1. Import times are measured
in fresh interpreters (`import runtime`, and `from runtime import Inspector`, which loads numpy and OpenCV).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runtime.cli_flags import add_backend
from runtime.errors import cli_exit
from runtime.files import write_json
from train.errors import ConfigError


def import_seconds(statement: str, repeats: int = 5) -> float:
    """Median wall time of `statement` in a fresh interpreter (interpreter start-up excluded)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    root = str(Path(__file__).resolve().parents[1])
    times = [float(subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip()) for _ in range(repeats)]
    return float(np.median(times))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.runtime_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="MODEL.onnx (or another artifact) with MODEL.json beside it")
    add_backend(p, help="runtime backend to measure")
    p.add_argument("--iters", type=int, default=50, help="timed frames (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first (default 5)")
    p.add_argument("--frame-size", default="480x640", metavar="HxW", help="size of the simulated camera frame")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from runtime import Inspector

    try:
        fh, fw = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--frame-size {args.frame_size!r} is not HxW (e.g. 480x640)") from None
    if args.iters < 1 or args.warmup < 0 or fh < 1 or fw < 1:
        raise ConfigError("need --iters >= 1, --warmup >= 0 and a positive --frame-size")
    rng = np.random.default_rng(0)
    camera = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)  # BGR, camera-sized
    with Inspector(args.model, backend=args.backend) as insp:
        h, w = insp.input_size
        ready = np.ascontiguousarray(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8))
        runner = insp.runner
        for _ in range(args.warmup):
            runner.infer(ready)
            insp.inspect(camera)
        bare, full = [], []
        for _ in range(args.iters):
            t = time.perf_counter()
            runner.infer(ready)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            insp.inspect(camera).anomaly_map  # the map at the frame's size, as an application would use it
            full.append(time.perf_counter() - t)
        backend = insp.backend
    b, f = float(np.median(bare)) * 1e3, float(np.median(full)) * 1e3
    result = {
        "model": args.model, "backend": backend, "model_size": [h, w], "frame_size": [fh, fw],
        "iters": args.iters, "bare_backend_ms_p50": round(b, 3), "inspector_ms_p50": round(f, 3),
        "overhead_pct": round(100.0 * (f / b - 1.0), 2),
        "import_runtime_s": round(import_seconds("import runtime"), 4),
        "import_inspector_s": round(import_seconds("from runtime import Inspector"), 4),
    }
    print(f"backend {backend}: bare call p50 {b:.2f} ms, Inspector.inspect p50 {f:.2f} ms "
          f"({result['overhead_pct']:+.1f} %, {fh}x{fw} BGR frame -> {h}x{w})")
    print(f"import runtime {result['import_runtime_s']:.4f} s, from runtime import Inspector "
          f"{result['import_inspector_s']:.3f} s")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
