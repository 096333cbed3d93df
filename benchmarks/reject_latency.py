"""Reject-signal latency and many cameras on one process: frame read -> each sink delivered, p50/p99 per sink.

    python benchmarks/reject_latency.py --model MODEL.onnx [--cameras 1 4] [--seconds 20] [--fps 30]
        [--batch-size 4] [--backend auto] [--restart-broker] [--json OUT] [--no-progress]

For each camera count: that many ffmpeg MJPEG cameras on 127.0.0.1 (`benchmarks.mjpeg_camera`, `--fps` each)
run through one `runtime.multicam.Line` with four sinks, each measured where the verdict arrives:
MQTT (QoS 1 to a mosquitto started here; a subscriber's receipt), OPC UA (our server; an asyncua client's data
change on each camera's FrameReadTime), an HTTP webhook (the receiving server's receipt) and a Python callback
(its call). Latency = arrival time - the frame's read time (one clock: everything runs on this machine).
Reported: aggregate FPS and per-camera FPS, read-to-verdict p99, frames unaccounted (read but neither
inspected, dropped, skipped nor discarded at stop: 0 expected), and per sink p50/p99 and counts. With
`--restart-broker` the broker is stopped for 2 s in the middle of the last run and the subscriber's unique
(camera, seq) pairs are compared with what the MQTT sink was given.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence  # noqa: E402

from runtime.cli_flags import add_backend, add_no_progress  # noqa: E402
from runtime.errors import InspectError, cli_exit  # noqa: E402
from runtime.files import write_json  # noqa: E402


class BenchmarkError(InspectError):
    """The benchmark cannot run here (no ffmpeg, no mosquitto, a bad argument)."""


def _pct(values: Sequence[float], q: float) -> Optional[float]:
    import numpy as np  # noqa: PLC0415

    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)) * 1000.0, 2) if values else None


class Arrivals:
    """Latencies (s) of each sink's arrivals, and the (camera, seq) pairs that arrived."""

    def __init__(self) -> None:
        self.latency: Dict[str, List[float]] = {}
        self.after_verdict: Dict[str, List[float]] = {}
        self.seen: Dict[str, set] = {}

    def add(self, sink: str, msg: Dict[str, Any], now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        self.latency.setdefault(sink, []).append(now - float(msg["time_read"]))
        if "time" in msg:  # the sink's own share: verdict made -> arrived
            self.after_verdict.setdefault(sink, []).append(now - float(msg["time"]))
        self.seen.setdefault(sink, set()).add((msg.get("camera"), msg.get("seq")))

    def row(self, sink: str) -> Dict[str, Any]:
        lat, after = self.latency.get(sink, []), self.after_verdict.get(sink, [])
        return {"arrivals": len(lat), "unique": len(self.seen.get(sink, ())), "p50_ms": _pct(lat, 50),
                "p99_ms": _pct(lat, 99), "after_verdict_p50_ms": _pct(after, 50),
                "after_verdict_p99_ms": _pct(after, 99)}


def _webhook(arrivals: Arrivals) -> Any:
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            now = time.time()
            arrivals.add("webhook", json.loads(self.rfile.read(int(self.headers["Content-Length"]))), now)
            self.send_response(204)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _opcua_watch(endpoint: str, cameras: List[str], arrivals: Arrivals, stop: Any) -> None:
    """An asyncua client: data changes of every camera's FrameReadTime (publishing interval 0 = as fast as the
    server allows)."""
    import asyncio  # noqa: PLC0415

    from asyncua import Client, ua  # noqa: PLC0415

    from runtime.sinks.opcua import NAMESPACE  # noqa: PLC0415

    class Handler:
        def __init__(self, names: Dict[Any, str]):
            self.names = names

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            if val:
                arrivals.add("opcua", {"time_read": val, "camera": self.names.get(node.nodeid), "seq": val})

    async def watch() -> None:
        async with Client(endpoint, timeout=5) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            nodes = {ua.NodeId(f"{c}.FrameReadTime", ns): c for c in cameras}
            sub = await client.create_subscription(0, Handler(nodes))
            await sub.subscribe_data_change([client.get_node(n) for n in nodes], queuesize=100)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(watch())


def run_phase(args: argparse.Namespace, model: str, video: str, count: int, restart: bool, work: str) -> Dict[str, Any]:
    import threading  # noqa: PLC0415

    from benchmarks.mjpeg_camera import FfmpegCamera, ffmpeg_exe, free_port  # noqa: PLC0415
    from benchmarks.mqtt_broker import Broker, Subscriber  # noqa: PLC0415
    from runtime.line import line_from_sources  # noqa: PLC0415
    from runtime.multicam import Line  # noqa: PLC0415

    exe = ffmpeg_exe()
    arrivals = Arrivals()
    broker = Broker(tempfile.mkdtemp(dir=work)).start()
    cams = [FfmpegCamera(video, exe).start() for _ in range(count)]
    sub = Subscriber(broker.port, "line/+/result", client_id=f"bench-{count}")
    hook = _webhook(arrivals)
    opcua_port = free_port()
    sinks = [f"mqtt://127.0.0.1:{broker.port}/line", f"opcua://127.0.0.1:{opcua_port}",
             f"http://127.0.0.1:{hook.server_address[1]}/verdict"]
    spec = line_from_sources([c.url for c in cams], model, sinks=sinks, batch=args.batch_size)
    stop = threading.Event()
    restart_info: Dict[str, Any] = {}
    try:
        line = Line(spec, sinks=[lambda m: arrivals.add("callback", m)], backend=args.backend)
        watcher = threading.Thread(target=_opcua_watch, args=(line.sinks[1].endpoint, [c.name for c in line.cameras],
                                                              arrivals, stop), daemon=True)
        watcher.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        with line:
            for _name, _r in line:
                now = time.monotonic() - t0
                if restart and not restart_info and now > args.seconds / 2:
                    broker.stop()
                    restart_info["stopped_at_s"] = round(now, 2)
                if restart and "stopped_at_s" in restart_info and "restarted_at_s" not in restart_info \
                        and now > args.seconds / 2 + 2.0:
                    broker.start()
                    restart_info["restarted_at_s"] = round(now, 2)
                if now >= args.seconds:
                    break
            line.stop()
        summary = line.summary()
        mqtt = next(s for s in summary["sinks"] if s["kind"] == "mqtt")
        deadline = time.monotonic() + 15
        while len({(m["payload"]["camera"], m["payload"]["seq"]) for m in sub.results()}) < mqtt["delivered"] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        for m in sub.results():
            arrivals.add("mqtt", m["payload"], m["received"])
    finally:
        stop.set()
        sub.close()
        hook.shutdown()
        hook.server_close()
        for c in cams:
            c.close()
        broker.stop()
    sinks_out = {}
    for s in summary["sinks"]:
        key = "opcua" if s["kind"] == "opcua" else s["kind"]
        sinks_out[key] = dict(arrivals.row(key), sink_counts={k: s[k] for k in ("offered", "delivered", "late",
                                                                                  "dropped", "failed", "pending")})
    out = {"cameras": count, "backend": summary["backends"], "aggregate_fps": summary["fps"],
           "elapsed_s": summary["elapsed_s"],
           "per_camera": [{k: c[k] for k in ("camera", "frames", "fps", "read_to_verdict_p50_ms",
                                             "read_to_verdict_p99_ms", "inference_p99_ms", "read", "dropped",
                                             "bad_frames", "discarded_at_stop", "unaccounted", "reconnects")}
                          for c in summary["cameras"]],
           "unaccounted_frames": sum(c["unaccounted"] for c in summary["cameras"]), "sinks": sinks_out}
    if restart:
        mqtt_offered = sinks_out["mqtt"]["sink_counts"]["offered"]
        restart_info.update(mqtt_offered=mqtt_offered, received_unique=sinks_out["mqtt"]["unique"],
                            missing=mqtt_offered - sinks_out["mqtt"]["unique"])
        out["broker_restart"] = restart_info
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/reject_latency.py",
                                description="Reject-signal latency per sink and many cameras through one process.")
    p.add_argument("--model", required=True, help="exported model (MODEL.onnx with MODEL.json beside it)")
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 4], help="camera counts to run (default 1 4)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per run (default 20)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of each camera (default 30)")
    p.add_argument("--batch-size", type=int, default=4, help="frames per inference across cameras (default 4)")
    add_backend(p)
    p.add_argument("--restart-broker", action="store_true",
                   help="stop the MQTT broker for 2 s in the middle of the last run and count what arrived")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    add_no_progress(p, "no per-run lines, only the JSON")
    return p


def _run(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415

    from benchmarks import fault_injection as fi  # noqa: PLC0415
    from benchmarks.mjpeg_camera import ffmpeg_exe  # noqa: PLC0415
    from benchmarks.mqtt_broker import mosquitto_exe  # noqa: PLC0415
    from runtime.manifest import load_manifest  # noqa: PLC0415

    if any(c < 1 for c in args.cameras) or args.seconds <= 0 or args.fps <= 0 or args.batch_size < 1:
        raise BenchmarkError("--cameras, --seconds, --fps and --batch-size must be positive")
    if ffmpeg_exe() is None:
        raise BenchmarkError("needs ffmpeg for the cameras: pip install imageio-ffmpeg")
    if mosquitto_exe() is None:
        raise BenchmarkError("needs an MQTT broker: apt-get install mosquitto")
    logging.getLogger("runtime").setLevel(logging.ERROR)  # every fault is counted in the results instead
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    manifest = load_manifest(os.path.splitext(args.model)[0] + ".json")
    h, w = manifest.input.height, manifest.input.width  # frames at the model's size: no host resize
    work = tempfile.mkdtemp(prefix="reject-latency-")
    video = os.path.join(work, "clip.avi")
    fi.write_video(video, fi.texture_frames(32, (h, w)), int(args.fps * 10), fps=args.fps)
    runs = []
    for i, count in enumerate(args.cameras):
        restart = args.restart_broker and i == len(args.cameras) - 1
        row = run_phase(args, args.model, video, count, restart, work)
        runs.append(row)
        if not args.no_progress:
            print(json.dumps(row), flush=True)
    doc = {"settings": {"model": os.path.basename(args.model), "fps_per_camera": args.fps, "seconds": args.seconds,
                        "batch": args.batch_size, "backend": args.backend, "cpus": os.cpu_count()}, "runs": runs}
    if args.json:
        write_json(args.json, doc, f"--json {args.json}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
