"""The backend interface: one small template-method base class (after Polygraphy's `BaseRunner`).

Public: `load()`, `infer(frames_uint8, extra=None) -> (maps, scores)`, `warmup()`, `close()`, and the context
manager. Subclasses implement `_load`, `_infer_impl`, `_close` (and `_probe`, which imports their library and
raises `BackendUnavailable` naming the pip package). `close` frees what `load` made. A backend module never
imports its library at module level.

The base class checks the frames and the required extra inputs, splits a batch larger than the artifact's
maximum into chunks, pads chunks for a static-batch artifact (with copies of the chunk's last frame, see
`pad_batch`), and returns float32 numpy arrays: maps (N, 1, h, w), scores (N,), outputs found by the
manifest's names.

Capabilities: each backend declares as class attributes what it opens (`artifact_kinds`), which artifact
precisions it runs (`precisions`), how it may compute an FP32 artifact (`compute_modes`, and the options that
select each: `compute_mode_options`), which Q/DQ placement of `calibration.int8` it runs fastest
(`int8_placement`), whether it needs a GPU (`needs_gpu`) and its keyword options (`option_names`). Tools read
them through `runtime.backends.backend_capabilities(name)` instead of keeping their own tables. How it is
selected (its devices, its `auto` priority per device, what it says when asked for what it cannot run) is
declared too (`runtime.backends.selection.Selectable`).

Threads: `infer` may be called from several threads at once. A backend whose `_infer_impl` is safe to call
concurrently says so with `thread_safe = True` (ONNX Runtime's `run`; OpenVINO with its pool of requests);
for any other the base class serialises `_infer_impl` with a lock. `close()` is final: `load`/`infer` after
it raise RuntimeInspectError instead of loading the model again. A library's own exception at load or
inference (a shape the graph refuses, an option value it rejects) becomes a RuntimeInspectError naming the
backend, so callers see one error type.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from runtime.backends.selection import Selectable
from runtime.errors import FrameError, ManifestError, RuntimeInspectError, one_line
from runtime.manifest import Manifest

Extra = Optional[Mapping[str, np.ndarray]]


class Backend(Selectable):
    """Runs one exported artifact. Construct cheaply; the library is imported and the model loaded in
    `load()` (called by `infer`/`warmup`/`__enter__` when needed). How it is selected (devices, `auto`
    priority, ...) is declared through `runtime.backends.selection.Selectable`."""

    name = "base"
    package = ""  # the pip package that provides the library
    #: the keyword options this backend reads; anything else is a typo or meant for another backend
    option_names: Tuple[str, ...] = ()
    #: options whose value must be one of a few names (checked at construction), e.g. openvino's precision hint
    option_choices: Mapping[str, Tuple[str, ...]] = {}
    #: True when `_infer_impl` may run in several threads at once; else `infer` holds a lock around it
    thread_safe = False
    #: artifacts it opens: "onnx", "openvino-ir", "tensorrt-engine", "graph" (an in-memory torch graph)
    artifact_kinds: Tuple[str, ...] = ()
    #: artifact precisions it runs (the manifest's `precision`: a property of the graph)
    precisions: Tuple[str, ...] = ()
    #: how it may compute an FP32 artifact; "fp32" first, the others lower precision inside the library
    compute_modes: Tuple[str, ...] = ("fp32",)
    #: the backend options that select each compute mode other than "fp32" (e.g. openvino bf16)
    compute_mode_options: Mapping[str, Mapping[str, Any]] = {}
    #: the Q/DQ placement of `calibration.int8` this backend runs fastest; None when it runs no INT8
    int8_placement: Optional[str] = None
    #: True when it runs only on an NVIDIA GPU
    needs_gpu = False

    def __init__(self, artifact_path: str, manifest: Manifest, device: str = "cpu", **options: Any):
        self.artifact_path = os.fspath(artifact_path)
        self.manifest = manifest
        self.device = device
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            known = ", ".join(self.option_names) or "none"
            raise RuntimeInspectError(f"backend {self.name} has no option {', '.join(unknown)} (its options: {known})")
        self.options = dict(options)
        self._check_options()
        self._loaded = False
        self._closed = False
        self._lock = threading.RLock()  # load/close, and `_infer_impl` of a backend that is not thread-safe
        #: extra graph inputs without a default inside the graph; `_load` fills it, `infer` checks it
        self._required_extra: List[str] = []
        self.input_name = manifest.input.name
        self.map_name = manifest.outputs.anomaly_map.name  # type: ignore[union-attr]
        self.score_name = manifest.outputs.score.name  # type: ignore[union-attr]
        self.input_shape = (manifest.input.height, manifest.input.width, manifest.input.channels)

    @classmethod
    def default_threads(cls) -> Optional[int]:
        """CPU threads it computes with when option `threads` is not given (`default_threads()`); None for a
        backend that takes no thread count (a GPU or a remote server computes)."""
        return default_threads() if "threads" in cls.option_names else None

    # -- availability -------------------------------------------------------------------------------
    @classmethod
    def probe(cls) -> None:
        """Import the backend's library; raise BackendUnavailable (naming the pip package) when it fails."""
        cls._probe()

    @classmethod
    def _probe(cls) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._loaded

    def load(self) -> "Backend":
        if self._loaded:
            return self
        with self._lock:
            if self._closed:
                raise RuntimeInspectError(f"backend {self.name} for {self.artifact_path} was closed: create a new "
                                          f"Inspector (or backend) to run the model again")
            if not self._loaded:
                try:
                    self._load()
                except BaseException as e:
                    try:  # free what a half-finished load made
                        self._close()
                    except Exception:
                        pass
                    if isinstance(e, Exception) and not isinstance(e, RuntimeInspectError):
                        raise RuntimeInspectError(f"{self.name} cannot load {self.artifact_path}: "
                                                  f"{one_line(e)}") from None
                    raise
                self._loaded = True
        return self

    def close(self) -> None:
        """Free the model; final (a later `load`/`infer` raises RuntimeInspectError). Safe from any thread."""
        with self._lock:
            self._closed = True
            if self._loaded:
                try:
                    self._close()
                finally:
                    self._loaded = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Backend":
        return self.load()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; explicit close() is the contract
        try:
            if getattr(self, "_loaded", False):
                self.close()
        except Exception:
            pass

    def describe(self) -> str:
        """One line naming the backend and how it runs (shown by the Inspector and the CLI)."""
        return self.name

    def synchronize(self) -> None:
        """Wait until work queued on a device is done (for timing). `infer` returns host arrays, so for most
        backends nothing is in flight and this does nothing; the torch backend on CUDA overrides it."""

    # -- inference ------------------------------------------------------------------------------------
    @property
    def max_batch(self) -> int:
        return int(self.manifest.batch.max)

    @property
    def static_batch(self) -> Optional[int]:
        """The fixed batch size of a static-batch artifact, None when the batch axis is dynamic."""
        return None if self.manifest.batch.dynamic else int(self.manifest.batch.max)

    def infer(self, frames: np.ndarray, extra: Extra = None) -> Tuple[np.ndarray, np.ndarray]:
        """frames (N, H, W, 3) uint8 in the manifest's size and channel order -> maps (N, 1, h, w) float32,
        scores (N,) float32. `extra` maps optional extra input names to (N, ...) arrays."""
        frames = self._check_frames(frames)
        extra = self._check_extra(extra, frames.shape[0])
        self.load()
        missing = [name for name in self._required_extra if name not in extra]
        if missing:
            raise FrameError(self.missing_extra_message(missing))
        n = frames.shape[0]
        step = self.static_batch or self.max_batch
        if n <= step and (self.static_batch is None or n == step):
            maps, scores = self._call(frames, extra)
            return self._finish(maps, scores, n)
        maps_out: List[np.ndarray] = []
        scores_out: List[np.ndarray] = []
        for start in range(0, n, step):
            chunk = frames[start:start + step]
            ex = {k: v[start:start + step] for k, v in extra.items()} if extra else {}
            m = chunk.shape[0]
            if self.static_batch is not None and m < step:
                chunk = pad_batch(chunk, step)
                ex = {k: pad_batch(v, step) for k, v in ex.items()}
            mp, sc = self._call(np.ascontiguousarray(chunk), ex)
            mp, sc = self._finish(mp, sc, step if self.static_batch else m)
            maps_out.append(mp[:m])
            scores_out.append(sc[:m])
        return np.concatenate(maps_out), np.concatenate(scores_out)

    def _call(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        """`_infer_impl` under the lock unless the backend is thread-safe; a library's exception becomes ours."""
        try:
            if self.thread_safe:
                return self._infer_impl(frames, extra)
            with self._lock:
                if self._closed:
                    raise RuntimeInspectError(f"backend {self.name} was closed during inference")
                return self._infer_impl(frames, extra)
        except RuntimeInspectError:
            raise
        except Exception as e:  # onnxruntime's InvalidArgument, OpenVINO's RuntimeError, ...
            if self._closed:
                raise RuntimeInspectError(f"backend {self.name} was closed during inference") from None
            raise RuntimeInspectError(f"{self.name} inference failed on {self.artifact_path}: {one_line(e)}: "
                                      f"the graph and its manifest disagree or the model is broken (re-export "
                                      f"it)") from None

    def warmup(self, iterations: int = 2, batch: int = 1) -> None:
        """Run a few black frames (and zero extra inputs) so the first real frame does not pay for lazy
        initialisation."""
        self.load()
        b = self.static_batch or max(1, min(batch, self.max_batch))
        frames = np.zeros((b,) + self.input_shape, np.uint8)
        extra = {e.name: np.zeros(tuple(e.shape), e.dtype) for e in self.manifest.extra_inputs}
        for _ in range(max(1, iterations)):
            self.infer(frames, extra)

    def missing_extra_message(self, names: List[str]) -> str:
        """FrameError text for extra inputs the graph requires but the caller did not give."""
        meaning = {e.name: e.meaning for e in self.manifest.extra_inputs}
        parts = [f"{n!r}" + (f" ({meaning[n]})" if meaning.get(n) else "") for n in names]
        return (f"{self.artifact_path} needs the extra input(s) {', '.join(parts)}: pass extra={{name: array}} "
                f"to inspect()/infer(), or export the model without them")

    def _finish(self, maps: Any, scores: Any, n: int) -> Tuple[np.ndarray, np.ndarray]:
        maps = np.asarray(maps, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if maps.ndim == 3:
            maps = maps[:, None]
        if maps.ndim != 4 or maps.shape[0] != n or scores.shape[0] != n:
            raise RuntimeInspectError(
                f"{self.name}: the model returned maps {maps.shape} and scores {scores.shape} for a batch of {n}; "
                f"expected (N, 1, h, w) and (N,): the artifact does not follow the inspection-graph contract "
                f"(re-export it)")
        return maps, scores

    def _check_frames(self, frames: Any) -> np.ndarray:
        if not isinstance(frames, np.ndarray):
            raise FrameError(f"frames must be a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise FrameError(f"frames must be uint8, got {frames.dtype}: convert with frame.astype(np.uint8) "
                             f"(or let the Inspector prepare frames)")
        if frames.ndim != 4 or frames.shape[0] == 0 or tuple(frames.shape[1:]) != self.input_shape:
            raise FrameError(f"frames must be (N, {', '.join(map(str, self.input_shape))}) uint8 for this model, "
                             f"got {frames.shape}: use runtime.Inspector, which resizes and converts frames")
        return np.ascontiguousarray(frames)

    def _check_extra(self, extra: Extra, n: int) -> Dict[str, np.ndarray]:
        if not extra:
            return {}
        declared = {e.name: e for e in self.manifest.extra_inputs}
        out: Dict[str, np.ndarray] = {}
        for k, v in extra.items():
            if k not in declared:
                raise FrameError(f"extra input {k!r} is not declared by the manifest; declared: "
                                 f"{', '.join(declared) or 'none'}")
            arr = np.asarray(v, dtype=declared[k].dtype)
            shape = tuple(declared[k].shape)
            want = (n,) + shape
            if arr.shape == shape or arr.shape == (1,) + shape:  # one field for the whole batch
                arr = np.broadcast_to(arr.reshape(shape), want)
            if arr.shape != want:
                raise FrameError(f"extra input {k!r} must have shape {want}, {(1,) + shape} or {shape}, "
                                 f"got {arr.shape}")
            out[k] = np.ascontiguousarray(arr)
        return out

    # -- options ----------------------------------------------------------------------------------------
    def _check_options(self) -> None:
        """Refuse option values the library would reject later with its own exception; subclasses extend."""
        for key in ("threads", "requests"):
            if key in self.option_names and self.options.get(key) is not None:
                v = self.options[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise RuntimeInspectError(f"backend {self.name} option {key} must be a positive integer, "
                                              f"got {v!r}")
        for key, allowed in self.option_choices.items():
            v = self.options.get(key)
            if v is not None and v not in allowed:
                raise RuntimeInspectError(f"backend {self.name} option {key} must be one of {', '.join(allowed)}, "
                                          f"got {v!r}")

    def check_input_dims(self, dims: List[Optional[int]], where: str) -> None:
        """The graph's static input dims (N, H, W, C; None = dynamic) must match the manifest's input size."""
        want = list(self.input_shape)
        got = list(dims[1:4]) if len(dims) == 4 else None
        if got is None or any(g is not None and g != w for g, w in zip(got, want)):
            raise ManifestError(f"{where}: the graph's input {self.input_name!r} has shape {dims} but the manifest "
                                f"says (N, {', '.join(map(str, want))}): re-export the model so graph and manifest "
                                f"agree")

    # -- subclass hooks -------------------------------------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` (m, ...) filled up to (size, ...) with copies of its last row; the padded rows' outputs are
    dropped. The one padding rule for a static-batch artifact. Why copies and not black frames: a padded row
    is then a real frame, so the padded batch does the work of a full batch of real frames (a black frame
    can take other kernel paths, e.g. all-zero or denormal activations) and cannot turn a graph's
    data-dependent op (a division by local contrast) into NaN or inf in rows nobody reads."""
    m = batch.shape[0]
    if m >= size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - m, axis=0)])


def default_threads() -> int:
    """The one rule for CPU inference threads when the caller gives none: the physical cores this process
    may run on (`physical_cores`). Why not all logical CPUs: two hyper-threads share one core's vector units,
    so threads beyond the physical cores only add contention to convolution-bound graphs; why no fixed cap
    (calibration used min(8, cpu_count)): a cap leaves a large CPU idle for no gain. ONNX Runtime's and
    torch's own defaults are the physical cores too, so results match what those libraries do unasked."""
    return physical_cores()


def physical_cores() -> int:
    """Physical CPU cores (Linux: distinct (physical id, core id) pairs in /proc/cpuinfo), capped by the CPUs
    this process may run on (a container's or taskset's affinity mask); falls back to the logical count.
    Inference threads beyond the physical cores only add contention."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    return max(1, min(_cpuinfo_cores() or allowed, allowed))


def _cpuinfo_cores() -> int:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; 0 when it cannot tell."""
    try:
        pairs = set()
        phys = core = None
        with open("/proc/cpuinfo", "r") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":", 1)[1].strip()
                elif not line.strip():
                    if core is not None:
                        pairs.add((phys, core))
                    phys = core = None
        if core is not None:
            pairs.add((phys, core))
        return len(pairs)
    except OSError:
        return 0
