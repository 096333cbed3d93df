"""The soak's phases (`benchmarks.soak`): the accounting of one phase, the Soak that owns the Inspector and the
memory samples, and one function a source: folder (with the model swap), video, camera (with the drop), arrays,
and the CLI check. Each fills its Phase with frames in, results, reported skips, drops and what was lost where.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

from benchmarks import fault_injection as fi
from runtime.files import write_json

SKIP_EVENTS = ("corrupt", "bad_frame")  # events that account for exactly one input frame
#: Events that account for a number of frames they state themselves -> the key of that number (the runtime's
#: `frames_lost` event: frames of a video file that could not be read, runtime.capture).
COUNTED_EVENTS = {"frames_lost": "count"}


class Phase:
    """Accounting of one phase: frames in, results out, events by kind, what was lost and where."""

    def __init__(self, name: str, round_no: int, frames_in: int = 0):
        self.d: Dict[str, Any] = {"phase": name, "round": round_no, "frames_in": frames_in, "results": 0,
                                  "events": {}, "skipped": 0, "dropped": 0, "lost_unreported": 0, "lost_where": [],
                                  "crash": None, "seconds": 0.0}
        self.events: List[Dict[str, Any]] = []
        self.result_names: List[str] = []
        self.result_times: List[float] = []
        self.result_thresholds: List[Optional[float]] = []
        self.latencies: List[float] = []
        self._lock = threading.Lock()

    def on_event(self, ev: Dict[str, Any]) -> None:
        with self._lock:
            self.events.append(ev)
            kind = str(ev.get("event"))
            self.d["events"][kind] = self.d["events"].get(kind, 0) + 1

    def event_count(self) -> int:
        """Frames accounted for by events: one per per-frame skip, plus counts an event states itself."""
        n = sum(1 for e in self.events if e.get("event") in SKIP_EVENTS)
        for e in self.events:
            key = COUNTED_EVENTS.get(str(e.get("event")))
            if key is not None and isinstance(e.get(key), (int, np.integer)):
                n += int(e[key])
        return n


class Soak:
    """One Inspector, many streams; memory samples and markers over the whole run."""

    def __init__(self, insp: Any, total: int, progress: Any):
        self.insp = insp
        self.total_results = 0
        self.memory: List[List[float]] = []  # [results so far, RSS MiB, seconds since start]
        self.markers: List[List[Any]] = []  # [results so far, label]
        self.latencies: List[List[float]] = []  # [results so far, latency ms], for the plot
        self.t0 = time.perf_counter()
        self.progress = progress

    def sample(self) -> float:
        mib = fi.rss_bytes() / 2 ** 20
        self.memory.append([self.total_results, round(mib, 2), round(time.perf_counter() - self.t0, 3)])
        return mib

    def mark(self, label: str) -> None:
        self.markers.append([self.total_results, label])

    def consume(self, stream: Any, phase: Phase, on_result: Any = None, stop_after: Optional[int] = None,
                max_seconds: float = 600.0) -> None:
        """Iterate `stream` into `phase`; any exception that escapes is the phase's crash. A watchdog stops
        a stream that outlives `max_seconds` (so a hung source cannot hang the soak)."""
        done = threading.Event()

        def watchdog() -> None:
            if not done.wait(max_seconds):
                phase.d["crash"] = f"timed out after {max_seconds:.0f} s (stream stopped by the soak)"
                stream.stop()

        threading.Thread(target=watchdog, name="soak-watchdog", daemon=True).start()
        t0 = time.perf_counter()
        try:
            for r in stream:
                phase.d["results"] += 1
                phase.latencies.append(r.latency_ms)
                self.latencies.append([self.total_results, round(r.latency_ms, 3)])
                phase.result_names.append(r.name)
                phase.result_times.append(r.timestamp)
                phase.result_thresholds.append(r.threshold)
                self.total_results += 1
                self.progress.update(1)
                if self.total_results % 50 == 0:
                    self.sample()
                if on_result is not None:
                    on_result(r)
                if stop_after is not None and phase.d["results"] >= stop_after:
                    break
        except Exception as e:  # noqa: BLE001 - the soak's point: count it, go on with the next phase
            phase.d["crash"] = f"{type(e).__name__}: {e}"
        finally:
            stream.close()
            done.set()
            phase.d["seconds"] = round(time.perf_counter() - t0, 3)
            lat = np.asarray(phase.latencies or [0.0])
            phase.d["latency_ms"] = {"p50": round(float(np.percentile(lat, 50)), 3),
                                     "p99": round(float(np.percentile(lat, 99)), 3)}


# -- phases ---------------------------------------------------------------------------------------------------
_OPEN_CHECK = """
import json, sys
from runtime.errors import RuntimeInspectError
from runtime.inspector import Inspector
try:
    with Inspector(sys.argv[1], backend=sys.argv[2], warmup=False) as insp:
        out = "opened (threshold %s)" % insp.threshold
except RuntimeInspectError as e:
    out = "%s: %s" % (type(e).__name__, str(e)[:120])
except Exception as e:  # a foreign exception is a finding
    out = "FOREIGN %s: %s" % (type(e).__name__, str(e)[:120])
print(json.dumps(out))
"""


def _open_in_new_process(model: str, backend: str) -> str:
    """What a freshly started process makes of the files on disk now (a restarted service). A new process,
    so that the soak's own memory figures are those of the running stream only."""
    import subprocess  # noqa: PLC0415

    import runtime  # noqa: PLC0415

    root = os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", _OPEN_CHECK, model, backend], capture_output=True, text=True,
                          env=env, timeout=300)
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"FOREIGN exit status {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    return str(json.loads(proc.stdout.strip().splitlines()[-1]))


def swap_model(soak: Soak, model: str, data: bytes, manifest: Dict[str, Any], tag: str, backend: str) -> Dict[str, Any]:
    """Overwrite the model on disk while a stream runs: the ONNX first (torn state: new ONNX, old manifest),
    then the manifest. A new process must refuse the torn pair with the runtime's error and load the whole
    new pair; the running Inspector must go on with the model it loaded."""
    out: Dict[str, Any] = {"to": tag, "at_result": soak.total_results}
    with open(model, "wb") as f:  # in place, not atomic: what a careless copy does
        f.write(data)
    out["torn"] = _open_in_new_process(model, backend)
    write_json(os.path.splitext(model)[0] + ".json", manifest)
    out["complete"] = _open_in_new_process(model, backend)
    out["ok"] = out["torn"].startswith("ArtifactMismatch") and out["complete"].startswith("opened")
    soak.mark(f"swap to {tag}")
    return out


def reopen_probe(model: str, backend: str, times: int = 3) -> Dict[str, Any]:
    """Not a goal, a diagnostic: RSS (MiB) after opening and closing a second Inspector in this process
    `times` times, then after glibc's malloc_trim (memory freed but kept by the allocator comes back)."""
    import ctypes  # noqa: PLC0415

    from runtime.inspector import Inspector  # noqa: PLC0415

    gc.collect()
    rss = [round(fi.rss_bytes() / 2 ** 20, 2)]
    for _ in range(times):
        Inspector(model, backend=backend, warmup=True).close()
        gc.collect()
        rss.append(round(fi.rss_bytes() / 2 ** 20, 2))
    trimmed = None
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = round(fi.rss_bytes() / 2 ** 20, 2)
    except (OSError, AttributeError):  # not glibc
        pass
    return {"rss_after_each_open_close": rss, "rss_after_malloc_trim": trimmed}


def run_folder(soak: Soak, phase: Phase, plan: Dict[str, str], swap: Any) -> Dict[str, Any]:
    folder = os.path.dirname(next(iter(plan)))
    before = soak.insp.threshold
    state: Dict[str, Any] = {"swap": None, "after": []}

    def on_result(r: Any) -> None:
        if state["swap"] is None and phase.d["results"] >= len(plan) // 2:
            state["swap"] = swap()
        elif state["swap"] is not None:
            state["after"].append(r.threshold)

    soak.consume(soak.insp.stream(folder, on_event=phase.on_event), phase, on_result)
    swap_info = state["swap"] or {"to": None, "ok": False, "error": "the stream ended before halfway"}
    swap_info["running_inspector_unchanged"] = bool(state["after"]) and all(t == before for t in state["after"])
    names = list(plan)
    by_index = {i: n for i, n in enumerate(names)}
    skipped = {e.get("name") or by_index.get(e.get("index")) for e in phase.events if e.get("event") in SKIP_EVENTS}
    got = set(phase.result_names)
    faults: Dict[str, Dict[str, int]] = {}
    for path, kind in plan.items():
        outcome = "result" if path in got else ("skip" if path in skipped else "lost")
        if outcome == "lost":
            phase.d["lost_where"].append(os.path.basename(path))
        if kind != "clean":
            faults.setdefault(kind, {"injected": 0, "result": 0, "skip": 0, "lost": 0})
            faults[kind]["injected"] += 1
            faults[kind][outcome] += 1
    phase.d["faults"] = faults
    phase.d["skipped"] = len(skipped & set(names))
    phase.d["lost_unreported"] = len(phase.d["lost_where"])
    phase.d["duplicates"] = len(phase.result_names) - len(got)
    return swap_info


def run_video(soak: Soak, phase: Phase, path: str) -> None:
    soak.consume(soak.insp.stream(path, on_event=phase.on_event), phase)
    phase.d["skipped"] = phase.event_count()
    missing = phase.d["frames_in"] - phase.d["results"] - phase.d["skipped"]
    phase.d["lost_unreported"] = max(0, missing)
    if missing > 0:
        phase.d["lost_where"].append(f"{missing} frames after result {phase.d['results']} (end of the file)")
    if missing < 0:
        phase.d["extra_results"] = -missing


def run_camera(soak: Soak, phase: Phase, camera: Any, count: int, drop_s: float, queue_size: int = 4
               ) -> Dict[str, Any]:
    drop: Dict[str, Any] = {"drop_s": drop_s}
    worker: List[threading.Thread] = []

    def cycle() -> None:
        drop["t_drop"] = time.time()
        soak.mark("camera drop")
        camera.drop()
        time.sleep(drop_s)
        drop["t_restore"] = camera.restore()
        soak.mark("camera back")

    def on_result(r: Any) -> None:
        if not worker and phase.d["results"] >= count * 2 // 5:
            worker.append(threading.Thread(target=cycle, name="camera-drop", daemon=True))
            worker[0].start()

    stream = soak.insp.stream(camera.url, on_event=phase.on_event, queue_size=queue_size)
    fps_guess = 30.0
    soak.consume(stream, phase, on_result, stop_after=count, max_seconds=count / fps_guess * 4 + drop_s + 60)
    if worker:
        worker[0].join(drop_s + 10)
    read = getattr(stream.reader, "read_count", None)
    phase.d["frames_in"] = int(read) if read is not None else phase.d["results"]
    phase.d["dropped"] = int(stream.drops)
    phase.d["skipped"] = phase.event_count()
    rest = phase.d["frames_in"] - phase.d["results"] - phase.d["dropped"] - phase.d["skipped"]
    # the caller stops a live stream: what sits in the queue (and one frame in flight) is discarded, by request
    phase.d["discarded_at_stop"] = max(0, min(rest, queue_size + 1))
    phase.d["lost_unreported"] = max(0, rest - phase.d["discarded_at_stop"])
    if phase.d["lost_unreported"]:
        phase.d["lost_where"].append(f"{phase.d['lost_unreported']} frames read from the camera, never reported")
    phase.d["camera_frames_sent"] = camera.frames_sent
    phase.d["reconnects"] = int(stream.reconnects)
    t_restore = drop.get("t_restore")
    lost_ev = [e for e in phase.events if e.get("event") == "dropped_source"]
    back_ev = [e for e in phase.events if e.get("event") == "reconnected"]
    if "t_drop" in drop and lost_ev:
        drop["detected_after_s"] = round(lost_ev[0]["time"] - drop["t_drop"], 3)
    if t_restore is not None and back_ev:
        drop["reconnect_after_return_s"] = round(back_ev[-1]["time"] - t_restore, 3)
    times = sorted(phase.result_times)  # capture times: the longest stretch of the line with no verdict
    if len(times) > 1:
        drop["longest_result_gap_s"] = round(float(np.max(np.diff(times))), 3)
    drop["reconnected"] = bool(back_ev)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in drop.items()}


def run_arrays(soak: Soak, phase: Phase, frames: List[np.ndarray], count: int, every: int) -> None:
    src = fi.ArraySource(frames, count, every)
    soak.consume(soak.insp.stream(src, on_event=phase.on_event), phase)
    got = set(phase.result_names)
    skipped = {src.plan[e["index"]][0] for e in phase.events
               if e.get("event") in SKIP_EVENTS and e.get("index") in src.plan}
    faults: Dict[str, Dict[str, int]] = {}
    for _, (name, kind) in sorted(src.plan.items()):
        outcome = "result" if name in got else ("skip" if name in skipped else "lost")
        if outcome == "lost":
            phase.d["lost_where"].append(name)
        if kind != "clean":
            faults.setdefault(kind, {"injected": 0, "result": 0, "skip": 0, "lost": 0})
            faults[kind]["injected"] += 1
            faults[kind][outcome] += 1
    phase.d["frames_in"] = len(src.plan)
    phase.d["faults"] = faults
    phase.d["skipped"] = len(skipped)
    phase.d["lost_unreported"] = len(phase.d["lost_where"])


def run_cli(phase: Phase, model: str, plan: Dict[str, str], backend: str, out: str) -> None:
    """`python -m runtime --source FOLDER --out DIR` on a fault folder: its inspect.jsonl must account for every
    file (a result record or an event naming it) and end with a summary."""
    import subprocess  # noqa: PLC0415

    folder = os.path.dirname(next(iter(plan)))
    cmd = [sys.executable, "-m", "runtime", "--model", model, "--source", folder, "--out", out, "--save", "none",
           "--no-progress", "--backend", backend]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    phase.d["seconds"] = round(time.perf_counter() - t0, 3)
    phase.d["exit_status"] = proc.returncode
    if proc.returncode != 0:
        phase.d["crash"] = f"exit status {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    records: List[Dict[str, Any]] = []
    log_path = os.path.join(out, "inspect.jsonl")
    if os.path.isfile(log_path):
        with open(log_path, "r", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    names = list(plan)
    got = {r.get("name") for r in records if r.get("type") == "result"}
    skipped = {r.get("name") or (names[r["index"]] if isinstance(r.get("index"), int) and r["index"] < len(names)
                                 else None)
               for r in records if r.get("type") == "event" and r.get("event") in SKIP_EVENTS}
    phase.d["results"] = sum(1 for r in records if r.get("type") == "result")
    phase.d["skipped"] = len(skipped & set(names))
    phase.d["lost_where"] = [os.path.basename(n) for n in names if n not in got and n not in skipped]
    phase.d["lost_unreported"] = len(phase.d["lost_where"])
    phase.d["summary_written"] = any(r.get("type") == "summary" for r in records)
    phase.d["summary_line"] = any(line.startswith("summary: ") for line in proc.stdout.splitlines())
