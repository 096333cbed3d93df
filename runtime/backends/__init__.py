"""Backend registry: names -> lazy import paths, what is available, and the `auto` choice.

Which backends exist is decided by what imports (`available_backends()`), never by a flag. Selection:
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
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from runtime.backends.base import default_threads
from runtime.errors import BackendUnavailable, RuntimeInspectError

log = logging.getLogger("runtime.backends")

# name -> (module, class). Importing the module is cheap: it imports its library only in load()/probe().
REGISTRY: Dict[str, Tuple[str, str]] = {
    "onnxruntime": ("runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("runtime.backends.openvino", "OpenVINOBackend"),
    "tensorrt": ("runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("runtime.backends.torch", "TorchBackend"),
    "triton": ("runtime.backends.triton", "TritonBackend"),  # a remote server; only when asked for by name
}
DEVICES = ("auto", "cpu", "cuda")


class BackendChoice(NamedTuple):
    name: str
    device: str
    reason: str


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


def _ort_gpu() -> List[str]:
    from runtime.backends.onnxruntime import gpu_providers  # noqa: PLC0415

    return gpu_providers()


def select_backend(artifact_kind: str, requested: str = "auto", device: str = "auto") -> BackendChoice:
    """Pick the backend for an artifact; raises BackendUnavailable / RuntimeInspectError with what to do."""
    if requested != "auto" and requested not in REGISTRY:
        raise RuntimeInspectError(f"unknown backend {requested!r}; known: auto, {', '.join(REGISTRY)}")
    if device not in DEVICES:
        raise RuntimeInspectError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")

    if requested == "triton":  # the server runs the artifact, whatever its kind (export.triton)
        backend_class("triton").probe()
        return BackendChoice("triton", "server", "asked for by name: a Triton Inference Server runs the model")

    if artifact_kind != "onnx":  # an engine or an IR: the one backend that declares the kind runs it
        return _only_runner(artifact_kind, requested, device)

    if requested == "tensorrt":
        raise RuntimeInspectError("the tensorrt backend runs engines (.engine/.plan): build one with "
                                  "`python -m export.trt --method M --c C --run RUN`, or run this .onnx with "
                                  "backend 'onnxruntime' and device 'cuda' (its TensorRT execution provider)")
    if requested == "torch":
        backend_class("torch").probe()
        return BackendChoice("torch", "cpu" if device == "auto" else device, "asked for by name (comparison)")
    if requested == "openvino":
        if device == "cuda":
            raise RuntimeInspectError("the openvino backend runs on the CPU here: use device 'cpu' or 'auto', or "
                                      "backend 'onnxruntime' for CUDA")
        backend_class("openvino").probe()
        return BackendChoice("openvino", "cpu", "asked for by name")
    if requested == "onnxruntime":
        backend_class("onnxruntime").probe()
        if device == "auto":
            gpu = _ort_gpu()
            return (BackendChoice("onnxruntime", "cuda", f"asked for by name; GPU providers {', '.join(gpu)}")
                    if gpu else BackendChoice("onnxruntime", "cpu", "asked for by name; CPU build"))
        if device == "cuda" and not _ort_gpu():
            raise BackendUnavailable("onnxruntime", "onnxruntime-gpu",
                                     detail="device 'cuda' asked but this onnxruntime build has no CUDA or "
                                            "TensorRT execution provider")
        return BackendChoice("onnxruntime", device, "asked for by name")

    # auto
    if device in ("auto", "cuda"):
        gpu = _ort_gpu()
        if gpu:
            return BackendChoice("onnxruntime", "cuda", f"auto: onnxruntime with {', '.join(gpu)} on the GPU")
        if device == "cuda":
            raise BackendUnavailable("onnxruntime", "onnxruntime-gpu",
                                     detail="device 'cuda' asked but no onnxruntime build with CUDA/TensorRT "
                                            "execution providers is installed",
                                     hint="or build a TensorRT engine with `python -m export.trt`")
    if is_available("openvino"):
        return BackendChoice("openvino", "cpu", "auto: OpenVINO is installed, the fastest CPU path")
    if is_available("onnxruntime"):
        return BackendChoice("onnxruntime", "cpu",
                             "auto: ONNX Runtime on the CPU (`pip install openvino` for a faster CPU path)")
    raise BackendUnavailable("onnxruntime", "onnxruntime", detail="no backend for .onnx models is installed")


#: how errors name an artifact kind that only one backend runs, and what to give instead
_KIND_TEXT = {"tensorrt-engine": ("a TensorRT engine", "a .engine/.plan"),
              "openvino-ir": ("an OpenVINO IR (.xml)", "an OpenVINO IR")}


def _only_runner(artifact_kind: str, requested: str, device: str) -> BackendChoice:
    """The backend for an artifact kind other than ONNX, from the backends' `artifact_kinds` (triton, a server
    that runs what it is given, is chosen by name before this)."""
    runners = [n for n in REGISTRY if n != "triton" and artifact_kind in backend_class(n).artifact_kinds]
    if artifact_kind not in _KIND_TEXT or len(runners) != 1:
        raise RuntimeInspectError(f"unknown artifact kind {artifact_kind!r}; known: onnx, {', '.join(_KIND_TEXT)}")
    name, (what, short) = runners[0], _KIND_TEXT[artifact_kind]
    if requested not in ("auto", name):
        raise RuntimeInspectError(f"backend {requested!r} cannot run {what}: use backend {name!r} or give the .onnx "
                                  f"model instead")
    needs_gpu = backend_class(name).needs_gpu
    if needs_gpu and device == "cpu":
        raise RuntimeInspectError(f"{what} runs on an NVIDIA GPU, not device 'cpu': give the .onnx model to run on "
                                  f"the CPU")
    backend_class(name).probe()
    return BackendChoice(name, "cuda" if needs_gpu else "cpu", f"{short} runs only on {name}")


def create_backend(name: str, artifact_path: str, manifest: Any, device: str = "cpu", **options: Any) -> Any:
    """Instantiate (not load) backend `name` for an artifact."""
    return backend_class(name)(artifact_path, manifest, device=device, **options)


__all__ = ["REGISTRY", "DEVICES", "BackendChoice", "BackendCapabilities", "backend_class", "backend_names",
           "backend_capabilities", "default_threads", "is_available", "available_backends", "select_backend",
           "create_backend"]
