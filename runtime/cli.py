"""Command line of the runtime: inspect a camera, stream, video, image or folder with an exported model.

    python -m runtime --model model.onnx --source 0|FILE|URL|DIR|'gst ... ! appsink' [--out DIR] [--show]
                      [--max-frames N] [--backend auto|onnxruntime|openvino|tensorrt|torch|triton]
                      [--device auto|cpu|cuda] [--threshold T] [--batch-size N] [--backend-option KEY=VALUE ...]
                      [--serve PORT] [--no-progress]
    python -m runtime --model MODEL --source A --source B ... | --line LINE.json  [--sink URL ...]

Several sources, a line file or a sink run the multi-camera path (`runtime.line_cli`, docs/plant-floor.md).

Prints one line per frame (index, score, verdict, latency) and a summary (frames, FPS, p50/p99 latency,
anomalies, drops, backend). With --out: overlays as PNG (`--save all|anomalous|none`) and `inspect.jsonl`
(one JSON object a line: {"type": "result"|"event"|"summary", ...}). Bad input: one `error: ...` line and
exit status 2.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import time
from typing import Any, Deque, Dict, Optional, Sequence

from runtime.cli_flags import add_backend, add_device, add_no_progress
from runtime.cli_line import add_line_flags, announce, check_line_flags, start_line_tools
from runtime.errors import RuntimeInspectError, cli_exit
from runtime.run_output import RunOutput

EXIT_INTERRUPTED = 130
LATENCIES_KEPT = 100_000


def backend_option(text: str) -> tuple:
    """KEY=VALUE -> (key, value), the value read as JSON when it is JSON ("threads=2", "cuda_graph=false"),
    else a string ("inference_precision=bf16"): the rule of `train.config.parse_option`, which the runtime
    cannot import (it ships without the training package)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description="Inspect frames with an exported anomaly model.")
    p.add_argument("--model", default=None,
                   help="MODEL.onnx / MODEL.engine / MODEL.plan (with MODEL.json beside it); needed unless a --line "
                        "file names the models")
    p.add_argument("--source", action="append", default=[],
                   help="camera index (0), video file, image file, image folder, rtsp:// or http:// URL, "
                        "or a GStreamer pipeline (contains '!'); repeat it for several cameras in one process "
                        "(named cam1, cam2, ...; their frames are batched together)")
    p.add_argument("--line", default=None, metavar="FILE",
                   help="a line file (JSON): cameras with their sources, models and thresholds, and sinks; see "
                        "docs/plant-floor.md")
    p.add_argument("--sink", action="append", default=[], metavar="URL",
                   help="send every verdict there too, repeatable: mqtt://HOST:1883/PREFIX (QoS 1, topic "
                        "PREFIX/CAMERA/result), opcua://HOST:4840 (an OPC UA server of ours), "
                        "opcua-client://HOST:4840?ns=2&prefix=P (write into a PLC's server), http://HOST/PATH "
                        "(webhook, POST JSON)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for overlays (PNG) and inspect.jsonl")
    p.add_argument("--show", action="store_true", help="show overlays in a window (needs OpenCV with GUI; q quits)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    add_backend(p, help="backend that runs the model (triton: a Triton server, --backend-option url=HOST:PORT)")
    add_device(p)
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE", type=backend_option,
                   help="an option of the chosen backend, repeatable: threads=N (onnxruntime, openvino), "
                        "inference_precision=bf16 (openvino: compute an FP32 model in bf16, 4-6x faster on "
                        "CPUs with AMX; the default f32 matches the other backends), requests=N (openvino), "
                        "cuda_graph=1 (tensorrt), url=HOST:PORT and model_name=NAME (triton)")
    p.add_argument("--threshold", type=float, default=None, help="score threshold (default: the manifest's)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="frames per inference (default 1)")
    p.add_argument("--queue", type=int, default=4, help="capture queue size (default 4)")
    p.add_argument("--save", default="all", choices=["all", "anomalous", "none"],
                   help="which overlays to write with --out (default all)")
    p.add_argument("--no-reconnect", action="store_true", help="stop when a live source drops")
    p.add_argument("--max-reconnects", type=int, default=30,
                   help="reconnect attempts (back-off 0.5 s doubling to 2 s) before a dropped live source ends the "
                        "run (default 30: about a minute)")
    p.add_argument("--frame-timeout", type=float, default=None, metavar="SECONDS",
                   help="a live source that delivers no frame for this long is reported as stalled and reopened "
                        "(default: automatic, 5 s until the frame rate is known, then 10 frame intervals within "
                        "2-60 s; 0 = off)")
    add_no_progress(p, "no per-frame lines, only the summary")
    p.add_argument("--serve", type=int, default=None, metavar="PORT",
                   help="serve a live view on http://127.0.0.1:PORT/ (0 = any free port): frame with heat map, "
                        "verdict, score trace, counts, FPS, latency; after the source ends the last state stays "
                        "served until Ctrl-C")
    add_line_flags(p)
    return p


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np  # noqa: PLC0415

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _check_args(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames < 0:
        raise RuntimeInspectError(f"--max-frames must be >= 0, got {args.max_frames}")
    if args.frame_timeout is not None and not 0 <= args.frame_timeout < float("inf"):
        raise RuntimeInspectError(f"--frame-timeout must be a number of seconds >= 0, got {args.frame_timeout}")
    if args.max_reconnects < 0:
        raise RuntimeInspectError(f"--max-reconnects must be >= 0, got {args.max_reconnects}")
    if args.batch_size < 1 or args.queue < 1:
        raise RuntimeInspectError(f"--batch-size and --queue must be >= 1, got {args.batch_size} and {args.queue}")
    check_line_flags(args)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    _check_args(args)
    from runtime.line_cli import run_line, wants_line  # noqa: PLC0415

    try:
        if wants_line(args):  # several cameras, a line file or sinks
            return run_line(args)
        if not args.model or not args.source:
            raise RuntimeInspectError("give --model and --source (or a --line file)")
        args.source = args.source[0]
        return _inspect(args)
    except KeyboardInterrupt:  # before the stream ran (loading, connecting): nothing to summarise
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _inspect(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415

    from runtime.overlay import overlay_file_name  # noqa: PLC0415

    from runtime.inspector import Inspector  # noqa: PLC0415

    try:  # OpenCV's own probing warnings (camera by index, FFMPEG) would bury our one-line errors
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
    if args.show:
        try:
            cv2.namedWindow("edge-inspect", cv2.WINDOW_NORMAL)
        except cv2.error:
            raise RuntimeInspectError("--show needs an OpenCV with GUI support (pip install opencv-python, not "
                                      "-headless); use --out DIR to write overlays instead") from None
    output = RunOutput(args.out, args.save)
    write = output.write
    overlay_dir = output.overlays
    folder = str(args.source) if os.path.isdir(str(args.source)) else None  # overlays name its files from here

    live = None  # the --serve live view (runtime.serve.LiveView), made once the Inspector exists

    def on_event(event: Dict[str, Any]) -> None:
        write(dict(event, type="event"))
        announce(event)
        if live is not None:
            live.on_event(event)

    # The latency percentiles of the summary cover the last LATENCIES_KEPT frames (bounded over weeks of running).
    latencies: Deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
    anomalies = 0
    interrupted = False
    failure: Optional[RuntimeInspectError] = None  # a source lost mid-stream: the summary is still written
    stream = None
    watcher = None  # --swap-file (runtime.swap.SwapWatcher)
    try:
        insp = Inspector(args.model, backend=args.backend, device=args.device, threshold=args.threshold,
                         backend_options=dict(args.backend_option))
        print(f"model {args.model}: backend {insp.backend} on {insp.device} ({insp.backend_reason}); "
              f"{insp.backend_description}; input {insp.input_size[0]}x{insp.input_size[1]}; threshold "
              f"{insp.threshold if insp.threshold is not None else 'none (verdicts unknown)'}")
        with insp:
            edits, watcher = start_line_tools(args, insp)
            if args.serve is not None:  # --serve: start the live view before the first frame
                from runtime.serve import LiveView  # noqa: PLC0415

                live = LiveView(args.serve, insp, args.source, edits)
                print(f"live view: {live.url}", flush=True)
            stream = insp.stream(args.source, batch_size=args.batch_size, queue_size=args.queue,
                                 max_frames=args.max_frames, reconnect=not args.no_reconnect, on_event=on_event,
                                 max_reconnects=args.max_reconnects, frame_timeout=args.frame_timeout,
                                 drift_window=args.drift_window)
            with stream:
                try:
                    for r in stream:
                        if live is not None:
                            live.on_result(r, stream)
                        latencies.append(r.latency_ms)
                        anomalies += int(bool(r.is_anomalous))
                        verdict = (r.alert.upper() if r.alert else  # blank / out-of-range: never "ok"
                                   {None: "-", True: "ANOMALY", False: "ok"}[r.is_anomalous])
                        if not args.no_progress:
                            norm = f"  norm {r.normalized_score:.3f}" if r.normalized_score is not None else ""
                            print(f"frame {r.frame_index:6d}  score {r.score:.6g}{norm}  {verdict:7s}  "
                                  f"{r.latency_ms:7.2f} ms", flush=True)
                        record = dict(r.to_dict(), type="result")
                        if overlay_dir is not None and (args.save == "all" or r.is_anomalous):
                            path = os.path.join(overlay_dir, overlay_file_name(r.frame_index, r.name, folder))
                            if not cv2.imwrite(path, r.overlay()):
                                raise RuntimeInspectError(f"cannot write overlay {path}: check --out")
                            record["overlay"] = os.path.relpath(path, args.out)
                        write(record)
                        if args.show:
                            cv2.imshow("edge-inspect", r.overlay())
                            if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
                                break
                except KeyboardInterrupt:
                    interrupted = True
                except RuntimeInspectError as e:  # e.g. the source was lost for good
                    failure = e
            summary = dict(stream.summary(), backend=insp.backend, device=insp.device,
                           anomalies=anomalies if insp.threshold is not None else None,
                           threshold=insp.threshold, p50_ms=round(_percentile(latencies, 50), 3),
                           p99_ms=round(_percentile(latencies, 99), 3))
        if failure is not None:
            summary["error"] = str(failure)
        verdicts = f"{anomalies} anomalous" if insp.threshold is not None else "no threshold (verdicts unknown)"
        losses = f", {summary['lost_frames']} lost (unreadable)" if summary["lost_frames"] else ""
        losses += f", {summary['stalls']} stalls" if summary["stalls"] else ""
        print(f"summary: {summary['frames']} frames, {summary['fps']:.1f} FPS, latency p50 {summary['p50_ms']:.2f} ms "
              f"p99 {summary['p99_ms']:.2f} ms, {verdicts}, {summary['drops']} dropped, "
              f"{summary['bad_frames']} skipped{losses}, {summary['reconnects']} reconnects, backend {insp.backend} "
              f"({insp.device}){', ended early: see the error' if failure is not None else ''}")
        write(dict(summary, type="summary", time=time.time()))
        if live is not None and not interrupted:
            live.serve_until_interrupted("source ended", f"live view: source ended; still serving {live.url} until "
                                                         f"Ctrl-C")
        if failure is not None:
            raise failure
    finally:
        if watcher is not None:
            watcher.stop()
        if live is not None:
            live.close()
        output.close()
        if args.show:
            cv2.destroyAllWindows()
    return EXIT_INTERRUPTED if interrupted else 0


__all__ = ["main", "build_parser"]
