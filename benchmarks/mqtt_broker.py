"""A real MQTT broker on 127.0.0.1 for the reject-latency benchmark and the sink tests: Debian's mosquitto on a
free port with a temporary config (persistence on, so a subscriber's QoS 1 session survives a broker restart),
and a subscriber (paho) that keeps every message with its receipt time."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional

from benchmarks.mjpeg_camera import free_port


def mosquitto_exe() -> str:
    """Path of mosquitto, or None (Debian: apt-get install mosquitto; it lives in /usr/sbin)."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


class Broker:
    def __init__(self, folder: str, exe: Optional[str] = None):
        self.exe = exe or mosquitto_exe()
        if self.exe is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.folder = folder
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w", encoding="utf-8") as f:
            # `user`: as root, mosquitto would switch to the `mosquitto` user, who cannot write the temp folder
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {folder}/\nlog_dest none\nuser {getpass.getuser()}\n")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([self.exe, "-c", self.config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """A paho client with a persistent session (clean_session=False, QoS 1) on `topic`; `messages` holds the
    decoded JSON payloads in arrival order with their receipt time."""

    def __init__(self, port: int, topic: str, client_id: str = "test-subscriber"):
        import paho.mqtt.client as mqtt

        self.messages: List[Dict[str, Any]] = []
        self.retained: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(1, 2)
        c.on_connect = lambda cl, u, f, rc, p=None: (cl.subscribe(topic, qos=1), self._subscribed.set())
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(5.0):
            raise RuntimeError("the test subscriber could not connect")
        time.sleep(0.2)  # let the SUBACK come back

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except ValueError:
            payload = msg.payload.decode("utf-8", "replace")
        with self._lock:
            if msg.retain:
                self.retained[msg.topic] = payload
            else:
                self.messages.append({"topic": msg.topic, "payload": payload, "received": now})

    def results(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["topic"].endswith("/result")]

    def wait_for(self, count: int, timeout: float = 15.0) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.results()) < count:
            time.sleep(0.05)
        return self.results()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


__all__ = ["Broker", "Subscriber", "mosquitto_exe"]
