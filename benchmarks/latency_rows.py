"""Rows of `benchmarks/latency.py`: what a row is (`RowSpec`, `Settings`), the model it measures (`Model`: its
artifacts from `export.artifacts`, params and GMACs), the job a row runner executes (`prepare_job`), and one
row from spec to filled dict (`run_row`, `rerun_row` for later passes).

A row = (method, c, backend, precision, batch). Its artifact: the torch graph itself for torch, else the
exported FP32 / FP16 / Q/DQ INT8 ONNX (bf16 is a compute mode of the FP32 graph), or a TensorRT engine built
from it. A row that cannot run here (library missing, no GPU, no calibration data) keeps its place with the
reason.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from benchmarks.latency_runners import RowSkipped, error_line, execute_job, run_isolated
from benchmarks.machine import cpu_has_bf16
from runtime.manifest import model_label

BACKENDS = ("torch", "torch-cuda", "ort", "openvino", "trt")
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
#: the fields a later pass may replace (timing and memory; accuracy and model facts come from the first pass)
TIMING_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "std_ms", "cpu_p50_ms", "fps", "iters",
               "peak_rss_bytes", "load_avg_1min")


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
# one model and its artifacts


class Model:
    """One model of the benchmark (method, c, image size, trained run or seeded random weights): its artifacts
    made by `export.artifacts.ModelArtifacts` in `work_dir`, its `python -m train --summary` and the GMACs / size
    of each exported graph. An artifact that cannot be made is this row's (and its siblings') RowSkipped."""

    def __init__(self, method: str, c: Optional[int], image_size: Tuple[int, int], run: Optional[str],
                 settings: Settings, work_dir: Path):
        from export.artifacts import Calibration, GraphSource, ModelArtifacts

        self.method, self.c, self.image_size, self.run = method, c, tuple(image_size), run
        self.settings = settings
        self.source = GraphSource(method=method, c=c, image_size=self.image_size, run=run,
                                  options={} if run else dict(settings.options), seed=settings.seed)
        # random weights: no accuracy to protect, so no per-block search for blocks to keep in FP32
        calibration = (Calibration(settings.data, settings.category, settings.calib_images, auto_keep=bool(run),
                                   progress=False) if settings.data else None)
        tag = f"{model_label(method, c)}_{image_size[0]}x{image_size[1]}" + ("_run" if run else "_random")
        self.artifacts = ModelArtifacts(Path(work_dir) / tag, model_label(method, c), self.source,
                                        calibration=calibration)
        self._summary: Optional[Dict[str, Any]] = None
        self._stats: Dict[str, Dict[str, Any]] = {}

    def summary(self) -> Dict[str, Any]:
        """`python -m train --summary` of this model: params and torch-counted GMACs."""
        if self._summary is None:
            from train.summary import summarize

            if self.run:
                from train.runs import load_config

                options = dict(load_config(Path(self.run)).options)
            else:
                from train.methods import get_method

                options = get_method(self.method).options(self.settings.options)
            self._summary = summarize(self.method, self.c, self.image_size, options)
        return self._summary

    def onnx(self, key: str) -> Path:
        """The exported graph `key` ("fp32", "fp16", "int8:PLACEMENT"), or RowSkipped saying why not."""
        from export.artifacts import ArtifactUnavailable

        if key.startswith("int8") and self.artifacts.calibration is None:
            raise RowSkipped("int8 needs --data for calibration (and --category)")
        try:
            return self.artifacts.onnx(key)
        except ArtifactUnavailable as e:
            raise RowSkipped(str(e)) from None
        except Exception as e:  # an export failure is this row's (and its siblings') result, not a crash
            raise RowSkipped(f"{key} export failed: {error_line(e)}") from e

    def engine(self, key: str, batch: int) -> Path:
        """A TensorRT engine of graph `key` (profile 1 / batch / max(batch, 8)) with its manifest."""
        from runtime.errors import BackendUnavailable

        src = self.onnx(key)  # its own reason when the graph cannot be made
        try:
            return self.artifacts.engine(key, (1, batch, max(batch, 8)), tag=f"_b{batch}")[0]
        except BackendUnavailable as e:
            raise RowSkipped(str(e)) from None
        except Exception as e:
            raise RowSkipped(f"TensorRT build of {src.name} failed: {error_line(e)}") from e

    def stats(self, key: str) -> Dict[str, Any]:
        if key not in self._stats:
            from benchmarks.graph_stats import onnx_stats

            self._stats[key] = onnx_stats(self.onnx(key))
        return self._stats[key]

    def release(self) -> None:
        self.artifacts.release()
        gc.collect()


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


def fill_model_facts(row: Dict[str, Any], spec: RowSpec, model: Model) -> None:
    """params (as `python -m train --summary`), GMACs from the row's ONNX graph (the FP32 one for torch rows),
    cross-checked with torch's count, and the artifact's size on disk."""
    summ = model.summary()
    row["params"] = int(summ["params"])
    row["params_mib"] = summ.get("params_mib")
    row["gmacs_torch"] = summ.get("gmacs")
    torch_row = spec.backend in ("torch", "torch-cuda")
    key = artifact_key(spec.backend, spec.precision)
    if spec.backend == "trt" and spec.precision == "bf16":
        return
    try:
        st = model.stats(key)
    except RowSkipped as e:
        row["notes"].append(f"GMACs/size not counted: {e}")
        return
    row["gmacs"] = round(float(st["gmacs"]), 4)
    row["gmacs_by_op"] = {k: round(v, 4) for k, v in st["gmacs_by_op"].items()}
    if not torch_row:
        row["size_bytes"] = int(st["size_bytes"])
        row["artifact"] = str(model.onnx(key))
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


def _require_runtime_backend(name: str) -> None:
    """RowSkipped with the runtime's own reason (naming the pip package) when the backend's library is
    missing."""
    from runtime.backends import backend_class
    from runtime.errors import BackendUnavailable

    try:
        backend_class(name).probe()
    except BackendUnavailable as e:
        raise RowSkipped(str(e)) from None


def prepare_job(spec: RowSpec, model: Model, settings: Settings) -> Dict[str, Any]:
    """What the row runner needs (a JSON dict), after every check that can tell here why the row cannot run;
    exports / quantises / builds the row's artifact."""
    job: Dict[str, Any] = {
        "source": model.source.to_dict(), "backend": spec.backend, "precision": spec.precision,
        "batch": spec.batch, "image_size": list(spec.image_size), "run": spec.run,
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
        job["artifact"] = str(model.engine(artifact_key(b, prec), spec.batch))
        return job
    if settings.threads:
        options["threads"] = settings.threads
    job["backend_options"] = options
    job["artifact"] = str(model.onnx(artifact_key(b, prec)))
    if prec == "int8":
        job["notes"] = [f"Q/DQ placement: {INT8_PLACEMENT[b]}"]
    return job


def _execute(job: Dict[str, Any], settings: Settings) -> Dict[str, Any]:
    if settings.in_process:
        result = execute_job(job)
        gc.collect()
        return result
    return run_isolated(job, settings.row_timeout)


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


def run_row(spec: RowSpec, model: Model, settings: Settings,
            jobs: Optional[Dict[int, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """One row: model facts, then the job in its own process (or here with `settings.in_process`). `jobs`,
    when given, receives the job under id(row), for later passes."""
    row = empty_row(spec)
    try:
        fill_model_facts(row, spec, model)
        job = prepare_job(spec, model, settings)
    except RowSkipped as e:
        row["status"], row["reason"] = "skipped", str(e)
        return row
    except Exception as e:  # one broken row must not lose the others
        row["status"], row["reason"] = "error", error_line(e)
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
