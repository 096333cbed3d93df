"""Soak with injected faults: many frames through `Inspector.stream` from a folder, a video file, a live MJPEG
camera on 127.0.0.1 and an array source, with bad inputs, a camera drop and a model swap on disk.

    python -m benchmarks.soak --model M.onnx [--frames 10000] [--backend auto|onnxruntime|openvino|...]
                              [--json OUT.json] [--plot OUT.png] [--fault-every 50] [--drop-seconds 3]
                              [--no-progress]

The frames are split over two equal rounds (memory is compared between the end of round 1, "middle", and the
end of round 2); each round runs the phases folder (45 %, with file faults and the model swap halfway),
video (20 %, plus a truncated copy), camera (25 %, dropped for --drop-seconds and brought back) and arrays
(10 %, with array faults). After the rounds, `python -m runtime --out` runs on a fault folder of its own and
its inspect.jsonl must name every file (phase "cli", round 3); phase "sinks" (round 3, `benchmarks.soak_sinks`)
sends the camera's verdicts to sinks under faults, and a verdict neither received nor counted is lost too. Every input frame must come out as a result or
as a reported skip (an event); what is neither is "lost without a reason". The model is copied to a temporary folder first: the swap never
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
from typing import Any, Dict, List, Optional


from benchmarks import fault_injection as fi
from benchmarks.mjpeg_camera import make_camera
from benchmarks.soak_phases import (Phase, Soak, swap_model, reopen_probe, run_arrays, run_camera, run_cli, run_folder,
                                    run_video)
from benchmarks.soak_report import evaluate_goals, plot_soak, print_report
from benchmarks.soak_sinks import run_sinks
from runtime.cli_flags import add_backend, add_no_progress
from runtime.errors import cli_exit, writing
from train.errors import ConfigError

SHARES = {"folder": 0.45, "video": 0.20, "camera": 0.25, "arrays": 0.10}
TRUNCATED_VIDEO_FRAMES = 60
CLI_FILES = 120  # the CLI check: a fault folder through `python -m runtime --out`, every 5th file a fault


# -- main -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="MODEL.onnx with MODEL.json beside it (copied; never modified)")
    p.add_argument("--frames", type=int, default=10000, help="results to aim for over both rounds (default 10000)")
    add_backend(p, help="runtime backend")
    p.add_argument("--fault-every", type=int, default=50, help="inject a fault every N frames (default 50)")
    p.add_argument("--drop-seconds", type=float, default=3.0, help="how long the camera stays down (default 3)")
    p.add_argument("--camera", default="auto", choices=["auto", "ffmpeg", "stdlib"],
                   help="MJPEG camera server: ffmpeg from imageio-ffmpeg (auto when installed) or http.server")
    p.add_argument("--camera-fps", type=float, default=30.0, help="camera frame rate (default 30)")
    p.add_argument("--json", default=None, help="write the figures as JSON here")
    p.add_argument("--plot", default=None, help="write a PNG of memory and latency over the run here")
    p.add_argument("--workdir", default=None, help="folder for the generated inputs (default: a temporary one)")
    p.add_argument("--no-sinks", action="store_true",
                   help="leave out the sink phase (verdicts to MQTT with a broker restart, a failing webhook, a "
                        "blocking callback)")
    add_no_progress(p, "no progress bar")
    return p


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """The soak; the runtime's per-fault warnings are silenced meanwhile (every fault is counted from the
    events instead) and the logger is left as it was found (the soak may run inside another program)."""
    runtime_log = logging.getLogger("runtime")
    level = runtime_log.level
    runtime_log.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        runtime_log.setLevel(level)


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    from tqdm import tqdm  # noqa: PLC0415

    from runtime.inspector import Inspector  # noqa: PLC0415

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
                    file=sys.stderr, disable=args.no_progress)
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
                                    lambda: swap_model(soak, model, data, manifest, tag, insp.backend)))
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
        if not args.no_sinks:  # verdicts to MQTT (broker restarted), a failing webhook and a blocking callback
            soak.mark("sinks")
            ph = Phase("sinks", 3)
            run_sinks(soak, ph, camera, max(n["camera"], 60))
            phases.append(ph.d)
    finally:
        progress.close()
        camera.close()
        insp.close()
    probe = reopen_probe(model, insp.backend)
    cli_plan = fi.write_fault_folder(os.path.join(work, "cli_folder"), frames, CLI_FILES, 5)
    ph = Phase("cli", 3, len(cli_plan))
    run_cli(ph, model, cli_plan, insp.backend, os.path.join(work, "cli_out"))
    phases.append(ph.d)
    result = {"model": os.path.abspath(args.model), "backend": insp.backend, "device": insp.device,
              "backend_description": insp.backend_description, "frames_requested": args.frames,
              "fault_every": args.fault_every, "camera": camera_why, "camera_fps": args.camera_fps,
              "workdir": work, "phases": phases, "swaps": swaps, "camera_drops": drops,
              "memory_mib": {k: round(v, 2) for k, v in mem.items()}, "memory_samples": soak.memory,
              "reopen_probe": probe,
              "markers": soak.markers, "latency_samples": soak.latencies[::max(1, len(soak.latencies) // 2000)],
              "command": "python -m benchmarks.soak " + " ".join(sys.argv[1:])}
    result["goals"] = evaluate_goals(result)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if threading.current_thread() is threading.main_thread():  # SIGTERM: clean up (stop ffmpeg) on the way out
        import signal  # noqa: PLC0415

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.frames < 80 or args.fault_every < 1 or args.drop_seconds < 0:
        raise ConfigError("need --frames >= 80, --fault-every >= 1 and --drop-seconds >= 0")
    if not os.path.isfile(args.model) or not os.path.isfile(os.path.splitext(args.model)[0] + ".json"):
        raise ConfigError(f"{args.model} (with its .json manifest beside it) does not exist: export one with "
                          f"`python -m export.onnx`")
    result = run(args)
    print_report(result)
    if args.json:
        with writing(args.json), open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        with writing(args.plot):
            plot_soak(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
