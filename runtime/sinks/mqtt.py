"""MQTT sink (paho-mqtt): one QoS 1 message per verdict on `PREFIX/CAMERA/result`, a retained status per camera
on `PREFIX/CAMERA/status` (with the first verdict, then at most once a second), and a retained `PREFIX/status`
("online", "offline" as the broker's last will when the process dies).

QoS 1 is delivered at least once: paho keeps every message until the broker's PUBACK, across a lost connection
(it reconnects by itself, 0.5 s doubling to 4 s), and sends it again after the reconnect; the sink counts a message
delivered at its PUBACK. At most `max_inflight` messages wait for their PUBACK: beyond that the worker waits and
new verdicts wait in the sink's queue (the oldest dropped and counted once it is full), so a dead broker never
holds more than queue_size + max_inflight messages.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, Optional, Set

from runtime.errors import BackendUnavailable
from runtime.sinks.base import Item, Sink, SinkError

STATUS_EVERY_S = 1.0


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt  # noqa: PLC0415
    except ImportError:
        raise BackendUnavailable("mqtt sink", "paho-mqtt", hint="or pip install 'edge-inspect[plant]'") from None
    return mqtt


class MqttSink(Sink):
    kind = "mqtt"

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "inspect", qos: int = 1,
                 client_id: str = "", username: Optional[str] = None, password: Optional[str] = None,
                 keepalive: int = 10, max_inflight: int = 1000, **options: Any):
        super().__init__(**options)
        if qos not in (0, 1, 2):
            raise SinkError(f"mqtt qos must be 0, 1 or 2, got {qos!r}")
        if not prefix or "#" in prefix or "+" in prefix:
            raise SinkError(f"mqtt topic prefix must be a topic without wildcards, got {prefix!r}")
        self.host, self.port, self.prefix, self.qos = host, int(port), prefix.strip("/"), int(qos)
        self.client_id, self.keepalive, self.max_inflight = client_id, int(keepalive), int(max_inflight)
        self._auth = (username, password)
        self._mqtt: Any = None
        self._client: Any = None
        self._pending: Dict[int, Optional[Item]] = {}  # mid -> message awaiting PUBACK (None: a status)
        self._early: Set[int] = set()  # PUBACKs that came before `publish` returned the mid
        self._room = self._cond  # the same lock and condition: a PUBACK wakes a worker waiting for room
        self._connected = threading.Event()
        self.disconnects = 0
        self._counts: Dict[str, Dict[str, int]] = {}
        self._status_at: Dict[str, float] = {}

    # -- paho's thread ----------------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self.last_error = f"broker refused the connection: {reason}"
            return
        self._connected.set()
        client.publish(f"{self.prefix}/status", "online", qos=0, retain=True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if self._connected.is_set() and not self._closing.is_set():
            self.disconnects += 1
            self._away(ConnectionError(f"lost the broker {self.host}:{self.port} ({reason})"))
        self._connected.clear()
        with self._cond:  # what waits for a PUBACK now arrives after the reconnect: late
            for item in self._pending.values():
                if item is not None:
                    item.late = True

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None, properties: Any = None) -> None:
        # paho calls this holding its message lock: never call into paho while holding self._cond
        with self._cond:
            if mid not in self._pending:
                self._early.add(mid)
                return
            item = self._pending.pop(mid)
            self._acked()
        if item is not None:
            self._back()
            self._confirmed(item)

    def _acked(self) -> None:
        self.inflight = sum(1 for i in self._pending.values() if i is not None)
        self._room.notify_all()

    def _track(self, mid: int, item: Optional[Item]) -> bool:
        """Register a published mid; True when its PUBACK already came (then `item` is delivered)."""
        with self._cond:
            if mid in self._early:
                self._early.discard(mid)
                return True
            self._pending[mid] = item
            self._acked()
            return False

    # -- the sink -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        mqtt = self._mqtt = _paho()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if self._auth[0]:
            c.username_pw_set(*self._auth)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)  # bounded by max_inflight below
        c.reconnect_delay_set(1, 4)
        c.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        try:
            c.connect_async(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as e:
            raise SinkError(f"mqtt sink: cannot use broker {self.host}:{self.port} ({e}); check the URL") from None
        c.loop_start()
        self._client = c
        self._connected.wait(2.0)  # not an error when absent: messages wait and go after the connection

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> Any:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"paho refused the message: {self._mqtt.error_string(info.rc)}")
        return info

    def _deliver(self, item: Item) -> bool:
        msg = item.message
        camera = str(msg.get("camera", "camera"))
        with self._cond:
            while self.inflight >= self.max_inflight and not self._closing.is_set():
                self._room.wait(0.1)
        if not self._connected.is_set():
            item.late = True
        info = self._publish(f"{self.prefix}/{camera}/result", json.dumps(msg), self.qos)
        done = self.qos == 0 or self._track(info.mid, item)
        self._status(camera, msg)
        return done

    def _status(self, camera: str, msg: Dict[str, Any], force: bool = False) -> None:
        counts = self._counts.setdefault(camera, {"good": 0, "anomalous": 0, "unknown": 0})
        counts[str(msg.get("verdict", "unknown"))] = counts.get(str(msg.get("verdict", "unknown")), 0) + 1
        now = time.monotonic()
        if force or now - self._status_at.get(camera, 0.0) >= STATUS_EVERY_S:
            self._status_at[camera] = now
            status = {"camera": camera, "state": "running", "counts": counts, "last": msg, "time": time.time()}
            info = self._publish(f"{self.prefix}/{camera}/status", json.dumps(status), 1, retain=True)
            self._track(info.mid, None)

    def _close(self) -> None:
        c = self._client
        if c is None:
            return
        deadline = time.monotonic() + self.drain_s
        with self._cond:  # wait (bounded) for the PUBACKs of what was sent
            while self.inflight and time.monotonic() < deadline:
                self._room.wait(0.1)
            left = self.inflight
            self._pending.clear()
            self.inflight = 0
            self.failed += left
        if left:
            self._away(ConnectionError(f"{left} message(s) without PUBACK at close"))
        if self._connected.is_set():
            c.publish(f"{self.prefix}/status", "offline", qos=1, retain=True).wait_for_publish(1.0)
        c.disconnect()
        c.loop_stop()

    def stats(self) -> Dict[str, Any]:
        out = super().stats()
        out.update(broker=f"{self.host}:{self.port}", connected=self._connected.is_set(),
                   disconnects=self.disconnects)
        return out


__all__ = ["MqttSink"]
