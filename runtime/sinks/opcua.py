"""OPC UA sinks (asyncua), for PLCs and MES that read OPC UA.

`OpcUaServerSink` (``opcua://HOST:PORT``): a small OPC UA server of its own, in namespace `NAMESPACE`, one object
per camera under Objects with string node ids a PLC can be configured with once:

    ns=<idx>;s=<camera>.Score          Double   last image score
    ns=<idx>;s=<camera>.Verdict        String   good | anomalous | unknown
    ns=<idx>;s=<camera>.IsAnomalous    Boolean
    ns=<idx>;s=<camera>.FrameIndex     Int64
    ns=<idx>;s=<camera>.FrameReadTime  Double   seconds since the epoch at which the frame was read
    ns=<idx>;s=<camera>.CountGood / .CountAnomalous / .CountUnknown   UInt64
    ns=<idx>;s=<camera>.Threshold      Double
    ns=<idx>;s=<camera>.ModelVersion   String   the model's sha256 (first 12 hex digits)

Each value carries the frame's read time as its SourceTimestamp. Each anomalous verdict also fires an
`AnomalyEventType` event (a BaseEventType with Camera, Score, FrameIndex, FrameReadTime) from the Server object.
A value written into the address space counts as delivered; a client subscribed to it gets it at its own
publishing interval.

`OpcUaClientSink` (``opcua-client://HOST:PORT/PATH?ns=2&prefix=Line1.``): writes the same variables into an
existing server's nodes ``ns=<ns>;s=<prefix><camera>.Score`` ... (create them there with those types); a lost
server is reconnected and the verdict written late (only the latest value of a node matters to a PLC).

asyncua runs in the sink's own event-loop thread; the inspection loop never waits for it.
"""
from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any, Dict, Optional

from runtime.errors import BackendUnavailable
from runtime.sinks.base import Item, Retry, Sink, SinkError

NAMESPACE = "urn:edge-inspect:line"
CALL_TIMEOUT_S = 5.0
#: (variable, variant type name, message key or None for the counters)
VARIABLES = (("Score", "Double", "score"), ("Verdict", "String", "verdict"), ("IsAnomalous", "Boolean", "is_anomalous"),
             ("FrameIndex", "Int64", "frame"), ("FrameReadTime", "Double", "time_read"),
             ("Threshold", "Double", "threshold"), ("ModelVersion", "String", "model_version"),
             ("CountGood", "UInt64", None), ("CountAnomalous", "UInt64", None), ("CountUnknown", "UInt64", None))
EVENT_FIELDS = (("Camera", "String"), ("Score", "Double"), ("FrameIndex", "Int64"), ("FrameReadTime", "Double"))
#: status codes that mean the connection or session is gone, not that this write was refused
CONNECTION_STATUS = ("BadSession", "BadSecureChannel", "BadConnection", "BadServer", "BadCommunication", "BadTimeout",
                     "BadShutdown", "BadTcp", "BadNotConnected", "BadDisconnect")
COUNTER = {"good": "CountGood", "anomalous": "CountAnomalous", "unknown": "CountUnknown"}


def _asyncua() -> Any:
    try:
        import asyncua  # noqa: PLC0415
    except ImportError:
        raise BackendUnavailable("opcua sink", "asyncua", hint="or pip install 'edge-inspect[plant]'") from None
    return asyncua


def _default(vtype: str) -> Any:
    return {"Double": 0.0, "String": "", "Boolean": False}.get(vtype, 0)


class _LoopThread:
    """An asyncio event loop running in its own daemon thread; `call(coro)` runs a coroutine there and waits."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:  # asyncua's session loops: ended here, not destroyed pending
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_all(), timeout=2.0)
        except Exception:  # noqa: BLE001 - a loop that cannot finish them in time is stopped anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2.0)
        if not self.thread.is_alive():
            self.loop.close()


class _Values:
    """Per-camera values and counters, turned into (variable, value, variant type) for one message."""

    def __init__(self) -> None:
        self.counts: Dict[str, Dict[str, int]] = {}

    def updates(self, msg: Dict[str, Any]) -> Any:
        camera = str(msg.get("camera", "camera"))
        counts = self.counts.setdefault(camera, {v: 0 for v in COUNTER.values()})
        counts[COUNTER.get(str(msg.get("verdict")), "CountUnknown")] += 1
        out = []
        for name, vtype, key in VARIABLES:
            value = counts[name] if key is None else msg.get(key)
            if value is None:
                value = float("nan") if vtype == "Double" else _default(vtype)
            out.append((name, value, vtype))
        return camera, out


def _stamp(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


class OpcUaServerSink(Sink):
    kind = "opcua"

    def __init__(self, host: str = "127.0.0.1", port: int = 4840, path: str = "edge-inspect", **options: Any):
        super().__init__(**options)
        self.host, self.port, self.path = host, int(port), path.strip("/")
        self.endpoint = f"opc.tcp://{host}:{self.port}/{self.path}"
        self._ua: Any = None
        self._loop: Optional[_LoopThread] = None
        self._server: Any = None
        self._nodes: Dict[str, Dict[str, Any]] = {}
        self._values = _Values()
        self._event: Any = None
        self.ns = 0

    def _open(self) -> None:
        self._ua = _asyncua()
        self._loop = _LoopThread(f"opcua-{self.port}")
        try:
            self._loop.call(self._start_server(), timeout=30.0)
        except OSError as e:
            self._loop.stop()
            raise SinkError(f"opcua sink: cannot serve {self.endpoint} ({e.strerror or e}): choose another port "
                            f"or host in the sink URL") from None

    async def _start_server(self) -> None:
        ua = self._ua.ua
        server = self._ua.Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edge-inspect line")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await server.register_namespace(NAMESPACE)
        props = [(name, getattr(ua.VariantType, vtype)) for name, vtype in EVENT_FIELDS]
        etype = await server.create_custom_event_type(self.ns, "AnomalyEventType", ua.ObjectIds.BaseEventType, props)
        self._event = await server.get_event_generator(etype, ua.ObjectIds.Server)
        await server.start()
        self._server = server

    async def _camera(self, camera: str) -> Dict[str, Any]:
        nodes = self._nodes.get(camera)
        if nodes is None:
            ua = self._ua.ua
            obj = await self._server.nodes.objects.add_object(ua.NodeId(camera, self.ns),
                                                              ua.QualifiedName(camera, self.ns))
            nodes = {}
            for name, vtype, _key in VARIABLES:
                vt = getattr(ua.VariantType, vtype)
                nodes[name] = await obj.add_variable(ua.NodeId(f"{camera}.{name}", self.ns),
                                                     ua.QualifiedName(name, self.ns), ua.Variant(_default(vtype), vt))
            self._nodes[camera] = nodes
        return nodes

    def declare(self, cameras: Any, model: Dict[str, Any]) -> None:
        if self._loop is not None and self._server is not None:
            for camera in cameras:
                asyncio.run_coroutine_threadsafe(self._camera(str(camera)), self._loop.loop)

    async def _write(self, msg: Dict[str, Any]) -> None:
        ua = self._ua.ua
        camera, updates = self._values.updates(msg)
        nodes = await self._camera(camera)
        stamp = _stamp(float(msg.get("time_read", 0.0)))
        for name, value, vtype in updates:
            dv = ua.DataValue(ua.Variant(value, getattr(ua.VariantType, vtype)), SourceTimestamp=stamp)
            await self._server.write_attribute_value(nodes[name].nodeid, dv)
        if msg.get("is_anomalous"):
            ev = self._event.event
            ev.Camera, ev.Score = camera, float(msg.get("score", 0.0))
            ev.FrameIndex, ev.FrameReadTime = int(msg.get("frame", 0)), float(msg.get("time_read", 0.0))
            ev.Severity = 800
            await self._event.trigger(message=f"{camera}: anomalous frame {msg.get('frame')} "
                                              f"(score {msg.get('score')})")

    def _deliver(self, item: Item) -> bool:
        assert self._loop is not None
        self._loop.call(self._write(item.message))
        return True

    def _close(self) -> None:
        if self._loop is None:
            return
        if self._server is not None:
            try:
                self._loop.call(self._server.stop())
            except Exception:  # noqa: BLE001 - a server already gone at exit
                pass
        self._loop.stop()

    def stats(self) -> Dict[str, Any]:
        return dict(super().stats(), endpoint=self.endpoint, namespace=NAMESPACE, ns=self.ns)


class OpcUaClientSink(Sink):
    kind = "opcua-client"

    def __init__(self, url: str, ns: int = 2, prefix: str = "", **options: Any):
        super().__init__(**options)
        self.url, self.nsidx, self.prefix = url, int(ns), prefix
        self._ua: Any = None
        self._loop: Optional[_LoopThread] = None
        self._client: Any = None
        self._values = _Values()
        self._types: Dict[str, Any] = {}

    def _open(self) -> None:
        self._ua = _asyncua()
        self._loop = _LoopThread("opcua-client")

    async def _connect(self) -> None:
        if self._client is None:
            client = self._ua.Client(self.url, timeout=CALL_TIMEOUT_S)
            await client.connect()
            self._client = client

    async def _write(self, msg: Dict[str, Any]) -> None:
        ua = self._ua.ua
        await self._connect()
        camera, updates = self._values.updates(msg)
        stamp = _stamp(float(msg.get("time_read", 0.0)))
        for name, value, vtype in updates:
            node = self._client.get_node(ua.NodeId(f"{self.prefix}{camera}.{name}", self.nsidx))
            await node.write_value(ua.DataValue(ua.Variant(value, getattr(ua.VariantType, vtype)),
                                                SourceTimestamp=stamp))

    def _deliver(self, item: Item) -> bool:
        assert self._loop is not None
        try:
            self._loop.call(self._write(item.message))
        except (OSError, asyncio.TimeoutError, ConnectionError) as e:
            self._drop()
            raise Retry(f"OPC UA server {self.url} unreachable ({type(e).__name__}: {e})") from None
        except Exception as e:  # noqa: BLE001 - asyncua's status codes (UaStatusCodeError subclasses) by name
            name = type(e).__name__
            if name.startswith(CONNECTION_STATUS) or not name.startswith("Bad"):
                self._drop()  # the session is gone (server restarted): reconnect and write again
                raise Retry(f"OPC UA server {self.url}: {name}: {e}") from None
            raise SinkError(f"{self.url} refused the write ({name}): create the node ns={self.nsidx};s="
                            f"{self.prefix}<camera>.<Variable>, writable, with the type docs/plant-floor.md lists"
                            ) from None
        return True

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is not None:
            try:
                self._loop.call(client.disconnect(), timeout=2.0)
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass

    def _close(self) -> None:
        self._drop()
        if self._loop is not None:
            self._loop.stop()

    def stats(self) -> Dict[str, Any]:
        return dict(super().stats(), url=self.url)


__all__ = ["NAMESPACE", "OpcUaClientSink", "OpcUaServerSink"]
