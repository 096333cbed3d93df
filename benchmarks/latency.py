"""Latency, throughput, size and (optionally) accuracy of inspection graphs across backends and precisions.

    python benchmarks/latency.py --method fair --c 32 64 128 [--backend torch ort openvino trt ...]
        [--precision fp32 fp16 bf16 int8] [--batch 1 8] [--image-size 256] [--runs RUN ...]
        [--warmup N --iters N] [--passes N] [--threads N] [--json OUT] [--markdown [FILE]] [--plot OUT.png]
        [--data DIR --category CAT]

One row = (method, c, backend, precision, batch). Each row is produced by a small *row runner*: it opens the
backend on the row's artifact (the torch graph itself, or the exported FP32 / FP16 / Q/DQ INT8 ONNX), warms it
up, times `infer(frames_uint8) -> (maps, scores)` and, when a trained run is given, evaluates it on the test
split through that same backend. What is timed is the whole inspection graph, uint8 NHWC frames in, anomaly map
and score out, copied back to host numpy arrays: cast and scale, high-pass, the network, MSGMS + CIELAB scoring,
mean filter and max. Image decoding and resizing on the host are not timed (the frames are already at the
model's size). A row that cannot run here (library missing, no GPU, no calibration data) stays in the table
with the reason.

Benchmarks as data: rows are plain dicts, written as JSON (``{"machine", "settings", "notes", "rows"}``),
printed as a table (``benchmarks.table``) and plotted (``benchmarks.plot``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

from benchmarks.latency_runners import (  # noqa: E402,F401  (re-exported: the row runners' pieces)
    PeakRSS, RowSkipped, execute_job, latency_stats, make_frames, one_line, run_isolated, time_infer)
from runtime.manifest import model_label  # noqa: E402  (stdlib only)
from train.config import option_argument  # noqa: E402  (torch-free)

BACKENDS = ("torch", "torch-cuda", "ort", "openvino", "trt")
BACKEND_ALIASES = {"onnxruntime": "ort", "ov": "openvino", "tensorrt": "trt", "pytorch": "torch", "cuda": "torch-cuda"}
#: command-line backend -> the runtime backend that runs it (torch rows run the torch graph here)
RUNTIME_NAMES = {"ort": "onnxruntime", "openvino": "openvino", "trt": "tensorrt"}
#: fp32 / fp16 / int8 are graphs (FP32 ONNX, FP16 ONNX, Q/DQ ONNX); bf16 is a compute mode of the FP32 graph
#: (OpenVINO's INFERENCE_PRECISION_HINT, torch's CPU autocast) on CPUs with AMX / AVX512-BF16
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Q/DQ placement of `calibration.int8` per backend: "onnxruntime" (outputs of weighted ops quantised too, the
#: DQ -> Conv -> Q pattern ONNX Runtime's CPU provider runs as QLinearConv) or "tensorrt" (inputs only)
INT8_PLACEMENT = {"ort": "onnxruntime", "openvino": "tensorrt", "trt": "tensorrt"}
#: what OpenVINO's INFERENCE_PRECISION_HINT should be for each row (int8: the ops left in float)
OPENVINO_COMPUTE = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
GMACS_TOLERANCE = 0.05  # ONNX-counted vs torch-counted GMACs may differ by this fraction before a row says so
CALIBRATION_IMAGES = 64
ROW_TIMEOUT_S = 1800.0

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


class BenchmarkError(Exception):
    """Bad input to the benchmark (one actionable line)."""


# ---------------------------------------------------------------------------------------------------------
# rows and settings


@dataclass(frozen=True)
class RowSpec:
    method: str
    c: Optional[int]  # None: a method without a width
    backend: str
    precision: str
    batch: int
    image_size: Tuple[int, int]
    run: Optional[str] = None

    def label(self) -> str:
        return f"{model_label(self.method, self.c)} {self.backend}/{self.precision} batch {self.batch}"


@dataclass
class Settings:
    warmup: int = 3
    iters: int = 30
    max_seconds: float = 120.0
    data: Optional[str] = None
    category: Optional[str] = None
    calib_images: int = CALIBRATION_IMAGES
    threads: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    progress: bool = True
    in_process: bool = False
    row_timeout: float = ROW_TIMEOUT_S
    passes: int = 1


# ---------------------------------------------------------------------------------------------------------
# one model (method, c, image size, trained run or random weights) and its artifacts


def _summarize(method: str, c: Optional[int], image_size: Tuple[int, int], options: Dict[str, Any]) -> Dict[str, Any]:
    from train.summary import summarize

    return summarize(method, c, image_size, options)


class ModelArtifacts:
    """The torch inspection graph of one model and its exported ONNX graphs, made on first use and cached in
    `work_dir`; `stats(precision)` counts GMACs and size from the exported graph."""

    def __init__(self, method: str, c: Optional[int], image_size: Tuple[int, int], run: Optional[str],
                 settings: Settings, work_dir: Path):
        self.method, self.c, self.image_size, self.run = method, c, tuple(image_size), run
        self.settings = settings
        tag = f"{model_label(method, c)}_{image_size[0]}x{image_size[1]}" + ("_run" if run else "_random")
        self.dir = Path(work_dir) / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self._graph = None
        self._options: Optional[Dict[str, Any]] = None
        self._summary: Optional[Dict[str, Any]] = None
        self._onnx: Dict[str, Path] = {}
        self._failed: Dict[str, str] = {}
        self._stats: Dict[str, Dict[str, Any]] = {}

    # -- torch side --
    def graph_and_config(self):
        """The torch inspection graph (CPU, eval) and its RunConfig: trained weights from the run, else seeded
        random weights (`export.graph`)."""
        if self._graph is None:
            if self.run:
                from export.graph import graph_from_run

                graph, config = graph_from_run(self.run)
            else:
                from export.graph import graph_random

                graph, config = graph_random(self.method, self.c, self.image_size,
                                             options=self.settings.options or None, seed=self.settings.seed)
            self._graph = (graph.eval(), config)
        return self._graph

    def options(self) -> Dict[str, Any]:
        if self._options is None:
            if self.run:
                from train.runs import load_config

                self._options = dict(load_config(Path(self.run)).options)
            else:
                from train.methods import get_method

                self._options = get_method(self.method).options(self.settings.options)
        return self._options

    def summary(self) -> Dict[str, Any]:
        """`python -m train --summary` of this model: params and torch-counted GMACs."""
        if self._summary is None:
            self._summary = _summarize(self.method, self.c, self.image_size, self.options())
        return self._summary

    # -- exported graphs --
    def onnx(self, precision: str) -> Path:
        if precision in self._failed:
            raise RowSkipped(self._failed[precision])
        if precision not in self._onnx:
            try:
                self._onnx[precision] = self._make_onnx(precision)
            except RowSkipped as e:
                self._failed[precision] = str(e)
                raise
            except Exception as e:  # an export failure is this row's (and its siblings') result, not a crash
                self._failed[precision] = f"{precision} export failed: {one_line(e)}"
                raise RowSkipped(self._failed[precision]) from e
        return self._onnx[precision]

    def _make_onnx(self, precision: str) -> Path:
        out = self.dir / f"model_{precision}.onnx"
        if precision == "fp32":
            try:
                from export.onnx import export_onnx
            except ImportError as e:
                raise RowSkipped(f"ONNX export is not available ({one_line(e)})") from None
            graph, config = self.graph_and_config()
            export_onnx(graph, config, str(out), batch="dynamic", source_run=self.run)
            return out
        if precision == "fp16":
            fp32 = self.onnx("fp32")
            from export.onnx import fp16_variant

            return Path(fp16_variant(fp32, out))
        if precision.startswith("int8"):
            placement = precision.partition(":")[2] or "tensorrt"
            s = self.settings
            if not s.data:
                raise RowSkipped("int8 needs --data for calibration (and --category)")
            try:
                from calibration.int8 import quantize_onnx
            except ImportError as e:
                raise RowSkipped(f"INT8 calibration is not available ({one_line(e)})") from None
            fp32 = self.onnx("fp32")
            out = self.dir / f"model_int8_{placement}.onnx"
            # random weights: no accuracy to protect, so no per-block search for blocks to keep in FP32
            quantize_onnx(fp32, out, s.data, s.category, s.calib_images, placement=placement,
                          auto_keep=bool(self.run), progress=False)
            from runtime.manifest import load_manifest, manifest_path_for

            if not Path(manifest_path_for(out)).is_file():  # the calibrator may write its own manifest
                from export.manifest import derive, write

                src = load_manifest(fp32)
                write(out, derive(src, precision="int8", notes=list(src.notes) + ["Q/DQ INT8 (calibration.int8)"]))
            return out
        raise BenchmarkError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")

    def engine(self, precision: str, batch: int) -> Path:
        """A TensorRT engine of the row's ONNX graph (profile 1 / batch / max(batch, 8)) with its manifest."""
        key = f"engine_{precision}_b{batch}"
        if key in self._failed:
            raise RowSkipped(self._failed[key])
        if key not in self._onnx:
            try:
                self._onnx[key] = self._make_engine(precision, batch)
            except RowSkipped as e:
                self._failed[key] = str(e)
                raise
            except Exception as e:
                self._failed[key] = f"TensorRT build failed: {one_line(e)}"
                raise RowSkipped(self._failed[key]) from e
        return self._onnx[key]

    def _make_engine(self, precision: str, batch: int) -> Path:
        from export.manifest import derive, write
        from export.trt_build import build_engine
        from runtime.manifest import TensorRTInfo

        src = self.onnx(precision)
        out = self.dir / f"model_{precision.replace(':', '_')}_b{batch}.engine"
        profile = (1, batch, max(batch, 8))
        res = build_engine(src, out, precision=precision.partition(":")[0], batch=profile,
                           timing_cache=self.dir / "timing.cache")
        info = TensorRTInfo(version=res.tensorrt_version, gpu=res.gpu, compute_capability=res.compute_capability,
                            profile=res.profile)
        write(out, derive(self.manifest(precision), artifact_kind="tensorrt-engine", tensorrt=info,
                          batch=_batch_spec(profile)))
        return out

    def manifest(self, precision: str):
        from runtime.manifest import load_manifest

        return load_manifest(self.onnx(precision))

    def stats(self, precision: str) -> Dict[str, Any]:
        if precision not in self._stats:
            from benchmarks.graph_stats import onnx_stats

            self._stats[precision] = onnx_stats(self.onnx(precision))
        return self._stats[precision]

    def release(self) -> None:
        self._graph = None
        gc.collect()


def _batch_spec(profile: Tuple[int, int, int]):
    from runtime.manifest import BatchSpec

    return BatchSpec(dynamic=True, min=profile[0], opt=profile[1], max=profile[2])


# ---------------------------------------------------------------------------------------------------------
# one row


def empty_row(spec: RowSpec) -> Dict[str, Any]:
    return {
        "method": spec.method, "c": spec.c, "backend": spec.backend, "precision": spec.precision,
        "batch": spec.batch, "image_size": list(spec.image_size), "run": spec.run,
        "status": "skipped", "reason": None, "notes": [],
        "params": None, "params_mib": None, "gmacs": None, "gmacs_torch": None, "gmacs_by_op": None,
        "size_bytes": None, "artifact": None,
        "p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None, "std_ms": None,
        "cpu_p50_ms": None,
        "fps": None, "iters": None, "warmup": None, "peak_rss_bytes": None, "memory_method": None,
        "image_auroc": None, "pixel_auroc": None, "aupro": None, "f1_max": None, "accuracy_images": None,
        "runner": None, "compute_precision": None, "load_avg_1min": None,
    }


def artifact_key(backend: str, precision: str) -> str:
    """Which exported graph a row runs: "fp32", "fp16" or "int8:<placement>" (torch and bf16 rows: the FP32
    graph, for GMACs and size)."""
    if backend in ("torch", "torch-cuda") or precision == "bf16":
        return "fp32"
    if precision == "int8":
        return f"int8:{INT8_PLACEMENT.get(backend, 'tensorrt')}"
    return precision


def fill_model_facts(row: Dict[str, Any], spec: RowSpec, art: ModelArtifacts) -> None:
    """params (as `python -m train --summary`), GMACs from the row's ONNX graph (the FP32 one for torch rows),
    cross-checked with torch's count, and the artifact's size on disk."""
    summ = art.summary()
    row["params"] = int(summ["params"])
    row["params_mib"] = summ.get("params_mib")
    row["gmacs_torch"] = summ.get("gmacs")
    torch_row = spec.backend in ("torch", "torch-cuda")
    onnx_precision = artifact_key(spec.backend, spec.precision)
    if spec.backend == "trt" and spec.precision == "bf16":
        return
    try:
        st = art.stats(onnx_precision)
    except RowSkipped as e:
        row["notes"].append(f"GMACs/size not counted: {e}")
        return
    row["gmacs"] = round(float(st["gmacs"]), 4)
    row["gmacs_by_op"] = {k: round(v, 4) for k, v in st["gmacs_by_op"].items()}
    if not torch_row:
        row["size_bytes"] = int(st["size_bytes"])
        row["artifact"] = str(art.onnx(onnx_precision))
    else:
        row["size_bytes"] = int(row["params"] * 4)  # the fp32 weights in memory
        row["notes"].append("size = fp32 parameters in memory")
    if st["unresolved_nodes"]:
        row["notes"].append(f"{len(st['unresolved_nodes'])} nodes without inferred shapes (not counted)")
    if row["gmacs_torch"]:
        from benchmarks.graph_stats import relative_difference

        diff = relative_difference(row["gmacs"], float(row["gmacs_torch"]))
        row["gmacs_diff"] = round(diff, 5)
        if diff > GMACS_TOLERANCE:
            row["notes"].append(f"ONNX GMACs differ from torch's count ({row['gmacs_torch']}) by {100 * diff:.1f}%")


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU (what OpenVINO and torch's CPU autocast need for fast bf16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _require_runtime_backend(name: str) -> None:
    """RowSkipped with the runtime's own reason (naming the pip package) when the backend's library is
    missing."""
    from runtime.backends import backend_class
    from runtime.errors import BackendUnavailable

    try:
        backend_class(name).probe()
    except BackendUnavailable as e:
        raise RowSkipped(str(e)) from None


def prepare_job(spec: RowSpec, art: ModelArtifacts, settings: Settings) -> Dict[str, Any]:
    """What the row runner needs (a JSON dict), after every check that can tell here why the row cannot run;
    exports / quantises / builds the row's artifact."""
    job: Dict[str, Any] = {
        "method": spec.method, "c": spec.c, "backend": spec.backend, "precision": spec.precision,
        "batch": spec.batch, "image_size": list(spec.image_size), "run": spec.run, "options": settings.options,
        "seed": settings.seed, "warmup": settings.warmup, "iters": settings.iters,
        "max_seconds": settings.max_seconds, "threads": settings.threads,
        "data": settings.data, "category": settings.category,
    }
    b, prec = spec.backend, spec.precision
    if b in ("torch", "torch-cuda"):
        if prec == "int8":
            raise RowSkipped("int8 is a Q/DQ ONNX graph: run it with ort, openvino or trt")
        if b == "torch":
            if prec == "fp16":
                raise RowSkipped("torch eager on the CPU is measured in fp32 (and bf16 autocast); fp16 runs on "
                                 "torch-cuda, ort, openvino, trt")
            if prec == "bf16" and not cpu_has_bf16():
                raise RowSkipped("bf16 autocast needs a CPU with AMX or AVX512-BF16; this one has neither")
            from benchmarks.machine import physical_cores

            job["threads"] = settings.threads or physical_cores()
        else:
            import torch

            if not torch.cuda.is_available():
                raise RowSkipped("no CUDA GPU (torch.cuda.is_available() is False)")
        return job
    name = RUNTIME_NAMES[b]
    job["runtime_backend"] = name
    _require_runtime_backend(name)  # before exporting anything: a missing library skips at once
    options: Dict[str, Any] = {}
    if b == "ort":
        if prec == "bf16":
            raise RowSkipped("ONNX Runtime's CPU provider has no bf16 compute mode (bf16 rows: openvino, torch)")
    elif b == "openvino":
        if prec == "bf16":
            if not cpu_has_bf16():
                raise RowSkipped("OpenVINO computes bf16 only on CPUs with AMX or AVX512-BF16; this one has neither")
            options["inference_precision"] = "bf16"
    elif b == "trt":
        if prec == "bf16":
            raise RowSkipped("TensorRT rows take their precision from the ONNX graph: fp32, fp16 or int8")
        from benchmarks.machine import gpus

        if not gpus():
            raise RowSkipped("TensorRT needs an NVIDIA GPU; none here")
        job["device"] = "cuda"
        job["artifact"] = str(art.engine(artifact_key(b, prec), spec.batch))
        return job
    if settings.threads:
        options["threads"] = settings.threads
    job["backend_options"] = options
    job["artifact"] = str(art.onnx(artifact_key(b, prec)))
    if prec == "int8":
        job["notes"] = [f"Q/DQ placement: {INT8_PLACEMENT[b]}"]
    return job


def _execute(job: Dict[str, Any], settings: Settings) -> Dict[str, Any]:
    if settings.in_process:
        result = execute_job(job)
        gc.collect()
        return result
    return run_isolated(job, settings.row_timeout)


#: the fields a later pass may replace (timing and memory; accuracy and model facts come from the first pass)
TIMING_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "std_ms", "cpu_p50_ms", "fps", "iters",
               "peak_rss_bytes", "load_avg_1min")


def rerun_row(row: Dict[str, Any], job: Dict[str, Any], settings: Settings) -> None:
    """Another timing pass of an ok row (no accuracy); the row keeps the pass with the lowest p50."""
    result = _execute(dict(job, data=None), settings)
    row.setdefault("p50_ms_passes", [row["p50_ms"]])
    if result.get("status") != "ok":
        row["notes"].append(f"a later pass failed: {result.get('reason')}")
        return
    row["p50_ms_passes"].append(result["p50_ms"])
    if result["p50_ms"] < row["p50_ms"]:
        row.update({k: result.get(k) for k in TIMING_KEYS})


def run_row(spec: RowSpec, art: ModelArtifacts, settings: Settings,
            jobs: Optional[Dict[int, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """One row: model facts, then the job in its own process (or here with `settings.in_process`). `jobs`,
    when given, receives the job under id(row), for later passes."""
    row = empty_row(spec)
    try:
        fill_model_facts(row, spec, art)
        job = prepare_job(spec, art, settings)
    except RowSkipped as e:
        row["status"], row["reason"] = "skipped", str(e)
        return row
    except Exception as e:  # one broken row must not lose the others
        row["status"], row["reason"] = "error", one_line(e)
        return row
    result = _execute(job, settings)
    if jobs is not None:
        jobs[id(row)] = job
    notes = row["notes"] + list(job.get("notes") or []) + list(result.pop("notes", []) or [])
    row.update(result)
    row["notes"] = notes
    if spec.run and not settings.data and row["status"] == "ok":
        row["notes"].append("accuracy needs --data and --category")
    expected = OPENVINO_COMPUTE.get(spec.precision)
    if spec.backend == "openvino" and row.get("compute_precision") not in (None, expected):
        what = "the float parts of this Q/DQ graph" if spec.precision == "int8" else f"this {spec.precision} row"
        row["notes"].append(f"OpenVINO computed {what} in {row['compute_precision']} (its INFERENCE_PRECISION_HINT), "
                            f"not {expected}")
    return row


# ---------------------------------------------------------------------------------------------------------
# the whole benchmark


def _run_config(run: str) -> Tuple[str, Optional[int], Tuple[int, int]]:
    from train.errors import InspectError
    from train.runs import load_config

    try:
        cfg = load_config(Path(run))
    except InspectError as e:
        raise BenchmarkError(str(e)) from None
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


def benchmark(method: str, cs: Sequence[int], backends: Sequence[str], precisions: Sequence[str],
              batches: Sequence[int], image_size: Tuple[int, int], settings: Settings,
              runs: Sequence[str] = (), work_dir: Optional[str] = None,
              on_row: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Every row of the product models x backends x precisions x batches -> {"machine", "settings", "notes",
    "rows"}."""
    from benchmarks.machine import machine_info

    machine = machine_info()
    models = plan_models(method, cs, image_size, runs)
    rows: List[Dict[str, Any]] = []
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="latency-")
        work_dir = tmp
    total = len(models) * len(backends) * len(precisions) * len(batches)
    jobs: Dict[int, Dict[str, Any]] = {}
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="rows", unit="row", disable=not settings.progress, file=sys.stderr)
        for (m, c, size, run) in models:
            art = ModelArtifacts(m, c, size, run, settings, Path(work_dir))
            for backend in backends:
                for precision in precisions:
                    for batch in batches:
                        spec = RowSpec(m, c, backend, precision, batch, size, run)
                        bar.set_description(spec.label())
                        row = run_row(spec, art, settings, jobs)
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
                        bar.update(1)
            art.release()
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
            "method": method, "c": list(cs), "backends": list(backends), "precisions": list(precisions),
            "batches": list(batches), "image_size": list(image_size), "warmup": settings.warmup,
            "iters": settings.iters, "max_seconds": settings.max_seconds, "data": settings.data,
            "category": settings.category, "runs": list(runs), "threads": settings.threads,
            "seed": settings.seed, "options": settings.options, "in_process": settings.in_process,
            "passes": settings.passes,
        },
        "notes": notes,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------------------
# command line


def _backend_name(text: str) -> str:
    t = text.lower()
    t = BACKEND_ALIASES.get(t, t)
    if t not in BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; known: {', '.join(BACKENDS)}")
    return t


def _precision(text: str) -> str:
    t = text.lower()
    if t not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"unknown precision {text!r}; known: {', '.join(PRECISIONS)}")
    return t


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/latency.py",
        description="Latency / FPS / size / memory (and accuracy with --runs) of inspection graphs per backend "
                    "and precision. Timed: the whole graph, uint8 frames in, map + score out.")
    p.add_argument("--method", default="fair", help="registered method (default fair)")
    p.add_argument("--c", type=_positive, nargs="+", default=None,
                   help="base widths (FAIR: 32 64 128); default the method's (32), or only the widths of --runs "
                        "when given; methods without a width (e.g. patchcore) refuse it")
    p.add_argument("--backend", type=_backend_name, nargs="+", default=["torch", "ort", "openvino", "trt"],
                   help=f"backends: {', '.join(BACKENDS)} (default: torch ort openvino trt)")
    p.add_argument("--precision", type=_precision, nargs="+", default=["fp32"],
                   help="fp32, fp16 (FP16 ONNX), int8 (Q/DQ ONNX; needs --data for calibration), bf16 (the FP32 "
                        "graph computed in bf16: openvino, torch; CPUs with AMX/AVX512-BF16)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--image-size", default="256",
                   help="N or HxW, multiples of the method's size multiple (16 for fair; default 256)")
    p.add_argument("--runs", nargs="*", default=[], metavar="RUN",
                   help="trained run folders: their rows use the trained weights and report AUROC/AUPRO")
    p.add_argument("--data", help="data root (MVTec layout): test split for accuracy, train split for INT8 "
                                  "calibration")
    p.add_argument("--category", help="category inside --data")
    p.add_argument("--calib-images", type=_positive, default=CALIBRATION_IMAGES,
                   help=f"INT8 calibration images from the train split (default {CALIBRATION_IMAGES})")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed runs first (default 3)")
    p.add_argument("--iters", type=_positive, default=30, help="timed runs (default 30)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop timing a row after this many seconds (at least 3 runs; default 120)")
    p.add_argument("--threads", type=_positive, help="CPU threads (default: physical cores)")
    p.add_argument("--passes", type=_positive, default=1,
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
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from runtime.errors import RuntimeInspectError
        from train.errors import InspectError

        if isinstance(e, (InspectError, RuntimeInspectError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def _main(args) -> int:
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
    result = benchmark(args.method, dedup(cs), dedup(args.backend), dedup(args.precision), dedup(args.batch),
                       size, settings, runs=args.runs, work_dir=args.work_dir)
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
        table.write_json(result, args.json)
    if args.plot:
        from benchmarks.plot import plot_result

        plot_result(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
