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

from benchmarks.latency_runners import RowSkipped, error_line, execute_job, probe_backend, run_isolated
from runtime.machine import cpu_has_bf16
from runtime.manifest import model_label

#: a library's spelling of a compute precision (OpenVINO's "f32") -> the toolkit's ("fp32")
COMPUTE_NAMES = {"f32": "fp32", "f16": "fp16"}
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
    device: str = "cpu"  # "cuda" for a backend that needs a GPU, or with --device cuda

    def label(self) -> str:
        where = "" if self.device == "cpu" else f" on {self.device}"
        return f"{model_label(self.method, self.c)} {self.backend}/{self.precision}{where} batch {self.batch}"


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


def row_precisions() -> Tuple[str, ...]:
    """Every precision a row may have: the artifact precisions and compute modes the backends declare (fp32,
    fp16, int8 graphs; bf16 a compute mode of the FP32 graph)."""
    from runtime.backends import backend_capabilities, backend_names

    out: Dict[str, None] = {}
    for name in backend_names():
        caps = backend_capabilities(name)
        out.update(dict.fromkeys(caps.precisions + caps.compute_modes))
    return tuple(out)


def _backends_with(precision: str, artifacts_only: bool = False) -> str:
    """The backends that run `precision` (as an artifact, or also as a compute mode), for a skip reason."""
    from runtime.backends import backend_capabilities, backend_names

    caps = [backend_capabilities(n) for n in backend_names()]
    return ", ".join(c.name for c in caps if precision in c.precisions + (() if artifacts_only else c.compute_modes))


@dataclass(frozen=True)
class RowArtifact:
    """How a row runs, from its backend's declared capabilities: the exported graph (`key`: "fp32", "fp16",
    "int8:PLACEMENT"; graph rows: "fp32", for GMACs and size), the artifact kind the backend opens ("graph" =
    the torch graph in memory, "onnx", or "tensorrt-engine" built from the graph), the compute mode of an FP32
    artifact and the backend options that select it."""
    key: str
    kind: str
    compute_mode: str
    options: Dict[str, Any]


def row_artifact(backend: str, precision: str) -> RowArtifact:
    """The artifact a (backend, precision) row runs, or RowSkipped when the backend runs no such precision.
    A precision the backend runs as an artifact is that graph; else a compute mode of the FP32 graph."""
    from runtime.backends import backend_capabilities

    caps = backend_capabilities(backend)
    if precision in caps.precisions:
        graph, mode = precision, "fp32"
    elif precision in caps.compute_modes and "fp32" in caps.precisions:
        graph, mode = "fp32", precision
    else:
        raise RowSkipped(f"{backend} runs {'/'.join(caps.precisions)} artifacts computed in "
                         f"{'/'.join(caps.compute_modes)}: no {precision}; {precision} rows: {_backends_with(precision)}")
    kind = next((k for k in ("graph", "onnx", "tensorrt-engine") if k in caps.artifact_kinds), None)
    if kind is None:
        raise RowSkipped(f"{backend} opens {', '.join(caps.artifact_kinds)}, which this benchmark does not make")
    from export.artifacts import DEFAULT_PLACEMENT

    key = f"int8:{caps.int8_placement or DEFAULT_PLACEMENT}" if graph == "int8" else graph
    return RowArtifact(key, kind, mode, caps.options_for(mode) if mode != "fp32" else {})


def empty_row(spec: RowSpec) -> Dict[str, Any]:
    return {
        "method": spec.method, "c": spec.c, "backend": spec.backend, "device": spec.device,
        "precision": spec.precision, "batch": spec.batch, "image_size": list(spec.image_size), "run": spec.run,
        "status": "skipped", "reason": None, "notes": [],
        "params": None, "params_mib": None, "gmacs": None, "gmacs_torch": None, "gmacs_by_op": None,
        "size_bytes": None, "artifact": None,
        "p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None, "std_ms": None,
        "cpu_p50_ms": None,
        "fps": None, "iters": None, "warmup": None, "peak_rss_bytes": None, "memory_method": None,
        "image_auroc": None, "pixel_auroc": None, "aupro": None, "f1_max": None, "accuracy_images": None,
        "recall_at_fpr_0.001": None, "recall_at_fpr_0.01": None, "recall_at_fpr_0.05": None,
        "threshold_fpr": None, "threshold_recall": None,
        "runner": None, "compute_precision": None, "load_avg_1min": None,
    }


def fill_model_facts(row: Dict[str, Any], spec: RowSpec, model: Model) -> None:
    """params (as `python -m train --summary`), GMACs from the row's ONNX graph (the FP32 one for torch rows),
    cross-checked with torch's count, and the artifact's size on disk."""
    summ = model.summary()
    row["params"] = int(summ["params"])
    row["params_mib"] = summ.get("params_mib")
    row["gmacs_torch"] = summ.get("gmacs")
    try:
        art = row_artifact(spec.backend, spec.precision)
        key, torch_row = art.key, art.kind == "graph"
    except RowSkipped:  # the row will say why; its model's facts are those of the FP32 graph
        from runtime.backends import backend_capabilities

        key, torch_row = "fp32", "graph" in backend_capabilities(spec.backend).artifact_kinds
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


def prepare_job(spec: RowSpec, model: Model, settings: Settings) -> Dict[str, Any]:
    """What the row runner needs (a JSON dict), after every check that can tell here why the row cannot run
    (library missing, precision the backend does not run, no GPU, no bf16 on this CPU); exports / quantises /
    builds the row's artifact."""
    from runtime.machine import gpus

    probe_backend(spec.backend)  # before exporting anything: a missing library skips at once
    art = row_artifact(spec.backend, spec.precision)
    if spec.device == "cpu" and art.compute_mode == "fp16":
        raise RowSkipped(f"{spec.backend} computes fp16 on a GPU only (--device cuda); on the CPU an fp16 row runs "
                         f"an FP16 graph: {_backends_with('fp16', artifacts_only=True)}")
    if spec.device == "cpu" and art.compute_mode == "bf16" and not cpu_has_bf16():
        raise RowSkipped("bf16 compute on the CPU needs AMX or AVX512-BF16; this CPU has neither")
    if spec.device == "cuda" and not gpus():
        raise RowSkipped(f"{spec.backend} on cuda needs an NVIDIA GPU; none here")
    from runtime.backends import backend_capabilities

    options = dict(art.options)
    if settings.threads and spec.device == "cpu" and "threads" in backend_capabilities(spec.backend).option_names:
        options["threads"] = settings.threads
    job: Dict[str, Any] = {
        "backend": spec.backend, "device": spec.device, "precision": spec.precision, "kind": art.kind,
        "options": options, "batch": spec.batch, "image_size": list(spec.image_size), "run": spec.run,
        "seed": settings.seed, "warmup": settings.warmup, "iters": settings.iters,
        "max_seconds": settings.max_seconds, "data": settings.data, "category": settings.category,
        "expected_compute": _expected_compute(art), "notes": [],
    }
    if art.kind == "graph":
        job["source"] = model.source.to_dict()
    elif art.kind == "tensorrt-engine":
        job["artifact"] = str(model.engine(art.key, spec.batch))
    else:
        job["artifact"] = str(model.onnx(art.key))
    if art.key.startswith("int8:"):
        job["notes"].append(f"Q/DQ placement: {art.key.partition(':')[2]}")
    return job


def _expected_compute(art: RowArtifact) -> str:
    """What the row should compute in: its compute mode for an FP32 graph, fp16 for an FP16 graph, fp32 for the
    float parts of a Q/DQ graph."""
    graph = art.key.partition(":")[0]
    return {"fp32": art.compute_mode, "fp16": "fp16"}.get(graph, "fp32")


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
    reported, expected = row.get("compute_precision"), job["expected_compute"]
    if reported is not None and COMPUTE_NAMES.get(reported, reported) != expected:
        what = "the float parts of this Q/DQ graph" if spec.precision == "int8" else f"this {spec.precision} row"
        row["notes"].append(f"{spec.backend} computed {what} in {reported} (as the backend reports it), not "
                            f"{expected}")
    return row
