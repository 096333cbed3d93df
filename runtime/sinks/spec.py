"""Sinks from their URLs (the `--sink` flag and a line file's "sinks"):

    mqtt://[USER:PASSWORD@]HOST[:PORT]/PREFIX[?qos=1&queue=1000&name=N]    MQTT, topics PREFIX/CAMERA/result
    opcua://HOST:PORT[/PATH][?queue=1000]                                    an OPC UA server of our own
    opcua-client://HOST:PORT[/PATH]?ns=2&prefix=Line1.                       writes into an existing OPC UA server
    http://HOST[:PORT]/PATH   https://...                                    a webhook (POST JSON)

In the Python API a sink may also be a `Sink` object or any callable (a `CallbackSink`).
"""
from __future__ import annotations

import urllib.parse
from typing import Any, Dict, List, Sequence, Union

from runtime.errors import InspectError
from runtime.sinks.base import Sink, SinkError
from runtime.source_base import redact

SCHEMES = ("mqtt", "opcua", "opcua-client", "http", "https")
COMMON = {"queue": "queue_size", "name": "name", "drain": "drain_s"}


def _options(url: urllib.parse.SplitResult, allowed: Dict[str, str], text: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        if key in COMMON:
            target = COMMON[key]
        elif key in allowed:
            target = allowed[key]
        else:
            known = ", ".join(sorted(list(COMMON) + list(allowed)))
            raise SinkError(f"sink {redact(text)}: unknown option {key!r} (known: {known})")
        if target in ("queue_size", "qos", "ns"):
            if not value.isdigit():
                raise SinkError(f"sink {redact(text)}: {key} must be a whole number, got {value!r}")
            out[target] = int(value)
        elif target == "drain_s":
            try:
                out[target] = float(value)
            except ValueError:
                raise SinkError(f"sink {redact(text)}: {key} must be seconds, got {value!r}") from None
        else:
            out[target] = value
    return out


def _port(url: urllib.parse.SplitResult, default: int, text: str) -> int:
    try:
        return url.port or default
    except ValueError:
        raise SinkError(f"sink {redact(text)}: the port must be 1..65535") from None


def parse_sink(text: str) -> Sink:
    """A Sink (not started) from its URL; SinkError with what to write on a bad one."""
    url = urllib.parse.urlsplit(text.strip())
    scheme = url.scheme.lower()
    if scheme not in SCHEMES or not url.hostname:
        raise SinkError(f"sink {redact(text)!r} is not a sink URL: use mqtt://HOST:1883/PREFIX, opcua://HOST:4840, "
                        f"opcua-client://HOST:4840?ns=2&prefix=P or http://HOST/PATH")
    if url.fragment or "#" in text:
        raise SinkError(f"sink {redact(text)}: '#' has no place in a sink URL (MQTT wildcards are for subscribers, "
                        f"not a topic prefix)")
    host = url.hostname
    if scheme == "mqtt":
        from runtime.sinks.mqtt import MqttSink  # noqa: PLC0415

        opts = _options(url, {"qos": "qos", "client_id": "client_id"}, text)
        prefix = url.path.strip("/") or "inspect"
        return MqttSink(host, _port(url, 1883, text), prefix, username=url.username, password=url.password, **opts)
    if scheme == "opcua":
        from runtime.sinks.opcua import OpcUaServerSink  # noqa: PLC0415

        opts = _options(url, {}, text)
        return OpcUaServerSink(host, _port(url, 4840, text), url.path.strip("/") or "edge-inspect", **opts)
    if scheme == "opcua-client":
        from runtime.sinks.opcua import OpcUaClientSink  # noqa: PLC0415

        opts = _options(url, {"ns": "ns", "prefix": "prefix"}, text)
        target = f"opc.tcp://{url.netloc}{url.path}"
        return OpcUaClientSink(target, **opts)
    from runtime.sinks.webhook import WebhookSink  # noqa: PLC0415

    _port(url, 80, text)
    return WebhookSink(text.strip())


def make_sinks(specs: Sequence[Union[str, Sink, Any]]) -> List[Sink]:
    """Sinks from URLs, Sink objects or callables; names made unique ("mqtt", "mqtt-2", ...)."""
    from runtime.sinks.callback import CallbackSink  # noqa: PLC0415

    sinks: List[Sink] = []
    for spec in specs:
        if isinstance(spec, Sink):
            sinks.append(spec)
        elif isinstance(spec, str):
            sinks.append(parse_sink(spec))
        elif callable(spec):
            sinks.append(CallbackSink(spec))
        else:
            raise SinkError(f"a sink is a URL, a Sink or a callable, got {type(spec).__name__}")
    seen: Dict[str, int] = {}
    for s in sinks:
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name}-{seen[s.name]}"
    return sinks


def start_sinks(sinks: Sequence[Sink]) -> None:
    """Start every sink; on a failure close the ones started and re-raise."""
    started: List[Sink] = []
    try:
        for s in sinks:
            started.append(s.start())
    except (InspectError, Exception):
        for s in started:
            s.close()
        raise


__all__ = ["SCHEMES", "make_sinks", "parse_sink", "start_sinks"]
