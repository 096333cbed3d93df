"""Soak with injected faults: many frames through `Inspector.stream` from a folder, a video file, a live MJPEG
camera on 127.0.0.1 and an array source, with bad inputs, a camera drop and a model swap on disk.

    python -m benchmarks.soak --model M.onnx [--frames 10000] [--backend auto|onnxruntime|openvino]
                              [--json OUT.json] [--plot OUT.png] [--fault-every 50] [--drop-seconds 3]

The frames are split over two equal rounds (memory is compared between the end of round 1, "middle", and the
end of round 2); each round runs the phases folder (45 %, with file faults and the model swap halfway),
video (20 %, plus a truncated copy), camera (25 %, dropped for --drop-seconds and brought back) and arrays
(10 %, with array faults). After the rounds, `python -m runtime --out` runs on a fault folder of its own and
its inspect.jsonl must name every file (phase "cli", round 3). Every input frame must come out as a result or as a reported skip (an event);
what is neither is "lost without a reason". The model is copied to a temporary folder first: the swap never
touches the user's files. A benchmark, not a test: the goals are printed as met / not met.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

from benchmarks import fault_injection as fi
from benchmarks.mjpeg_camera import make_camera
from benchmarks.soak_report import evaluate_goals, plot_soak, print_report

SHARES = {"folder": 0.45, "video": 0.20, "camera": 0.25, "arrays": 0.10}
TRUNCATED_VIDEO_FRAMES = 60
CLI_FILES = 120  # the CLI check: a fault folder through `python -m runtime --out`, every 5th file a fault
SKIP_EVENTS = ("corrupt", "bad_frame")  # events that account for exactly one input frame
COUNT_KEYS = ("lost", "frames_lost", "missing", "skipped")  # an event's count of frames it accounts for


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
            if e.get("event") not in SKIP_EVENTS:
                n += sum(int(e[k]) for k in COUNT_KEYS if isinstance(e.get(k), (int, np.integer)))
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
def _swap(soak: Soak, model: str, data: bytes, manifest: Dict[str, Any], tag: str, backend: str) -> Dict[str, Any]:
    """Overwrite the model on disk while a stream runs: the ONNX first (torn state: new ONNX, old manifest),
    then the manifest. A new Inspector must refuse the torn pair with the runtime's error and load the whole
    new pair; the running Inspector must go on with the model it loaded."""
    from runtime.errors import RuntimeInspectError  # noqa: PLC0415
    from runtime.inspector import Inspector  # noqa: PLC0415

    out: Dict[str, Any] = {"to": tag, "at_result": soak.total_results}
    with open(model, "wb") as f:  # in place, not atomic: what a careless copy does
        f.write(data)
    for step in ("torn", "complete"):
        try:
            with Inspector(model, backend=backend, warmup=False) as other:
                out[step] = f"opened (threshold {other.threshold})"
        except RuntimeInspectError as e:
            out[step] = f"{type(e).__name__}: {str(e)[:120]}"
        except Exception as e:  # noqa: BLE001 - a foreign exception is a finding, recorded
            out[step] = f"FOREIGN {type(e).__name__}: {str(e)[:120]}"
        if step == "torn":
            tmp = os.path.splitext(model)[0] + ".json.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
            os.replace(tmp, os.path.splitext(model)[0] + ".json")
    out["ok"] = out["torn"].startswith("ArtifactMismatch") and out["complete"].startswith("opened")
    soak.mark(f"swap to {tag}")
    return out


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
    after = [t for t in phase.result_times if "t_drop" in drop and t > drop["t_drop"]]
    if after:
        before = [t for t in phase.result_times if t <= drop["t_drop"]]
        drop["result_gap_s"] = round(min(after) - (max(before) if before else drop["t_drop"]), 3)
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
           "--quiet", "--backend", backend]
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


# -- main -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="MODEL.onnx with MODEL.json beside it (copied; never modified)")
    p.add_argument("--frames", type=int, default=10000, help="results to aim for over both rounds (default 10000)")
    p.add_argument("--backend", default="auto", help="runtime backend: auto, onnxruntime, openvino, ...")
    p.add_argument("--fault-every", type=int, default=50, help="inject a fault every N frames (default 50)")
    p.add_argument("--drop-seconds", type=float, default=3.0, help="how long the camera stays down (default 3)")
    p.add_argument("--camera", default="auto", choices=["auto", "ffmpeg", "stdlib"],
                   help="MJPEG camera server: ffmpeg from imageio-ffmpeg (auto when installed) or http.server")
    p.add_argument("--camera-fps", type=float, default=30.0, help="camera frame rate (default 30)")
    p.add_argument("--json", default=None, help="write the figures as JSON here")
    p.add_argument("--plot", default=None, help="write a PNG of memory and latency over the run here")
    p.add_argument("--workdir", default=None, help="folder for the generated inputs (default: a temporary one)")
    return p


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from tqdm import tqdm  # noqa: PLC0415

    from runtime.inspector import Inspector  # noqa: PLC0415

    logging.getLogger("runtime").setLevel(logging.ERROR)  # every fault is counted from the events instead
    work = args.workdir or tempfile.mkdtemp(prefix="soak-")
    model = fi.copy_model(args.model, os.path.join(work, "model"))
    with open(model, "rb") as f:
        original = (f.read(), json.load(open(os.path.splitext(model)[0] + ".json", encoding="utf-8")))
    variant = fi.model_variant(model, "B")
    insp = Inspector(model, backend=args.backend)
    h, w = insp.input_size
    frames = fi.texture_frames(64, (h, w))
    per_round = max(args.frames // 2, 40)
    n = {k: max(int(per_round * s), 10) for k, s in SHARES.items()}
    video = os.path.join(work, "clip.avi")
    fi.write_video(video, frames, n["video"], fps=args.camera_fps)
    trunc_src = os.path.join(work, "short.avi")
    fi.write_video(trunc_src, frames, TRUNCATED_VIDEO_FRAMES, fps=args.camera_fps)
    truncated = os.path.join(work, "truncated.avi")
    claimed = fi.truncate_copy(trunc_src, truncated, keep=0.5)
    import cv2  # noqa: PLC0415

    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    camera, camera_why = make_camera(video, jpegs, args.camera_fps, args.camera)
    camera.start()
    plans = [fi.write_fault_folder(os.path.join(work, f"folder{r}"), frames, n["folder"], args.fault_every)
             for r in (1, 2)]
    gc.collect()
    progress = tqdm(total=2 * sum(n.values()) + 2 * TRUNCATED_VIDEO_FRAMES, unit="frame", desc="soak",
                    file=sys.stderr)
    soak = Soak(insp, 2 * sum(n.values()), progress)
    mem = {"start": soak.sample()}
    phases: List[Dict[str, Any]] = []
    swaps: List[Dict[str, Any]] = []
    drops: List[Dict[str, Any]] = []
    try:
        for rnd in (1, 2):
            data, manifest = variant if rnd == 1 else original
            tag = "variant B" if rnd == 1 else "original"
            ph = Phase("folder", rnd, len(plans[rnd - 1]))
            swaps.append(run_folder(soak, ph, plans[rnd - 1],
                                    lambda: _swap(soak, model, data, manifest, tag, insp.backend)))
            phases.append(ph.d)
            soak.mark(f"round {rnd} video")
            ph = Phase("video", rnd, n["video"])
            run_video(soak, ph, video)
            phases.append(ph.d)
            ph = Phase("video_truncated", rnd, TRUNCATED_VIDEO_FRAMES)
            ph.d["header_claims"] = claimed
            run_video(soak, ph, truncated)
            phases.append(ph.d)
            soak.mark(f"round {rnd} camera")
            ph = Phase("camera", rnd)
            drops.append(run_camera(soak, ph, camera, n["camera"], args.drop_seconds))
            phases.append(ph.d)
            soak.mark(f"round {rnd} arrays")
            ph = Phase("arrays", rnd)
            run_arrays(soak, ph, frames, n["arrays"], args.fault_every // 5 or 1)
            phases.append(ph.d)
            gc.collect()
            mem["middle" if rnd == 1 else "end"] = soak.sample()
            soak.mark(f"end of round {rnd}")
    finally:
        progress.close()
        camera.close()
        insp.close()
    cli_plan = fi.write_fault_folder(os.path.join(work, "cli_folder"), frames, CLI_FILES, 5)
    ph = Phase("cli", 3, len(cli_plan))
    run_cli(ph, model, cli_plan, insp.backend, os.path.join(work, "cli_out"))
    phases.append(ph.d)
    result = {"model": os.path.abspath(args.model), "backend": insp.backend, "device": insp.device,
              "backend_description": insp.backend_description, "frames_requested": args.frames,
              "fault_every": args.fault_every, "camera": camera_why, "camera_fps": args.camera_fps,
              "workdir": work, "phases": phases, "swaps": swaps, "camera_drops": drops,
              "memory_mib": {k: round(v, 2) for k, v in mem.items()}, "memory_samples": soak.memory,
              "markers": soak.markers, "latency_samples": soak.latencies[::max(1, len(soak.latencies) // 2000)],
              "command": "python -m benchmarks.soak " + " ".join(sys.argv[1:])}
    result["goals"] = evaluate_goals(result)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 80 or args.fault_every < 1 or args.drop_seconds < 0:
        print("error: need --frames >= 80, --fault-every >= 1 and --drop-seconds >= 0", file=sys.stderr)
        return 2
    if not os.path.isfile(args.model) or not os.path.isfile(os.path.splitext(args.model)[0] + ".json"):
        print(f"error: {args.model} (with its .json manifest beside it) does not exist: export one with "
              f"`python -m export.onnx`", file=sys.stderr)
        return 2
    result = run(args)
    print_report(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot_soak(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
