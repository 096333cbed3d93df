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
"""
from __future__ import annotations

import json
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


class TritonError(RuntimeInspectError):
    """The server answered with an error, or with something that is not a v2 inference response."""


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
    except (UnicodeDecodeError, ValueError):
        raise TritonError("the server's reply is not a v2 inference response (no JSON header)") from None
    if "error" in head:
        raise TritonError(f"Triton: {head['error']}")
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
    option_names = ("url", "model_name", "model_version", "timeout_s")
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

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        import http.client  # noqa: PLC0415

        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=float(self.options.get("timeout_s") or 30))
        try:
            self._conn.request(method, path, body=body, headers=headers or {})
            resp = self._conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._conn.close()
            self._conn = None
            raise BackendUnavailable("triton", None, detail=f"no Triton server answers at {self._url} ({e})",
                                     hint="start it with `tritonserver --model-repository REPO`") from None

    def _load(self) -> None:
        status, _, body = self._request("GET", self._path + "/ready")
        if status != 200:
            raise RuntimeInspectError(f"Triton at {self._url} has no ready model {self._model!r} (HTTP {status}): "
                                      f"check the server log and its --model-repository")

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        inputs = {self.input_name: frames}
        inputs.update(extra)
        body, headers = encode_request(inputs, [self.map_name, self.score_name])
        status, reply_headers, reply = self._request("POST", self._path + "/infer", body, headers)
        length = reply_headers.get(HEADER_LENGTH.lower())
        outputs = decode_response(reply, int(length) if length is not None else None)
        if status != 200:
            raise TritonError(f"Triton answered HTTP {status} for model {self._model!r}")
        missing = [n for n in (self.map_name, self.score_name) if n not in outputs]
        if missing:
            raise TritonError(f"Triton's reply lacks output(s) {missing}: is {self._model!r} this manifest's model?")
        return outputs[self.map_name], outputs[self.score_name]

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["TritonBackend", "TritonError", "encode_request", "decode_response", "model_name_of", "DATATYPES"]
