"""The MQTT sink against a real broker (mosquitto on 127.0.0.1, started here) and a real subscriber that checks
every message; the broker is stopped and restarted mid-run: QoS 1 delivers everything after the reconnect."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install paho-mqtt)")

from runtime.sinks import parse_sink  # noqa: E402
from tests.helpers.broker import Broker, Subscriber  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    b = Broker(str(tmp_path)).start()
    yield b
    b.stop()


def _msg(i, camera="cam1", verdict="good"):
    return {"camera": camera, "seq": i, "frame": i, "verdict": verdict, "score": float(i), "time_read": time.time()}


def test_every_verdict_reaches_the_subscriber_on_its_camera_topic_with_a_retained_status(broker):
    sub = Subscriber(broker.port, "line1/#")
    sink = parse_sink(f"mqtt://127.0.0.1:{broker.port}/line1").start()
    try:
        for i in range(30):
            sink.put(_msg(i, camera="press1" if i % 2 else "press2", verdict="anomalous" if i == 7 else "good"))
        got = sub.wait_for(30)
    finally:
        sink.close()
        sub.close()
    by_topic = {}
    for m in got:
        by_topic.setdefault(m["topic"], []).append(m["payload"]["seq"])
    assert by_topic == {"line1/press1/result": list(range(1, 30, 2)), "line1/press2/result": list(range(0, 30, 2))}
    assert next(m["payload"] for m in got if m["payload"]["seq"] == 7)["verdict"] == "anomalous"
    late = Subscriber(broker.port, "line1/#", client_id="status-reader")  # a PLC that connects afterwards
    deadline = time.monotonic() + 5
    while len(late.retained) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    late.close()
    assert late.retained["line1/press2/status"]["camera"] == "press2"
    assert late.retained["line1/status"] == "offline"  # the sink closed: the line says so
    st = sink.stats()
    assert st["delivered"] == 30 and st["failed"] == st["dropped"] == st["pending"] == 0


def test_a_broker_restart_mid_run_loses_no_qos1_message(broker):
    sub = Subscriber(broker.port, "line1/+/result", client_id="restart-subscriber")
    sink = parse_sink(f"mqtt://127.0.0.1:{broker.port}/line1").start()
    try:
        for i in range(40):
            sink.put(_msg(i))
        assert len(sub.wait_for(40)) == 40
        broker.stop()
        t0 = time.perf_counter()
        for i in range(40, 100):  # published while the broker is away: paho keeps them until the PUBACK
            sink.put(_msg(i))
            time.sleep(0.005)
        put_s = time.perf_counter() - t0
        down = sink.stats()
        broker.start()
        got = sub.wait_for(100, timeout=30.0)
    finally:
        sink.close()
        sub.close()
    seqs = sorted({m["payload"]["seq"] for m in got})
    assert seqs == list(range(100))  # at least once: every seq arrived (duplicates allowed by QoS 1)
    assert down["delivered"] < 100 and down["pending"] > 0 and down["connected"] is False
    st = sink.stats()
    assert st["delivered"] == 100 and st["late"] >= 60 - 1 and st["failed"] == st["dropped"] == 0
    assert st["disconnects"] >= 1
    assert put_s < 5.0  # put never waited for the broker (60 puts, 5 ms apart)


def test_a_broker_that_is_not_there_at_start_gets_the_messages_when_it_comes(tmp_path):
    b = Broker(str(tmp_path))  # port chosen, not started
    sink = parse_sink(f"mqtt://127.0.0.1:{b.port}/line1").start()  # does not fail: the broker may come later
    try:
        for i in range(10):
            sink.put(_msg(i))
        assert sink.stats()["delivered"] == 0
        b.start()
        sub = Subscriber(b.port, "line1/#", client_id="late-subscriber")
        deadline = time.monotonic() + 20
        while sink.stats()["delivered"] < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
    finally:
        sink.close()
        b.stop()
    st = sink.stats()
    assert st["delivered"] == 10 and st["late"] == 10 and st["failed"] == 0
