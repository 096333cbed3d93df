"""A real MQTT broker for the sink tests: Debian's mosquitto on a free 127.0.0.1 port with a temporary config
(persistence on, so a subscriber's QoS 1 session survives a broker restart), and a subscriber that keeps every
message it receives. The tests skip with a reason when mosquitto is not installed."""
from __future__ import annotations

import pytest

from benchmarks.mqtt_broker import Broker as _Broker
from benchmarks.mqtt_broker import Subscriber, mosquitto_exe


class Broker(_Broker):
    """mosquitto for a test; the test skips with a reason when it is not installed."""

    def __init__(self, folder: str):
        if mosquitto_exe() is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto): no MQTT broker to test against")
        super().__init__(folder)


__all__ = ["Broker", "Subscriber"]
