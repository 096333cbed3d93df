"""The soak's sink phase (`benchmarks.soak`, phase "sinks"): the soak's live camera through a `runtime.multicam.Line`
whose verdicts go to an MQTT broker that is restarted mid-phase (when mosquitto and paho-mqtt are here), a
webhook that answers 500 to its first posts, and a callback that blocks for a while. Inspection must keep going,
and every verdict must either arrive or be counted by its sink (dropped / failed): a message neither received
nor counted is "lost without a reason", as a frame is."""
from __future__ import annotations

import tempfile
import threading
import time
from typing import Any, Dict, List

from benchmarks.soak_phases import Phase, Soak

WEBHOOK_FAILS = 20
CALLBACK_BLOCK_S = 2.0


def _receivers(arrived: Dict[str, set]) -> Any:
    import http.server  # noqa: PLC0415
    import json  # noqa: PLC0415

    state = {"refused": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            msg = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state["refused"] < WEBHOOK_FAILS:
                state["refused"] += 1
                self.send_response(500)
            else:
                arrived["webhook"].add((msg["camera"], msg["seq"]))
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, state


def run_sinks(soak: Soak, phase: Phase, camera: Any, count: int) -> Dict[str, Any]:
    from benchmarks.mqtt_broker import Broker, Subscriber, mosquitto_exe  # noqa: PLC0415
    from runtime.line import line_from_sources  # noqa: PLC0415
    from runtime.multicam import Line  # noqa: PLC0415

    arrived: Dict[str, set] = {"webhook": set(), "callback": set(), "mqtt": set()}
    blocked: List[bool] = []

    def callback(msg: Dict[str, Any]) -> None:
        if not blocked and msg["seq"] >= 10:  # a slow output card, once
            blocked.append(True)
            time.sleep(CALLBACK_BLOCK_S)
        arrived["callback"].add((msg["camera"], msg["seq"]))

    server, hook_state = _receivers(arrived)
    broker = sub = None
    sinks = [f"http://127.0.0.1:{server.server_address[1]}/verdict"]
    detail: Dict[str, Any] = {"mqtt": "skipped: needs mosquitto and paho-mqtt"}
    try:
        import paho.mqtt.client  # noqa: F401,PLC0415
        have_mqtt = mosquitto_exe() is not None
    except ImportError:
        have_mqtt = False
    restart: Dict[str, Any] = {}
    try:
        if have_mqtt:
            broker = Broker(tempfile.mkdtemp(prefix="soak-mqtt-")).start()
            sub = Subscriber(broker.port, "soak/+/result", client_id="soak-subscriber")
            sinks.append(f"mqtt://127.0.0.1:{broker.port}/soak")
        line = Line(line_from_sources([camera.url], soak.insp.artifact_path, sinks=sinks, batch=1),
                    sinks=[callback], backend=soak.insp.backend, on_event=phase.on_event)
        t0 = time.perf_counter()
        with line:
            for _name, r in line:
                phase.d["results"] += 1
                phase.latencies.append(r.latency_ms)
                soak.total_results += 1
                soak.progress.update(1)
                if broker is not None and not restart and phase.d["results"] >= count // 3:
                    broker.stop()
                    restart["stopped_at_result"] = phase.d["results"]
                if broker is not None and "stopped_at_result" in restart and "restarted_at_result" not in restart \
                        and phase.d["results"] >= count // 2:
                    broker.start()
                    restart["restarted_at_result"] = phase.d["results"]
                if phase.d["results"] >= count:
                    break
            line.stop()
        phase.d["seconds"] = round(time.perf_counter() - t0, 3)
        summary = line.summary()
        if sub is not None:
            deadline = time.monotonic() + 15
            mqtt = next(s for s in summary["sinks"] if s["kind"] == "mqtt")
            while time.monotonic() < deadline:
                arrived["mqtt"] = {(m["payload"]["camera"], m["payload"]["seq"]) for m in sub.results()}
                if len(arrived["mqtt"]) >= mqtt["delivered"]:
                    break
                time.sleep(0.1)
    finally:
        if sub is not None:
            sub.close()
        if broker is not None:
            broker.stop()
        server.shutdown()
        server.server_close()
    cam = summary["cameras"][0]
    phase.d.update(frames_in=cam["read"], dropped=cam["dropped"], skipped=cam["bad_frames"],
                   discarded_at_stop=cam["discarded_at_stop"], reconnects=cam["reconnects"])
    lost = cam["unaccounted"]
    if lost:
        phase.d["lost_where"].append(f"{lost} frames read from the camera, never reported")
    detail = {}
    for s in summary["sinks"]:
        got = len(arrived.get(s["kind"], ()))
        unreported = s["offered"] - got - s["dropped"] - s["failed"]
        detail[s["kind"]] = dict(s, received=got, lost_unreported=unreported)
        if unreported:
            phase.d["lost_where"].append(f"sink {s['kind']}: {unreported} verdicts neither received nor counted")
        lost += max(0, unreported)
    if "mqtt" not in detail:
        detail["mqtt"] = "skipped: needs mosquitto and paho-mqtt"
    else:
        detail["mqtt"]["broker_restart"] = restart
    detail["webhook"]["answered_500"] = hook_state["refused"]
    phase.d["lost_unreported"] = lost
    phase.d["sinks"] = detail
    return detail


__all__ = ["run_sinks"]
