"""A Triton Inference Server model repository from an exported model (ONNX or TensorRT engine).

    python -m export.triton --model MODEL.onnx|MODEL.engine|MODEL.plan --out REPO [--name NAME]
                            [--max-batch-size 32] [--instances 2] [--kind gpu|cpu] [--preferred-batch-sizes 4 8]
                            [--queue-delay-us 100] [--no-tensorrt-accelerator]

writes the layout Triton documents for one model:

    REPO/NAME/config.pbtxt          the model configuration (text protobuf, Triton's ModelConfig)
    REPO/NAME/1/model.onnx          version 1: the artifact under Triton's default name (model.plan for engines)
    REPO/NAME/1/model.json          our manifest, beside it (threshold, score normalisation, input size)

The configuration declares the graph as it is: input `frame` UINT8 [H, W, 3] (NHWC, the manifest's channel
order), outputs `anomaly_map` FP32 [1, h, w] and `score` FP32 (a per-frame scalar: dims [1] reshaped to [],
as Triton documents for a [batch] tensor), any optional extra input (noise2norm's `noise`) as optional,
dynamic batching, an instance group, warm-up requests of black frames, and for ONNX on a GPU ONNX Runtime's
TensorRT execution accelerator at the graph's precision. Triton never reads the manifest; the client does
(`runtime.backends.triton`, or `Inspector(REPO/NAME/1/model.onnx, backend="triton")`), so the threshold can
be recalibrated without touching the server. A TensorRT engine only loads in a Triton whose TensorRT version
equals the one it was built with (the manifest's `tensorrt.version`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from export.errors import ExportError
from runtime.errors import cli_exit, writing
from runtime.files import atomic_path, atomic_write
from runtime.manifest import Manifest, load_manifest, verify_artifact

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "tensorrt-engine": ("tensorrt_plan", "model.plan")}
TRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}
WORKSPACE_BYTES = 1 << 30


def model_name(path: Path, name: Optional[str]) -> str:
    """The Triton model name: --name, else the artifact's stem, restricted to a portable directory name."""
    text = name if name is not None else path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise ExportError(f"model name {text!r}: use letters, digits, '_', '-' or '.' (it is a directory name); "
                          f"pass --name")
    return text


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _batch_limits(manifest: Manifest, kind: str, max_batch: int) -> int:
    """max_batch_size for the config: 0 for a fixed-batch artifact (its batch axis is part of dims)."""
    b = manifest.batch
    if not b.dynamic:
        return 0
    if max_batch < 1:
        raise ExportError(f"--max-batch-size {max_batch} must be at least 1")
    if kind == "tensorrt-engine":
        if int(b.min) > 1:
            raise ExportError(f"the engine's batch profile starts at {b.min}; Triton sends batches from 1: rebuild "
                              f"it with `python -m export.trt --profile 1:OPT:MAX`")
        if max_batch > int(b.max):
            raise ExportError(f"--max-batch-size {max_batch} exceeds the engine's profile maximum {b.max}: use "
                              f"--max-batch-size {b.max} or rebuild the engine with a larger --profile")
    return max_batch


def config_pbtxt(manifest: Manifest, name: str, max_batch: int = 32, instances: int = 1, kind: str = "gpu",
                 preferred: Sequence[int] = (), queue_delay_us: int = 100, tensorrt_accelerator: bool = True) -> str:
    """The text of config.pbtxt for an artifact described by `manifest`."""
    if manifest.artifact_kind not in PLATFORMS:
        raise ExportError(f"Triton serves ONNX and TensorRT engines, not {manifest.artifact_kind!r}: give the "
                          f".onnx or .engine")
    if kind not in ("gpu", "cpu"):
        raise ExportError(f"--kind {kind!r}: expected gpu or cpu")
    if manifest.artifact_kind == "tensorrt-engine" and kind != "gpu":
        raise ExportError("a TensorRT engine runs on a GPU only: drop --kind cpu or give the .onnx")
    if instances < 1:
        raise ExportError(f"--instances {instances} must be at least 1")
    platform = PLATFORMS[manifest.artifact_kind][0]
    mbs = _batch_limits(manifest, manifest.artifact_kind, max_batch)
    lead = [] if mbs else [int(manifest.batch.max)]  # a fixed batch is part of every shape
    inp = manifest.input
    mh, mw = inp.model_size or (inp.height, inp.width)
    out_map = manifest.outputs.anomaly_map
    out_score = manifest.outputs.score
    map_dims = [int(d) for d in out_map.shape[1:]] if out_map.shape else [1, mh, mw]
    lines: List[str] = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {mbs}",
        "input [",
        f'  {{ name: "{inp.name}" data_type: TYPE_UINT8 dims: {_dims(lead + [inp.height, inp.width, inp.channels])}'
        f" }}{',' if manifest.extra_inputs else ''}",
    ]
    for i, extra in enumerate(manifest.extra_inputs):
        dtype = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64"}[extra.dtype]
        comma = "," if i + 1 < len(manifest.extra_inputs) else ""
        lines.append(f'  {{ name: "{extra.name}" data_type: {dtype} dims: {_dims(lead + list(extra.shape))} '
                     f"optional: true }}{comma}")
    # score is (N,): with batching Triton needs a non-empty per-item shape, so [1] reshaped to the model's [].
    score = (f'  {{ name: "{out_score.name}" data_type: TYPE_FP32 dims: [ 1 ] reshape: {{ shape: [ ] }} }}'
             if mbs else f'  {{ name: "{out_score.name}" data_type: TYPE_FP32 dims: {_dims(lead)} }}')
    lines += [
        "]",
        "output [",
        f'  {{ name: "{out_map.name}" data_type: TYPE_FP32 dims: {_dims(lead + map_dims)} }},',
        score,
        "]",
        f"instance_group [ {{ count: {int(instances)} kind: KIND_{kind.upper()} }} ]",
    ]
    if mbs:
        pref = sorted({int(p) for p in preferred if 1 <= int(p) <= mbs})
        body = (f"preferred_batch_size: {_dims(pref)} " if pref else "") + \
            f"max_queue_delay_microseconds: {int(queue_delay_us)}"
        lines.append(f"dynamic_batching {{ {body} }}")
    if manifest.artifact_kind == "onnx" and kind == "gpu" and tensorrt_accelerator:
        params = {"precision_mode": TRT_PRECISION[manifest.precision],
                  "max_workspace_size_bytes": str(WORKSPACE_BYTES), "trt_engine_cache_enable": "true",
                  "trt_engine_cache_path": f"/tmp/triton_trt_cache/{name}"}
        plist = " ".join(f'parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items())
        lines.append("optimization { execution_accelerators { gpu_execution_accelerator : [ "
                     f'{{ name : "tensorrt" {plist} }} ] }} }}')
    # Warm-up: black frames at batch 1 and at the largest batch, so the first real requests do not pay for
    # lazy initialisation (TensorRT engine build of the accelerator, CUDA context, allocations).
    sizes = sorted({1, mbs}) if mbs else [1]
    warm = []
    for b in sizes:
        warm.append(f'  {{ name: "black_frames_{b}" batch_size: {b} inputs {{ key: "{inp.name}" value: '
                    f"{{ data_type: TYPE_UINT8 dims: {_dims(lead + [inp.height, inp.width, inp.channels])} "
                    f"zero_data: true }} }} }}")
    lines += ["model_warmup ["] + [",\n".join(warm)] + ["]"]
    return "\n".join(lines) + "\n"


def model_config_schema() -> Any:
    """Triton's own ModelConfig protobuf module (`tritonclient`'s model_config_pb2), or None when absent.

    `import tritonclient.grpc.model_config_pb2` needs the grpc extra (grpcio, which pins an older protobuf);
    the generated module itself needs only protobuf, so it is loaded from its file when the package import
    fails."""
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except ImportError:
        pass
    except RuntimeError:  # tritonclient.grpc without grpcio says so with a RuntimeError
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    if "tritonclient_model_config_pb2" in sys.modules:
        return sys.modules["tritonclient_model_config_pb2"]
    mod_spec = importlib.util.spec_from_file_location("tritonclient_model_config_pb2", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    sys.modules["tritonclient_model_config_pb2"] = module
    return module


def parse_config(text: str) -> Any:
    """config.pbtxt text -> Triton's ModelConfig message (raises ExportError when it does not parse)."""
    schema = model_config_schema()
    if schema is None:
        raise ExportError("tritonclient is not installed: `pip install tritonclient` to validate config.pbtxt")
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as e:
        raise ExportError(f"config.pbtxt does not follow Triton's ModelConfig schema: {e}") from None


def write_repository(model_path, out, name: Optional[str] = None, max_batch: int = 32, instances: int = 1,
                     kind: str = "gpu", preferred: Sequence[int] = (), queue_delay_us: int = 100,
                     tensorrt_accelerator: bool = True, verify: bool = True) -> Path:
    """Write REPO/NAME/{config.pbtxt, 1/model.onnx|model.plan, 1/model.json}; returns REPO/NAME."""
    from export.manifest import derive, write

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ExportError(f"--model {model_path} does not exist: export one with `python -m export.onnx` or "
                          f"`python -m export.trt`")
    manifest = load_manifest(model_path)
    if verify:
        verify_artifact(str(model_path), manifest)
    name = model_name(model_path, name)
    text = config_pbtxt(manifest, name, max_batch, instances, kind, preferred, queue_delay_us, tensorrt_accelerator)
    if model_config_schema() is not None:
        parse_config(text)  # a config Triton would refuse is never written
    model_dir = Path(out) / name
    version_dir = model_dir / "1"
    target = version_dir / PLATFORMS[manifest.artifact_kind][1]
    notes = list(manifest.notes) + [f"Triton model repository copy of {model_path.name} (export.triton)"]
    with writing(f"the model repository --out {out}"):
        with atomic_path(target) as tmp:
            shutil.copyfile(model_path, tmp)
        write(target, derive(manifest, notes=notes))  # model.json beside model.onnx: the same sha256
        atomic_write(model_dir / "config.pbtxt", text)
    return model_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.triton",
                                description="Write a Triton Inference Server model repository for an exported "
                                            "model (or, with --deepstream, a DeepStream nvinfer config).")
    p.add_argument("--model", help="MODEL.onnx, MODEL.engine or MODEL.plan with MODEL.json beside it")
    p.add_argument("--out", required=True, metavar="DIR", help="model repository folder to write into (REPO)")
    p.add_argument("--name", help="model name in the repository (default: the model file's stem)")
    p.add_argument("--max-batch-size", type=int, default=32, metavar="N",
                   help="max_batch_size; dynamic batching up to it (32)")
    p.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    p.add_argument("--kind", default="gpu", choices=["gpu", "cpu"], help="instance kind (KIND_GPU or KIND_CPU)")
    p.add_argument("--preferred-batch-sizes", type=int, nargs="*", default=[], metavar="N",
                   help="preferred batch sizes of the dynamic batcher (default: none, Triton's choice)")
    p.add_argument("--queue-delay-us", type=int, default=100,
                   help="how long the dynamic batcher may hold a request to fill a batch (microseconds)")
    p.add_argument("--no-tensorrt-accelerator", action="store_true",
                   help="ONNX on GPU: plain CUDA execution instead of ONNX Runtime's TensorRT accelerator")
    p.add_argument("--no-verify", action="store_true", help="skip the artifact's sha256 check")
    p.add_argument("--deepstream", action="store_true",
                   help="write a DeepStream nvinfer config and float-planar ONNX instead (the same as "
                        "`python -m export.deepstream`, which has more options)")
    p.add_argument("--run", help="--deepstream: the run MODEL.onnx was exported from (default: its manifest's)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="--deepstream: nvinfer batch-size")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.deepstream:
        from export.deepstream import write_deepstream

        if not args.model:
            raise ExportError("--deepstream needs --model MODEL.onnx (exported by export.onnx; its manifest "
                              "names the run, which is exported again with a float NCHW frame adapter)")
        written = write_deepstream(args.model, args.out, args.run, args.name, args.batch_size)
        print("wrote " + ", ".join(str(p) for p in written))
        return 0
    if not args.model:
        raise ExportError("--model MODEL.onnx|.engine is required")
    model_dir = write_repository(args.model, args.out, args.name, args.max_batch_size, args.instances, args.kind,
                                 args.preferred_batch_sizes, args.queue_delay_us, not args.no_tensorrt_accelerator,
                                 verify=not args.no_verify)
    checked = "checked against Triton's ModelConfig schema" if model_config_schema() is not None else \
        "not schema-checked (pip install tritonclient to check)"
    print(f"wrote {model_dir} (config.pbtxt {checked}); serve with "
          f"`tritonserver --model-repository {Path(args.out).resolve()}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
