"""Result sinks: where verdicts leave the process (MQTT, OPC UA, an HTTP webhook, a Python callback).

Each sink runs in its own thread behind a bounded queue (`runtime.sinks.base`): a slow or dead receiver never
slows the inspection; what cannot be delivered is counted. Protocol libraries (paho-mqtt, asyncua) are imported
only by the sink that needs them (`pip install 'edge-inspect[plant]'`).
"""
from __future__ import annotations

from runtime.sinks.base import Retry, Sink, SinkError
from runtime.sinks.callback import CallbackSink
from runtime.sinks.message import verdict_message
from runtime.sinks.spec import make_sinks, parse_sink, start_sinks

__all__ = ["CallbackSink", "Retry", "Sink", "SinkError", "make_sinks", "parse_sink", "start_sinks",
           "verdict_message"]
