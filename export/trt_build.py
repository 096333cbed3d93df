"""Thin TensorRT engine builder: ONNX file -> serialised engine, for TensorRT 8.5 to 11.

Plain TensorRT API, imported lazily through `runtime.trt_version.import_tensorrt` (the one place that imports
it); every version question is a named capability of `runtime.trt_version`, never a version comparison:

- `explicit_batch_flag_required` (8.x): `create_network(1 << EXPLICIT_BATCH)`;
- `strongly_typed_flag` and not `strongly_typed_always` (10.x): `STRONGLY_TYPED`, so the precision is the ONNX
  graph's (FP32 graph, FP16 graph, Q/DQ graph); 11 is strongly typed anyway and has no precision flags;
- `builder_precision_flags` without strong typing (8.x only): `BuilderFlag.FP16` for an FP16 graph, and
  `BuilderFlag.INT8` for a Q/DQ graph (`int8_flag_needed_for_qdq`). A weakly typed 8.x build with FP16 allowed
  may run *any* layer in FP16, including the pre-processing and scoring that the FP16 graph keeps in FP32; so
  each float layer's precision is pinned to the type the ONNX graph gives its output, with
  `PREFER_PRECISION_CONSTRAINTS` (strong typing emulated where the flag does not exist).

One optimisation profile (min/opt/max batch, the other dimensions fixed), a timing cache per TensorRT version and
GPU architecture (`export.trt_timing_cache`; rebuilds take seconds), and the workspace limit when given.

Before any of the minutes-long work, the GPU is asked for its name and compute capability through
`runtime.cuda_runtime` (the runtime's own CUDA binding): a machine whose engine could not run fails here, not
after the build with an engine and no manifest. TF32 is off (`BuilderFlag.TF32` cleared) unless `tf32=True`:
TensorRT computes FP32 layers in TF32 on Ampere and newer by default, which breaks the FP32 engine's parity
(1e-4) with ONNX Runtime and the FP32 islands (pre-processing, scoring) of FP16 and INT8 graphs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from export import trt_timing_cache
from export.errors import ExportError
from runtime import cuda_runtime, trt_version
from runtime.files import atomic_write

Shape = Tuple[int, ...]


@dataclass
class BuildResult:
    engine_path: Path
    tensorrt_version: str
    gpu: str
    compute_capability: str
    strongly_typed: bool
    builder_flags: List[str]
    profile: Dict[str, Any]
    seconds: float
    timing_cache: Optional[Path]
    tf32: bool = False


def gpu_info() -> Tuple[str, str]:
    """(name, 'major.minor') of the current CUDA device, through runtime.cuda_runtime (libcudart via ctypes);
    ExportError saying why (no libcudart, no driver, no GPU: the CUDA error and versions) otherwise."""
    try:
        dev = cuda_runtime.probe_device()
    except cuda_runtime.CudaUnavailable as e:
        raise ExportError(f"no usable NVIDIA GPU, so no engine can be built here: {e.reason}") from None
    return dev.name, dev.compute_capability


def _input_profiles(network, batch: Tuple[int, int, int]) -> Dict[str, Tuple[Shape, Shape, Shape]]:
    """Per network input: (min, opt, max) shapes, the batch axis (first, -1) from `batch`."""
    lo, opt, hi = batch
    out = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        if any(d < 0 for d in shape[1:]):
            raise ExportError(f"input {t.name!r} has dynamic dimensions {shape} besides the batch: export with a "
                              f"fixed --frame-size")
        if shape[0] >= 0:  # static batch graph: the profile is that batch
            out[t.name] = (shape, shape, shape)
        else:
            out[t.name] = ((lo,) + shape[1:], (opt,) + shape[1:], (hi,) + shape[1:])
    return out


def build_engine(
    onnx_path,
    engine_path,
    *,
    precision: str = "fp32",
    batch: Tuple[int, int, int] = (1, 8, 32),
    workspace_mb: Optional[int] = None,
    timing_cache: Optional[os.PathLike] = None,
    verbose: bool = False,
    tf32: bool = False,
) -> BuildResult:
    """Parse `onnx_path`, build a serialised engine for `precision` ('fp32' | 'fp16' | 'int8': the graph must
    already be FP32 / FP16 / Q/DQ), write it to `engine_path`. `timing_cache` names the cache file; the one
    used is keyed by TensorRT version and compute capability (see `trt_timing_cache.keyed_path`). Raises
    BackendUnavailable without TensorRT, ExportError without a usable GPU (checked before anything is built)."""
    trt = trt_version.import_tensorrt()
    gpu, cc = gpu_info()  # before the build: without a GPU the engine could neither be built nor described
    caps = trt_version.capabilities(trt.__version__)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)

    flags = 0
    if caps.explicit_batch_flag_required:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strongly_typed = caps.strongly_typed_always
    if caps.strongly_typed_flag and not caps.strongly_typed_always:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        strongly_typed = True
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {'; '.join(errors)[:500]}; "
                          f"run `python -m export.opcheck --model {onnx_path}`")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    flag_names = _set_precision_flags(config, network, trt, caps, precision, strongly_typed, tf32)

    shapes = _input_profiles(network, tuple(int(b) for b in batch))
    profile = builder.create_optimization_profile()
    for name, (mn, op, mx) in shapes.items():
        profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(profile)

    cache_path = trt_timing_cache.keyed_path(timing_cache, trt.__version__, cc) if timing_cache else None
    trt_timing_cache.attach(config, cache_path)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log "
                          f"above); try a larger --workspace or a smaller --profile max")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(engine_path, bytes(serialized))
    cache_written = trt_timing_cache.save(config, cache_path)
    return BuildResult(
        engine_path=engine_path, tensorrt_version=str(trt.__version__), gpu=gpu, compute_capability=cc,
        strongly_typed=strongly_typed, builder_flags=flag_names,
        profile={"min": int(batch[0]), "opt": int(batch[1]), "max": int(batch[2]),
                 "shapes": {k: [list(s) for s in v] for k, v in shapes.items()}},
        seconds=round(seconds, 2), timing_cache=cache_written, tf32=bool(tf32),
    )


def build_engine_with_manifest(onnx_path, engine_path, *, precision: str, batch: Tuple[int, int, int],
                               workspace_mb: Optional[int] = None, timing_cache: Optional[os.PathLike] = None,
                               verbose: bool = False) -> BuildResult:
    """`build_engine`, then the engine's manifest beside it: the ONNX's manifest with the TensorRT version, GPU,
    compute capability, batch profile and build settings (what the TensorRT backend checks before it loads).
    The one way an engine and its manifest are made (`export.artifacts`, the doctor's smoke build)."""
    from export.manifest import batch_spec, derive, write  # noqa: PLC0415 - manifest helpers, torch-free
    from runtime.manifest import TensorRTInfo, load_manifest  # noqa: PLC0415

    base = load_manifest(onnx_path)
    res = build_engine(onnx_path, engine_path, precision=precision, batch=batch, workspace_mb=workspace_mb,
                       timing_cache=timing_cache, verbose=verbose)
    info = TensorRTInfo(version=res.tensorrt_version, gpu=res.gpu, compute_capability=res.compute_capability,
                        profile=res.profile)
    write(engine_path, derive(base, artifact_kind="tensorrt-engine", tensorrt=info,
                              batch=batch_spec("dynamic", tuple(batch)),
                              source_onnx={"file": Path(onnx_path).name, "sha256": base.sha256},
                              build={"strongly_typed": res.strongly_typed, "builder_flags": res.builder_flags,
                                     "seconds": res.seconds, "workspace_mb": workspace_mb, "tf32": res.tf32}))
    return res


def _set_precision_flags(config, network, trt, caps, precision: str, strongly_typed: bool, tf32: bool) -> List[str]:
    """Set the builder flags a weakly typed build needs for `precision` and clear TF32 unless `tf32`; returns
    the names of the flags set (for the manifest)."""
    names: List[str] = []
    if caps.builder_precision_flags and not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
            names.append("FP16")
            if _pin_layer_precisions(network, trt):
                config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
                names.append("PREFER_PRECISION_CONSTRAINTS")
        elif precision == "int8" and caps.int8_flag_needed_for_qdq:
            config.set_flag(trt.BuilderFlag.INT8)
            names.append("INT8")
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    return names


def _pin_layer_precisions(network, trt) -> int:
    """Weakly typed builds (8.x): pin every computing layer whose outputs are all FP32 or all FP16 to that type,
    both its compute precision and its output types (a layer computing in FP32 may still hand FP16 on to the
    next one unless its output type is pinned too), so TensorRT keeps the graph's FP32 islands in FP32.
    Returns the number of pinned layers."""
    skip = {getattr(trt.LayerType, n) for n in ("CONSTANT", "SHAPE", "IDENTITY", "CAST") if hasattr(trt.LayerType, n)}
    floats = (trt.float32, trt.float16)
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip or layer.num_outputs == 0:
            continue
        types = {layer.get_output(k).dtype for k in range(layer.num_outputs)}
        if len(types) == 1 and next(iter(types)) in floats:
            dtype = next(iter(types))
            layer.precision = dtype
            for k in range(layer.num_outputs):
                layer.set_output_type(k, dtype)
            pinned += 1
    return pinned


__all__ = ["build_engine", "build_engine_with_manifest", "BuildResult", "gpu_info"]
