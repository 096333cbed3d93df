"""DeepStream: an nvinfer configuration and the float-planar variant of the inspection graph it runs.

    python -m export.deepstream --model MODEL.onnx --out DIR [--run RUN] [--batch-size 4] [--precision fp16]
    python -m export.triton --deepstream --model MODEL.onnx --out DIR      (the same, fewer options)

nvinfer does not hand a network uint8 NHWC frames: it converts the decoded frame to the network's input size
and colour format and gives the network a planar float tensor (N, 3, H, W) computed as
`net-scale-factor * (pixel - offsets)`. So the graph is exported once more with the frame adapter
`frame_format="float_nchw"` (`train.graph.InspectionGraph`: the same modules, only the cast/transpose of the
uint8 frame differs; the /255 scale stays inside the graph) and nvinfer is told to pass pixels unscaled
(net-scale-factor=1, offsets=0) in RGB (model-color-format=0) at the model size (nvinfer scales the frame,
which replaces the host resize). `network-type=100` ("other") with `output-tensor-meta=1` attaches both
outputs to each frame as tensor meta; `runtime.deepstream.TensorMetaParser` turns them into map, score and
verdict with the threshold of MODEL.json. The score leaves this graph as (N, 1): per frame a 1-element
tensor, which nvinfer's layer info describes more safely than a 0-d one.

Writes DIR/NAME_ds.onnx, DIR/NAME_nvinfer.txt (the [property] group for nvinfer's config-file-path) and
DIR/NAME_ds.json (what the parser needs: output names, map size, the manifest with its threshold).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from export.errors import ExportError
from runtime.errors import cli_exit, writing

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode values
OUTPUTS = ("anomaly_map", "score")


def float_nchw_graph(graph):
    """The float-planar variant of an InspectionGraph: the same model, standardiser and sizes, score (N, 1)."""
    import torch

    from train.graph import InspectionGraph

    if graph.resizes:
        raise ExportError("the graph resizes frames; nvinfer scales frames to the model size itself: export the "
                          "DeepStream variant at the model size")

    class PerFrameScore(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, frame):
            anomaly_map, score = self.inner(frame)
            return anomaly_map, score.reshape(-1, 1)

    inner = InspectionGraph(graph.model, graph.model_size, None, "RGB", graph.standardizer, frame_format="float_nchw")
    return PerFrameScore(inner).eval()


def export_float_onnx(graph, out_path: Path, opset: int = 17) -> Path:
    """Export `float_nchw_graph(graph)` with a dynamic batch axis; returns the path."""
    import onnx
    import torch

    from export.onnx import _simplify, save_onnx, trace_to_onnx

    h, w = graph.model_size
    example = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255.0
    dynamic = {"frame": {0: "N"}, OUTPUTS[0]: {0: "N"}, OUTPUTS[1]: {0: "N"}}
    model = _simplify(trace_to_onnx(float_nchw_graph(graph), (example,), out_path, ["frame"], OUTPUTS, dynamic,
                                    opset))
    model.producer_name = "edge-inspect export.deepstream"
    onnx.checker.check_model(model, full_check=True)
    return save_onnx(model, out_path)


def nvinfer_config(onnx_name: str, model_size, batch_size: int = 1, precision: str = "fp32",
                   engine_name: Optional[str] = None, gpu_id: int = 0, unique_id: int = 1) -> str:
    """The text of an nvinfer config file for the float-planar graph `onnx_name` (paths relative to it)."""
    if precision not in NETWORK_MODE:
        raise ExportError(f"--precision {precision!r}: expected one of {', '.join(NETWORK_MODE)}")
    if batch_size < 1:
        raise ExportError(f"--batch-size {batch_size} must be at least 1")
    h, w = (int(v) for v in model_size)
    engine = engine_name or f"{onnx_name}_b{batch_size}_gpu{gpu_id}_{precision}.engine"
    lines = [
        "# nvinfer config written by `python -m export.deepstream` (edge-inspect)",
        "[property]",
        f"gpu-id={gpu_id}",
        f"onnx-file={onnx_name}",
        "# built by nvinfer from the ONNX on first start and reused after (same GPU, same TensorRT)",
        f"model-engine-file={engine}",
        f"batch-size={batch_size}",
        f"network-mode={NETWORK_MODE[precision]}",
        "# 100 = other: no detector/classifier post-processing; the outputs go to the frame as tensor meta",
        "network-type=100",
        "output-tensor-meta=1",
        f"output-blob-names={';'.join(OUTPUTS)}",
        f"infer-dims=3;{h};{w}",
        "# the graph scales by 1/255 itself: nvinfer passes pixel values (0..255) unscaled, RGB, planar",
        "net-scale-factor=1.0",
        "offsets=0;0;0",
        "model-color-format=0",
        "maintain-aspect-ratio=0",
        "scaling-filter=1",
        "process-mode=1",
        f"gie-unique-id={unique_id}",
    ]
    return "\n".join(lines) + "\n"


def write_deepstream(model_path, out, run=None, name: Optional[str] = None, batch_size: int = 1,
                     precision: str = "fp32", opset: int = 17, engine_name: Optional[str] = None) -> List[Path]:
    """Write DIR/NAME_ds.onnx, DIR/NAME_nvinfer.txt and DIR/NAME_ds.json for an exported model; returns them."""
    from runtime.manifest import load_manifest

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ExportError(f"--model {model_path} does not exist: export one with `python -m export.onnx`")
    manifest = load_manifest(model_path)
    run = run or manifest.source_run
    if not run:
        raise ExportError(f"{model_path.with_suffix('.json')} names no source run: pass --run RUN (the run "
                          f"the model was exported from)")
    if manifest.extra_inputs:
        raise ExportError("the model has extra inputs (--noise-input); nvinfer feeds one input: export it without")
    if not Path(run).is_dir():
        raise ExportError(f"run folder {run} (the model's source) does not exist here: pass --run RUN")
    from train.methods import get_method
    from train.runs import load_graph

    # The same graph as MODEL.onnx: its scoring options and, when it has them, the run's map statistics.
    scoring = {k: v for k, v in manifest.options.items() if k in get_method(manifest.method).scoring_options}
    graph, _ = load_graph(run, "cpu", None, "RGB", scoring=scoring,
                          map_stats=manifest.map_standardization is not None)
    if tuple(graph.model_size) != tuple(manifest.input.model_size or manifest.input_size):
        raise ExportError(f"run {run} has model size {graph.model_size}, the manifest {manifest.input.model_size}: "
                          f"pass the run the model was exported from")
    out = Path(out)
    stem = name or model_path.stem
    onnx_path = export_float_onnx(graph, out / f"{stem}_ds.onnx", opset)
    cfg_path = out / f"{stem}_nvinfer.txt"
    parser_path = out / f"{stem}_ds.json"
    with writing(out):
        cfg_path.write_text(nvinfer_config(onnx_path.name, graph.model_size, batch_size, precision, engine_name))
        parser_path.write_text(json.dumps({
            "format": "edge-inspect-deepstream", "onnx": onnx_path.name, "outputs": list(OUTPUTS),
            "map_size": [int(v) for v in graph.model_size], "manifest": manifest.to_dict(),
        }, indent=2) + "\n")
    return [onnx_path, cfg_path, parser_path]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.deepstream",
                                description="Write a DeepStream nvinfer config and the float-planar ONNX it runs.")
    p.add_argument("--model", required=True, help="MODEL.onnx exported by export.onnx (its MODEL.json gives the "
                                                  "run, the threshold and the normalisation)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write NAME_ds.onnx, NAME_nvinfer.txt, NAME_ds.json")
    p.add_argument("--run", help="the run MODEL.onnx was exported from (default: the manifest's source_run)")
    p.add_argument("--name", help="file name stem (default: the model's)")
    p.add_argument("--batch-size", type=int, default=1, help="nvinfer batch-size (streams batched by nvstreammux)")
    p.add_argument("--precision", default="fp32", choices=list(NETWORK_MODE), help="nvinfer network-mode")
    p.add_argument("--engine-file", metavar="NAME",
                   help="the config's model-engine-file name (default: nvinfer's own naming beside the ONNX)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    written = write_deepstream(args.model, args.out, args.run, args.name, args.batch_size, args.precision,
                               engine_name=args.engine_file)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
