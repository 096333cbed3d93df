"""Row runners of `benchmarks/latency.py`: open one backend on one artifact, time it, measure its memory and
(optionally) its accuracy; by default in a child process of its own.

A *job* is a plain JSON dict made by `latency_rows.prepare_job` (what to open: backend, precision, artifact path or
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
# the row's runtime backend: infer(frames) -> (maps, scores), synchronize(), describe(), close()


def probe_backend(name: str) -> None:
    """RowSkipped with the runtime's own reason (naming the pip package) when the backend's library is missing;
    the probe imports the library."""
    from runtime.backends import backend_class
    from runtime.errors import BackendUnavailable

    try:
        backend_class(name).probe()
    except BackendUnavailable as e:
        raise RowSkipped(str(e)) from None


def preload(job: Dict[str, Any]) -> None:
    """Import the row's library before the memory window opens (its shared libraries are not the model's):
    the backend's probe imports it; a row on the in-memory graph also needs torch and the graph builders."""
    probe_backend(job["backend"])
    if job["kind"] == "graph":
        import export.graph  # noqa: F401  (imports torch)


def open_runner(job: Dict[str, Any]):
    """The row's runtime backend, loaded: on the torch graph built here (artifact kind "graph", the backend's
    `from_graph`), else on the exported artifact (`create_backend`)."""
    from runtime.backends import backend_class, create_backend
    from runtime.errors import BackendUnavailable

    options = dict(job.get("options") or {})
    if job["kind"] == "graph":
        from export.artifacts import GraphSource
        from export.manifest import graph_manifest

        source = GraphSource.from_dict(job["source"])
        graph, config = source.build()
        runner = backend_class(job["backend"]).from_graph(graph, graph_manifest(config, graph, source.run),
                                                          device=job["device"], **options)
    else:
        from runtime.manifest import load_manifest

        runner = create_backend(job["backend"], job["artifact"], load_manifest(job["artifact"]), device=job["device"],
                                **options)
    try:
        runner.load()
    except BackendUnavailable as e:
        raise RowSkipped(str(e)) from None
    return runner


# ---------------------------------------------------------------------------------------------------------
# accuracy through the row's own runner


def row_accuracy(job: Dict[str, Any], runner) -> Dict[str, Any]:
    from calibration.evaluate import evaluate
    from runtime.frames import rgb_to_model_order
    from imagesets import find_samples, load_images, load_masks

    size = tuple(job["image_size"])
    samples = find_samples(job["data"], job.get("category"), "test")
    # the data readers return RGB; the backend takes the model's channel order
    frames = rgb_to_model_order(load_images(samples, size, progress=False), runner.manifest.input.channel_order)
    masks = load_masks(samples, size)
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    threshold = getattr(runner.manifest, "threshold", None)
    res = evaluate(runner.infer, frames, labels, masks, [s.defect_type for s in samples],
                   batch_size=int(job["batch"]), progress=False,
                   threshold=threshold.value if threshold is not None else None)
    v = res["verdicts"]
    found = {k: res.get(k) for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")}
    found.update({f"recall_at_fpr_{k}": r for k, r in v["recall_at_fpr"].items()})
    realised = v["at_threshold"] or {}
    found.update({"threshold_fpr": realised.get("fpr"), "threshold_recall": realised.get("recall")})
    out: Dict[str, Any] = {}
    for k, value in found.items():
        out[k] = None if value is None or not np.isfinite(value) else float(value)
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
                                float(job.get("max_seconds") or float("inf")), runner.synchronize, cpu_ms=cpu)
        result["peak_rss_bytes"] = mem.peak_bytes()
        result["memory_method"] = mem.method
        result.update(latency_stats(lat, int(job["batch"]), cpu))
        result["warmup"] = int(job["warmup"])
        result["load_avg_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        result["notes"].extend(notes)
        result["runner"] = runner.describe()
        # what the backend computes in, where it reports it (OpenVINO: "f32", "bf16", "f16")
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
