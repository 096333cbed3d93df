"""Each registered backend: available or not (with the reason), what it declares it can run, and what its
library reports about this machine (ONNX Runtime's execution providers, OpenVINO's devices and whether its CPU
plugin computes bf16 and INT8).

Availability is the backend's own `probe()` (`runtime.backends`), the very check the Inspector meets, so the
doctor never says "available" for a backend that would then refuse to load.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Dict, Optional

from runtime.backends import REGISTRY, backend_capabilities, backend_class
from runtime.errors import BackendUnavailable, one_line


def _version(package: str) -> Optional[str]:
    """Installed version of a distribution (the first name of a pip requirement), None when absent."""
    name = package.split("=")[0].split(">")[0].split("<")[0].strip()
    if not name:
        return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _onnxruntime_details() -> Dict[str, Any]:
    from runtime.backends.onnxruntime import GPU_PROVIDERS, import_onnxruntime  # noqa: PLC0415

    ort = import_onnxruntime()
    providers = list(ort.get_available_providers())
    return {"version": ort.__version__, "providers": providers,
            "gpu_providers": [p for p in providers if p in GPU_PROVIDERS]}


def _openvino_details() -> Dict[str, Any]:
    """OpenVINO's devices and its CPU plugin's optimisation capabilities: 'BF16' means it computes bf16 in
    hardware (AMX / AVX512-BF16), 'INT8' that it runs integer convolutions."""
    from runtime.backends.openvino import _import_ov  # noqa: PLC0415 - the backend's own import

    ov = _import_ov()
    core = ov.Core()
    devices = list(core.available_devices)
    caps = []
    if "CPU" in devices:
        try:
            caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        except Exception:  # an old plugin without the property: the devices are still worth reporting
            caps = []
    return {"version": str(ov.get_version()) if hasattr(ov, "get_version") else _version("openvino"),
            "devices": devices, "cpu_capabilities": caps, "bf16": "BF16" in caps, "int8": "INT8" in caps}


#: backend -> what its library reports about this machine (only asked when the backend is available)
DETAILS: Dict[str, Callable[[], Dict[str, Any]]] = {
    "onnxruntime": _onnxruntime_details,
    "openvino": _openvino_details,
}
#: what a backend is for, when that is not obvious from its name
ROLES = {
    "onnxruntime": "the embedded default (always installs); the parity reference",
    "openvino": "the fastest CPU path; chosen by auto when installed",
    "tensorrt": "TensorRT engines on an NVIDIA GPU",
    "torch": "comparison: runs the training run's graph in PyTorch (needs the run folder)",
    "triton": "a remote Triton Inference Server; only used when asked for by name",
}


def backend_report(name: str) -> Dict[str, Any]:
    """One backend: available, reason when not, its declared capabilities, its library's version and
    details."""
    caps = backend_capabilities(name)
    out: Dict[str, Any] = {"available": False, "reason": None, "role": ROLES.get(name, ""),
                           "package": caps.package, "version": _version(caps.package) if caps.package else None,
                           "artifact_kinds": list(caps.artifact_kinds), "precisions": list(caps.precisions),
                           "compute_modes": list(caps.compute_modes), "needs_gpu": caps.needs_gpu, "details": {}}
    try:
        backend_class(name).probe()
    except BackendUnavailable as e:
        out["reason"] = str(e)
        return out
    out["available"] = True
    if name in DETAILS:
        try:
            out["details"] = DETAILS[name]()
        except Exception as e:  # the library imports but misbehaves: say so, keep the rest of the report
            out["details"] = {"error": one_line(e)}
    return out


def backends_report() -> Dict[str, Dict[str, Any]]:
    """Every registered backend, in registry order."""
    return {name: backend_report(name) for name in REGISTRY}


__all__ = ["backend_report", "backends_report", "DETAILS", "ROLES"]
