"""edge-inspect runtime: run an exported inspection graph on frames (torch-free).

`import runtime` is cheap: names are resolved on first use (PEP 562), so neither numpy, OpenCV nor any
backend library is imported until needed. Typical use::

    from runtime import Inspector
    insp = Inspector("model.onnx")            # reads model.json beside it, checks sha256, picks a backend
    result = insp.inspect(frame_bgr)          # -> Result(score, is_anomalous, anomaly_map, overlay(), ...)
"""
from __future__ import annotations

from runtime.lazy import lazy_exports

__all__ = [
    "Inspector", "Result", "Manifest", "load_manifest", "write_manifest", "sha256_file",
    "InspectError", "RuntimeInspectError", "BackendUnavailable", "ManifestError", "ArtifactMismatch", "FrameError", "SourceError",
    "available_backends", "select_backend", "open_source",
]

_LAZY = {
    "Inspector": "runtime.inspector",
    "Result": "runtime.result",
    "Manifest": "runtime.manifest",
    "load_manifest": "runtime.manifest",
    "write_manifest": "runtime.manifest",
    "sha256_file": "runtime.manifest",
    "InspectError": "runtime.errors",
    "RuntimeInspectError": "runtime.errors",
    "BackendUnavailable": "runtime.errors",
    "ManifestError": "runtime.errors",
    "ArtifactMismatch": "runtime.errors",
    "FrameError": "runtime.errors",
    "SourceError": "runtime.errors",
    "available_backends": "runtime.backends",
    "select_backend": "runtime.backends",
    "open_source": "runtime.sources",
}
# Not `overlay`: `runtime.overlay` is a submodule, and importing it rebinds the package attribute to the module.
# Use `from runtime.overlay import overlay`.


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
