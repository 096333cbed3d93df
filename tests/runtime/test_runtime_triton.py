"""runtime.backends.triton: the v2 request/response encoding, and the whole client path (Inspector with the
manifest's threshold) against a stand-in HTTP server that speaks Triton's v2 protocol and runs the model with
ONNX Runtime. No Triton server is needed (nor tritonclient): the stand-in parses requests on its own."""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.tiny_models import frames, make_model

from runtime import Inspector
from runtime.backends import select_backend
from runtime.backends.triton import (HEADER_LENGTH, TritonError, decode_response, encode_request,
                                     model_name_of)
from runtime.errors import BackendUnavailable, RuntimeInspectError


def test_request_is_a_json_header_then_the_raw_tensors():
    f = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    noise = np.linspace(-1, 1, 2 * 6, dtype=np.float32).reshape(2, 1, 2, 3)
    body, headers = encode_request({"frame": f, "noise": noise}, ["anomaly_map", "score"])
    n = int(headers[HEADER_LENGTH])
    head = json.loads(body[:n])
    assert head["inputs"] == [
        {"name": "frame", "shape": [2, 2, 3, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 36}},
        {"name": "noise", "shape": [2, 1, 2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 48}},
    ]
    assert head["outputs"] == [{"name": "anomaly_map", "parameters": {"binary_data": True}},
                               {"name": "score", "parameters": {"binary_data": True}}]
    assert body[n:n + 36] == f.tobytes() and body[n + 36:] == noise.astype("<f4").tobytes()
    assert headers["Content-Type"] == "application/octet-stream"


def _binary_reply(outputs):
    head = {"model_name": "m", "outputs": [
        {"name": k, "datatype": "FP32", "shape": list(v.shape), "parameters": {"binary_data_size": v.nbytes}}
        for k, v in outputs.items()]}
    j = json.dumps(head).encode()
    return j + b"".join(v.astype("<f4").tobytes() for v in outputs.values()), len(j)


def test_response_decodes_binary_and_json_outputs_and_reports_errors():
    maps = np.random.default_rng(0).random((3, 1, 2, 4)).astype(np.float32)
    scores = np.array([0.1, 0.7, 0.3], np.float32)
    body, n = _binary_reply({"anomaly_map": maps, "score": scores.reshape(3, 1)})
    out = decode_response(body, n)
    np.testing.assert_array_equal(out["anomaly_map"], maps)
    np.testing.assert_array_equal(out["score"], scores.reshape(3, 1))
    as_json = json.dumps({"outputs": [{"name": "score", "datatype": "FP32", "shape": [3],
                                       "data": scores.tolist()}]}).encode()
    np.testing.assert_allclose(decode_response(as_json, None)["score"], scores)
    with pytest.raises(TritonError, match="unknown model"):
        decode_response(b'{"error": "Request for unknown model: \'x\' is not found"}', None)
    with pytest.raises(TritonError, match="ends early"):
        decode_response(body[:-4], n)


def test_model_name_comes_from_the_repository_layout():
    assert model_name_of("/srv/repo/fair_c32/1/model.onnx") == "fair_c32"
    with pytest.raises(RuntimeInspectError, match="model_name"):
        model_name_of("/srv/fair_c32.onnx")


class _StandIn(BaseHTTPRequestHandler):
    """Speaks the part of Triton's v2 HTTP protocol the client uses; runs the model with ONNX Runtime."""

    session = None
    model = "tiny"
    requests = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200 if self.path == f"/v2/models/{self.model}/ready" else 400, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != f"/v2/models/{self.model}/infer":
            self._send(400, json.dumps({"error": f"unknown model path {self.path}"}).encode())
            return
        n = int(self.headers[HEADER_LENGTH])
        head, offset, feeds = json.loads(body[:n]), n, {}
        for item in head["inputs"]:
            size = item["parameters"]["binary_data_size"]
            dtype = {"UINT8": np.uint8, "FP32": np.float32}[item["datatype"]]
            feeds[item["name"]] = np.frombuffer(body[offset:offset + size], dtype).reshape(item["shape"])
            offset += size
        type(self).requests.append(head)
        names = [o["name"] for o in head["outputs"]]
        results = dict(zip(names, self.session.run(names, feeds)))
        results["score"] = results["score"].reshape(-1, 1)  # Triton's view of dims [1] reshaped to []
        reply, j = _binary_reply(results)
        self._send(200, reply, [(HEADER_LENGTH, str(j)), ("Content-Type", "application/octet-stream")])


@pytest.fixture
def stand_in(tmp_path):
    import onnxruntime as ort

    from export.triton import write_repository

    model = make_model(str(tmp_path), threshold=0.5, normalization=(0.2, 0.1))
    model_dir = write_repository(model, tmp_path / "repo", max_batch=8)
    _StandIn.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    _StandIn.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model_dir, f"127.0.0.1:{server.server_address[1]}", _StandIn.session
    server.shutdown()
    server.server_close()


def test_inspector_over_http_matches_local_inference_and_applies_the_threshold(stand_in):
    model_dir, url, session = stand_in
    x = frames(5)
    with Inspector(model_dir / "1" / "model.onnx", backend="triton", frame_order="RGB",
                   backend_options={"url": url}) as insp:
        assert insp.backend == "triton" and "triton" in insp.backend_description
        results = insp.inspect_batch(x)
    maps, scores = session.run(["anomaly_map", "score"], {"frame": x})
    np.testing.assert_allclose([r.score for r in results], scores, rtol=1e-6)
    np.testing.assert_allclose(results[0].raw_map, maps[0, 0], rtol=1e-6)
    assert [r.is_anomalous for r in results] == [bool(s >= 0.5) for s in scores]
    assert results[0].normalized_score == pytest.approx((scores[0] - 0.2) / (0.5 - 0.2), rel=1e-5)
    assert _StandIn.requests[-1]["inputs"][0]["shape"] == [5, 32, 48, 3]


def test_no_server_is_one_clear_error(tmp_path):
    from export.triton import write_repository

    model_dir = write_repository(make_model(str(tmp_path)), tmp_path / "repo")
    with pytest.raises(BackendUnavailable, match="no Triton server answers at http://127.0.0.1:9"):
        Inspector(model_dir / "1" / "model.onnx", backend="triton", backend_options={"url": "127.0.0.1:9"})
    assert select_backend("tensorrt-engine", "triton", "auto").device == "server"


def test_runtime_cli_with_the_triton_backend(stand_in, tmp_path):
    import subprocess

    import cv2

    model_dir, url, _ = stand_in
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames(3)):
        cv2.imwrite(str(src / f"{i}.png"), f)
    proc = subprocess.run([sys.executable, "-m", "runtime", "--model", str(model_dir / "1" / "model.onnx"),
                           "--backend", "triton", "--backend-option", f"url={url}", "--source", str(src),
                           "--out", str(tmp_path / "out"), "--save", "none"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(ln) for ln in (tmp_path / "out" / "inspect.jsonl").read_text().splitlines()]
    scored = [r for r in records if "score" in r]
    assert len(scored) == 3 and all(r["is_anomalous"] == (r["score"] >= 0.5) for r in scored)
