"""`Manifest`: the whole document, its top-level keys, and the checks between sections. Stdlib only."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from runtime.errors import ManifestError
from runtime.manifest.records import (EngineBuild, GraphParts, ModelVersion, Quantization, SourceOnnx,
                                      ThresholdProvenance)
from runtime.manifest.section import Section, fail, spec
from runtime.manifest.sections import (BatchSpec, ExtraInput, InputSpec, Normalization, Outputs, TensorRTInfo,
                                       Threshold)

FORMAT = "edge-inspect-manifest"
SCHEMA_VERSION = 1
ARTIFACT_KINDS: Dict[str, Tuple[str, ...]] = {
    "onnx": (".onnx",),
    "tensorrt-engine": (".engine", ".plan"),
    "openvino-ir": (".xml",),
}
PRECISIONS = ("fp32", "fp16", "int8")
#: Keys a reader may meet as null: they take their default.
_NULL_MEANS_DEFAULT = ("outputs", "batch", "options", "extra_inputs", "versions", "notes")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest(Section):
    """What an exported artifact is, computes, takes and gives, and how it was made (see `runtime.manifest`)."""

    #: Records written only when present (an artifact without them has no such key).
    OMIT_DEFAULTS = ("map_standardization", "graph_parts", "threshold_provenance", "quantization", "source_onnx",
                     "build", "weights_sha256", "version")

    artifact: str
    artifact_kind: str = spec(choices=tuple(ARTIFACT_KINDS))
    sha256: str = spec(sha256=True)
    method: str = spec(nonempty=True)
    c: Optional[int] = spec(positive=True, hint="a method without a width writes null")
    input: InputSpec = spec()
    outputs: Optional[Outputs] = None  # default: "anomaly_map" (N,1,h,w) at the model size, "score" (N,)
    precision: str = spec("fp32", choices=PRECISIONS)
    batch: BatchSpec = spec(factory=BatchSpec)
    options: Dict[str, Any] = spec(factory=dict)
    source_run: Optional[str] = None
    extra_inputs: List[ExtraInput] = spec(factory=list)
    threshold: Optional[Threshold] = None
    tensorrt: Optional[TensorRTInfo] = None
    versions: Dict[str, str] = spec(factory=dict)
    created: str = spec(factory=_now_iso)
    notes: List[str] = spec(factory=list)
    format: str = FORMAT
    schema_version: int = SCHEMA_VERSION
    # -- how it was made (written by our tools; the runtime needs none of them except weights_sha256) --------
    map_standardization: Optional[str] = None  # the map is a per-pixel z-score against good images
    graph_parts: Optional[GraphParts] = None  # export.onnx
    threshold_provenance: Optional[ThresholdProvenance] = None  # calibration.threshold
    quantization: Optional[Quantization] = None  # calibration.int8
    source_onnx: Optional[SourceOnnx] = None  # export.trt: the ONNX an engine was built from
    build: Optional[EngineBuild] = None  # export.trt
    weights_sha256: Optional[str] = spec(None, sha256=True)  # an OpenVINO IR's NAME.bin
    version: Optional[ModelVersion] = None  # train.update: a new version's parent and what changed

    def __post_init__(self) -> None:
        super().__post_init__()
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

    def verdict_rule(self, threshold: Optional[float] = None) -> Optional[Threshold]:
        """The `Threshold` that judges this artifact's scores (its `normalize` is the normalised score):
        `threshold` when given (a run-time override), else the manifest's value. The normalisation is kept only
        when the value lies above the good mean; None when there is no threshold at all."""
        if threshold is None and self.threshold is None:
            return None
        value = float(threshold) if threshold is not None else float(self.threshold.value)  # type: ignore[union-attr]
        norm = self.normalization
        return Threshold(value=value, normalization=norm if norm is not None and value > float(norm.good_mean)
                         else None)

    # -- JSON ------------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        ordered: Dict[str, Any] = {"format": d.pop("format"), "schema_version": d.pop("schema_version")}
        ordered.update(d)
        return ordered

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest", path: str = "") -> "Manifest":
        """Build and validate a manifest from its JSON dict; `where` names it in error messages."""
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: top level must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ManifestError(f"{where}: 'format' is {fmt!r}, expected {FORMAT!r}: this is not an edge-inspect "
                                f"manifest (re-export the model with `python -m export.onnx`)")
        ver = d.get("schema_version")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            raise ManifestError(f"{where}: 'schema_version' is {ver!r}, expected an integer >= 1")
        if ver > SCHEMA_VERSION:
            raise ManifestError(f"{where}: schema_version {ver} is newer than this runtime reads ({SCHEMA_VERSION}): "
                                f"upgrade the edge-inspect runtime")
        d = {k: v for k, v in d.items() if not (k in _NULL_MEANS_DEFAULT and v is None)}
        return super().from_dict(d, where, path)

    # -- checks between fields ---------------------------------------------------------------------------
    def check(self, where: str, path: str) -> None:
        if self.format != FORMAT:
            raise fail(where, "format", f"is {self.format!r}, expected {FORMAT!r}")
        if not self.artifact or os.path.basename(self.artifact) != self.artifact:
            raise fail(where, "artifact", f"must be the artifact's file name (no folder), got {self.artifact!r}")
        ext = os.path.splitext(self.artifact)[1].lower()
        if ext not in ARTIFACT_KINDS[self.artifact_kind]:
            raise fail(where, "artifact", f"{self.artifact!r} has extension {ext!r} but artifact_kind "
                                          f"{self.artifact_kind!r} expects "
                                          f"{' or '.join(ARTIFACT_KINDS[self.artifact_kind])}")
        names = [self.input.name] + [e.name for e in self.extra_inputs]
        if len(set(names)) != len(names):
            raise fail(where, "extra_inputs", f"input names must be unique, got {names}")
        if self.artifact_kind == "tensorrt-engine" and self.tensorrt is None:
            raise fail(where, "", "a 'tensorrt-engine' manifest needs the 'tensorrt' block (version, gpu, "
                                  "compute_capability): rebuild with `python -m export.trt`")


#: Every top-level key, for readers that list them.
MANIFEST_KEYS = tuple(f.name for f in dataclasses.fields(Manifest))

__all__ = ["Manifest", "FORMAT", "SCHEMA_VERSION", "ARTIFACT_KINDS", "PRECISIONS", "MANIFEST_KEYS"]
