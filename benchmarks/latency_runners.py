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

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "LATENCY-ROW-RESULT "
CLOSE_GRACE_S = 30  # a backend's close() that takes longer is reported and the child is ended


class RowSkipped(Exception):
    """This row cannot run here; the message is the reason shown in the table."""


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------------------------------
# process memory


def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def malloc_trim() -> None:
    """Give memory that is free inside the C heap back to the system (glibc), so that the resident set at a
    row's start is what is live."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak growth of the resident set during a block: resets the kernel's high-water mark (VmHWM) through
    /proc/self/clear_refs where that works, else falls back to getrusage's ru_maxrss (which never resets)."""

    def __init__(self) -> None:
        self.method = "vmhwm"
        self.start_kib = 0

    def start(self) -> "PeakRSS":
        gc.collect()
        malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5 = reset the peak resident set size (Linux >= 4.0)
            rss = _proc_status_kib("VmRSS")
            if rss is None:
                raise OSError("no VmRSS")
            self.start_kib = rss
            self.method = "vmhwm"
        except OSError:
            import resource

            self.method = "ru_maxrss"
            self.start_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def peak_bytes(self) -> int:
        if self.method == "vmhwm":
            hwm = _proc_status_kib("VmHWM") or self.start_kib
        else:
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, hwm - self.start_kib) * 1024


# ---------------------------------------------------------------------------------------------------------
# timing


def make_frames(batch: int, image_size: Sequence[int], seed: int = 0) -> np.ndarray:
    """Deterministic uint8 frames (N, H, W, 3): a smooth pattern plus noise. The graph's cost does not depend
    on the content; this only keeps the input away from degenerate all-black frames."""
    rng = np.random.default_rng(seed)
    h, w = int(image_size[0]), int(image_size[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 127 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None]
    frames = base[None] + rng.normal(0, 20, size=(batch, h, w, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def time_infer(infer: Callable[[Any], Any], frames: Any, warmup: int, iters: int,
               max_seconds: float = float("inf"), synchronize: Optional[Callable[[], None]] = None,
               cpu_ms: Optional[List[float]] = None) -> Tuple[List[float], List[str]]:
    """Latencies in ms of `iters` calls after `warmup` untimed ones (at least 1 timed). Stops early, after at
    least 3 timed calls, once the timed calls have taken `max_seconds`; the notes say so. `cpu_ms`, when given,
    receives the process CPU time (all threads) of each timed call."""
    notes: List[str] = []
    for _ in range(max(0, warmup)):
        infer(frames)
    if synchronize is not None:
        synchronize()
    lat: List[float] = []
    spent = 0.0
    for i in range(max(1, iters)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        infer(frames)
        if synchronize is not None:
            synchronize()
        dt = time.perf_counter() - t0
        if cpu_ms is not None:
            cpu_ms.append((time.process_time() - c0) * 1e3)
        lat.append(dt * 1e3)
        spent += dt
        if spent > max_seconds and i + 1 >= 3 and i + 1 < iters:
            notes.append(f"stopped after {i + 1} of {iters} timed runs (time budget {max_seconds:g} s)")
            break
    return lat, notes


def latency_stats(lat_ms: Sequence[float], batch: int, cpu_ms: Optional[Sequence[float]] = None
                  ) -> Dict[str, Any]:
    a = np.asarray(lat_ms, dtype=np.float64)
    mean = float(a.mean())
    out = {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": mean,
        "min_ms": float(a.min()),
        "std_ms": float(a.std()),
        "fps": batch / (mean / 1e3),
        "iters": int(a.size),
    }
    if cpu_ms:
        # CPU time of the whole process per call: on a busy machine a steadier figure than wall time for
        # single-threaded runs (with more threads it includes the threads' spin-waiting)
        out["cpu_p50_ms"] = float(np.percentile(np.asarray(cpu_ms, dtype=np.float64), 50))
    return out


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
    if job.get("run"):
        from export.graph import graph_from_run

        graph, _ = graph_from_run(job["run"])
    else:
        from export.graph import graph_random

        graph, _ = graph_random(job["method"], job["c"], tuple(job["image_size"]), options=job.get("options") or None,
                                seed=job.get("seed", 0))
    return graph.eval()


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
                result["notes"].append(f"accuracy failed: {one_line(e)}")
    except RowSkipped as e:
        result["status"], result["reason"] = "skipped", str(e)
    except Exception as e:
        result["status"], result["reason"] = "error", one_line(e)
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
