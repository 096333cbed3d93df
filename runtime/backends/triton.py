"""Triton Inference Server backend: frames go over HTTP to a server that holds the model (`export.triton`).

    Inspector("REPO/NAME/1/model.onnx", backend="triton", backend_options={"url": "localhost:8000"})

The local artifact and its manifest (`REPO/NAME/1/model.json`, written by `python -m export.triton`) say what
the server's model takes and returns and carry the threshold; the server runs it (with dynamic batching across
all clients). The protocol is Triton's HTTP/REST API (KServe v2 inference protocol) with its binary tensor
extension, spoken with the standard library only: no tritonclient, gevent or grpc on the device.

Request:  POST /v2/models/NAME[/versions/V]/infer, header `Inference-Header-Content-Length: J`; the body is a
          J-byte JSON header (`inputs` with `parameters.binary_data_size`, `outputs` asking `binary_data`)
          followed by the raw little-endian tensors in the order of `inputs`.
Response: the same framing: a JSON header whose `outputs` give name, datatype, shape and binary_data_size,
          then the tensors in that order; without the length header the body is JSON with `data` lists.

Faults: `timeout_s` (default 30) bounds the whole request, connecting to the last byte of the reply (a reply
trickling in is cut off). A connection the server closed or reset, and HTTP 500/502/503/504, are retried on a
new connection with back-off (`retries`, default 3: 0.2, 0.4, 0.8 s), as camera sources reconnect; any other
HTTP status is reported with its number. A reply that is not a v2 response, or whose map is not the manifest's
size, is refused as a protocol error. "No Triton server answers" is said only when no connection could be made.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.selection import BackendChoice
from runtime.errors import BackendUnavailable, RuntimeInspectError

HEADER_LENGTH = "Inference-Header-Content-Length"
#: KServe v2 datatypes <-> numpy
DATATYPES: Dict[str, str] = {"BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "UINT16": "uint16",
                             "INT16": "int16", "UINT32": "uint32", "INT32": "int32", "UINT64": "uint64",
                             "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}
_NP_TO_V2 = {np.dtype(v): k for k, v in DATATYPES.items()}


log = logging.getLogger("runtime.backends.triton")

#: HTTP statuses worth another try: the server or a proxy in front of it is restarting or overloaded
TRANSIENT_STATUS = (500, 502, 503, 504)
BACKOFF_S = 0.2
BACKOFF_MAX_S = 2.0


class TritonError(RuntimeInspectError):
    """The server answered with an error, or with something that is not a v2 inference response."""


class _Transient(TritonError):
    """A request that failed after a connection was made (closed, reset): worth a retry on a new connection.
    Internal: `_request_retrying` raises its `error` when the retries are spent."""

    def __init__(self, error: RuntimeInspectError):
        super().__init__(str(error))
        self.error = error


def encode_request(inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Tuple[bytes, Dict[str, str]]:
    """Body and headers of a v2 infer request carrying every input as binary data and asking every output
    as binary data."""
    header: Dict[str, Any] = {"inputs": [], "outputs": [{"name": n, "parameters": {"binary_data": True}}
                                                       for n in outputs]}
    blobs: List[bytes] = []
    for name, array in inputs.items():
        arr = np.ascontiguousarray(array)
        if arr.dtype not in _NP_TO_V2:
            raise RuntimeInspectError(f"input {name!r} has dtype {arr.dtype}, which the v2 protocol does not carry")
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header["inputs"].append({"name": name, "shape": [int(s) for s in arr.shape],
                                 "datatype": _NP_TO_V2[arr.dtype], "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return head + b"".join(blobs), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def decode_response(body: bytes, header_length: Optional[int]) -> Dict[str, np.ndarray]:
    """Outputs of a v2 infer response (binary or JSON data) as numpy arrays, by name."""
    head_bytes = body if header_length is None else body[:header_length]
    try:
        head = json.loads(head_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TritonError("protocol error: the server's reply is not a v2 inference response (no JSON header)") \
            from None
    if not isinstance(head, dict):
        raise TritonError(f"protocol error: the server's reply is a JSON {type(head).__name__}, not a v2 inference "
                          f"response object: is this a Triton (KServe v2) server?")
    if "error" in head:
        raise TritonError(f"Triton: {head['error']}")
    try:
        return _outputs(head, body, header_length)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TritonError(f"protocol error: the server's reply has malformed outputs ({type(e).__name__}: "
                          f"{e}): is this a Triton (KServe v2) server?") from None


def _outputs(head: Dict[str, Any], body: bytes, header_length: Optional[int]) -> Dict[str, np.ndarray]:
    offset = 0 if header_length is None else int(header_length)
    out: Dict[str, np.ndarray] = {}
    for item in head.get("outputs", []):
        name, dtype = item["name"], DATATYPES.get(item.get("datatype", ""))
        if dtype is None:
            raise TritonError(f"output {name!r} has datatype {item.get('datatype')!r}, not a numeric one")
        shape = tuple(int(s) for s in item.get("shape", []))
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if offset + int(size) > len(body):
                raise TritonError(f"output {name!r} claims {size} bytes but the reply ends early")
            wire = np.dtype(dtype).newbyteorder("<")
            arr = np.frombuffer(body, dtype=wire, count=int(size) // wire.itemsize, offset=offset)
            offset += int(size)
        else:
            arr = np.asarray(item.get("data", []), dtype=dtype)
        out[name] = arr.astype(dtype, copy=False).reshape(shape)
    return out


def model_name_of(artifact_path: str) -> str:
    """REPO/NAME/VERSION/model.onnx -> NAME (the layout `python -m export.triton` writes)."""
    parts = artifact_path.replace("\\", "/").rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2].isdigit():
        return parts[-3]
    raise RuntimeInspectError(f"{artifact_path} is not inside a Triton repository (REPO/NAME/1/model.onnx): pass "
                              f"backend option model_name=NAME")


class TritonBackend(Backend):
    name = "triton"
    package = ""  # the standard library speaks the protocol
    option_names = ("url", "model_name", "model_version", "timeout_s", "retries")
    # the local artifact describes the server's model (`export.triton`: onnxruntime_onnx or tensorrt_plan);
    # the server computes it, so this client needs no GPU and has no compute modes or INT8 placement of its own
    artifact_kinds = ("onnx", "tensorrt-engine")
    precisions = ("fp32", "fp16", "int8")
    devices = ("server",)
    remote = True  # the server runs the artifact, whatever its kind: only asked for by name

    @classmethod
    def choose_by_name(cls, artifact_kind: str, device: str) -> BackendChoice:
        cls.probe()
        return BackendChoice(cls.name, "server", "asked for by name: a Triton Inference Server runs the model")

    @classmethod
    def _probe(cls) -> None:
        import http.client  # noqa: F401,PLC0415 - always there; the server's presence is checked in load()

    def describe(self) -> str:
        return f"triton ({self._url}, model {self._model})"

    def __init__(self, artifact_path: str, manifest: Any, device: str = "server", **options: Any):
        super().__init__(artifact_path, manifest, device=device, **options)
        url = str(self.options.get("url") or "localhost:8000")
        parts = urlsplit(url if "//" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RuntimeInspectError(f"backend option url={url!r}: expected HOST:PORT or http(s)://HOST:PORT")
        self._url = f"{parts.scheme}://{parts.hostname}:{parts.port or 8000}"
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port or 8000
        self._model = str(self.options.get("model_name") or model_name_of(self.artifact_path))
        version = self.options.get("model_version")
        self._path = f"/v2/models/{self._model}" + (f"/versions/{int(version)}" if version else "")
        self._conn: Any = None
        self._timeout = float(self.options.get("timeout_s") or 30)
        self._retries = int(self.options.get("retries", 3))
        if self._timeout <= 0 or self._retries < 0:
            raise RuntimeInspectError(f"backend options timeout_s={self._timeout} and retries={self._retries}: "
                                      f"expected seconds > 0 and a count >= 0")

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        """One request within `timeout_s` from connecting to the reply's last byte. Raises BackendUnavailable
        when no connection can be made, TritonError when the deadline passed, _Transient when the connection
        was closed or reset (a retry on a new one may succeed)."""
        import http.client  # noqa: PLC0415

        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        conn = self._conn
        expired = threading.Event()
        sockets: List[Any] = []  # the connection's socket (http.client drops its own reference while reading)

        def expire() -> None:  # the socket's own timeout is per receive: a trickling reply would reset it
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self._timeout, expire)
        timer.daemon = True
        timer.start()
        connected = False
        try:
            if conn.sock is None:
                conn.connect()
            connected = True
            sockets.append(conn.sock)
            if expired.is_set():  # the connect itself took the whole time
                raise socket.timeout("timed out")
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            reply = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self._conn = None
            if expired.is_set():
                raise TritonError(f"Triton at {self._url} sent no complete reply within timeout_s={self._timeout:g} "
                                  f"s: the server is overloaded or the network is slow; raise backend option "
                                  f"timeout_s") from None
            if not connected:
                raise BackendUnavailable("triton", None, detail=f"no Triton server answers at {self._url} ({e})",
                                         hint="start it with `tritonserver --model-repository REPO`") from None
            raise _Transient(TritonError(f"Triton at {self._url} closed or reset the connection mid-request "
                                         f"({type(e).__name__}: {e})")) from None
        finally:
            timer.cancel()
        if expired.is_set():  # finished just as the timer fired: the socket may be shut; do not reuse it
            conn.close()
            self._conn = None
        return reply

    def _request_retrying(self, method: str, path: str, body: Optional[bytes] = None,
                          headers: Optional[Dict[str, str]] = None,
                          refused_is_final: bool = False) -> Tuple[int, Dict[str, str], bytes]:
        """`_request`, tried again on a new connection with back-off after a closed connection, a transient
        HTTP status (TRANSIENT_STATUS) or (unless `refused_is_final`: loading) a refused connection (a server
        restarting), at most `retries` times."""
        for attempt in range(self._retries + 1):
            try:
                reply = self._request(method, path, body, headers)
                if reply[0] not in TRANSIENT_STATUS:
                    return reply
                failure = f"HTTP {reply[0]}"
            except _Transient as e:
                if attempt == self._retries:
                    raise e.error from None
                failure = str(e)
            except BackendUnavailable as e:
                if refused_is_final or attempt == self._retries:
                    raise
                failure = str(e)
            if attempt == self._retries:
                return reply
            wait = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** attempt)
            log.warning("Triton at %s: %s; retry %d of %d in %.1f s", self._url, failure, attempt + 1,
                        self._retries, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self) -> None:
        status, _, body = self._request_retrying("GET", self._path + "/ready", refused_is_final=True)
        if status != 200:
            raise RuntimeInspectError(f"Triton at {self._url} has no ready model {self._model!r} (HTTP {status}): "
                                      f"check the server log and its --model-repository")

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        inputs = {self.input_name: frames}
        inputs.update(extra)
        body, headers = encode_request(inputs, [self.map_name, self.score_name])
        status, reply_headers, reply = self._request_retrying("POST", self._path + "/infer", body, headers)
        if status != 200:
            raise TritonError(f"Triton at {self._url} answered HTTP {status} for model {self._model!r}"
                              f"{_error_text(reply)}: check the server log")
        length = reply_headers.get(HEADER_LENGTH.lower())
        try:
            header_length = int(length) if length is not None else None
        except ValueError:
            raise TritonError(f"protocol error: header {HEADER_LENGTH} is {length!r}, not a length") from None
        outputs = decode_response(reply, header_length)
        missing = [n for n in (self.map_name, self.score_name) if n not in outputs]
        if missing:
            raise TritonError(f"Triton's reply lacks output(s) {missing}: is {self._model!r} this manifest's model?")
        maps, scores = outputs[self.map_name], outputs[self.score_name]
        self._check_map_size(maps)
        return maps, scores

    def _check_map_size(self, maps: np.ndarray) -> None:
        """The server's map must have the manifest's size: another model's map would be scaled up silently."""
        outputs = self.manifest.outputs
        want = [int(d) for d in outputs.anomaly_map.shape[-2:]] if outputs is not None else []
        got = [int(d) for d in maps.shape[-2:]] if maps.ndim >= 2 else []
        if len(want) == 2 and min(want) > 0 and got != want:
            raise TritonError(f"protocol error: Triton's map for model {self._model!r} is "
                              f"{'x'.join(map(str, got)) or 'not 2-D'}, but the manifest says {want[0]}x{want[1]}: "
                              f"the server holds another model than this manifest describes")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _error_text(body: bytes) -> str:
    """': <the server's error message>' from an error reply's JSON, or '' when it has none."""
    try:
        head = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ""
    return f": {str(head['error'])[:300]}" if isinstance(head, dict) and "error" in head else ""


__all__ = ["TritonBackend", "TritonError", "encode_request", "decode_response", "model_name_of", "DATATYPES"]
