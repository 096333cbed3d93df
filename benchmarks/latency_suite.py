"""The whole latency benchmark: plan the models (one per width, or a trained run), run every row of
models x backends x precisions x batches, later timing passes, and the notes that explain the numbers.
Returns plain data, ``{"machine", "settings", "notes", "rows"}`` (`benchmarks.table` prints and writes it)."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.latency_rows import Model, RowSpec, Settings, rerun_row, run_row
from runtime.errors import InspectError
from runtime.manifest import model_label


class BenchmarkError(InspectError):
    """Bad input to the benchmark (one actionable line)."""


TIMING_NOTE = ("latency per batch, whole inspection graph: uint8 NHWC frames in -> anomaly map + score out as "
               "host arrays; the method's pre-processing (cast, scale, e.g. FAIR's high-pass) and scoring (e.g. "
               "MSGMS + CIELAB, kNN or Mahalanobis distances, filters, max) included; image decoding/resizing on "
               "the host not included")
MEMORY_NOTE = ("peak MiB = growth of the row process's resident set (VmHWM after resetting it through "
               "/proc/self/clear_refs, minus VmRSS after the backend library was imported): building the torch "
               "graph / loading the session or compiled model, warm-up and timed runs, native allocations "
               "included; the library's own import is not counted")
FALLBACK_MEMORY_NOTE = ("peak MiB = growth of the process's peak RSS (getrusage ru_maxrss) during the row; 0 when "
                        "an earlier peak was higher (this system cannot reset the peak)")


def _run_config(run: str) -> Tuple[str, Optional[int], Tuple[int, int]]:
    from train.runs import load_config

    cfg = load_config(Path(run))
    return cfg.method, cfg.c, tuple(cfg.image_size)


def plan_models(method: str, cs: Sequence[Optional[int]], image_size: Tuple[int, int], runs: Sequence[str]
                ) -> List[Tuple[str, Optional[int], Tuple[int, int], Optional[str]]]:
    """(method, c, image size, run) of every model: one per --c (random weights; c None for a method without a
    width) unless a --runs entry has that method and c (then the trained run, at its own image size); runs of
    other widths are added."""
    by_c: Dict[Tuple[str, Optional[int]], str] = {}
    models: List[Tuple[str, Optional[int], Tuple[int, int], Optional[str]]] = []
    for run in runs:
        m, c, size = _run_config(run)
        if (m, c) in by_c:
            raise BenchmarkError(f"--runs has two runs of {model_label(m, c)} ({by_c[(m, c)]}, {run}); give one "
                                 f"per model")
        by_c[(m, c)] = run
    for c in cs:
        if (method, c) in by_c:
            run = by_c.pop((method, c))
            models.append((method, c, _run_config(run)[2], run))
        else:
            models.append((method, c, image_size, None))
    for (m, c), run in by_c.items():
        models.append((m, c, _run_config(run)[2], run))
    return models


def backend_devices(backends: Sequence[str], devices: Sequence[str]) -> List[Tuple[str, str]]:
    """(backend, device) of every row group: a backend that needs a GPU runs on cuda only, the others on each
    of `devices`."""
    from runtime.backends import backend_capabilities

    out: Dict[Tuple[str, str], None] = {}
    for backend in backends:
        for device in (("cuda",) if backend_capabilities(backend).needs_gpu else devices):
            out[(backend, device)] = None
    return list(out)


def benchmark(method: str, cs: Sequence[int], backends: Sequence[str], precisions: Sequence[str],
              batches: Sequence[int], image_size: Tuple[int, int], settings: Settings,
              runs: Sequence[str] = (), work_dir: Optional[str] = None,
              on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
              devices: Sequence[str] = ("cpu",)) -> Dict[str, Any]:
    """Every row of the product models x (backend, device) x precisions x batches -> {"machine", "settings",
    "notes", "rows"}."""
    from runtime.machine import machine_info

    machine = machine_info()
    models = plan_models(method, cs, image_size, runs)
    groups = backend_devices(backends, devices)
    rows: List[Dict[str, Any]] = []
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="latency-")
        work_dir = tmp
    total = len(models) * len(groups) * len(precisions) * len(batches)
    jobs: Dict[int, Dict[str, Any]] = {}
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="rows", unit="row", disable=not settings.progress, file=sys.stderr)
        for (m, c, size, run) in models:
            model = Model(m, c, size, run, settings, Path(work_dir))
            for backend, device in groups:
                for precision in precisions:
                    for batch in batches:
                        spec = RowSpec(m, c, backend, precision, batch, size, run, device)
                        bar.set_description(spec.label())
                        row = run_row(spec, model, settings, jobs)
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
                        bar.update(1)
            model.release()
        bar.close()
        again = [r for r in rows if r["status"] == "ok" and id(r) in jobs]
        for k in range(2, settings.passes + 1):  # later passes: the rows again, in the same order
            for row in tqdm(again, desc=f"pass {k}/{settings.passes}", unit="row", disable=not settings.progress,
                            file=sys.stderr):
                rerun_row(row, jobs[id(row)], settings)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    mem_methods = {r.get("memory_method") for r in rows if r.get("memory_method")}
    notes = [TIMING_NOTE,
             f"p50/p90/p99 over the timed runs after {settings.warmup} untimed warm-up runs; FPS = images per "
             f"second = batch / mean latency; GPU work is synchronised before the clock stops; CPU ms = median "
             f"process CPU time (all threads) per batch: steadier than wall time on a shared machine for "
             f"single-threaded runs, inflated by spin-waiting with more threads",
             FALLBACK_MEMORY_NOTE if "ru_maxrss" in mem_methods else MEMORY_NOTE,
             "GMACs per image counted from the exported ONNX graph (Conv/ConvTranspose/MatMul/Gemm after shape "
             "inference); params as `python -m train --summary`",
             "AUROC/AUPRO only for rows with a trained run (--runs) and --data/--category, evaluated through the "
             "row's own backend; '—' otherwise",
             "each row ran in " + ("this process" if settings.in_process else "a fresh process of its own")
             + f"; CPU threads: {settings.threads or 'physical cores'}"
             + (f"; {settings.passes} passes over all rows, each row shows its pass with the lowest p50"
                if settings.passes > 1 else "")]
    if "bf16" in precisions:
        notes.append("bf16 = the FP32 graph computed in bfloat16 (OpenVINO INFERENCE_PRECISION_HINT=bf16, torch CPU "
                     "autocast), which uses AMX / AVX512-BF16 where the CPU has it")
    loads = [r["load_avg_1min"] for r in rows if r.get("load_avg_1min") is not None]
    if loads and max(loads) > machine["logical_cores"]:
        notes.append(f"the machine was busy: 1-minute load average up to {max(loads):.1f} on "
                     f"{machine['logical_cores']} CPUs during the rows, so wall times are inflated, torch eager "
                     f"(OpenMP barriers) most of all; compare CPU ms, or rerun on an idle machine")
    from benchmarks.table import speedups

    notes.extend(speedups(rows))
    return {
        "machine": machine,
        "settings": {
            "method": method, "c": list(cs), "backends": list(backends), "devices": list(devices),
            "precisions": list(precisions),
            "batches": list(batches), "image_size": list(image_size), "warmup": settings.warmup,
            "iters": settings.iters, "max_seconds": settings.max_seconds, "data": settings.data,
            "category": settings.category, "runs": list(runs), "threads": settings.threads,
            "seed": settings.seed, "options": settings.options, "in_process": settings.in_process,
            "passes": settings.passes,
        },
        "notes": notes,
        "rows": rows,
    }
