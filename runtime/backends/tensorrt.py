"""TensorRT backend: runs a serialised engine (`NAME.engine` / `NAME.plan`) with TensorRT 8.5 to 11.

Named-tensor API only (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`), which every supported version has; version questions go through
`runtime.trt_version` capabilities. Pinned host buffers and device buffers sized for the profile's max batch,
one CUDA stream, and optionally one CUDA graph per batch size (`cuda_graph=True`).

Before deserialising, the manifest's TensorRT version and compute capability are checked against this
machine: an engine is tied to both, and TensorRT's own failure is a cryptic log line. A mismatch raises
ArtifactMismatch with the `python -m export.trt ...` command that rebuilds it here.

CUDA from Python: cuda-python (`from cuda.bindings import runtime as cudart`, with the pre-12.6 layout
`from cuda import cudart` as fallback), not pycuda: cuda-python ships wheels for x86_64 and aarch64 (Jetson),
NVIDIA's current TensorRT samples use it, and pycuda is an sdist that must be compiled against nvcc and the
CUDA headers on the target.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.errors import ArtifactMismatch, BackendUnavailable, ManifestError, RuntimeInspectError
from runtime.manifest import Manifest, rebuild_command
from runtime import trt_version

log = logging.getLogger("runtime.tensorrt")

_NP_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
              "UINT8": np.uint8, "INT64": np.int64}


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415 - cuda-python >= 12.6.1
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # noqa: PLC0415 - older cuda-python (removed in 13)
        except ImportError as e:
            raise BackendUnavailable("tensorrt", "cuda-python", detail=f"CUDA bindings missing: {e}") from None
    return cudart


def _check(result: Any) -> Any:
    """cuda-python returns (error, *values): raise on error, return the value(s)."""
    err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise RuntimeInspectError(f"CUDA call failed: {err!r}: check the driver and that the GPU is visible "
                                  f"(nvidia-smi / tegrastats)")
    return rest[0] if len(rest) == 1 else (rest or None)


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

    @classmethod
    def _probe(cls) -> None:
        trt_version.import_tensorrt()
        _import_cudart()

    # -- load ---------------------------------------------------------------------------------------
    def _load(self) -> None:
        trt = trt_version.import_tensorrt()
        cudart = self._cudart = _import_cudart()
        caps = self._caps = trt_version.current()
        caps.require("named_io_tensors")
        device = _check(cudart.cudaGetDevice())
        props = _check(cudart.cudaGetDeviceProperties(device))
        gpu = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        gpu = gpu.strip("\x00 ")
        check_engine_compat(self.manifest, self.artifact_path, trt.__version__, f"{props.major}.{props.minor}", gpu)
        self._gpu = gpu
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
        self._context = engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
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
            hptr = _check(cudart.cudaMallocHost(nbytes))
            self._allocs.append(("host", hptr))
            dptr = _check(cudart.cudaMalloc(nbytes))
            self._allocs.append(("device", dptr))
            buf = (ctypes.c_uint8 * nbytes).from_address(hptr)
            self._host[n] = np.frombuffer(buf, dtype=dtype).reshape(shape)
            self._dev[n] = dptr
            self._context.set_tensor_address(n, dptr)
        self._shape_n: Optional[int] = None
        self._use_graph = bool(self.options.get("cuda_graph", False))

    @property
    def max_batch(self) -> int:
        return int(getattr(self, "_max_batch", 0) or self.manifest.batch.max)

    # -- infer --------------------------------------------------------------------------------------
    def _copy(self, name: str, n: int, to_device: bool) -> None:
        cudart = self._cudart
        view = self._host[name][:n]
        kind = (cudart.cudaMemcpyKind.cudaMemcpyHostToDevice if to_device
                else cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        dst, src = (self._dev[name], view.ctypes.data) if to_device else (view.ctypes.data, self._dev[name])
        _check(cudart.cudaMemcpyAsync(dst, src, view.nbytes, kind, self._stream))

    def _execute(self, n: int) -> None:
        cudart = self._cudart
        if not self._use_graph:
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeInspectError(f"TensorRT execute_async_v3 failed for a batch of {n} (see its log)")
            return
        graph_exec = self._graphs.get(n)
        if graph_exec is None:
            # One plain run after a shape change lets TensorRT finish shape-dependent setup before capture.
            self._context.execute_async_v3(int(self._stream))
            try:
                _check(cudart.cudaStreamBeginCapture(
                    self._stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
                self._context.execute_async_v3(int(self._stream))
                graph = _check(cudart.cudaStreamEndCapture(self._stream))
                graph_exec = _check(cudart.cudaGraphInstantiate(graph, 0))
                self._graphs[n] = graph_exec
            except Exception as e:  # capture unsupported here: run without graphs
                try:
                    cudart.cudaStreamEndCapture(self._stream)
                except Exception:
                    pass
                log.warning("CUDA graph capture failed (%s); running without CUDA graphs", e)
                self._use_graph = False
                return
        _check(cudart.cudaGraphLaunch(graph_exec, self._stream))

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        n = frames.shape[0]
        feeds = {self.input_name: frames}
        for name in self._inputs:
            if name != self.input_name:
                feeds[name] = extra[name]  # present: Backend.infer checked _required_extra
        if self._shape_n != n:
            for name, arr in feeds.items():
                self._context.set_input_shape(name, arr.shape)
            self._shape_n = n
        for name, arr in feeds.items():
            np.copyto(self._host[name][:n], arr)
            self._copy(name, n, to_device=True)
        self._execute(n)
        for name in (self.map_name, self.score_name):
            self._copy(name, n, to_device=False)
        _check(self._cudart.cudaStreamSynchronize(self._stream))
        # copies: the pinned buffers are reused by the next call
        return self._host[self.map_name][:n].copy(), self._host[self.score_name][:n].copy()

    # -- close --------------------------------------------------------------------------------------
    def _close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:  # the load failed before CUDA was touched
            return
        for g in getattr(self, "_graphs", {}).values():
            cudart.cudaGraphExecDestroy(g)
        self._graphs = {}
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamSynchronize(self._stream)
        self._context = self._engine = self._runtime = None
        self._host = {}
        for kind, ptr in reversed(getattr(self, "_allocs", [])):
            (cudart.cudaFreeHost if kind == "host" else cudart.cudaFree)(ptr)
        self._allocs = []
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def describe(self) -> str:
        engine = getattr(self, "_engine", None)
        if engine is None:
            return "tensorrt"
        mem = engine.device_memory_size_v2 if self._caps.device_memory_size_v2 else engine.device_memory_size
        graph = ", CUDA graph" if self._use_graph else ""
        return f"tensorrt {self._caps.version} on {self._gpu} (max batch {self._max_batch}, " \
               f"{mem / 2**20:.0f} MiB activations{graph})"
