"""The Triton client against misbehaving stand-in servers on 127.0.0.1: connections closed after each reply, one
HTTP 500, a map of the wrong size, a list reply, a reply trickling in, a server that accepts and says nothing,
a NaN score. The stand-in is the one of test_runtime_triton.py with one fault each."""
from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

import numpy as np
import pytest

from tests.helpers.tiny_models import frames, make_model
from tests.runtime.test_runtime_triton import _binary_reply, _StandIn

from runtime import Inspector
from runtime.backends.triton import HEADER_LENGTH, TritonError
from runtime.errors import BackendUnavailable, FrameError


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    import onnxruntime as ort

    from export.triton import write_repository

    tmp = tmp_path_factory.mktemp("triton")
    model_dir = write_repository(make_model(str(tmp), threshold=0.5, normalization=(0.2, 0.1)), tmp / "repo",
                                 max_batch=8)
    _StandIn.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return model_dir


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def _inspector(repo, url, **options):
    return Inspector(repo / "1" / "model.onnx", backend="triton", frame_order="RGB",
                     backend_options=dict(url=url, **options))


class _ClosesAfterEachReply(_StandIn):
    """Keep-alive HTTP/1.1 replies, then the connection is closed without saying so."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        super().do_POST()
        self.close_connection = True


class _OneServerError(_StandIn):
    posts = 0

    def do_POST(self):
        type(self).posts += 1
        if type(self).posts == 2:  # the first frame after warm-up
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(500, b"internal error")
            return
        super().do_POST()


class _Rewrites(_StandIn):
    """Runs the model, then hands the reply to `rewrite(results) -> (status, body, headers)`."""

    rewrite = None

    def _send(self, status, body, headers=()):
        if status == 200 and self.command == "POST" and type(self).rewrite is not None:
            status, body, headers = type(self).rewrite(body, dict(headers))
        super()._send(status, body, headers)


def test_a_server_that_closes_the_connection_after_each_reply_is_reconnected_to(repo):
    server, url = _serve(_ClosesAfterEachReply)
    try:
        with _inspector(repo, url) as insp:
            scores = [insp.inspect(f).score for f in frames(4)]
    finally:
        server.shutdown()
    assert len(scores) == 4 and all(np.isfinite(scores))


class _Overloaded(_StandIn):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(503, json.dumps({"error": "too many requests queued"}).encode())


def test_one_http_500_is_retried_and_a_lasting_error_is_reported_with_its_status(repo):
    _OneServerError.posts = 0
    server, url = _serve(_OneServerError)
    try:
        with _inspector(repo, url) as insp:
            assert len(insp.inspect_batch(frames(3))) == 3
        assert _OneServerError.posts == 3  # warm-up, the 500, its retry
    finally:
        server.shutdown()
    server, url = _serve(_Overloaded)
    try:
        with pytest.raises(TritonError, match="HTTP 503 for model 'tiny': too many requests queued"):
            _inspector(repo, url, retries=1)
    finally:
        server.shutdown()


def _binary(results, headers):
    reply, j = _binary_reply(results)
    return 200, reply, [(HEADER_LENGTH, str(j)), ("Content-Type", "application/octet-stream")]


def test_a_map_of_the_wrong_size_is_refused(repo):
    def small_map(body, headers):
        return _binary({"anomaly_map": np.zeros((1, 1, 8, 8), np.float32), "score": np.zeros((1, 1), np.float32)},
                       headers)

    _Rewrites.rewrite = staticmethod(small_map)
    server, url = _serve(_Rewrites)
    try:
        with pytest.raises(TritonError, match="map for model 'tiny' is 8x8, but the manifest says 32x48"):
            _inspector(repo, url)
    finally:
        server.shutdown()


def test_a_list_reply_is_a_protocol_error_not_a_broken_model(repo):
    _Rewrites.rewrite = staticmethod(lambda body, headers: (200, b"[1, 2, 3]", [("Content-Type", "application/json")]))
    server, url = _serve(_Rewrites)
    try:
        with pytest.raises(TritonError, match="protocol error") as e:
            _inspector(repo, url)
        assert "re-export" not in str(e.value)
    finally:
        server.shutdown()


def test_a_nan_score_from_the_server_is_never_a_pass(repo):
    def nan_score(body, headers):
        n = int(headers[HEADER_LENGTH])
        head = json.loads(body[:n])
        shapes = {o["name"]: o["shape"] for o in head["outputs"]}
        return _binary({"anomaly_map": np.full(shapes["anomaly_map"], np.nan, np.float32),
                        "score": np.full(shapes["score"], np.nan, np.float32)}, headers)

    _Rewrites.rewrite = staticmethod(nan_score)
    server, url = _serve(_Rewrites)
    try:
        with _inspector(repo, url) as insp, pytest.raises(FrameError, match="non-finite"):
            insp.inspect(frames(1)[0])
    finally:
        server.shutdown()


class _Trickles(_StandIn):
    """After `fast` replies, sends each reply 256 bytes every 0.25 s (every receive well within the timeout)."""

    fast = 1

    def _send(self, status, body, headers=()):
        if self.command != "POST" or type(self).fast > 0:
            type(self).fast -= self.command == "POST"
            return super()._send(status, body, headers)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), 256):
                self.wfile.write(body[i:i + 256])
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:  # the client gave up
            pass


def test_the_timeout_bounds_the_whole_request_not_each_receive(repo):
    _Trickles.fast = 1  # the warm-up's reply comes at once
    server, url = _serve(_Trickles)
    try:
        with _inspector(repo, url, timeout_s=1, retries=0) as insp:
            with pytest.raises(TritonError, match="no complete reply within timeout_s=1"):
                insp.inspect(frames(1)[0])  # 6 KiB at 1 KiB/s: about 6 s in all
    finally:
        server.shutdown()


class _SaysNothing(_StandIn):
    def do_GET(self):
        self.close_connection = True  # accepted, then closed without a reply


def test_no_server_answers_is_said_only_when_none_answers(repo):
    server, url = _serve(_SaysNothing)
    try:
        with pytest.raises(TritonError, match="closed or reset the connection") as e:
            _inspector(repo, url, retries=0)
        assert "no Triton server answers" not in str(e.value)
    finally:
        server.shutdown()
    with pytest.raises(BackendUnavailable, match="no Triton server answers"):
        _inspector(repo, "127.0.0.1:9")
