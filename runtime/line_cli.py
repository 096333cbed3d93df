"""`python -m runtime` with several cameras, a line file or sinks: runs a `runtime.multicam.Line`.

    python -m runtime --model M --source A --source B [--sink mqtt://127.0.0.1:1883/line1 ...]
    python -m runtime --line line.json [--sink ...] [--serve PORT] [--out DIR]

One line per verdict (camera, frame, score, verdict, read-to-verdict latency) unless --no-progress, then a
summary per camera and per sink; with --out, `inspect.jsonl` (results and events carry a "camera" field) and the
overlays as CAMERA_frame_N.png. Called by `runtime.cli` (which owns the flags)."""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict

from runtime.errors import RuntimeInspectError
from runtime.line import LineError, line_from_sources, load_line
from runtime.run_output import RunOutput


def wants_line(args: argparse.Namespace) -> bool:
    """Several sources, a line file or a sink: the multi-camera path."""
    return bool(args.line) or len(args.source or []) > 1 or bool(args.sink)


def _spec(args: argparse.Namespace) -> Any:
    if args.show:
        raise LineError("--show shows one camera: with several cameras, a line file or sinks use --serve PORT")
    if args.line:
        if args.source:
            raise LineError("give the cameras either with --line FILE or with --source, not both")
        spec = load_line(args.line)
        if args.model:
            for cam in spec.cameras:
                cam.model = cam.model or args.model
        if args.threshold is not None:  # the command line wins over the file, for every camera
            for cam in spec.cameras:
                cam.threshold = args.threshold
        spec.sinks.extend(args.sink)
        if args.batch_size != 1:
            spec.batch = args.batch_size
        return spec
    if not args.model:
        raise LineError("--model is needed with --source (or name models in a --line file)")
    if not args.source:
        raise LineError("give at least one --source (or a --line file)")
    return line_from_sources(args.source, args.model, args.threshold, args.sink, batch=max(args.batch_size, 1))


def _print_summary(summary: Dict[str, Any]) -> None:
    for c in summary["cameras"]:
        err = f", ended: {c['error']}" if c.get("error") else ""
        print(f"camera {c['camera']}: {c['frames']} frames, {c['fps']:.1f} FPS, read-to-verdict p50 "
              f"{c['read_to_verdict_p50_ms']} ms p99 {c['read_to_verdict_p99_ms']} ms, {c['anomalies']} anomalous, "
              f"{c['dropped']} dropped, {c['bad_frames']} skipped, {c['unaccounted']} unaccounted, "
              f"{c['reconnects']} reconnects{err}")
    for s in summary["sinks"]:
        print(f"sink {s['sink']}: {s['delivered']}/{s['offered']} delivered ({s['late']} late), {s['dropped']} "
              f"dropped (queue full), {s['failed']} failed, {s['pending']} pending, read-to-delivered p50 "
              f"{s['latency_p50_ms']} ms p99 {s['latency_p99_ms']} ms")
    print(f"summary: {len(summary['cameras'])} cameras, {summary['frames']} frames, {summary['fps']:.1f} FPS in all, "
          f"backend {', '.join(summary['backends'])}")


def run_line(args: argparse.Namespace) -> int:
    from runtime.multicam import Line  # noqa: PLC0415

    spec = _spec(args)
    output = RunOutput(args.out, args.save)
    write = output.write
    overlays = output.overlays

    view = None

    def on_event(event: Dict[str, Any]) -> None:
        write(dict(event, type="event"))
        if view is not None:
            view.on_event(event)

    interrupted = False
    try:
        line = Line(spec, backend=args.backend, device=args.device, queue_size=args.queue,
                    max_frames=args.max_frames, reconnect=not args.no_reconnect, on_event=on_event,
                    backend_options=dict(args.backend_option), max_reconnects=args.max_reconnects,
                    frame_timeout=args.frame_timeout)
        with line:
            for s in line.sinks:
                where = getattr(s, "endpoint", None) or getattr(s, "url", None) or f"{getattr(s, 'host', '')}"
                print(f"sink {s.name}: {s.kind} {where}".rstrip(), flush=True)
            if args.serve is not None:
                from runtime.serve_line import LineView  # noqa: PLC0415

                view = LineView(args.serve, line)
                print(f"live view: {view.url}", flush=True)
            try:
                for name, r in line:
                    if view is not None:
                        view.on_result(name, r)
                    if not args.no_progress:
                        print(f"{name:>10s} frame {r.frame_index:6d}  score {r.score:.6g}  {r.verdict:9s} "
                              f"{(time.time() - r.timestamp) * 1000:7.2f} ms", flush=True)
                    record = dict(r.to_dict(), type="result", camera=name)
                    if overlays is not None and (args.save == "all" or r.is_anomalous):
                        import cv2  # noqa: PLC0415

                        path = os.path.join(overlays, f"{name}_frame_{r.frame_index:06d}.png")
                        if not cv2.imwrite(path, r.overlay()):
                            raise RuntimeInspectError(f"cannot write overlay {path}: check --out")
                        record["overlay"] = os.path.relpath(path, args.out)
                    write(record)
            except KeyboardInterrupt:
                interrupted = True
        summary = line.summary()  # after close: the sinks' counts are final
        _print_summary(summary)
        write(dict(summary, type="summary", time=time.time()))
        if view is not None and not interrupted:
            view.serve_until_interrupted()
    finally:
        if view is not None:
            view.close()
        output.close()
    return 130 if interrupted else 0


__all__ = ["run_line", "wants_line"]
