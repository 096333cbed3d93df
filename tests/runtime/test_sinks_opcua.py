"""The OPC UA sinks with asyncua's own client: it reads the per-camera variables and receives an event per
anomalous verdict from our server; the client sink writes into another server's nodes."""
from __future__ import annotations

import asyncio
import time

import pytest

asyncua = pytest.importorskip("asyncua", reason="asyncua is not installed (pip install asyncua)")

from runtime.sinks import parse_sink  # noqa: E402
from runtime.sinks.opcua import NAMESPACE  # noqa: E402
from tests.helpers.camera import free_port  # noqa: E402


def _msg(i, camera, verdict):
    return {"camera": camera, "seq": i, "frame": 100 + i, "verdict": verdict, "is_anomalous": verdict == "anomalous",
            "score": 0.5 + i, "threshold": 2.0, "model_version": "abc123", "time_read": time.time()}


class EventHandler:
    def __init__(self):
        self.events = []

    def event_notification(self, event):
        self.events.append(event)


async def _client_session(endpoint, sink):
    from asyncua import Client, ua

    async with Client(endpoint, timeout=5) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        etype = await client.nodes.root.get_child(["0:Types", "0:EventTypes", "0:BaseEventType",
                                                   f"{ns}:AnomalyEventType"])
        handler = EventHandler()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_events(client.nodes.server, etype)
        await asyncio.sleep(0.3)
        for i, verdict in enumerate(["good", "anomalous", "good", "anomalous"]):
            sink.put(_msg(i, "press1", verdict))
        sink.put(_msg(0, "press2", "good"))
        deadline = time.monotonic() + 10
        while (len(handler.events) < 2 or sink.stats()["delivered"] < 5) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

        async def read(name):
            return await client.get_node(ua.NodeId(name, ns)).read_value()

        values = {k: await read(f"press1.{k}") for k in ("Score", "Verdict", "IsAnomalous", "FrameIndex",
                                                          "CountGood", "CountAnomalous", "ModelVersion", "Threshold")}
        values["press2.CountGood"] = await read("press2.CountGood")
        return values, handler.events


def test_an_opcua_client_reads_each_cameras_variables_and_gets_an_event_per_anomaly():
    port = free_port()
    sink = parse_sink(f"opcua://127.0.0.1:{port}").start()
    try:
        values, events = asyncio.run(_client_session(sink.endpoint, sink))
    finally:
        sink.close()
    assert values == {"Score": 3.5, "Verdict": "anomalous", "IsAnomalous": True, "FrameIndex": 103, "CountGood": 2,
                      "CountAnomalous": 2, "ModelVersion": "abc123", "Threshold": 2.0, "press2.CountGood": 1}
    assert [(e.Camera, e.FrameIndex) for e in events] == [("press1", 101), ("press1", 103)]
    assert sink.stats()["delivered"] == 5 and sink.stats()["failed"] == 0


async def _plc_server(port, ready, stop, seen):
    """A stand-in for a PLC's OPC UA server with the nodes the client sink writes (prefix L1., ns of its own)."""
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/plc")
    ns = await server.register_namespace("urn:plc")
    obj = await server.nodes.objects.add_object(ns, "Line1")
    types = {"Score": 0.0, "Verdict": "", "IsAnomalous": False, "FrameIndex": ua.Variant(0, ua.VariantType.Int64),
             "FrameReadTime": 0.0, "Threshold": 0.0, "ModelVersion": "",
             "CountGood": ua.Variant(0, ua.VariantType.UInt64), "CountAnomalous": ua.Variant(0, ua.VariantType.UInt64),
             "CountUnknown": ua.Variant(0, ua.VariantType.UInt64)}
    nodes = {}
    for name, value in types.items():
        node = await obj.add_variable(ua.NodeId(f"L1.cam1.{name}", ns), name, value)
        await node.set_writable()
        nodes[name] = node
    async with server:
        ready.append(ns)
        while not stop:
            await asyncio.sleep(0.05)
        for name in ("Score", "Verdict", "CountGood", "CountAnomalous"):
            seen[name] = await nodes[name].read_value()


def test_the_opcua_client_sink_writes_into_an_existing_servers_nodes():
    import threading

    port, ready, stop, seen = free_port(), [], [], {}
    t = threading.Thread(target=lambda: asyncio.run(_plc_server(port, ready, stop, seen)), daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not ready and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready, "the test's OPC UA server did not start"
    sink = parse_sink(f"opcua-client://127.0.0.1:{port}/plc?ns={ready[0]}&prefix=L1.").start()
    try:
        for i, verdict in enumerate(["good", "anomalous", "good"]):
            sink.put(_msg(i, "cam1", verdict))
        sink.put(_msg(0, "cam9", "good"))  # no such nodes on the PLC: counted failed, with the node to create
    finally:
        sink.close()
        stop.append(True)
        t.join(10)
    assert seen == {"Score": 2.5, "Verdict": "good", "CountGood": 2, "CountAnomalous": 1}
    st = sink.stats()
    assert st["delivered"] == 3 and st["failed"] == 1 and "s=L1.<camera>.<Variable>" in st["last_error"]
