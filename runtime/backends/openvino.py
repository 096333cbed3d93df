"""OpenVINO backend: the fastest CPU path where `openvino` is installed.

Reads exactly the file the manifest names and the Inspector hashed (the ONNX, or an IR `.xml` when the
manifest's artifact_kind is openvino-ir): an IR that happens to sit beside NAME.onnx is never picked up, since
nothing checked it. The dynamic batch axis is reshaped to 1: single frames go through a model compiled with
the LATENCY hint; batches and streams go through a model compiled with the THROUGHPUT hint and a pool of
infer requests (OpenVINO's optimal number), one frame each, started with `start_async` and collected with
`wait()`. Each compiled model is made on first use. A static-batch artifact is run as is.

Threads: an infer request holds its inputs and outputs, so two threads must never share one. Single frames
take a request from a free list (a new one is created when all are busy, so concurrent callers run in
parallel); the throughput pool serves one batch at a time under a lock.

Why not `AsyncInferQueue` with a Python callback: with OpenVINO 2026.4 it deadlocked in our tests when the
compiled model was released (gdb: the main thread joins the CPU executor's worker while holding the GIL;
the worker waits for the GIL to finish the Python callback). The plain pool has no Python code on
OpenVINO's threads, and the same parallelism.

An FP32 artifact is compiled with INFERENCE_PRECISION_HINT f32: OpenVINO would otherwise compute it in bf16 on
CPUs that have AMX or AVX512-BF16, and differ from the other backends (measured on random frames through a
trained c=32 model: up to 0.17 on a map whose maximum is 1.9, 0.027 on the score). Option
`inference_precision=bf16` (CLI: `--backend-option inference_precision=bf16`) asks for bf16: on our AMX CPU it
is where OpenVINO's speed comes from (its f32 convolutions run at the speed of ONNX Runtime's).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.selection import BackendChoice
from runtime.errors import ArtifactMismatch, BackendUnavailable, ManifestError, RuntimeInspectError
from runtime.manifest import rebuild_command, sha256_file

log = logging.getLogger("runtime.backends")


def _import_ov() -> Any:
    try:
        import openvino as ov  # noqa: PLC0415 - lazy by design
        if not hasattr(ov, "Core"):  # releases before 2023.1 keep the API in openvino.runtime
            from openvino import runtime as ov  # type: ignore[no-redef]  # noqa: PLC0415
    except ImportError as e:
        raise BackendUnavailable("openvino", "openvino", detail=str(e)) from None
    return ov


PRECISION_HINTS = ("f32", "bf16", "f16")


class OpenVINOBackend(Backend):
    name = "openvino"
    option_names = ("inference_precision", "threads", "requests")
    option_choices = {"inference_precision": PRECISION_HINTS}
    package = "openvino"
    thread_safe = True  # a request per caller (free list) and a lock on the throughput pool, see the doc
    artifact_kinds = ("onnx", "openvino-ir")
    precisions = ("fp32", "fp16", "int8")
    # compiled for the CPU only here: bf16 where the CPU has AMX / AVX512-BF16 (fp16 would be OpenVINO's GPU)
    compute_modes = ("fp32", "bf16")
    compute_mode_options = {"bf16": {"inference_precision": "bf16"}}
    # Q/DQ on the inputs of weighted ops (the TensorRT placement), which OpenVINO's low-precision pass turns
    # into integer convolutions; the placement benchmarks.latency has run its openvino int8 rows with
    int8_placement = "tensorrt"
    devices = ("cpu",)
    auto_priority = {"cpu": 20}  # auto on a CPU: before ONNX Runtime, when installed (the fastest CPU path)
    kind_names = {"openvino-ir": ("an OpenVINO IR (.xml)", "an OpenVINO IR")}

    @classmethod
    def choose_by_name(cls, artifact_kind: str, device: str) -> BackendChoice:
        if device == "cuda":
            raise RuntimeInspectError("the openvino backend runs on the CPU here: use device 'cpu' or 'auto', or "
                                      "backend 'onnxruntime' for CUDA")
        cls.probe()
        return BackendChoice(cls.name, "cpu", "asked for by name")

    @classmethod
    def auto_reason(cls, device: str) -> Optional[str]:
        if super().auto_reason(device) is None:
            return None
        return "auto: OpenVINO is installed, the fastest CPU path"

    @classmethod
    def _probe(cls) -> None:
        _import_ov()

    def model_path(self) -> str:
        """The file read: the artifact itself, which the manifest names and the Inspector hashed."""
        return self.artifact_path

    def _check_ir_weights(self) -> None:
        """An IR's weights (NAME.bin) are read too: check them against the manifest's `weights_sha256`."""
        weights = os.path.splitext(self.artifact_path)[0] + ".bin"
        want = self.manifest.weights_sha256
        if not want:
            log.warning("manifest of %s has no 'weights_sha256': %s is loaded unchecked", self.artifact_path, weights)
            return
        if not os.path.isfile(weights) or sha256_file(weights) != want:
            raise ArtifactMismatch(f"{weights} is missing or its sha256 differs from the manifest's weights_sha256: "
                                   f"the IR's weights were changed or replaced after export",
                                   rebuild_command(self.manifest, self.artifact_path))

    def _load(self) -> None:
        ov = self._ov = _import_ov()
        self._core = ov.Core()
        path = self.model_path()
        if self.manifest.artifact_kind == "openvino-ir":
            self._check_ir_weights()
        try:
            model = self._core.read_model(path)
        except Exception as e:  # OpenVINO raises RuntimeError with a long trace
            raise ArtifactMismatch(f"openvino cannot read {path}: {str(e).strip().splitlines()[0][:300]}",
                                   rebuild_command(self.manifest, self.artifact_path)) from None
        names = [set(p.get_names()) for p in model.inputs]
        if not any(self.input_name in n for n in names):
            raise ManifestError(f"manifest input {self.input_name!r} is not an input of {path}: re-export the model")
        out_names = set().union(*[set(p.get_names()) for p in model.outputs])
        for out in (self.map_name, self.score_name):
            if out not in out_names:
                raise ManifestError(f"manifest output {out!r} is not an output of {path}: re-export the model")
        frame_port = next(p for p, n in zip(model.inputs, names) if self.input_name in n)
        ps = frame_port.get_partial_shape()
        if ps.rank.is_static:
            self.check_input_dims([d.get_length() if d.is_static else None for d in list(ps)], path)
        self._graph_inputs = set().union(*names)
        self._required_extra = [sorted(n)[0] for n in names if self.input_name not in n]
        if self.static_batch is None:
            shapes = {}
            for port, pn in zip(model.inputs, names):
                ps = port.get_partial_shape()
                if ps.rank.is_static and len(ps) >= 1 and ps[0].is_dynamic:
                    dims = [1] + [d.get_length() if d.is_static else -1 for d in list(ps)[1:]]
                    shapes[port] = ov.PartialShape(dims)
            if shapes:
                model.reshape(shapes)
        self._model = model
        self._latency: Optional[Any] = None  # compiled with the LATENCY hint
        self._free: "queue.SimpleQueue[Any]" = queue.SimpleQueue()  # idle latency requests, one per busy caller
        self._throughput: Optional[Tuple[Any, List[Any]]] = None  # (compiled, pool of infer requests)
        self._compile_lock = threading.Lock()
        self._pool_lock = threading.Lock()

    def _compile(self, hint: str) -> Any:
        config = {"PERFORMANCE_HINT": hint}
        # OpenVINO runs FP32 graphs in bf16/f16 on CPUs that have it (AMX, AVX512-BF16) unless told not to;
        # an FP32 artifact must compute in FP32 to match the other backends (parity <= 1e-4).
        precision = self.options.get("inference_precision") or ("f32" if self.manifest.precision == "fp32" else "")
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        config["INFERENCE_NUM_THREADS"] = int(self.options.get("threads") or self.default_threads())
        compiled = self._core.compile_model(self._model, "CPU", config)
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: what OpenVINO will compute in
        self.compute_precision = chosen.get_type_name() if hasattr(chosen, "get_type_name") else str(chosen)
        return compiled

    def _latency_request(self) -> Any:
        """A request no other thread uses; give it back with `self._free.put(request)`."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._compile_lock:
            if self._latency is None:
                self._latency = self._compile("LATENCY")
            return self._latency.create_infer_request()

    def _pool(self) -> List[Any]:
        """The throughput requests; call with `self._pool_lock` held (one batch at a time uses them all)."""
        if self._throughput is None:
            compiled = self._compile("THROUGHPUT")
            jobs = int(self.options.get("requests") or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._throughput = (compiled, [compiled.create_infer_request() for _ in range(max(1, jobs))])
        return self._throughput[1]

    def _feed(self, frames: np.ndarray, extra: Dict[str, np.ndarray], sl: slice) -> Dict[str, np.ndarray]:
        feed = {self.input_name: frames[sl]}
        for k, v in extra.items():
            if k in self._graph_inputs:
                feed[k] = v[sl]
        return feed

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        n = frames.shape[0]
        if self.static_batch is not None or (n == 1 and self._throughput is None):
            request = self._latency_request()
            try:
                request.infer(self._feed(frames, extra, slice(0, n)))
                return (np.array(request.get_tensor(self.map_name).data, copy=True),
                        np.array(request.get_tensor(self.score_name).data, copy=True))
            finally:
                self._free.put(request)
        with self._pool_lock:
            return self._infer_pool(frames, extra)

    def _infer_pool(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        n = frames.shape[0]
        pool = self._pool()
        maps = scores = None  # allocated once the first frame's output shape is known; one copy per frame
        for start in range(0, n, len(pool)):  # one wave: a frame per request, all in flight together
            wave = list(zip(pool, range(start, min(n, start + len(pool)))))
            for request, i in wave:
                request.start_async(self._feed(frames, extra, slice(i, i + 1)))
            for request, i in wave:
                request.wait()  # releases the GIL
                amap = request.get_tensor(self.map_name).data
                if maps is None:
                    maps = np.empty((n,) + tuple(amap.shape[1:]), np.float32)
                    scores = np.empty((n,), np.float32)
                maps[i] = amap[0]
                scores[i] = request.get_tensor(self.score_name).data.reshape(-1)[0]
        return maps, scores

    def _close(self) -> None:
        # requests first, then the compiled models, then the model and the Core that loaded the plugin
        self._free = queue.SimpleQueue()
        self._latency = self._throughput = None
        self._model = self._core = None

    def describe(self) -> str:
        modes = [m for m, v in (("LATENCY", getattr(self, "_latency", None)),
                                (f"THROUGHPUT x{len(self._throughput[1]) if getattr(self, '_throughput', None) else 0} requests", getattr(self, "_throughput", None))) if v]
        precision = getattr(self, "compute_precision", None)
        return f"openvino CPU {'/'.join(modes) or '(hint chosen per call)'}" + (f", computes {precision}" if precision else "")
