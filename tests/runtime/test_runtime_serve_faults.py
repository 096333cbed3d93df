"""The live view under hostile or broken clients: foreign Host headers (DNS rebinding), idle half-sent requests,
odd paths; and its honesty: FPS during a stall, one overlay encode per frame. Every socket has a timeout."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import numpy as np
import pytest

import runtime.serve as serve
from runtime.result import Result
from runtime.serve import LiveServer, LiveState


def _result(i, score=0.7, threshold=0.5):
    return Result(score, threshold, None, np.full((8, 8), score, np.float32), np.zeros((8, 8, 3), np.uint8), "BGR",
                  1.0, i, time.time())


@pytest.fixture
def live():
    state = LiveState(0.5)
    state.add_result(_result(0))
    server = LiveServer(state, 0, request_timeout=1.0, max_connections=4).start()
    yield server
    server.close()


def _status(port, host_header, path="/state.json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_only_requests_addressed_to_this_server_are_answered(live):
    port = live.port
    assert _status(port, f"127.0.0.1:{port}") == 200
    assert _status(port, f"localhost:{port}") == 200
    assert _status(port, f"attacker.example:{port}") == 403  # a DNS-rebinding page's own name
    assert _status(port, f"attacker.example:{port}", "/frame.jpg") == 403
    assert _status(port, None) == 403


def test_host_rule_and_the_warning_for_every_interface():
    from runtime.serve_guard import exposure_warning, host_allowed

    assert host_allowed("[::1]:8080", "::1") and host_allowed("LOCALHOST", "127.0.0.1")
    assert not host_allowed("127.0.0.1.attacker.example", "127.0.0.1")
    assert host_allowed("192.168.1.20:8080", "0.0.0.0") and not host_allowed("cam.attacker.example", "0.0.0.0")
    assert host_allowed("line3.plant:8080", "0.0.0.0", allowed=("line3.plant",))
    with pytest.warns(RuntimeWarning, match="every machine on the network"):
        exposure_warning("0.0.0.0")


def test_idle_half_sent_requests_time_out_and_are_capped(live):
    socks = []
    try:
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", live.port), timeout=5)
            s.sendall(b"GET /state.json HTTP/1.1\r\nHost: 127.0")  # never finished
            socks.append(s)
        for s in socks:  # the server closes every one: over the cap at once, the others after the timeout
            assert s.recv(1024) == b""
        assert live._server.refused >= 1  # 10 connections, 4 slots
        assert _status(live.port, "127.0.0.1") == 200  # their slots were given back
    finally:
        for s in socks:
            s.close()


def test_a_non_ascii_thumbnail_path_is_a_404_without_a_traceback(live, capfd):
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
        s.sendall(b"GET /thumb/\xb2.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 404")
    assert "Traceback" not in capfd.readouterr().err


def test_fps_falls_during_a_stall():
    now = [100.0]
    state = LiveState(0.5, clock=lambda: now[0])
    for i in range(30):  # 15 frames a second
        state.add_result(_result(i))
        now[0] += 1 / 15
    assert state.snapshot()["fps"] == pytest.approx(15, rel=0.1)
    now[0] += 1.0
    assert state.snapshot()["fps"] < 10
    now[0] += 9.0  # ten seconds without a frame
    assert state.snapshot()["fps"] <= 0.1


def test_each_overlay_is_encoded_once_per_frame(monkeypatch):
    encodes = []
    real = serve._encode
    monkeypatch.setattr(serve, "_encode", lambda *a, **k: encodes.append(1) or real(*a, **k))
    state = LiveState(0.5)
    for i in range(10):
        state.add_result(_result(i))
        readers = [threading.Thread(target=state.frame_jpeg) for _ in range(3)]  # page, MJPEG, another tab
        for t in readers:
            t.start()
        for t in readers:
            t.join(10)
        state.add_event({"event": "stall", "message": "no frame"})  # not a new frame: no new drawing
        assert state.frame_jpeg()
    assert len(encodes) == 10
