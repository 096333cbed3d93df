"""FP16 variant of an exported inspection graph: FP16 weights and activations where safe, uint8 in, FP32 out.

Made by onnxconverter-common's `float16.convert_float_to_float16(..., keep_io_types=True, op_block_list=...,
node_block_list=...)`, which rewrites initializers and tensor types and puts Casts at the borders of the
blocked regions. Which nodes become FP16 is the method's declaration (`Method.fp16_parts`, written into the
manifest as `graph_parts["fp16"]`, node-name prefixes); everything else stays FP32. For FAIR (and noise2norm)
that is the network, `/model/net/`, because of this measurement:

- the frame adapter (cast of the uint8 frame, scale, channel order, resize): nodes outside `/model/`;
- the pre-processing (`/model/highpass`: the DFT-as-matmul filter, or Sobel) and the scoring (`/model/scorer`:
  MSGMS, CIELAB with its cube-root `Pow`, mean filter, max), by measurement (FAIR c=32, 300 steps at 128 px
  on the demo brick set, 28 test images, ORT CPU; export task report). Max abs map error vs the FP32 graph
  (map maximum 0.59): network only in FP16 8.3e-5; network + high-pass 2.1e-4; network + scorer 1.6e-3 (19x,
  mean error 4x). Image AUROC 0.9896 and pixel AUROC 0.9866 are unchanged (< 0.001 pt) in every variant on this
  small set, so the choice rests on the map error: only `/model/net` (the network, where the time goes) is FP16
  by default; the high-pass and the scorer's convolutions and matmuls are 1 % (128 px) to 2 % (256 px) of the
  graph's FLOPs (torch's flop counter, c=32), the network the rest.
- onnxconverter-common's default op block list (Resize, Range, TopK, Min, Max, ...) stays FP32 everywhere, as
  the converter's authors chose it for ONNX Runtime compatibility: the UNet's four up-sampling Resizes run in
  FP32 between Casts.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterable, Optional, Sequence, Tuple

import onnx

from export.errors import ExportError

def manifest_fp16_prefixes(manifest) -> Tuple[str, ...]:
    """The node-name prefixes the method lets run in FP16, from a `runtime.manifest.Manifest`'s
    `graph_parts["fp16"]` (written by export.onnx from `MethodSpec.fp16_parts`). A manifest written before methods
    declared them has none: its method's declaration today gives them (the graph's node names follow the
    model's children, which are the same); a method that is not registered is an error."""
    parts = manifest.graph_parts
    declared = parts.fp16 if parts is not None else None
    if declared is None:
        from train.errors import ConfigError
        from train.methods import get_method

        try:
            spec = get_method(manifest.method)
        except ConfigError:
            raise ExportError(f"the manifest has no graph_parts['fp16'] (an older export) and its method "
                              f"{manifest.method!r} is not registered here: re-export the model with "
                              f"`python -m export.onnx --run RUN`") from None
        declared = spec.node_prefixes(spec.fp16_parts)
    if isinstance(declared, str):
        declared = [declared]
    prefixes = tuple(str(p) for p in declared)
    if not prefixes:
        raise ExportError("the manifest's graph_parts['fp16'] is empty: its method declares no part that may run "
                          "in FP16; use the FP32 model")
    return prefixes


def blocked_nodes(model: onnx.ModelProto, fp16_prefixes: Optional[Sequence[str]]) -> list:
    """Names of the nodes that stay FP32: every node whose name starts with none of `fp16_prefixes`."""
    if fp16_prefixes is None:
        return []
    prefixes = tuple(fp16_prefixes)
    return [n.name for n in model.graph.node if not n.name.startswith(prefixes)]


def convert_fp16(model: onnx.ModelProto, fp16_prefixes: Optional[Iterable[str]],
                 extra_op_block_list: Sequence[str] = ()) -> onnx.ModelProto:
    """The FP16 variant of an FP32 inspection graph (input uint8 and outputs FP32 unchanged).

    fp16_prefixes: node-name prefixes converted to FP16 (export.onnx passes the method's, `graph_parts["fp16"]`);
    None converts every node except the converter's default op block list and `extra_op_block_list`."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ExportError("FP16 conversion needs onnxconverter-common: pip install onnxconverter-common "
                          "(or the [fp16] extra)") from None
    prefixes = tuple(fp16_prefixes) if fp16_prefixes is not None else None
    node_block = blocked_nodes(model, prefixes)
    if prefixes is not None and len(node_block) == len(model.graph.node):
        raise ExportError(f"no node name starts with {list(prefixes)}: was the graph exported by export.onnx "
                          f"(TorchScript exporter, module-path node names)?")
    op_block = list(float16.DEFAULT_OP_BLOCK_LIST) + list(extra_op_block_list)
    fp32_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    # Stale value_info (from the FP32 graph) misleads the converter's cast placement: let it infer afresh.
    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.value_info[:]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # "the value is out of fp16 range" for clamped tiny weights
        out = float16.convert_float_to_float16(work, keep_io_types=True, op_block_list=op_block,
                                               node_block_list=node_block)
    _restore_fp32_outputs(out, fp32_outputs, set(node_block), set(op_block))
    _fold_cast_round_trips(out)
    del out.graph.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
        onnx.checker.check_model(out, full_check=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types; one line for the user
        raise ExportError(f"the FP16 conversion produced an inconsistent graph ({str(e).splitlines()[0][:200]}); "
                          f"export FP32 instead or report this") from None
    return out


def _cast_to(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _set_cast_to(node: onnx.NodeProto, to: int) -> None:
    for a in node.attribute:
        if a.name == "to":
            a.i = to


def _restore_fp32_outputs(model: onnx.ModelProto, fp32_outputs: set, node_block: set, op_block: set) -> None:
    """Undo the converter's slip on outputs made by a *blocked* node: it casts them to FP16 and retypes the
    graph output FP16 despite keep_io_types. The Cast becomes FP32 -> FP32 (exact) and the output FP32 again;
    a converted (FP16) reader of that tensor gets its own Cast to FP16."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    for out in g.output:
        if out.name not in fp32_outputs or out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            continue
        cast = producer.get(out.name)
        if cast is None or cast.op_type != "Cast" or _cast_to(cast) != onnx.TensorProto.FLOAT16:
            raise ExportError(f"FP16 conversion left output {out.name!r} in FP16 in an unexpected way")
        _set_cast_to(cast, onnx.TensorProto.FLOAT)
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        readers = [n for n in g.node if out.name in n.input]
        for k, reader in enumerate(readers):
            blocked = reader.name in node_block or reader.op_type in op_block
            if blocked or reader.op_type == "Cast":
                continue
            name = f"{out.name}_to_fp16_{k}"
            g.node.append(onnx.helper.make_node("Cast", [out.name], [name], name=f"{reader.name}_input_fp16",
                                                to=onnx.TensorProto.FLOAT16))
            for i, inp in enumerate(reader.input):
                if inp == out.name:
                    reader.input[i] = name
    _topological_sort(g)


def _fold_cast_round_trips(model: onnx.ModelProto) -> None:
    """Remove what only loses precision: Cast(FP16 -> FP32) of a Cast(FP32 -> FP16) (the converter puts such a
    round trip on every edge between two blocked nodes, and its own clean-up misses edges with several readers),
    and Cast(FP32 -> FP32). Readers are rewired to the FP32 source; graph outputs keep their producer."""
    g = model.graph
    outputs = {o.name for o in g.output}
    nodes = list(g.node)  # one list of the node objects, so id() below is stable
    producer = {o: n for n in nodes for o in n.output}
    rename = {}
    drop = set()
    for n in nodes:
        if n.op_type != "Cast" or _cast_to(n) != onnx.TensorProto.FLOAT or n.output[0] in outputs:
            continue
        first = producer.get(n.input[0])
        if first is not None and first.op_type == "Cast" and _cast_to(first) == onnx.TensorProto.FLOAT16:
            src = first.input[0]
            # the source of a converter-made Cast to FP16 is FP32 unless it is itself a cast to something else
            p = producer.get(src)
            if p is not None and p.op_type == "Cast" and _cast_to(p) != onnx.TensorProto.FLOAT:
                continue
            rename[n.output[0]] = src
            drop.add(id(n))
        elif first is not None and first.op_type == "Cast" and _cast_to(first) == onnx.TensorProto.FLOAT:
            rename[n.output[0]] = first.output[0]  # FP32 -> FP32
            drop.add(id(n))
    if not drop:
        return

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    keep = [n for n in nodes if id(n) not in drop]
    for n in keep:
        for i, name in enumerate(n.input):
            n.input[i] = resolve(name)
    used = {name for n in keep for name in n.input} | outputs
    # Casts to FP16 whose every reader went away
    keep = [n for n in keep if not (n.op_type == "Cast" and n.output[0] not in used)]
    copies = [onnx.NodeProto() for _ in keep]
    for c, n in zip(copies, keep):
        c.CopyFrom(n)  # copy before clearing the repeated field that owns `keep`
    del g.node[:]
    g.node.extend(copies)


def _topological_sort(g: onnx.GraphProto) -> None:
    known = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending = [onnx.NodeProto() for _ in g.node]
    for c, n in zip(pending, g.node):
        c.CopyFrom(n)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in known for i in n.input):
                ordered.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ExportError("internal: FP16 graph has a cycle or a dangling input")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


__all__ = ["convert_fp16", "blocked_nodes", "manifest_fp16_prefixes"]
