"""The manifest: the JSON file that travels beside an exported model (`NAME.onnx` + `NAME.json`).

It says what the artifact is (file name, kind, sha256), what it computes (method, c, options, run), how to
feed it (input name, size, layout, channel order, extra inputs), what comes out (output names and shapes),
its precision and batch profile, the score threshold with its score normalisation, and for TensorRT engines
the TensorRT version and GPU it was built on. `export` writes it with `write_manifest`; the runtime reads it
with `load_manifest` and refuses an artifact that does not match.

JSON layout (schema_version 1)::

    {"format": "edge-inspect-manifest", "schema_version": 1,
     "artifact": "model.onnx", "artifact_kind": "onnx" | "tensorrt-engine" | "openvino-ir", "sha256": "<hex>",
     "method": "fair", "c": 32 | null (a method without a width), "options": {...},
     "source_run": "runs/..." | null,
     "input": {"name": "frame", "dtype": "uint8", "layout": "NHWC", "height": H, "width": W, "channels": 3,
               "channel_order": "RGB" | "BGR", "resizes_in_graph": bool, "model_size": [h, w],
               "host_resize": "cv2.INTER_AREA (shrink) / cv2.INTER_LINEAR (enlarge)"},
     "extra_inputs": [{"name", "shape" (no batch axis), "dtype", "optional": true, "meaning"}],
     "outputs": {"anomaly_map": {"name", "shape": [-1, 1, h, w], "meaning"},
                 "score": {"name", "shape": [-1], "meaning"}},
     "precision": "fp32" | "fp16" | "int8", "batch": {"dynamic": bool, "min": 1, "opt": 1, "max": 32},
     "threshold": null | {"value", "rule": "target_fpr" | "f1" | "user", "target_fpr"?, "images", "data", "date",
                          "normalization": {"good_mean", "good_std"}},
     "tensorrt": null | {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7",
                         "profile": {"min", "opt", "max"}},
     "versions": {"toolkit", "torch", "onnx", "onnxruntime", ...}, "created": "<ISO date>", "notes": [...]}

Score normalisation: ``normalized = (score - good_mean) / (threshold - good_mean)``, 0 at the mean score of
good images and 1.0 at the threshold. Unknown top-level keys are kept (``Manifest.extra``) and written back.
Stdlib only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from runtime.errors import ArtifactMismatch, ManifestError

FORMAT = "edge-inspect-manifest"
SCHEMA_VERSION = 1
ARTIFACT_KINDS: Dict[str, Tuple[str, ...]] = {
    "onnx": (".onnx",),
    "tensorrt-engine": (".engine", ".plan"),
    "openvino-ir": (".xml",),
}
PRECISIONS = ("fp32", "fp16", "int8")
CHANNEL_ORDERS = ("RGB", "BGR")
THRESHOLD_RULES = ("target_fpr", "f1", "user")
HOST_RESIZE = "cv2.INTER_AREA (shrink) / cv2.INTER_LINEAR (enlarge)"
INPUT_DTYPES = ("uint8",)
EXTRA_DTYPES = ("float32", "float16", "uint8", "int32", "int64")

PathLike = Union[str, "os.PathLike[str]"]


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class InputSpec:
    """The frame input of the graph: (N, height, width, channels) uint8, NHWC, in `channel_order`."""

    height: int
    width: int
    name: str = "frame"
    dtype: str = "uint8"
    layout: str = "NHWC"
    channels: int = 3
    channel_order: str = "RGB"
    resizes_in_graph: bool = False
    model_size: Optional[Tuple[int, int]] = None  # (h, w) of the anomaly model; default (height, width)
    host_resize: str = HOST_RESIZE

    def __post_init__(self) -> None:
        if self.model_size is None:
            self.model_size = (self.height, self.width)
        else:
            self.model_size = tuple(self.model_size)  # type: ignore[assignment]

    @property
    def size(self) -> Tuple[int, int]:
        """(height, width) that the graph accepts."""
        return int(self.height), int(self.width)


@dataclass
class ExtraInput:
    """An optional extra graph input (e.g. a fresh noise field); `shape` excludes the batch axis."""

    name: str
    shape: List[int]
    dtype: str = "float32"
    optional: bool = True
    meaning: str = ""


@dataclass
class OutputSpec:
    name: str
    shape: List[int]
    meaning: str = ""


@dataclass
class Outputs:
    anomaly_map: OutputSpec
    score: OutputSpec

    @classmethod
    def default(cls, map_size: Sequence[int]) -> "Outputs":
        h, w = int(map_size[0]), int(map_size[1])
        return cls(
            anomaly_map=OutputSpec("anomaly_map", [-1, 1, h, w], "per-pixel anomaly, higher = more anomalous"),
            score=OutputSpec("score", [-1], "image anomaly score (max of the map), higher = more anomalous"),
        )


@dataclass
class BatchSpec:
    dynamic: bool = True
    min: int = 1
    opt: int = 1
    max: int = 32


@dataclass
class Normalization:
    good_mean: float
    good_std: float


@dataclass
class Threshold:
    """Score threshold: a frame is anomalous when score >= value."""

    value: float
    rule: str = "user"
    images: int = 0
    data: str = ""
    date: str = ""
    target_fpr: Optional[float] = None
    normalization: Optional[Normalization] = None

    def normalize(self, score: float) -> Optional[float]:
        """(score - good_mean) / (value - good_mean): 0 at the good mean, 1.0 at the threshold; None
        without normalisation."""
        if self.normalization is None:
            return None
        den = float(self.value) - float(self.normalization.good_mean)
        return (float(score) - float(self.normalization.good_mean)) / den


@dataclass
class TensorRTInfo:
    version: str
    gpu: str
    compute_capability: str
    profile: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    artifact: str
    artifact_kind: str
    sha256: str
    method: str
    c: Optional[int]  # None: the method has no width
    input: InputSpec
    outputs: Optional[Outputs] = None  # default: "anomaly_map" (N,1,h,w) at the model size, "score" (N,)
    precision: str = "fp32"
    batch: BatchSpec = field(default_factory=BatchSpec)
    options: Dict[str, Any] = field(default_factory=dict)
    source_run: Optional[str] = None
    extra_inputs: List[ExtraInput] = field(default_factory=list)
    threshold: Optional[Threshold] = None
    tensorrt: Optional[TensorRTInfo] = None
    versions: Dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now_iso)
    notes: List[str] = field(default_factory=list)
    format: str = FORMAT
    schema_version: int = SCHEMA_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)  # unknown top-level keys, written back unchanged

    def __post_init__(self) -> None:
        if self.outputs is None and isinstance(self.input, InputSpec):
            self.outputs = Outputs.default(self.input.model_size or self.input.size)

    # -- convenience ---------------------------------------------------------------------------------
    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the frames the graph takes."""
        return self.input.size

    @property
    def normalization(self) -> Optional[Normalization]:
        return self.threshold.normalization if self.threshold is not None else None

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra") or {}
        d["input"]["model_size"] = list(d["input"]["model_size"])
        ordered: Dict[str, Any] = {"format": d.pop("format"), "schema_version": d.pop("schema_version")}
        ordered.update(d)
        for k, v in extra.items():
            ordered.setdefault(k, v)
        return ordered

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "manifest") -> "Manifest":
        """Build and validate a manifest from its JSON dict; `where` names it in error messages."""
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: top level must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ManifestError(f"{where}: 'format' is {fmt!r}, expected {FORMAT!r}: this is not an edge-inspect "
                                f"manifest (re-export the model with `python -m export.onnx`)")
        ver = d.get("schema_version")
        if not isinstance(ver, int) or ver < 1:
            raise ManifestError(f"{where}: 'schema_version' is {ver!r}, expected an integer >= 1")
        if ver > SCHEMA_VERSION:
            raise ManifestError(f"{where}: schema_version {ver} is newer than this runtime reads ({SCHEMA_VERSION}): "
                                f"upgrade the edge-inspect runtime")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        for key in ("artifact", "artifact_kind", "sha256", "method", "c", "input"):
            if key not in d:
                raise ManifestError(f"{where}: missing field {key!r} (re-export the model to write a complete manifest)")
        try:
            inp = dict(_obj(d["input"], "input", where))
            for key in ("height", "width"):
                if key not in inp:
                    raise ManifestError(f"{where}: missing field 'input.{key}'")
            if inp.get("model_size") is not None:
                inp["model_size"] = tuple(inp["model_size"])
            input_spec = InputSpec(**_only(inp, InputSpec, "input", where))
            outputs = None
            if d.get("outputs") is not None:
                o = _obj(d["outputs"], "outputs", where)
                for key in ("anomaly_map", "score"):
                    if key not in o:
                        raise ManifestError(f"{where}: missing field 'outputs.{key}'")
                outputs = Outputs(
                    anomaly_map=OutputSpec(**_only(_obj(o["anomaly_map"], "outputs.anomaly_map", where), OutputSpec,
                                                   "outputs.anomaly_map", where)),
                    score=OutputSpec(**_only(_obj(o["score"], "outputs.score", where), OutputSpec,
                                             "outputs.score", where)),
                )
            extras = [ExtraInput(**_only(_obj(e, f"extra_inputs[{i}]", where), ExtraInput, f"extra_inputs[{i}]", where))
                      for i, e in enumerate(d.get("extra_inputs") or [])]
            batch = BatchSpec(**_only(_obj(d.get("batch") or {}, "batch", where), BatchSpec, "batch", where))
            threshold = None
            if d.get("threshold") is not None:
                t = dict(_obj(d["threshold"], "threshold", where))
                if "value" not in t:
                    raise ManifestError(f"{where}: missing field 'threshold.value' (or set 'threshold' to null)")
                if t.get("normalization") is not None:
                    t["normalization"] = Normalization(**_only(_obj(t["normalization"], "threshold.normalization",
                                                                    where), Normalization,
                                                               "threshold.normalization", where))
                threshold = Threshold(**_only(t, Threshold, "threshold", where))
            trt = None
            if d.get("tensorrt") is not None:
                trt = TensorRTInfo(**_only(_obj(d["tensorrt"], "tensorrt", where), TensorRTInfo, "tensorrt", where))
            kwargs = {k: v for k, v in d.items() if k in known}
            kwargs.update(input=input_spec, outputs=outputs, extra_inputs=extras, batch=batch, threshold=threshold,
                          tensorrt=trt)
            m = cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})
        except TypeError as e:  # a required nested field missing
            raise ManifestError(f"{where}: {e}") from None
        m.validate(where)
        return m

    # -- validation ----------------------------------------------------------------------------------
    def validate(self, where: str = "manifest") -> "Manifest":
        """Raise ManifestError with one actionable line at the first problem; return self when valid."""

        def bad(msg: str) -> ManifestError:
            return ManifestError(f"{where}: {msg}")

        if self.format != FORMAT:
            raise bad(f"'format' is {self.format!r}, expected {FORMAT!r}")
        if not isinstance(self.artifact, str) or not self.artifact or os.path.basename(self.artifact) != self.artifact:
            raise bad(f"'artifact' must be the artifact's file name (no folder), got {self.artifact!r}")
        if self.artifact_kind not in ARTIFACT_KINDS:
            raise bad(f"'artifact_kind' is {self.artifact_kind!r}; allowed: {', '.join(ARTIFACT_KINDS)}")
        ext = os.path.splitext(self.artifact)[1].lower()
        if ext not in ARTIFACT_KINDS[self.artifact_kind]:
            raise bad(f"artifact {self.artifact!r} has extension {ext!r} but artifact_kind {self.artifact_kind!r} "
                      f"expects {' or '.join(ARTIFACT_KINDS[self.artifact_kind])}")
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise bad(f"'sha256' must be 64 lower-case hex digits, got {self.sha256!r} (write it with "
                      f"runtime.manifest.sha256_file)")
        if not isinstance(self.method, str) or not self.method:
            raise bad(f"'method' must be a non-empty name, got {self.method!r}")
        if self.c is not None and (not _is_int(self.c) or self.c <= 0):
            raise bad(f"'c' must be a positive integer or null (a method without a width), got {self.c!r}")
        if not isinstance(self.options, dict):
            raise bad(f"'options' must be an object, got {type(self.options).__name__}")
        if self.source_run is not None and not isinstance(self.source_run, str):
            raise bad(f"'source_run' must be a path string or null, got {self.source_run!r}")
        i = self.input
        for key in ("height", "width", "channels"):
            v = getattr(i, key)
            if not _is_int(v) or v <= 0:
                raise bad(f"'input.{key}' must be a positive integer, got {v!r}")
        if i.channels != 3:
            raise bad(f"'input.channels' is {i.channels}; the inspection graph takes 3-channel frames")
        if i.dtype not in INPUT_DTYPES:
            raise bad(f"'input.dtype' is {i.dtype!r}; allowed: {', '.join(INPUT_DTYPES)}")
        if i.layout != "NHWC":
            raise bad(f"'input.layout' is {i.layout!r}; the inspection graph takes NHWC frames")
        if i.channel_order not in CHANNEL_ORDERS:
            raise bad(f"'input.channel_order' is {i.channel_order!r}; allowed: RGB, BGR")
        if not isinstance(i.resizes_in_graph, bool):
            raise bad(f"'input.resizes_in_graph' must be true or false, got {i.resizes_in_graph!r}")
        ms = i.model_size
        if ms is None or len(ms) != 2 or not all(_is_int(v) and v > 0 for v in ms):
            raise bad(f"'input.model_size' must be [h, w] of positive integers, got {ms!r}")
        if not isinstance(i.name, str) or not i.name:
            raise bad(f"'input.name' must be the graph's input name, got {i.name!r}")
        if self.outputs is None:
            raise bad("'outputs' is missing: give outputs.anomaly_map and outputs.score (names and shapes)")
        for key in ("anomaly_map", "score"):
            o = getattr(self.outputs, key)
            if not isinstance(o.name, str) or not o.name:
                raise bad(f"'outputs.{key}.name' must be the graph's output name, got {o.name!r}")
            if not isinstance(o.shape, (list, tuple)) or not all(_is_int(v) for v in o.shape):
                raise bad(f"'outputs.{key}.shape' must be a list of integers (-1 = dynamic), got {o.shape!r}")
        if len(self.outputs.anomaly_map.shape) != 4 or self.outputs.anomaly_map.shape[1] != 1:
            raise bad(f"'outputs.anomaly_map.shape' must be [N, 1, h, w], got {self.outputs.anomaly_map.shape!r}")
        if len(self.outputs.score.shape) != 1:
            raise bad(f"'outputs.score.shape' must be [N], got {self.outputs.score.shape!r}")
        names = [i.name] + [e.name for e in self.extra_inputs]
        if len(set(names)) != len(names):
            raise bad(f"input names must be unique, got {names}")
        for n, e in enumerate(self.extra_inputs):
            if not isinstance(e.name, str) or not e.name:
                raise bad(f"'extra_inputs[{n}].name' must be a non-empty name, got {e.name!r}")
            if not isinstance(e.shape, (list, tuple)) or not all(_is_int(v) and v > 0 for v in e.shape):
                raise bad(f"'extra_inputs[{n}].shape' must list positive sizes without the batch axis, got {e.shape!r}")
            if e.dtype not in EXTRA_DTYPES:
                raise bad(f"'extra_inputs[{n}].dtype' is {e.dtype!r}; allowed: {', '.join(EXTRA_DTYPES)}")
        if self.precision not in PRECISIONS:
            raise bad(f"'precision' is {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        b = self.batch
        if not isinstance(b.dynamic, bool):
            raise bad(f"'batch.dynamic' must be true or false, got {b.dynamic!r}")
        if not all(_is_int(v) for v in (b.min, b.opt, b.max)) or not (1 <= b.min <= b.opt <= b.max):
            raise bad(f"'batch' needs 1 <= min <= opt <= max, got min={b.min!r} opt={b.opt!r} max={b.max!r}")
        if self.threshold is not None:
            t = self.threshold
            if not _is_num(t.value):
                raise bad(f"'threshold.value' must be a number, got {t.value!r}")
            if t.rule not in THRESHOLD_RULES:
                raise bad(f"'threshold.rule' is {t.rule!r}; allowed: {', '.join(THRESHOLD_RULES)}")
            if t.rule == "target_fpr" and (not _is_num(t.target_fpr) or not 0.0 <= float(t.target_fpr) <= 1.0):
                raise bad(f"'threshold.target_fpr' must be in [0, 1] for rule 'target_fpr', got {t.target_fpr!r}")
            if t.normalization is not None:
                nm = t.normalization
                if not _is_num(nm.good_mean) or not _is_num(nm.good_std) or nm.good_std < 0:
                    raise bad(f"'threshold.normalization' needs numbers good_mean and good_std >= 0, got "
                              f"{nm.good_mean!r}, {nm.good_std!r}")
                if not float(t.value) > float(nm.good_mean):
                    raise bad(f"'threshold.value' {t.value!r} must be above 'normalization.good_mean' "
                              f"{nm.good_mean!r} (normalised score = (score - mean) / (threshold - mean)); "
                              f"recalibrate with `python -m calibration.threshold`")
        if self.artifact_kind == "tensorrt-engine":
            if self.tensorrt is None:
                raise bad("a 'tensorrt-engine' manifest needs the 'tensorrt' block (version, gpu, "
                          "compute_capability): rebuild with `python -m export.trt`")
            trt = self.tensorrt
            if not re.fullmatch(r"\d+\.\d+(\.\d+)*", str(trt.version)):
                raise bad(f"'tensorrt.version' must look like '10.3.0', got {trt.version!r}")
            if not re.fullmatch(r"\d+\.\d+", str(trt.compute_capability)):
                raise bad(f"'tensorrt.compute_capability' must look like '8.7', got {trt.compute_capability!r}")
        if not isinstance(self.versions, dict):
            raise bad(f"'versions' must be an object, got {type(self.versions).__name__}")
        if not isinstance(self.notes, list):
            raise bad(f"'notes' must be a list of strings, got {type(self.notes).__name__}")
        return self


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _obj(v: Any, name: str, where: str) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise ManifestError(f"{where}: '{name}' must be an object, got {type(v).__name__}")
    return v


def _only(d: Dict[str, Any], cls: type, name: str, where: str) -> Dict[str, Any]:
    """Keep the keys that `cls` knows (unknown keys in nested blocks are ignored, for forward compatibility)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in known}


# -- files -------------------------------------------------------------------------------------------------
def manifest_path_for(artifact_path: PathLike) -> str:
    """NAME.onnx / NAME.engine / NAME.plan / NAME.xml -> NAME.json (a .json path is returned as is)."""
    p = os.fspath(artifact_path)
    root, ext = os.path.splitext(p)
    return p if ext.lower() == ".json" else root + ".json"


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def load_manifest(artifact_path: PathLike) -> Manifest:
    """Read and validate the manifest of `artifact_path` (NAME.onnx etc. or NAME.json itself)."""
    mpath = manifest_path_for(artifact_path)
    if not os.path.isfile(mpath):
        raise ManifestError(f"no manifest {mpath} beside {os.fspath(artifact_path)}: export the model with "
                            f"`python -m export.onnx --run RUN --out MODEL.onnx` (it writes MODEL.json beside it)")
    try:
        with open(mpath, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest {mpath}: {e}") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"manifest {mpath} is not valid JSON ({e.msg} at line {e.lineno}): re-export the model "
                            f"or fix the file") from None
    return Manifest.from_dict(d, where=mpath)


def write_manifest(artifact_path: PathLike, manifest: Manifest) -> str:
    """Validate `manifest` and write it atomically as NAME.json beside `artifact_path`; returns its path.

    An empty `manifest.artifact` is filled with the artifact's file name, an empty `sha256` with the hash of
    the artifact file (which must then exist)."""
    apath = os.fspath(artifact_path)
    name = os.path.basename(apath)
    if not manifest.artifact:
        manifest.artifact = name
    elif manifest.artifact != name:
        raise ManifestError(f"manifest.artifact is {manifest.artifact!r} but it is written beside {name!r}: "
                            f"give both the same file name")
    if not manifest.sha256:
        if not os.path.isfile(apath):
            raise ManifestError(f"manifest.sha256 is empty and {apath} does not exist to hash: write the artifact "
                                f"first or pass its sha256")
        manifest.sha256 = sha256_file(apath)
    mpath = manifest_path_for(apath)
    manifest.validate(where=mpath)
    text = manifest.to_json() + "\n"
    folder = os.path.dirname(os.path.abspath(mpath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, mpath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return mpath


def artifact_path_for(manifest_or_artifact: PathLike, manifest: Manifest) -> str:
    """The artifact a manifest describes: its `artifact` file name in the manifest's folder."""
    folder = os.path.dirname(os.path.abspath(os.fspath(manifest_or_artifact)))
    return os.path.join(folder, manifest.artifact)


def model_label(method: str, c: Optional[int]) -> str:
    """A model's short name for files, tables and logs: 'fair_c32' for a method with a width, 'patchcore' for one
    without (c None). The one place that spells it (train.methods.Method.label uses it too)."""
    return f"{method}_c{int(c)}" if c is not None else str(method)


def rebuild_command(manifest: Manifest, artifact_path: Optional[PathLike] = None) -> str:
    """The command that re-creates this artifact (for error messages)."""
    run = manifest.source_run or "RUN"
    out = os.fspath(artifact_path) if artifact_path is not None else manifest.artifact
    if manifest.artifact_kind == "tensorrt-engine":
        b = manifest.batch
        folder = os.path.dirname(out) or "."
        width = f" --c {manifest.c}" if manifest.c is not None else ""
        return (f"python -m export.trt --method {manifest.method}{width} --run {run} "
                f"--precision {manifest.precision} --batch {b.min}:{b.opt}:{b.max} --out {folder}")
    onnx_out = os.path.splitext(out)[0] + ".onnx"
    return f"python -m export.onnx --run {run} --out {onnx_out}"


def verify_artifact(artifact_path: PathLike, manifest: Manifest) -> None:
    """Raise ArtifactMismatch when the artifact's sha256 differs from the manifest's."""
    apath = os.fspath(artifact_path)
    if not os.path.isfile(apath):
        raise ArtifactMismatch(f"artifact {apath} named by its manifest does not exist",
                               rebuild_command(manifest, apath))
    digest = sha256_file(apath)
    if digest != manifest.sha256:
        raise ArtifactMismatch(f"{apath} has sha256 {digest[:12]}… but its manifest says {manifest.sha256[:12]}…: "
                               f"the file was changed or replaced after export",
                               rebuild_command(manifest, apath))


__all__ = [
    "FORMAT", "SCHEMA_VERSION", "ARTIFACT_KINDS", "PRECISIONS", "HOST_RESIZE",
    "Manifest", "InputSpec", "ExtraInput", "OutputSpec", "Outputs", "BatchSpec", "Normalization", "Threshold",
    "TensorRTInfo", "load_manifest", "write_manifest", "sha256_file", "manifest_path_for", "artifact_path_for",
    "model_label", "rebuild_command", "verify_artifact",
]
