"""Sinks without a broker: the HTTP webhook against a real http.server that fails then recovers, a callback sink
that blocks, and sink URLs."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from runtime.sinks import CallbackSink, SinkError, parse_sink
from runtime.sinks.webhook import WebhookSink


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 500 to the first `fail` POSTs, then 200; keeps what it accepted."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.accepted = []
        self.refused = 0
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if recv.refused < recv.fail:
                    recv.refused += 1
                    self.send_response(500)
                else:
                    recv.accepted.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/verdict"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _msg(i, camera="cam1"):
    return {"camera": camera, "seq": i, "frame": i, "verdict": "good", "time_read": time.time()}


def test_webhook_answering_500_then_recovering_delivers_every_message_late_and_in_order():
    recv = Receiver(fail=3)
    sink = WebhookSink(recv.url, retry_max_s=0.2).start()
    try:
        for i in range(20):
            sink.put(_msg(i))
    finally:
        sink.close()
        recv.close()
    st = sink.stats()
    assert [m["seq"] for m in recv.accepted] == list(range(20))
    assert recv.refused == 3
    assert st["delivered"] == 20 and st["failed"] == 0 and st["dropped"] == 0 and st["pending"] == 0
    assert st["retries"] == 3 and st["late"] == 1  # the first message waited through the three 500s


def test_webhook_to_nobody_counts_every_message_and_never_blocks_put():
    recv = Receiver()
    url = recv.url
    recv.close()  # nothing listens there any more
    sink = WebhookSink(url, queue_size=5, retry_max_s=0.1, drain_s=0.3).start()
    t0 = time.perf_counter()
    for i in range(50):
        sink.put(_msg(i))
    put_s = time.perf_counter() - t0
    sink.close()
    st = sink.stats()
    assert put_s < 1.0  # 50 puts against a dead receiver: no waiting on the network (not a timing claim)
    assert st["offered"] == 50 and st["delivered"] == 0
    assert st["dropped"] + st["failed"] == 50 and st["dropped"] >= 44 and st["pending"] == 0


def test_a_blocking_callback_never_blocks_put_and_what_it_could_not_take_is_counted():
    release = threading.Event()
    seen = []

    def slow(msg):
        release.wait(5.0)
        seen.append(msg["seq"])

    sink = CallbackSink(slow, queue_size=10, drain_s=5.0).start()
    for i in range(100):
        sink.put(_msg(i))
    mid = sink.stats()
    release.set()
    sink.close()
    st = sink.stats()
    assert mid["offered"] == 100 and mid["delivered"] == 0 and mid["dropped"] >= 89
    assert st["delivered"] == len(seen) and st["delivered"] + st["dropped"] + st["failed"] == 100
    assert seen == sorted(seen) and seen[-1] == 99  # the newest verdicts are kept, in order


def test_a_callback_that_raises_is_counted_failed_and_the_next_message_still_goes():
    got = []

    def flaky(msg):
        if msg["seq"] == 1:
            raise ValueError("output card busy")
        got.append(msg["seq"])

    with CallbackSink(flaky) as sink:
        for i in range(3):
            sink.put(_msg(i))
    st = sink.stats()
    assert got == [0, 2] and st["failed"] == 1 and "output card busy" in st["last_error"]


@pytest.mark.parametrize("url, words", [
    ("ftp://127.0.0.1/x", "is not a sink URL"),
    ("mqtt://127.0.0.1:1883/line?qos=x", "whole number"),
    ("mqtt://127.0.0.1:1883/line?colour=red", "unknown option 'colour'"),
    ("mqtt://127.0.0.1:99999/line", "port"),
    ("mqtt://127.0.0.1/line/#", "wildcards"),
    ("mqtt://127.0.0.1/line?qos=3", "qos must be 0, 1 or 2"),
])
def test_a_bad_sink_url_says_what_to_write(url, words):
    with pytest.raises(SinkError, match=words.replace("(", r"\(").replace("*", r"\*")):
        parse_sink(url)


def test_sink_urls_become_the_right_sinks():
    s = parse_sink("mqtt://user:pw@127.0.0.1:1884/line1?queue=50")
    assert (s.kind, s.host, s.port, s.prefix, s.queue_size, s.qos) == ("mqtt", "127.0.0.1", 1884, "line1", 50, 1)
    assert parse_sink("opcua://127.0.0.1:4841").endpoint == "opc.tcp://127.0.0.1:4841/edge-inspect"
    c = parse_sink("opcua-client://127.0.0.1:4842/plc?ns=3&prefix=L1.")
    assert (c.url, c.nsidx, c.prefix) == ("opc.tcp://127.0.0.1:4842/plc", 3, "L1.")
    assert parse_sink("http://127.0.0.1:8080/hook").kind == "webhook"
