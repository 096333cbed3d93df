"""Backend registry: names -> lazy import paths, what is available, and the `auto` choice.

Which backends exist is decided by what imports (`available_backends()`), never by a flag. Selection reads what
each backend class declares (`runtime.backends.selection`; a new backend is one file and one REGISTRY line);
with the built-in ones:
- `.engine` / `.plan` (artifact_kind "tensorrt-engine") -> tensorrt, the only backend that runs engines;
- `.xml` (artifact_kind "openvino-ir") -> openvino;
- `.onnx` with "auto": on a GPU (device "cuda", or "auto" with onnxruntime-gpu present) onnxruntime with its
  TensorRT/CUDA execution providers; on a CPU OpenVINO when importable (the fastest CPU path), else ONNX
  Runtime (the default that always installs). The tensorrt backend does not take .onnx (build an engine with
  `python -m export.trt`), and torch and triton (a remote Triton server) are only used when asked for by name.
`select_backend` returns a `BackendChoice` whose `reason` says why; the Inspector and the CLI show it.

What each backend can do (artifact kinds, precisions, compute modes, INT8 placement, GPU, options, threads) is
declared on its class; `backend_capabilities(name)` reads it without importing the backend's library, so the
tools (latency, calibration, accuracy, the CLIs) look it up instead of keeping tables of their own.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from runtime.backends import selection
from runtime.backends.base import default_threads
from runtime.backends.selection import DEVICES, BackendChoice
from runtime.errors import BackendUnavailable, RuntimeInspectError

log = logging.getLogger("runtime.backends")

# One line per backend: name -> (module, class). Importing the module is cheap: it imports its library only in
# load()/probe(). Everything else about a backend (kinds, devices, auto priority, ...) is declared on its class.
REGISTRY: Dict[str, Tuple[str, str]] = {
    "onnxruntime": ("runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("runtime.backends.openvino", "OpenVINOBackend"),
    "tensorrt": ("runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("runtime.backends.torch", "TorchBackend"),
    "triton": ("runtime.backends.triton", "TritonBackend"),
}


def backend_class(name: str) -> Any:
    if name not in REGISTRY:
        raise RuntimeInspectError(f"unknown backend {name!r}; known: auto, {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def backend_names() -> Tuple[str, ...]:
    """The registered backend names, in registry order (CLI `--backend` choices)."""
    return tuple(REGISTRY)


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend declares on its class (`runtime.backends.base.Backend`), as data."""

    name: str
    package: str  # the pip package of its library ("" when the standard library is enough)
    artifact_kinds: Tuple[str, ...]  # "onnx", "openvino-ir", "tensorrt-engine", "graph" (in-memory torch graph)
    precisions: Tuple[str, ...]  # artifact precisions it runs: "fp32", "fp16", "int8"
    compute_modes: Tuple[str, ...]  # how it may compute an FP32 artifact, "fp32" first
    compute_mode_options: Mapping[str, Mapping[str, Any]]  # backend options selecting each non-fp32 mode
    int8_placement: Optional[str]  # the calibration.int8 Q/DQ placement it runs fastest; None: no INT8
    needs_gpu: bool
    option_names: Tuple[str, ...]
    default_threads: Optional[int]  # CPU threads when option `threads` is not given; None: takes no count

    def options_for(self, compute_mode: str) -> Dict[str, Any]:
        """The backend options that make it compute an FP32 artifact in `compute_mode`."""
        if compute_mode not in self.compute_modes:
            raise RuntimeInspectError(f"backend {self.name} has no compute mode {compute_mode!r}; its modes: "
                                      f"{', '.join(self.compute_modes)}")
        return dict(self.compute_mode_options.get(compute_mode, {}))


def backend_capabilities(name: str) -> BackendCapabilities:
    """The capabilities of backend `name`, read from its class (its library is not imported)."""
    cls = backend_class(name)
    return BackendCapabilities(
        name=name, package=cls.package, artifact_kinds=tuple(cls.artifact_kinds), precisions=tuple(cls.precisions),
        compute_modes=tuple(cls.compute_modes),
        compute_mode_options={k: dict(v) for k, v in cls.compute_mode_options.items()},
        int8_placement=cls.int8_placement, needs_gpu=bool(cls.needs_gpu), option_names=tuple(cls.option_names),
        default_threads=cls.default_threads())


def is_available(name: str) -> bool:
    try:
        backend_class(name).probe()
    except BackendUnavailable:
        return False
    return True


def available_backends() -> List[str]:
    """Names of the backends whose libraries import on this machine."""
    return [name for name in REGISTRY if is_available(name)]


def select_backend(artifact_kind: str, requested: str = "auto", device: str = "auto") -> BackendChoice:
    """Pick the backend for an artifact from the registered backends' declarations
    (`runtime.backends.selection`); raises BackendUnavailable / RuntimeInspectError with what to do."""
    if requested != "auto" and requested not in REGISTRY:  # before importing any backend module
        raise RuntimeInspectError(f"unknown backend {requested!r}; known: auto, {', '.join(REGISTRY)}")
    return selection.choose({name: backend_class(name) for name in REGISTRY}, artifact_kind, requested, device)


def create_backend(name: str, artifact_path: str, manifest: Any, device: str = "cpu", **options: Any) -> Any:
    """Instantiate (not load) backend `name` for an artifact."""
    return backend_class(name)(artifact_path, manifest, device=device, **options)


__all__ = ["REGISTRY", "DEVICES", "BackendChoice", "BackendCapabilities", "backend_class", "backend_names",
           "backend_capabilities", "default_threads", "is_available", "available_backends", "select_backend",
           "create_backend"]
