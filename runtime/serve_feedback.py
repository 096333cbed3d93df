"""The live view's write side, off unless enabled: operator corrections and model swaps over HTTP.

    python -m runtime --model M --source S --serve 8080 --feedback-dir FEEDBACK [--edit-token-file FILE]
                      [--swap-key KEY]

Endpoints (POST, JSON body of at most 4 KiB, `Content-Type: application/json`):

- ``/feedback``        {"frame": N, "label": "good" | "defect", "who": "NAME", "note": "..."}: keeps frame N (one of
                       the recent flagged frames, anomalous or alerted) with its map and verdict in the feedback
                       folder (`runtime.feedback.record_result`);
- ``/model/swap``      {"model": "PATH"}: serve that version after its checks (`runtime.swap`);
- ``/model/rollback``  {}: serve the previous version again.

Every request must carry the token (``Authorization: Bearer TOKEN``; from --edit-token-file, else generated and
printed once at start) and a ``Host`` header naming this server's loopback address (127.0.0.1, localhost or
[::1], with its port): a page from another site that a browser on the same machine has open cannot reach it by
DNS rebinding. Without --feedback-dir the live view stays read-only and answers 405. The server binds
127.0.0.1. Stdlib only.
"""
from __future__ import annotations

import collections
import hmac
import json
import secrets
import threading
from typing import Any, Deque, Dict, Optional, Tuple

from runtime.errors import RuntimeInspectError
from runtime.feedback import LABELS, record_result
from runtime.serve_guard import host_allowed as guard_host_allowed

MAX_BODY = 4096
FLAGGED_KEPT = 64


def host_allowed(host: Optional[str], port: int) -> bool:
    """Whether a request's Host header names this loopback server (with its port, or none)."""
    return guard_host_allowed(host, "127.0.0.1", port=port)


def read_token(path: Optional[str]) -> str:
    """The edit token from file `path`, or a new random one."""
    if path is None:
        return secrets.token_urlsafe(24)
    try:
        with open(path, "r", encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise RuntimeInspectError(f"cannot read --edit-token-file {path}: {e.strerror or e}") from None
    if len(token) < 16:
        raise RuntimeInspectError(f"the token in {path} has {len(token)} characters: use at least 16")
    return token


class LiveEdits:
    """What the live view may change when enabled: corrections into `folder`, and model swaps of `inspector`."""

    def __init__(self, inspector: Any, folder: str, token: str, swap_key: Optional[bytes] = None):
        self.inspector = inspector
        self.folder = folder
        self.token = token
        self.swap_key = swap_key
        self.port = 0  # set by the server once bound
        self._flagged: Deque[Any] = collections.deque(maxlen=FLAGGED_KEPT)
        self._lock = threading.Lock()
        self.recorded = 0

    def remember(self, result: Any) -> None:
        """Keep a flagged Result (anomalous or alerted) so that an operator can correct it."""
        if result.is_anomalous or getattr(result, "alert", None):
            with self._lock:
                self._flagged.append(result)

    def _find(self, index: int) -> Optional[Any]:
        with self._lock:
            return next((r for r in self._flagged if int(r.frame_index) == index), None)

    def handle(self, path: str, headers: Any, body: bytes) -> Tuple[int, Dict[str, Any]]:
        """(HTTP status, JSON answer) for one POST."""
        if not host_allowed(headers.get("Host"), self.port):
            return 403, {"error": "Host header is not this server's loopback address"}
        given = str(headers.get("Authorization") or "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip(), self.token):
            return 401, {"error": "missing or wrong token (Authorization: Bearer TOKEN)"}
        if "application/json" not in str(headers.get("Content-Type") or ""):
            return 415, {"error": "send Content-Type: application/json"}
        try:
            data = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            return 400, {"error": "the body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "the body must be a JSON object"}
        try:
            if path == "/feedback":
                return self._feedback(data)
            if path == "/model/swap":
                from runtime.swap import swap_model  # noqa: PLC0415

                if not isinstance(data.get("model"), str):
                    return 400, {"error": "give {\"model\": \"PATH\"}"}
                return 200, swap_model(self.inspector, data["model"], self.swap_key)
            if path == "/model/rollback":
                from runtime.swap import rollback_model  # noqa: PLC0415

                return 200, rollback_model(self.inspector)
        except RuntimeInspectError as e:
            return 409, {"error": str(e)}
        return 404, {"error": f"no endpoint {path}"}

    def _feedback(self, data: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        frame, label = data.get("frame"), data.get("label")
        if isinstance(frame, bool) or not isinstance(frame, int) or label not in LABELS:
            return 400, {"error": f"give {{\"frame\": N, \"label\": one of {list(LABELS)}, \"who\": NAME}}"}
        result = self._find(frame)
        if result is None:
            return 404, {"error": f"frame {frame} is not among the recent flagged frames"}
        entry = record_result(self.folder, result, label, str(data.get("who") or ""), "live view",
                              str(data.get("note") or ""))
        with self._lock:
            self.recorded += 1
        return 200, {"recorded": entry, "frame": frame, "label": label}


def read_body(headers: Any, rfile: Any) -> Optional[bytes]:
    """The request body, or None when its length is missing, malformed or above MAX_BODY."""
    try:
        n = int(headers.get("Content-Length") or 0)
    except ValueError:
        return None
    if not 0 <= n <= MAX_BODY:
        return None
    return rfile.read(n) if n else b""


__all__ = ["LiveEdits", "host_allowed", "read_token", "read_body", "MAX_BODY"]
