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

One optimisation profile (min/opt/max batch, the other dimensions fixed), a timing cache read from and written
back to a file (rebuilds take seconds), and the workspace limit when given.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from export.errors import ExportError
from runtime import trt_version

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


def gpu_info(device: int = 0) -> Tuple[str, str]:
    """(name, 'major.minor') of the CUDA device, through cuda-python (as the runtime does), else torch."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6.1
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]  # older layout
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return name.strip("\x00 "), f"{props.major}.{props.minor}"
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), f"{major}.{minor}"
    except ImportError:
        pass
    raise ExportError("cannot read the GPU's name and compute capability: install cuda-python "
                      "(`pip install cuda-python`) or a CUDA build of torch")


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
) -> BuildResult:
    """Parse `onnx_path`, build a serialised engine for `precision` ('fp32' | 'fp16' | 'int8': the graph must
    already be FP32 / FP16 / Q/DQ), write it to `engine_path`. Raises BackendUnavailable without TensorRT."""
    trt = trt_version.import_tensorrt()
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
                          f"run `python -m export.opcheck {onnx_path}`")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    flag_names: List[str] = []
    if not strongly_typed and caps.builder_precision_flags:
        if precision == "fp16":
            flag_names.append("FP16")
        elif precision == "int8" and caps.int8_flag_needed_for_qdq:
            flag_names.append("INT8")
    for name in list(flag_names):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if "FP16" in flag_names and _pin_layer_precisions(network, trt):
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        flag_names.append("PREFER_PRECISION_CONSTRAINTS")

    shapes = _input_profiles(network, tuple(int(b) for b in batch))
    profile = builder.create_optimization_profile()
    for name, (mn, op, mx) in shapes.items():
        profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log "
                          f"above); try a larger --workspace or a smaller --batch max")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(engine_path, bytes(serialized))
    if cache_path is not None:
        _atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    gpu, cc = gpu_info()
    return BuildResult(
        engine_path=engine_path, tensorrt_version=str(trt.__version__), gpu=gpu, compute_capability=cc,
        strongly_typed=strongly_typed, builder_flags=flag_names,
        profile={"min": int(batch[0]), "opt": int(batch[1]), "max": int(batch[2]),
                 "shapes": {k: [list(s) for s in v] for k, v in shapes.items()}},
        seconds=round(seconds, 2), timing_cache=cache_path,
    )


def _pin_layer_precisions(network, trt) -> int:
    """Weakly typed builds (8.x): pin every computing layer whose outputs are all FP32 or all FP16 to that type,
    so TensorRT keeps the graph's FP32 islands in FP32. Returns the number of pinned layers."""
    skip = {getattr(trt.LayerType, n) for n in ("CONSTANT", "SHAPE", "IDENTITY", "CAST") if hasattr(trt.LayerType, n)}
    floats = (trt.float32, trt.float16)
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip or layer.num_outputs == 0:
            continue
        types = {layer.get_output(k).dtype for k in range(layer.num_outputs)}
        if len(types) == 1 and next(iter(types)) in floats:
            layer.precision = next(iter(types))
            pinned += 1
    return pinned


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


__all__ = ["build_engine", "BuildResult", "gpu_info"]
