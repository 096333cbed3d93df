"""TensorRT backend: runs a serialised engine (`NAME.engine` / `NAME.plan`) with TensorRT 8.5 to 11.

Named-tensor API only (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`), which every supported version has; version questions go through
`runtime.trt_version` capabilities. Pinned host buffers and device buffers sized for the profile's max batch,
one CUDA stream, and optionally one CUDA graph per batch size (`cuda_graph=True`).

Before deserialising, the manifest's TensorRT version and compute capability are checked against this
machine: an engine is tied to both, and TensorRT's own failure is a cryptic log line. A mismatch raises
ArtifactMismatch with the `python -m export.trt ...` command that rebuilds it here.

CUDA from Python: `runtime.cuda_runtime`, libcudart through ctypes, which follows the system's CUDA (11.4 on
JetPack 5, 12.x on JetPack 6, 12/13 on x86) where cuda-python is built for one CUDA major and pycuda must be
compiled on the target. The availability probe asks the GPU too, so "unavailable" comes with the reason (no
libcudart, or the CUDA error and the runtime and driver versions). CUDA graphs: `runtime.cuda_graphs.capture`.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime import cuda_graphs, cuda_runtime, trt_version
from runtime.backends.base import Backend
from runtime.errors import ArtifactMismatch, BackendUnavailable, ManifestError, RuntimeInspectError
from runtime.manifest import Manifest, rebuild_command

log = logging.getLogger("runtime.tensorrt")

_NP_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
              "UINT8": np.uint8, "INT64": np.int64}


def _cuda() -> "cuda_runtime.CudaRuntime":
    """libcudart and a GPU that answers, or BackendUnavailable with the reason."""
    try:
        cuda = cuda_runtime.load()
        cuda_runtime.probe_device()
    except cuda_runtime.CudaUnavailable as e:
        raise BackendUnavailable("tensorrt", detail=e.reason) from None
    return cuda


def create_context(engine: Any, artifact_path: str) -> Any:
    """engine.create_execution_context(), which returns None (not an exception) when TensorRT cannot make one,
    typically for lack of GPU memory for the activations."""
    context = engine.create_execution_context()
    if context is None:
        raise RuntimeInspectError(f"TensorRT could not create an execution context for {artifact_path} (see its "
                                  f"log; usually not enough free GPU memory): close other GPU programs or rebuild "
                                  f"with a smaller --profile max")
    return context


def check_engine_compat(manifest: Manifest, artifact_path: str, trt_present: str, cc_present: str,
                        gpu_present: str = "") -> None:
    """Raise ArtifactMismatch when the engine described by `manifest` cannot run with TensorRT `trt_present`
    on a GPU of compute capability `cc_present`. Pure: tested without TensorRT."""
    info = manifest.tensorrt
    rebuild = rebuild_command(manifest, artifact_path)
    if info is None:
        raise ManifestError(f"manifest of {artifact_path} has no 'tensorrt' block: rebuild with `{rebuild}`")
    if not trt_version.same_engine_version(info.version, trt_present):
        raise ArtifactMismatch(f"{artifact_path} was built with TensorRT {info.version} but this machine has "
                               f"TensorRT {trt_present} (engines only run on the version that built them)", rebuild)
    if str(info.compute_capability) != str(cc_present):
        raise ArtifactMismatch(f"{artifact_path} was built for compute capability {info.compute_capability} "
                               f"({info.gpu}) but this GPU is {cc_present} ({gpu_present or 'unknown'})", rebuild)
    if gpu_present and info.gpu and info.gpu not in gpu_present and gpu_present not in info.gpu:
        log.warning("%s was built on %s, running on %s (same compute capability %s): rebuild for best speed",
                    artifact_path, info.gpu, gpu_present, cc_present)


class TensorRTBackend(Backend):
    name = "tensorrt"
    option_names = ("cuda_graph",)
    package = "tensorrt"
    artifact_kinds = ("tensorrt-engine",)
    precisions = ("fp32", "fp16", "int8")  # a property of the ONNX graph the engine was built from
    compute_modes = ("fp32",)  # an FP32 engine computes FP32: TensorRT 11 has no builder precision flags
    int8_placement = "tensorrt"  # Q/DQ on the inputs of weighted ops, which TensorRT fuses
    needs_gpu = True
    devices = ("cuda",)
    kind_names = {"tensorrt-engine": ("a TensorRT engine", "a .engine/.plan")}

    @classmethod
    def refuse_kind(cls, artifact_kind: str) -> RuntimeInspectError:
        return RuntimeInspectError("the tensorrt backend runs engines (.engine/.plan): build one with "
                                   "`python -m export.trt --method M --c C --run RUN`, or run this .onnx with "
                                   "backend 'onnxruntime' and device 'cuda' (its TensorRT execution provider)")

    @classmethod
    def _probe(cls) -> None:
        trt_version.import_tensorrt()
        _cuda()

    # -- load ---------------------------------------------------------------------------------------
    def _load(self) -> None:
        trt = trt_version.import_tensorrt()
        cuda = self._cuda = _cuda()
        caps = self._caps = trt_version.current()
        caps.require("named_io_tensors")
        dev = cuda.device_info()
        check_engine_compat(self.manifest, self.artifact_path, trt.__version__, dev.compute_capability, dev.name)
        self._gpu = dev.name
        self._allocs: List[Tuple[str, int]] = []
        self._graphs: Dict[int, Any] = {}
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(self.artifact_path, "rb") as f:
            self._engine = self._runtime.deserialize_cuda_engine(f.read())
        if self._engine is None:
            raise ArtifactMismatch(f"TensorRT {trt.__version__} could not deserialise {self.artifact_path} "
                                   f"(see the TensorRT log above)", rebuild_command(self.manifest, self.artifact_path))
        engine = self._engine
        self._context = create_context(engine, self.artifact_path)
        self._stream = cuda.stream_create()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._required_extra = [n for n in self._inputs if n != self.input_name]  # an engine has no defaults
        for n in (self.input_name,):
            if n not in self._inputs:
                raise ManifestError(f"manifest input {n!r} is not an input of {self.artifact_path} "
                                    f"(inputs: {', '.join(self._inputs)}): rebuild the engine")
        for n in (self.map_name, self.score_name):
            if n not in self._outputs:
                raise ManifestError(f"manifest output {n!r} is not an output of {self.artifact_path} "
                                    f"(outputs: {', '.join(self._outputs)}): rebuild the engine")
        # Size every buffer for the profile's max batch: set max input shapes, read the output shapes.
        for n in self._inputs:
            shape = tuple(engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):  # dynamic: the optimisation profile's (min, opt, max)
                shape = tuple(engine.get_tensor_profile_shape(n, 0)[2])
            self._context.set_input_shape(n, shape)
            if n == self.input_name:
                self._max_batch = int(shape[0])
        self._host: Dict[str, np.ndarray] = {}
        self._dev: Dict[str, int] = {}
        for n in names:
            dtype = np.dtype(_NP_DTYPES[engine.get_tensor_dtype(n).name])
            shape = tuple(self._context.get_tensor_shape(n))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            hptr = cuda.malloc_host(nbytes)
            self._allocs.append(("host", hptr))
            dptr = cuda.malloc(nbytes)
            self._allocs.append(("device", dptr))
            buf = (ctypes.c_uint8 * nbytes).from_address(hptr)
            self._host[n] = np.frombuffer(buf, dtype=dtype).reshape(shape)
            self._dev[n] = dptr
            self._context.set_tensor_address(n, dptr)
        self._shape_n: Optional[int] = None
        self._use_graph = bool(self.options.get("cuda_graph", False))
        self._graph_off_reason = ""

    @property
    def max_batch(self) -> int:
        return int(getattr(self, "_max_batch", 0) or self.manifest.batch.max)

    # -- infer --------------------------------------------------------------------------------------
    def _copy(self, name: str, n: int, to_device: bool) -> None:
        view = self._host[name][:n]
        dst, src = (self._dev[name], view.ctypes.data) if to_device else (view.ctypes.data, self._dev[name])
        self._cuda.memcpy_async(dst, src, view.nbytes, to_device, self._stream)

    def _enqueue(self) -> bool:
        return bool(self._context.execute_async_v3(self._stream))

    def _execute(self, n: int) -> None:
        graph_exec = self._graphs.get(n) if self._use_graph else None
        if self._use_graph and graph_exec is None:
            graph_exec, why = cuda_graphs.capture(self._cuda, self._stream, self._enqueue, f"a batch of {n}")
            if graph_exec is None:  # nothing ran during the failed capture: run this batch plainly below
                log.warning("CUDA graph capture failed (%s); running %s without CUDA graphs", why,
                            self.artifact_path)
                self._use_graph, self._graph_off_reason = False, why
            else:
                self._graphs[n] = graph_exec
        if graph_exec is not None:
            self._cuda.graph_launch(graph_exec, self._stream)
        elif not self._enqueue():
            raise RuntimeInspectError(f"TensorRT execute_async_v3 failed for a batch of {n} (see its log)")

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        n = frames.shape[0]
        feeds = {self.input_name: frames}
        for name in self._inputs:
            if name != self.input_name:
                feeds[name] = extra[name]  # present: Backend.infer checked _required_extra
        if self._shape_n != n:
            for name, arr in feeds.items():
                if not self._context.set_input_shape(name, arr.shape):  # False, not an exception, on a bad shape
                    raise RuntimeInspectError(f"TensorRT rejected the shape {arr.shape} of input {name!r} of "
                                              f"{self.artifact_path} (outside its optimisation profile?)")
            self._shape_n = n
        for name, arr in feeds.items():
            np.copyto(self._host[name][:n], arr)
            self._copy(name, n, to_device=True)
        self._execute(n)
        for name in (self.map_name, self.score_name):
            self._copy(name, n, to_device=False)
        self._cuda.stream_synchronize(self._stream)
        # copies: the pinned buffers are reused by the next call
        return self._host[self.map_name][:n].copy(), self._host[self.score_name][:n].copy()

    # -- close --------------------------------------------------------------------------------------
    def _close(self) -> None:
        cuda = getattr(self, "_cuda", None)
        if cuda is None:  # the load failed before CUDA was touched
            return
        errors: List[str] = []

        def attempt(fn: Any, *args: Any) -> None:  # free everything even when one call fails
            try:
                fn(*args)
            except RuntimeInspectError as e:
                errors.append(str(e))

        if getattr(self, "_stream", None) is not None:
            attempt(cuda.stream_synchronize, self._stream)
        for g in getattr(self, "_graphs", {}).values():
            attempt(cuda.graph_exec_destroy, g)
        self._graphs = {}
        self._context = self._engine = self._runtime = None
        self._host = {}
        for kind, ptr in reversed(getattr(self, "_allocs", [])):
            attempt(cuda.free_host if kind == "host" else cuda.free, ptr)
        self._allocs = []
        if getattr(self, "_stream", None) is not None:
            attempt(cuda.stream_destroy, self._stream)
            self._stream = None
        if errors:
            log.warning("closing %s: %s", self.artifact_path, "; ".join(errors))

    def describe(self) -> str:
        engine = getattr(self, "_engine", None)
        if engine is None:
            return "tensorrt"
        mem = engine.device_memory_size_v2 if self._caps.device_memory_size_v2 else engine.device_memory_size
        graph = ", CUDA graph" if self._use_graph else \
            (f", CUDA graph off: {self._graph_off_reason}" if self._graph_off_reason else "")
        return f"tensorrt {self._caps.version} on {self._gpu} (max batch {self._max_batch}, " \
               f"{mem / 2**20:.0f} MiB activations{graph})"
