"""Fill `runtime.manifest.Manifest` (the schema lives in the runtime; nothing is redefined here) from a run's
config and the inspection graph that was exported."""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runtime.errors import ManifestError
from runtime.manifest import BatchSpec, ExtraInput, GraphParts, InputSpec, Manifest, Outputs, TensorRTInfo, write_manifest

#: What `map_standardization` says of a graph whose map is standardised (train.map_stats).
MAP_STANDARDIZATION = "per-pixel z-score against good images (train.map_stats)"


def toolkit_versions(*extra: str) -> Dict[str, str]:
    """Versions of the toolkit and of the libraries that made the artifact (those that import)."""
    out: Dict[str, str] = {"python": platform.python_version()}
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out["toolkit"] = version("edge-inspect")
        except PackageNotFoundError:
            out["toolkit"] = "0.1.0+src"
    except ImportError:  # pragma: no cover - Python < 3.8
        pass
    import importlib

    for mod in ("torch", "onnx", "onnxruntime") + tuple(extra):
        try:
            out[mod] = str(importlib.import_module(mod).__version__)
        except (ImportError, AttributeError):
            pass
    return out


def batch_spec(batch, profile: Optional[Tuple[int, int, int]] = None) -> BatchSpec:
    """'dynamic' -> dynamic axis (profile min/opt/max if given, else 1/1/32); an int N -> fixed batch N."""
    if batch == "dynamic" or batch is None:
        lo, opt, hi = profile or (1, 1, 32)
        return BatchSpec(dynamic=True, min=int(lo), opt=int(opt), max=int(hi))
    n = int(batch)
    return BatchSpec(dynamic=False, min=n, opt=n, max=n)


def build_manifest(
    config,
    graph,
    *,
    artifact_kind: str = "onnx",
    precision: str = "fp32",
    batch: BatchSpec = None,
    source_run: Optional[str] = None,
    extra_inputs: Optional[Dict[str, Any]] = None,
    graph_parts: Optional[Dict[str, Any]] = None,
    notes: Optional[List[str]] = None,
    versions: Optional[Dict[str, str]] = None,
    tensorrt: Optional[TensorRTInfo] = None,
) -> Manifest:
    """A manifest for `graph` (a train.graph.InspectionGraph) exported from a run with `config` (RunConfig).

    Input: (N, H, W, 3) uint8 NHWC frames in the graph's channel order, at its frame size; `resizes_in_graph`
    says whether the graph resizes them (bilinear) to the model size. Outputs: `anomaly_map` (N, 1, h, w) at the
    model size and `score` (N,). `extra_inputs`: name -> train.methods.ExtraInput (shape without batch, meaning),
    the method's declaration. `graph_parts`: `export.onnx.graph_parts` (a dict or GraphParts). `c` is null for a method without a width. `artifact` and `sha256` are filled by
    `write`/`write_manifest`. Threshold: none (calibrate with `python -m calibration.threshold`; it lives in the
    manifest so no rebuild is needed)."""
    fh, fw = graph.frame_size
    mh, mw = graph.model_size
    inp = InputSpec(height=int(fh), width=int(fw), channel_order=graph.channel_order,
                    resizes_in_graph=bool(graph.resizes), model_size=(int(mh), int(mw)))
    extras = [
        ExtraInput(name=name, shape=[int(s) for s in spec.shape], dtype="float32", optional=True,
                   meaning=str(spec.meaning))
        for name, spec in (extra_inputs or {}).items()
    ]
    standardized = getattr(graph, "standardizer", None) is not None  # the map is a z-score (train.map_stats)
    return Manifest(
        artifact="",
        artifact_kind=artifact_kind,
        sha256="",
        method=config.method,
        c=None if config.c is None else int(config.c),
        input=inp,
        outputs=Outputs.default((mh, mw)),
        precision=precision,
        batch=batch or batch_spec("dynamic"),
        options=dict(config.options),
        source_run=str(source_run) if source_run is not None else None,
        extra_inputs=extras,
        threshold=None,
        tensorrt=tensorrt,
        versions=versions or toolkit_versions(),
        notes=list(notes or []),
        map_standardization=MAP_STANDARDIZATION if standardized else None,
        graph_parts=GraphParts(**graph_parts) if isinstance(graph_parts, dict) else graph_parts,
    )


def graph_manifest(config, graph, source_run: Optional[str] = None) -> Manifest:
    """The manifest of an inspection graph kept in memory (`runtime.backends.torch.TorchBackend.from_graph`):
    built like an export's by `build_manifest` (frame size, channel order, outputs, map standardisation), with
    artifact_kind "graph". Never written: there is no file to name or hash."""
    import torch  # noqa: PLC0415 - loaded already: the graph is a torch module

    # versions of what computes it; toolkit_versions() would import onnx and onnxruntime for nothing
    versions = {"python": platform.python_version(), "torch": str(torch.__version__)}
    return build_manifest(config, graph, artifact_kind="graph", source_run=source_run, versions=versions,
                          notes=["in-memory torch inspection graph (not exported)"])


def write(artifact_path, manifest: Manifest) -> Path:
    """Write `manifest` beside `artifact_path` (NAME.json), hashing the artifact; returns the manifest path."""
    return Path(write_manifest(artifact_path, manifest))


def derive(manifest: Manifest, **changes: Any) -> Manifest:
    """A copy of `manifest` for another artifact made from the same graph (FP16 / Q/DQ variant, engine):
    `changes` set fields by name (e.g. precision, artifact_kind, tensorrt, notes, source_onnx, build; a section may
    be given as a dict of its keys); artifact and sha256 are cleared so that `write` fills them from the new file."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Manifest)})
    if unknown:
        raise ManifestError(f"the manifest has no key {', '.join(map(repr, unknown))}: add a named field to "
                            f"runtime.manifest before writing it")
    out = Manifest.from_dict(manifest.to_dict(), where="manifest")
    return dataclasses.replace(out, artifact="", sha256="", **changes)


__all__ = ["build_manifest", "batch_spec", "derive", "graph_manifest", "toolkit_versions", "write",
           "MAP_STANDARDIZATION"]
