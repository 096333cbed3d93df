"""Row runners of `benchmarks/latency.py`: open one backend on one artifact, time it, measure its memory and
(optionally) its accuracy; by default in a child process of its own.

A *job* is a plain JSON dict made by `latency.prepare_job` (what to open: backend, precision, artifact path or
the torch model to build, batch, timing settings). `execute_job(job)` returns a result dict. `run_isolated(job)`
runs it in a fresh Python process, which gives every row its own thread pools and allocator, a clean peak-RSS
figure, and a watchdog: a backend that hangs (OpenVINO's AsyncInferQueue teardown has been seen to deadlock)
or crashes costs that row, not the benchmark. Only numpy and the stdlib are imported at module level, so a child
that times ONNX Runtime never loads torch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from benchmarks.latency_timing import PeakRSS, latency_stats, make_frames, time_infer

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "LATENCY-ROW-RESULT "
CLOSE_GRACE_S = 30  # a backend's close() that takes longer is reported and the child is ended


class RowSkipped(Exception):
    """This row cannot run here; the message is the reason shown in the table."""


def error_line(e: BaseException) -> str:
    """'TypeName: first line of the message', a row's reason for an unexpected error."""
    from runtime.errors import one_line

    text = one_line(e)
    return type(e).__name__ if text == type(e).__name__ else f"{type(e).__name__}: {text}"


# ---------------------------------------------------------------------------------------------------------
# runners: objects with infer(frames) -> (maps, scores), close(), describe() [, synchronize()]


class TorchEager:
    """The torch inspection graph in eager mode under inference_mode, on the CPU or a CUDA GPU; fp32, or
    autocast to fp16 / bf16."""

    def __init__(self, graph, device: str, precision: str, threads: int):
        import torch

        self.torch = torch
        self.device = device
        if device == "cpu" and threads:
            torch.set_num_threads(int(threads))
        self.graph = graph.to(device).eval()
        self.autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.threads = torch.get_num_threads() if device == "cpu" else 0

    def infer(self, frames: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(self.device)
            if self.autocast is not None:
                with torch.autocast(self.device, dtype=self.autocast):
                    maps, scores = self.graph(x)
            else:
                maps, scores = self.graph(x)
            return maps.float().cpu().numpy(), scores.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def close(self) -> None:
        self.graph = None
        if self.device != "cpu":
            self.torch.cuda.empty_cache()

    def describe(self) -> str:
        what = f"torch {self.torch.__version__} eager, inference_mode"
        if self.autocast is not None:
            what += f", autocast {str(self.autocast).replace('torch.', '')}"
        return what + (f", {self.threads} threads" if self.device == "cpu" else f", {self.device}")


def _torch_graph(job: Dict[str, Any]):
    from export.artifacts import GraphSource

    return GraphSource.from_dict(job["source"]).build()[0]


def preload(job: Dict[str, Any]) -> None:
    """Import the row's library before the memory window opens (its shared libraries are not the model's)."""
    backend = job["backend"]
    if backend.startswith("torch"):
        import torch  # noqa: F401

        import export.graph  # noqa: F401
    elif backend == "ort":
        import onnxruntime  # noqa: F401
    elif backend == "openvino":
        import openvino  # noqa: F401
    from runtime.backends import backend_class  # noqa: F401


def open_runner(job: Dict[str, Any]):
    backend = job["backend"]
    if backend in ("torch", "torch-cuda"):
        device = "cuda" if backend == "torch-cuda" else "cpu"
        return TorchEager(_torch_graph(job), device, job["precision"], job.get("threads") or 0)
    from runtime.backends import backend_class
    from runtime.errors import BackendUnavailable
    from runtime.manifest import load_manifest

    cls = backend_class(job["runtime_backend"])
    runner = cls(job["artifact"], load_manifest(job["artifact"]), device=job.get("device", "cpu"),
                 **(job.get("backend_options") or {}))
    try:
        runner.load()
    except BackendUnavailable as e:
        raise RowSkipped(str(e)) from None
    return runner


# ---------------------------------------------------------------------------------------------------------
# accuracy through the row's own runner


def row_accuracy(job: Dict[str, Any], runner) -> Dict[str, Any]:
    from calibration.evaluate import evaluate
    from train.data import find_samples, load_images, load_masks

    size = tuple(job["image_size"])
    samples = find_samples(job["data"], job.get("category"), "test")
    frames = load_images(samples, size, progress=False)
    masks = load_masks(samples, size)
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    res = evaluate(runner.infer, frames, labels, masks, [s.defect_type for s in samples],
                   batch_size=int(job["batch"]), progress=False)
    out: Dict[str, Any] = {}
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max"):
        v = res.get(k)
        out[k] = None if v is None or not np.isfinite(v) else float(v)
    out["accuracy_images"] = int(res.get("n_images", len(frames)))
    return out


# ---------------------------------------------------------------------------------------------------------
# one job


def execute_job(job: Dict[str, Any], emit: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Open, warm up, time, measure, evaluate (when the job asks), close. `emit` gets the result before the
    runner is closed (so that a close() that hangs cannot lose it)."""
    result: Dict[str, Any] = {"status": "error", "reason": None, "notes": []}
    runner = None
    try:
        preload(job)
        mem = PeakRSS().start()
        runner = open_runner(job)
        frames = make_frames(int(job["batch"]), job["image_size"], int(job.get("seed", 0)))
        cpu: List[float] = []
        lat, notes = time_infer(runner.infer, frames, int(job["warmup"]), int(job["iters"]),
                                float(job.get("max_seconds") or float("inf")), getattr(runner, "synchronize", None),
                                cpu_ms=cpu)
        result["peak_rss_bytes"] = mem.peak_bytes()
        result["memory_method"] = mem.method
        result.update(latency_stats(lat, int(job["batch"]), cpu))
        result["warmup"] = int(job["warmup"])
        result["load_avg_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        result["notes"].extend(notes)
        result["runner"] = runner.describe() if hasattr(runner, "describe") else job["backend"]
        if job["backend"] == "openvino":
            # what the runtime backend's compiled model computes in ("f32", "bf16", "f16"), as it reports it
            result["compute_precision"] = getattr(runner, "compute_precision", None)
        result["status"] = "ok"
        if job.get("data") and job.get("run"):
            try:
                result.update(row_accuracy(job, runner))
            except Exception as e:  # the timing stands; say why the accuracy is missing
                result["notes"].append(f"accuracy failed: {error_line(e)}")
    except RowSkipped as e:
        result["status"], result["reason"] = "skipped", str(e)
    except Exception as e:
        result["status"], result["reason"] = "error", error_line(e)
    if emit is not None:
        emit(result)
    if runner is not None:
        try:
            runner.close()
        except Exception:
            pass
    return result


def child_main() -> None:
    """Entry point of the child process: a job as JSON on stdin, the result as one tagged JSON line on stdout,
    written before the runner is closed; a close() that does not return within CLOSE_GRACE_S ends the process
    (faulthandler's watchdog runs without the GIL, which a deadlocked native call may hold)."""
    import faulthandler

    job = json.loads(sys.stdin.read())

    def emit(result: Dict[str, Any]) -> None:
        sys.stdout.write(RESULT_TAG + json.dumps(result, default=float) + "\n")
        sys.stdout.flush()
        faulthandler.dump_traceback_later(CLOSE_GRACE_S, exit=True)

    execute_job(job, emit)
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: native libraries' destructors are not part of the row


def run_isolated(job: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """`execute_job` in a fresh Python process; a hang or crash becomes this row's error."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "from benchmarks.latency_runners import child_main; child_main()"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timed_out = False
    try:
        out, err = proc.communicate(json.dumps(job), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate()
    result = None
    for line in (out or "").splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if result is None:
        tail = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
        why = f"timed out after {timeout:g} s" if timed_out else f"the row's process exited with {proc.returncode}"
        return {"status": "error", "reason": why + (f" ({tail[-1][:300]})" if tail else ""), "notes": []}
    if timed_out or proc.returncode != 0:
        where = "hung" if timed_out or "Timeout" in (err or "") else f"failed (exit {proc.returncode})"
        result.setdefault("notes", []).append(f"the backend's close() {where} after the measurement; the row's "
                                              f"process was ended")
    return result
