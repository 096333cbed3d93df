"""The sections our own tools write about how an artifact was made (the runtime runs without them; tools and
people read them): the graph's parts (`export.onnx`), the threshold's provenance (`calibration.threshold`), the
INT8 quantisation report (`calibration.int8`), and an engine's source ONNX and build (`export.trt`).
Each is a `Section`: named keys, read and checked like the others. Stdlib only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from runtime.manifest.section import Section, spec


@dataclass
class GraphParts(Section):
    """Node-name prefixes of the inspection graph's parts by role (`train.methods.Method.parts`; "other" for a
    child the method does not declare), written by `export.onnx`. `fp16` / `int8`: the prefixes the method lets
    `export.fp16` cast and `calibration.int8` quantise; None in manifests written before methods declared them
    (those were FAIR-shaped: readers fall back to `/model/net/`). `nodes`: node count per prefix."""

    OMIT_DEFAULTS = ("memory", "other", "fp16", "int8")  # as export.onnx writes them: only roles that occur

    preprocess: List[str] = spec(factory=list)
    network: List[str] = spec(factory=list)
    scoring: List[str] = spec(factory=list)
    memory: List[str] = spec(factory=list)
    other: List[str] = spec(factory=list)
    fp16: Optional[List[str]] = None
    int8: Optional[List[str]] = None
    frame_adapter: str = ""
    nodes: Dict[str, int] = spec(factory=dict)


@dataclass
class ThresholdProvenance(Section):
    """How `calibration.threshold` fixed the threshold: the images, the rule and its definition, the score
    statistics, the backend that scored, the model's sha256, the date, and its warnings."""

    OMIT_DEFAULTS = ("validation", "estimate")

    rule: str = ""
    target_fpr: Optional[float] = None
    definition: str = ""
    good_images: Dict[str, Any] = spec(factory=dict)
    validation: Optional[Dict[str, Any]] = None  # the labelled images of the F1 rule
    # the target-FPR rule's estimate: which one was taken and why, the plain quantile and the tail model beside
    # it, the false-alarm rate's interval, and the good images flagged as outliers
    estimate: Optional[Dict[str, Any]] = None
    scores: Dict[str, float] = spec(factory=dict)
    backend: str = ""
    model_sha256: Optional[str] = spec(None, sha256=True)
    date: str = ""
    warnings: List[str] = spec(factory=list)


@dataclass
class SourceArtifact(Section):
    """The FP32 artifact a variant was made from (`quantization.source`)."""

    artifact: str
    sha256: str = spec(sha256=True)


@dataclass
class Quantization(Section):
    """The INT8 report of `calibration.int8`: how the Q/DQ graph was made (tool, formats, calibration images,
    placement), how close it is to FP32 (map errors, accuracy, attempts, per-block sensitivity), its sizes, the
    TensorRT 8.x calibration cache, and the FP32 source. The nested reports are objects as the tool writes them."""

    source: SourceArtifact
    tool: str = ""
    onnxruntime: str = ""
    format: str = ""
    activations: str = ""
    weights: str = ""
    bias: str = ""
    method: str = ""
    headroom: Optional[float] = None
    calibration: Dict[str, Any] = spec(factory=dict)
    placement: Dict[str, Any] = spec(factory=dict)
    map_error: Dict[str, Any] = spec(factory=dict)
    range_overshoot: Optional[Dict[str, Any]] = None
    sizes: Dict[str, Any] = spec(factory=dict)
    accuracy: Dict[str, Any] = spec(factory=dict)
    attempts: List[Dict[str, Any]] = spec(factory=list)
    sensitivity: Optional[List[Dict[str, Any]]] = None
    trt_calibration_cache: Optional[Dict[str, Any]] = None
    date: str = ""
    seconds: Optional[float] = None


@dataclass
class SourceOnnx(Section):
    """The ONNX an engine was built from (`export.trt`)."""

    file: str
    sha256: str = spec(sha256=True)


@dataclass
class EngineBuild(Section):
    """How `export.trt` built an engine: strongly typed or builder flags, TF32 (off: FP32 layers in true FP32),
    workspace limit (None: TensorRT's default), build seconds."""

    strongly_typed: bool
    builder_flags: List[str] = spec(factory=list)
    tf32: bool = False
    workspace_mb: Optional[int] = spec(None, positive=True)
    seconds: Optional[float] = None


@dataclass
class ModelVersion(Section):
    """Where a version came from (`train.update`, DESIGN "Model versions"): its number, the parent artifact it
    was made from (file name and sha256: the running version it replaces, which is never overwritten), what
    changed (`change`: e.g. "update from operator corrections"), what was added (counts: good frames,
    memory-bank rows, fine-tune steps), and the provenance (feedback folder, the corrected frames' sha256, the
    command, the date, who corrected)."""

    number: int = spec(positive=True)
    parent_artifact: str = ""
    parent_sha256: Optional[str] = spec(None, sha256=True)
    change: str = ""
    added: Dict[str, Any] = spec(factory=dict)
    provenance: Dict[str, Any] = spec(factory=dict)
    date: str = ""


__all__ = ["ModelVersion", "GraphParts", "ThresholdProvenance", "SourceArtifact", "Quantization", "SourceOnnx",
           "EngineBuild"]
