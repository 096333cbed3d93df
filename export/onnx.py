"""Export the inspection graph to ONNX: `frame (N, H, W, 3) uint8 -> anomaly_map (N, 1, h, w), score (N,)`.

    python -m export.onnx --run RUN --out MODEL.onnx [--batch-size N] [--opset N] [--frame-size HxW]
                          [--channel-order RGB|BGR] [--fp16] [--noise-input] [--no-simplify]

Writes MODEL.onnx and MODEL.json (the manifest, `runtime.manifest`). The graph is `train.graph.InspectionGraph`,
the module `benchmarks.accuracy` evaluates, exported with the TorchScript exporter (`dynamo=False`): its node
names keep the torch module path (`/model/highpass/...`, `/model/net/enc.0/...`, `/model/scorer/...`); the
manifest lists those prefixes under `graph_parts` by the role the method declares (`Method.parts`), with the
prefixes the method lets FP16 (`graph_parts["fp16"]`) and INT8 (`graph_parts["int8"]`) touch, which
`export.fp16` and `calibration.int8` read. Then: the UINT8 input is cast to float before anything else touches
it (TensorRT takes UINT8 only as network I/O), the graph is constant-folded and simplified with onnxslim (names
kept), and checked with `onnx.checker`. `--fp16` converts it with `export.fp16` (FP16 inside, uint8 in, FP32 out).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import onnx
import torch

from export.errors import ExportError
from export.graph import graph_from_run, method_extra_inputs
from export.manifest import batch_spec, build_manifest, toolkit_versions, write
from export.overwrite import carry_calibration, previous_export
from runtime.errors import cli_exit, writing
from runtime.files import atomic_path
from runtime.manifest import CHANNEL_ORDERS, load_manifest
from train.config import RunConfig

INPUT_NAME = "frame"
OUTPUT_NAMES = ("anomaly_map", "score")


def _config(config_or_meta: Union[RunConfig, Dict[str, Any]]) -> RunConfig:
    if isinstance(config_or_meta, RunConfig):
        return config_or_meta
    d = dict(config_or_meta)
    missing = [k for k in ("method", "image_size") if k not in d]
    if missing:
        raise ExportError(f"export metadata lacks {missing}; pass the run's RunConfig (train.runs.load_config)")
    return RunConfig.from_dict(d)


def graph_parts(model: onnx.ModelProto, graph: torch.nn.Module, method) -> Dict[str, Any]:
    """Node-name prefixes of the graph's parts and their node counts, for the manifest (`graph_parts`).

    `/model/<child>` for each submodule of the anomaly model that owns nodes, listed under its role from
    `method.parts` (train.methods.Method; a child not declared is "other"); `/model/*` counts nodes directly
    under `/model/` (ops of the model's own forward, or of a submodule method other than `forward`, which the
    tracer does not scope); `/standardizer` the map standardisation of a run with map statistics; `/` counts the
    frame adapter outside `/model/`. `fp16` and `int8` list the prefixes (`/model/<child>/`) of the children the
    method lets `export.fp16` cast and `calibration.int8` quantise (`Method.fp16_parts` / `int8_parts`)."""
    anomaly_model = getattr(graph, "model", graph)
    names = [n.name for n in model.graph.node]
    parts: Dict[str, Any] = {"preprocess": [], "network": [], "scoring": []}
    counts: Dict[str, int] = {}
    for child, _ in anomaly_model.named_children():
        prefix = f"/model/{child}"
        n = sum(1 for s in names if s.startswith(prefix + "/"))
        if n:
            counts[prefix] = n
            parts.setdefault(method.parts.get(child, "other"), []).append(prefix)
    in_model = sum(counts.values())
    counts["/model/*"] = sum(1 for s in names if s.startswith("/model/")) - in_model
    if getattr(graph, "standardizer", None) is not None:  # map standardisation (train.map_stats): scoring
        counts["/standardizer"] = sum(1 for s in names if s.startswith("/standardizer/"))
        parts["scoring"].append("/standardizer")
    counts["/"] = len(names) - sum(counts.values())
    parts["fp16"] = method.node_prefixes(method.fp16_parts)
    parts["int8"] = method.node_prefixes(method.int8_parts)
    parts["frame_adapter"] = "nodes outside /model/ (cast, scale, channel order, resize of the frame)"
    parts["nodes"] = counts
    return parts


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:  # onnxslim is a dev extra; torch already constant-folded the graph
        return model
    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(model)


def trace_to_onnx(module: torch.nn.Module, example_args, out_path: Path, input_names, output_names,
                  dynamic_axes: Optional[Dict[str, Dict[int, str]]], opset: int) -> onnx.ModelProto:
    """Trace `module` on `example_args` with the TorchScript exporter (`dynamo=False`: node names keep the module
    path) into a temporary folder beside `out_path` (the user's output folder, made here) and load the graph."""
    with writing(out_path):  # a folder we cannot write in is said here, in one line
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".export-")
    with tmp_dir as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(module, tuple(example_args), str(raw), input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes or None,
                              opset_version=int(opset), do_constant_folding=True, dynamo=False)
        return onnx.load(str(raw))


def save_onnx(model: onnx.ModelProto, out_path: Path) -> Path:
    """Write `model` to `out_path` under a temporary name first, so that a reader never sees half a file."""
    with writing(out_path), atomic_path(out_path) as tmp:
        onnx.save(model, tmp)
    return out_path


def export_onnx(
    graph: torch.nn.Module,
    config_or_meta: Union[RunConfig, Dict[str, Any]],
    out_path,
    batch: Union[str, int] = "dynamic",
    opset: Optional[int] = None,
    simplify: bool = True,
    noise_input: bool = False,
    precision: str = "fp32",
    source_run: Optional[str] = None,
    profile: Optional[Tuple[int, int, int]] = None,
    notes: Optional[list] = None,
) -> Path:
    """Export `graph` (train.graph.InspectionGraph, eval) to `out_path` and write the manifest beside it.

    batch: 'dynamic' (axis named N) or a fixed int. opset: default the method's (`Method.opset`). noise_input:
    add the method's optional extra inputs (`Method.extra_inputs`, e.g. noise2norm's `noise`, shape (N, C, H, W),
    one field per frame). precision: 'fp32' or 'fp16' (`export.fp16`, the method's `fp16_parts`). profile:
    (min, opt, max) batch written to the manifest (default 1/1/32). Returns the path."""
    from train.methods import get_method

    config = _config(config_or_meta)
    method = get_method(config.method)
    opset = method.opset if opset is None else opset
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise ExportError(f"--out {out_path} must end in .onnx (the manifest goes beside it as .json)")
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision {precision!r}: export_onnx writes fp32 or fp16 (int8: calibration.int8)")
    if not (batch == "dynamic" or (isinstance(batch, int) and batch >= 1)):
        raise ExportError(f"batch {batch!r} is neither 'dynamic' nor a positive integer")
    if not 13 <= int(opset) <= 20:
        raise ExportError(f"opset {opset} is outside 13..20; 17 is what TensorRT 8.5 to 11 all read")
    previous = previous_export(out_path)  # before any work: refuse to overwrite what is not ours
    extras = method_extra_inputs(config) if noise_input else {}
    if noise_input and not extras:
        raise ExportError(f"--noise-input: method {config.method!r} has no optional inputs; drop the flag")

    graph = graph.eval().cpu()
    fh, fw = graph.frame_size
    n = 2 if batch == "dynamic" else int(batch)
    gen = torch.Generator().manual_seed(0)
    args = [torch.randint(0, 256, (n, fh, fw, 3), dtype=torch.uint8, generator=gen)]
    input_names = [INPUT_NAME]
    dynamic: Dict[str, Dict[int, str]] = {}
    if batch == "dynamic":
        dynamic = {INPUT_NAME: {0: "N"}, OUTPUT_NAMES[0]: {0: "N"}, OUTPUT_NAMES[1]: {0: "N"}}
    for name, extra in extras.items():
        # one field per frame: the same batch axis N as the frame (one dynamic axis for TensorRT's profile)
        args.append(torch.randn((n,) + tuple(extra.shape), generator=gen))
        input_names.append(name)
        if batch == "dynamic":
            dynamic[name] = {0: "N"}

    model = trace_to_onnx(graph, args, out_path, input_names, OUTPUT_NAMES, dynamic, opset)
    if simplify:
        model = _simplify(model)
    model.graph.name = method.label(config.c)
    model.producer_name = "edge-inspect export"
    onnx.checker.check_model(model, full_check=True)
    parts = graph_parts(model, graph, method)
    extra_versions = ("onnxslim",) if simplify else ()
    if precision == "fp16":
        from export.fp16 import convert_fp16

        model = convert_fp16(model, parts["fp16"])
        extra_versions += ("onnxconverter_common",)
    manifest = build_manifest(
        config, graph, precision=precision, batch=batch_spec(batch, profile), source_run=source_run,
        extra_inputs=extras, graph_parts=parts, versions=toolkit_versions(*extra_versions),
        notes=list(notes or []) + [f"opset {int(opset)}; exported with torch.onnx (TorchScript exporter)"],
    )
    carry_calibration(previous, manifest, model.SerializeToString(), out_path)  # before the old graph is replaced
    save_onnx(model, out_path)
    write(out_path, manifest)
    return out_path


def fp16_variant(fp32_path, out_path=None) -> Path:
    """Write the FP16 variant of an exported FP32 graph (default NAME_fp16.onnx) with its manifest."""
    from export.fp16 import convert_fp16
    from export.manifest import derive
    from runtime.manifest import load_manifest

    fp32_path = Path(fp32_path)
    out_path = Path(out_path) if out_path else fp32_path.with_name(fp32_path.stem + "_fp16.onnx")
    src = load_manifest(fp32_path)
    if src.precision != "fp32":
        raise ExportError(f"{fp32_path} is {src.precision}, not fp32: convert the FP32 export")
    from export.fp16 import manifest_fp16_prefixes

    model = convert_fp16(onnx.load(str(fp32_path)), manifest_fp16_prefixes(src))
    save_onnx(model, out_path)
    versions = dict(src.versions)
    versions.update(toolkit_versions("onnxconverter_common"))
    write(out_path, derive(src, precision="fp16", versions=versions,
                           notes=list(src.notes) + [f"FP16 variant of {fp32_path.name} (export.fp16)"]))
    return out_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.onnx",
                                description="Export a trained run's inspection graph (uint8 frames -> map, score) "
                                            "to ONNX, with a JSON manifest beside it.")
    p.add_argument("--run", required=True, help="trained run folder (config.json + model.safetensors)")
    p.add_argument("--out", required=True, metavar="FILE", help="MODEL.onnx to write (MODEL.json is written beside it)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="a fixed batch size N (default: a dynamic batch axis)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the method's, e.g. 17)")
    p.add_argument("--frame-size", default=None, metavar="HxW",
                   help="camera frame size; if it differs from the model size the graph resizes (bilinear)")
    p.add_argument("--channel-order", default="RGB", choices=CHANNEL_ORDERS,
                   help="channel order of the frames fed to the graph (OpenCV gives BGR)")
    p.add_argument("--fp16", action="store_true",
                   help="write an FP16 graph (uint8 in, FP32 out; the method's fp16 parts only)")
    p.add_argument("--noise-input", action="store_true",
                   help="add the method's optional extra inputs (noise2norm: a run-time noise field; default: "
                        "its seeded constant); a method without any refuses the flag")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim (torch's constant folding only)")
    return p


def parse_batch(size: Optional[int]) -> Union[str, int]:
    """`--batch-size`: "dynamic" when not given, else a positive batch size."""
    if size is None:
        return "dynamic"
    if size < 1:
        raise ExportError(f"--batch-size {size} must be a positive integer (e.g. --batch-size 8), or leave it out "
                          f"for a dynamic batch axis")
    return int(size)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    graph, config = graph_from_run(args.run, args.frame_size, args.channel_order)
    out = export_onnx(graph, config, args.out, batch=parse_batch(args.batch_size), opset=args.opset,
                      simplify=not args.no_simplify, noise_input=args.noise_input,
                      precision="fp16" if args.fp16 else "fp32", source_run=str(args.run))
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MiB) and {out.with_suffix('.json')}")
    kept = load_manifest(out).threshold
    if kept is not None:
        print(f"kept the calibrated threshold {kept.value:g} ({kept.rule}, {kept.date or 'undated'}): the graph is "
              f"byte-identical to the one it was calibrated for")
    return 0


if __name__ == "__main__":
    sys.exit(main())
