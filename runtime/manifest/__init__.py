"""The manifest: the JSON file that travels beside an exported model (`NAME.onnx` + `NAME.json`).

It says what the artifact is (file name, kind, sha256), what it computes (method, c, options, run), how to
feed it (input name, size, layout, channel order, extra inputs), what comes out (output names and shapes),
its precision and batch profile, the score threshold with its score normalisation, for TensorRT engines the
TensorRT version and GPU it was built on, and how our tools made it. `export` writes it with `write_manifest`;
the runtime reads it with `load_manifest` and refuses an artifact that does not match.

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
                         "profile": {"min", "opt", "max", "shapes": {input: [min, opt, max shapes]}}},
     "versions": {"toolkit", "torch", "onnx", "onnxruntime", ...}, "created": "<ISO date>", "notes": [...],
     -- present when the tool that writes them made the artifact (records.py):
     "map_standardization": "<what the map is>"             (export: a run with map statistics),
     "graph_parts": {"preprocess", "network", "scoring", "memory", "other": [prefix], "fp16"?, "int8"?: [prefix],
                     "frame_adapter", "nodes": {prefix: count}}                                  (export.onnx),
     "threshold_provenance": {"rule", "target_fpr", "definition", "good_images", "validation"?, "scores",
                              "backend", "model_sha256", "date", "warnings"}              (calibration.threshold),
     "quantization": {"source": {"artifact", "sha256"}, "tool", ..., "placement", "map_error", "accuracy", ...}
                                                                                          (calibration.int8),
     "source_onnx": {"file", "sha256"}, "build": {"strongly_typed", "builder_flags", "tf32", "workspace_mb",
                                                  "seconds"}                              (export.trt),
     "weights_sha256": "<hex of an OpenVINO IR's NAME.bin>",
     "version": {"number", "parent_artifact", "parent_sha256", "change", "added", "provenance", "date"}
                                                                                          (train.update)}

Every key is a named field of a section (`Section`: reads and checks itself, errors name the key path). A key
the schema does not know is warned about and dropped on reading (an older runtime keeps reading a newer
toolkit's manifest; a change it must not ignore bumps schema_version, which it refuses). Manifests written
before this layout had the same keys (then kept in an untyped bag) and read unchanged.

Score normalisation: ``normalized = (score - good_mean) / (threshold - good_mean)``, 0 at the mean score of
good images and 1.0 at the threshold. Stdlib only.

Files: `section.py` (the Section base and its checks), `sections.py` (how to run the artifact), `records.py`
(how it was made), `document.py` (Manifest), `files.py` (load, write, verify).
"""
from __future__ import annotations

from runtime.manifest.document import ARTIFACT_KINDS, FORMAT, MANIFEST_KEYS, PRECISIONS, SCHEMA_VERSION, Manifest
from runtime.manifest.files import (MAX_MANIFEST_BYTES, artifact_path_for, load_manifest, manifest_path_for, model_label, rebuild_command,
                                    sha256_file, verify_artifact, write_manifest)
from runtime.manifest.records import (EngineBuild, GraphParts, ModelVersion, Quantization, SourceArtifact,
                                      SourceOnnx, ThresholdProvenance)
from runtime.manifest.section import Section
from runtime.manifest.sections import (CHANNEL_ORDERS, EXTRA_DTYPES, HOST_RESIZE, INPUT_DTYPES, THRESHOLD_RULES,
                                       BatchSpec, EngineProfile, ExtraInput, InputSpec, Normalization, Outputs,
                                       OutputSpec, TensorRTInfo, Threshold)

__all__ = [
    "FORMAT", "SCHEMA_VERSION", "ARTIFACT_KINDS", "PRECISIONS", "HOST_RESIZE", "CHANNEL_ORDERS", "THRESHOLD_RULES",
    "INPUT_DTYPES", "EXTRA_DTYPES", "MANIFEST_KEYS",
    "Section", "Manifest", "InputSpec", "ExtraInput", "OutputSpec", "Outputs", "BatchSpec", "Normalization",
    "Threshold", "TensorRTInfo", "EngineProfile",
    "GraphParts", "ThresholdProvenance", "ModelVersion", "Quantization", "SourceArtifact", "SourceOnnx", "EngineBuild",
    "MAX_MANIFEST_BYTES", "load_manifest", "write_manifest", "sha256_file", "manifest_path_for", "artifact_path_for",
    "model_label", "rebuild_command", "verify_artifact",
]
