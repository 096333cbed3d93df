"""ONNX Runtime backend: the embedded default that always installs (CPU), and onnxruntime-gpu's CUDA and
TensorRT execution providers where the installed build has them (`ort.get_available_providers()`).

CPU session: intra-op threads = `default_threads()` (the physical cores), graph optimisation ALL, sequential execution. IO binding is
not used: on CPU the numpy arrays are the buffers already. `InferenceSession.run` may be called from several
threads at once (ONNX Runtime documents it), so this backend is `thread_safe` and takes no lock.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.selection import BackendChoice
from runtime.errors import ArtifactMismatch, BackendUnavailable, ManifestError, RuntimeInspectError
from runtime.manifest import rebuild_command

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort  # noqa: PLC0415 - lazy by design
    except ImportError as e:
        raise BackendUnavailable("onnxruntime", "onnxruntime", detail=str(e),
                                 hint="`pip install onnxruntime-gpu` for CUDA/TensorRT execution providers") from None
    return ort


def gpu_providers() -> List[str]:
    """The GPU execution providers of the installed onnxruntime build (empty for the CPU wheel)."""
    try:
        ort = import_onnxruntime()
    except BackendUnavailable:
        return []
    return [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    option_names = ("threads", "providers", "tensorrt_ep")
    package = "onnxruntime"
    thread_safe = True  # InferenceSession.run is safe to call concurrently; nothing else is shared per call
    artifact_kinds = ("onnx",)
    precisions = ("fp32", "fp16", "int8")
    compute_modes = ("fp32",)  # the CPU provider has no bf16 mode; an FP16 graph is an fp16 artifact
    # outputs of weighted ops quantised too: ORT fuses Q/DQ around them into its integer kernels
    int8_placement = "onnxruntime"
    devices = ("cpu", "cuda")
    # auto: first on a GPU (its CUDA/TensorRT providers); on a CPU after OpenVINO, the default that always installs
    auto_priority = {"cuda": 10, "cpu": 30}

    @classmethod
    def choose_by_name(cls, artifact_kind: str, device: str) -> BackendChoice:
        cls.probe()
        if device == "auto":
            gpu = gpu_providers()
            return (BackendChoice(cls.name, "cuda", f"asked for by name; GPU providers {', '.join(gpu)}")
                    if gpu else BackendChoice(cls.name, "cpu", "asked for by name; CPU build"))
        if device == "cuda" and not gpu_providers():
            raise BackendUnavailable("onnxruntime", "onnxruntime-gpu",
                                     detail="device 'cuda' asked but this onnxruntime build has no CUDA or "
                                            "TensorRT execution provider")
        return BackendChoice(cls.name, device, "asked for by name")

    @classmethod
    def auto_reason(cls, device: str) -> Optional[str]:
        if device == "cuda":
            gpu = gpu_providers()
            return f"auto: onnxruntime with {', '.join(gpu)} on the GPU" if gpu else None
        if super().auto_reason(device) is None:
            return None
        return "auto: ONNX Runtime on the CPU (`pip install openvino` for a faster CPU path)"

    @classmethod
    def auto_unavailable(cls, device: str) -> Exception:
        if device == "cuda":
            return BackendUnavailable("onnxruntime", "onnxruntime-gpu",
                                      detail="device 'cuda' asked but no onnxruntime build with CUDA/TensorRT "
                                             "execution providers is installed",
                                      hint="or build a TensorRT engine with `python -m export.trt`")
        return BackendUnavailable("onnxruntime", "onnxruntime", detail="no backend for .onnx models is installed")

    def _check_options(self) -> None:
        super()._check_options()
        providers = self.options.get("providers")
        if providers is not None and (not isinstance(providers, (list, tuple)) or not all(
                isinstance(p, str) or (isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str))
                for p in providers)):
            raise RuntimeInspectError(f"backend onnxruntime option providers must be a list of provider names, "
                                      f"got {providers!r}")

    @classmethod
    def _probe(cls) -> None:
        import_onnxruntime()

    def _providers(self, ort: Any) -> List[Any]:
        if self.options.get("providers"):
            return list(self.options["providers"])
        available = ort.get_available_providers()
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        gpu = [p for p in GPU_PROVIDERS if p in available]
        if not gpu:
            raise BackendUnavailable("onnxruntime", "onnxruntime-gpu",
                                     detail=f"device {self.device!r} asked but this onnxruntime build has only "
                                            f"{', '.join(available)}",
                                     hint="or run on the CPU with device='cpu'")
        providers: List[Any] = []
        if "TensorrtExecutionProvider" in gpu and self.options.get("tensorrt_ep", True):
            root = os.path.splitext(self.artifact_path)[0]
            providers.append(("TensorrtExecutionProvider", {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": root + ".ort-trt-cache",
            }))
        if "CUDAExecutionProvider" in gpu:
            providers.append("CUDAExecutionProvider")
        providers.append("CPUExecutionProvider")
        return providers

    def _load(self) -> None:
        ort = import_onnxruntime()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = int(self.options.get("threads") or self.default_threads())
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = self._providers(ort)
        try:
            self.session = ort.InferenceSession(self.artifact_path, sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise ArtifactMismatch(f"onnxruntime cannot load {self.artifact_path}: {str(e).splitlines()[0][:300]}",
                                   rebuild_command(self.manifest, self.artifact_path)) from None
        inputs = [i.name for i in self.session.get_inputs()]  # required inputs
        optional = [i.name for i in self.session.get_overridable_initializers()]  # inputs with a default
        outputs = [o.name for o in self.session.get_outputs()]
        if self.input_name not in inputs:
            raise ManifestError(f"manifest input {self.input_name!r} is not an input of {self.artifact_path} "
                                f"(inputs: {', '.join(inputs)}): re-export the model so graph and manifest agree")
        for out in (self.map_name, self.score_name):
            if out not in outputs:
                raise ManifestError(f"manifest output {out!r} is not an output of {self.artifact_path} "
                                    f"(outputs: {', '.join(outputs)}): re-export the model")
        frame_input = next(i for i in self.session.get_inputs() if i.name == self.input_name)
        self.check_input_dims([d if isinstance(d, int) else None for d in frame_input.shape], self.artifact_path)
        self._graph_inputs = set(inputs) | set(optional)
        self._required_extra = [n for n in inputs if n != self.input_name]
        self._outputs = [self.map_name, self.score_name]

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        feed = {self.input_name: frames}
        for k, v in extra.items():  # optional inputs: fed only if the graph has them
            if k in self._graph_inputs:
                feed[k] = v
        maps, scores = self.session.run(self._outputs, feed)
        return maps, scores

    def _close(self) -> None:
        self.session = None

    def describe(self) -> str:
        session = getattr(self, "session", None)
        providers = session.get_providers() if session is not None else []
        return f"onnxruntime {', '.join(providers)}".strip()
