"""A line: the cameras of one industrial PC, the model and threshold each runs, and where verdicts go.

A line file is JSON (standard library only: the runtime stays installable with numpy and OpenCV)::

    {
      "model": "models/fair-c32.onnx",           default model of every camera (paths relative to this file)
      "threshold": null,                         default threshold (null: the manifest's)
      "batch": 4,                                frames per inference, across the cameras sharing a model
      "cameras": [
        {"name": "press1", "source": "rtsp://10.0.0.11/stream1"},
        {"name": "press2", "source": "rtsp://10.0.0.12/stream1", "threshold": 2.4},
        {"name": "welder", "source": "http://10.0.0.13/cam.mjpg", "model": "models/weld.onnx"}
      ],
      "sinks": ["mqtt://127.0.0.1:1883/line1", "opcua://0.0.0.0:4840"]
    }

`python -m runtime --line line.json` runs it; `python -m runtime --model M --source A --source B` is the same
line without a file (cameras named cam1, cam2, ...).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from runtime.errors import RuntimeInspectError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEYS = {"model", "threshold", "batch", "cameras", "sinks", "backend", "device"}
CAMERA_KEYS = {"name", "source", "model", "threshold"}


class LineError(RuntimeInspectError):
    """A line file or a camera list is invalid: one line naming the camera and the key to fix."""


@dataclass
class CameraSpec:
    name: str
    source: str
    model: str
    threshold: Optional[float] = None


@dataclass
class LineSpec:
    cameras: List[CameraSpec]
    sinks: List[str] = field(default_factory=list)
    batch: int = 4
    backend: Optional[str] = None
    device: Optional[str] = None


def _threshold(value: Any, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise LineError(f"{where}: threshold must be a number or null, got {value!r}")
    return float(value)


def _resolve(path: str, base: str) -> str:
    """A relative file path is relative to the line file; URLs, camera indices and pipelines stay as written."""
    if not path or os.path.isabs(path) or "://" in path or "!" in path or path.strip().isdigit():
        return path
    return os.path.normpath(os.path.join(base, path))


def check_line(spec: LineSpec) -> LineSpec:
    """Validate a LineSpec (names unique and safe for MQTT topics / OPC UA node ids, a model for every camera)."""
    if not spec.cameras:
        raise LineError("a line needs at least one camera")
    seen = set()
    for cam in spec.cameras:
        if not NAME.match(cam.name):
            raise LineError(f"camera name {cam.name!r}: use 1-64 letters, digits, '_' or '-' (it becomes an MQTT "
                            f"topic level and an OPC UA node id)")
        if cam.name in seen:
            raise LineError(f"camera name {cam.name!r} is used twice: every camera needs its own name")
        seen.add(cam.name)
        if not cam.model:
            raise LineError(f"camera {cam.name!r} has no model: give it \"model\" or the line a default \"model\"")
        if cam.source in ("", None):
            raise LineError(f"camera {cam.name!r} has no source")
    if isinstance(spec.batch, bool) or not isinstance(spec.batch, int) or spec.batch < 1:
        raise LineError(f"batch must be a positive integer, got {spec.batch!r}")
    return spec


def load_line(path: str) -> LineSpec:
    """Read and validate a line file (LineError with what to fix)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise LineError(f"cannot read line file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise LineError(f"line file {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise LineError(f"line file {path}: expected a JSON object with \"cameras\", got {type(doc).__name__}")
    unknown = set(doc) - KEYS
    if unknown:
        raise LineError(f"line file {path}: unknown key(s) {sorted(unknown)} (known: {sorted(KEYS)})")
    base = os.path.dirname(os.path.abspath(path))
    cams = doc.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise LineError(f"line file {path}: \"cameras\" must be a non-empty list")
    default_model = doc.get("model")
    default_threshold = _threshold(doc.get("threshold"), path)
    cameras = []
    for i, c in enumerate(cams):
        where = f"line file {path}, camera {i + 1}"
        if not isinstance(c, dict):
            raise LineError(f"{where}: expected an object with \"name\" and \"source\"")
        bad = set(c) - CAMERA_KEYS
        if bad:
            raise LineError(f"{where}: unknown key(s) {sorted(bad)} (known: {sorted(CAMERA_KEYS)})")
        source = c.get("source")
        source = str(source) if isinstance(source, int) and not isinstance(source, bool) else source
        if not isinstance(source, str):
            raise LineError(f"{where}: \"source\" must be a URL, file, folder or camera index")
        model = c.get("model", default_model)
        threshold = _threshold(c["threshold"], where) if "threshold" in c else default_threshold
        cameras.append(CameraSpec(str(c.get("name", f"cam{i + 1}")), _resolve(source, base),
                                  _resolve(str(model or ""), base), threshold))
    sinks = doc.get("sinks", [])
    if not isinstance(sinks, list) or not all(isinstance(s, str) for s in sinks):
        raise LineError(f"line file {path}: \"sinks\" must be a list of sink URLs")
    return check_line(LineSpec(cameras, list(sinks), doc.get("batch", 4), doc.get("backend"), doc.get("device")))


def line_from_sources(sources: Sequence[str], model: str, threshold: Optional[float] = None,
                      sinks: Sequence[str] = (), batch: int = 4) -> LineSpec:
    """The line of `--model M --source A --source B ...`: cameras cam1, cam2, ... on one model."""
    cams = [CameraSpec(f"cam{i + 1}", s, model, threshold) for i, s in enumerate(sources)]
    return check_line(LineSpec(cams, list(sinks), batch))


__all__ = ["CameraSpec", "LineError", "LineSpec", "check_line", "line_from_sources", "load_line"]
