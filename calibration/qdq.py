"""ONNX graph plumbing for INT8 placement: which nodes are the network, its blocks, the calibration
sub-graph, and what a Q/DQ graph actually quantises.

The inspection graph has parts told apart by node-name prefix (torch module paths survive the export), e.g.
for FAIR pre-processing (cast/scale, resize, high-pass matmuls: ``/model/highpass/...``), the network
(``/model/net/...``) and scoring (MSGMS, Lab, mean filter, max: ``/model/scorer/...``). Only the parts the
method declares (``MethodSpec.int8_parts``, the manifest's ``graph_parts["int8"]``: FAIR's network, a feature
method's backbone) are quantised; for a manifest from before that declaration, the method's declaration today
(the registry's specs import no torch). onnx only (no onnxruntime, no torch).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from calibration.errors import CalibrationError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Node types that only move shapes around; they do not compute on the quantised values.
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Constant", "Reshape",
             "ConstantOfShape", "Range")


def _norm_prefix(p: str) -> str:
    p = str(p).strip()
    if not p:
        raise CalibrationError("an empty node-name prefix was given; give e.g. /model/net/")
    return p if p.endswith("/") else p + "/"


def under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def manifest_int8_prefixes(graph_parts: Any) -> Optional[List[str]]:
    """The prefixes the method lets INT8 quantise, from a manifest's ``graph_parts["int8"]`` (written by
    export.onnx from ``Method.int8_parts``); None for a manifest written before methods declared them."""
    if not isinstance(graph_parts, dict) or "int8" not in graph_parts:
        return None
    v = graph_parts["int8"]
    return [v] if isinstance(v, str) else [str(x) for x in (v or [])]


def method_int8_prefixes(method: Optional[str]) -> List[str]:
    """The INT8 parts method `method` declares today, as node-name prefixes (for a manifest written before
    manifests carried them); CalibrationError when no registered method has that name."""
    from train.errors import ConfigError
    from train.methods import get_method

    try:
        spec = get_method(str(method))
    except ConfigError:
        raise CalibrationError(f"the manifest has no graph_parts['int8'] (an older export) and its method "
                               f"{method!r} is not registered here: re-export the model with `python -m export.onnx`, "
                               f"or name the part to quantise with --prefix") from None
    return spec.node_prefixes(spec.int8_parts)


def network_prefixes(model: onnx.ModelProto, graph_parts: Any = None, override: Sequence[str] = (),
                     method: Optional[str] = None) -> List[str]:
    """Node-name prefixes of the part that is quantised: `override` (--prefix), else the manifest's
    ``graph_parts["int8"]``, else (an older manifest) what its `method` declares today."""
    if override:
        prefixes = [_norm_prefix(p) for p in override]
        source = "--prefix"
    else:
        declared = manifest_int8_prefixes(graph_parts)
        if declared is not None and not declared:
            raise CalibrationError("the manifest's graph_parts['int8'] is empty: its method declares no part that "
                                   "may be quantised; use the FP32 or FP16 model, or pass --prefix")
        source = "the manifest's graph_parts['int8']"
        if declared is None:
            declared = method_int8_prefixes(method)
            source = f"method {method!r}'s int8_parts"
        prefixes = [_norm_prefix(p) for p in declared]
    names = [n.name for n in model.graph.node]
    if not any(under(n, prefixes) for n in names):
        raise CalibrationError(f"no node of the graph starts with {', '.join(prefixes)} ({source}); the part to "
                               f"quantise cannot be found: pass its node-name prefix with --prefix (e.g. /model/net/)")
    return prefixes


def network_nodes(model: onnx.ModelProto, prefixes: Sequence[str]) -> List[str]:
    return [n.name for n in model.graph.node if under(n.name, prefixes)]


def blocks(model: onnx.ModelProto, prefixes: Sequence[str]) -> "OrderedDict[str, List[str]]":
    """The network's blocks (first path component below a prefix: ``/model/net/enc.0/``) that hold a weighted
    op, in graph order, each with its node names. Top-level ops (pooling) belong to no block."""
    out: "OrderedDict[str, List[str]]" = OrderedDict()
    weighted = set()
    for n in model.graph.node:
        for p in prefixes:
            if n.name.startswith(p):
                rest = n.name[len(p):]
                if "/" in rest:
                    key = p + rest.split("/", 1)[0] + "/"
                    out.setdefault(key, []).append(n.name)
                    if n.op_type in WEIGHTED_OPS:
                        weighted.add(key)
                break
    return OrderedDict((k, v) for k, v in out.items() if k in weighted)


def materialize_identity_initializers(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes (torch's export shares equal tensors that way) by a copy of the
    initializer under the Identity's output name, so every weight and bias is an initializer."""
    inits = {i.name: i for i in model.graph.initializer}
    keep, n = [], 0
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            model.graph.initializer.append(t)
            n += 1
        else:
            keep.append(node)
    if n:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return n


def consumers(model: onnx.ModelProto) -> Dict[str, List[onnx.NodeProto]]:
    out: Dict[str, List[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def producers(model: onnx.ModelProto) -> Dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def boundary_outputs(model: onnx.ModelProto, prefixes: Sequence[str]) -> List[str]:
    """Tensors made by network nodes and used outside the network (or graph outputs), in graph order."""
    cons = consumers(model)
    graph_outs = {o.name for o in model.graph.output}
    out: List[str] = []
    for n in model.graph.node:
        if not under(n.name, prefixes):
            continue
        for o in n.output:
            if o in graph_outs or any(not under(c.name, prefixes) for c in cons.get(o, [])):
                out.append(o)
    return out


def truncate_to(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` that ends at `outputs` (float tensors): the nodes they need, nothing else."""
    prod = producers(model)
    needed, stack = set(), list(outputs)
    while stack:
        t = stack.pop()
        node = prod.get(t)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    nodes = [n for n in model.graph.node if id(n) in needed]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes, model.graph.name + "_calibration",
        [i for i in model.graph.input if i.name in used],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs],
        initializer=[i for i in model.graph.initializer if i.name in used],
    )
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="calibration")
    sub.ir_version = model.ir_version
    return sub


def bypass_dequantize_leaving(model: onnx.ModelProto, prefixes: Sequence[str]) -> int:
    """Feed nodes outside the network the un-quantised tensor: where a DequantizeLinear output reaches a
    non-network node (or a graph output), rewire it to the QuantizeLinear's float input. Drops Q/DQ pairs
    left without consumers. Returns the number of rewired inputs."""
    prod = producers(model)
    graph_outs = {o.name for o in model.graph.output}
    rewired = 0
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear"]:
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        src = q.input[0]
        for node in model.graph.node:
            if node is dq or under(node.name, prefixes) or node.op_type in QDQ_OPS:
                continue
            for k, name in enumerate(node.input):
                if name == dq.output[0]:
                    node.input[k] = src
                    rewired += 1
        if dq.output[0] in graph_outs:
            raise CalibrationError(f"graph output {dq.output[0]} is a dequantised tensor; export the model again")
    _drop_dead_qdq(model)
    return rewired


def _drop_dead_qdq(model: onnx.ModelProto) -> None:
    changed = True
    while changed:
        changed = False
        cons = consumers(model)
        outs = {o.name for o in model.graph.output}
        keep = []
        for n in model.graph.node:
            if n.op_type in QDQ_OPS and not any(o in outs or cons.get(o) for o in n.output):
                changed = True
                continue
            keep.append(n)
        if changed:
            del model.graph.node[:]
            model.graph.node.extend(keep)
    # the dropped pairs' scales and zero points: ONNX Runtime warns about every unused initializer it removes
    used = ({i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
            | {i.name for i in model.graph.input})  # an input's default value stays, used or not
    dead = [i for i in model.graph.initializer if i.name not in used]
    for init in dead:
        model.graph.initializer.remove(init)


def _init_arrays(model: onnx.ModelProto) -> Dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


class ActivationQuant(NamedTuple):
    """One quantised activation: its scale and zero point and the integer type's codes."""

    scale: float
    zero_point: int
    dtype: str  # "int8" or "uint8"

    @property
    def representable(self) -> Tuple[float, float]:
        """The float range the codes cover: [(qmin - zp) * scale, (qmax - zp) * scale]."""
        info = np.iinfo(self.dtype)
        return (float(info.min - self.zero_point) * self.scale, float(info.max - self.zero_point) * self.scale)


def activation_quant(model: onnx.ModelProto) -> "OrderedDict[str, ActivationQuant]":
    """{float tensor name: its quantisation} for every quantised activation (QuantizeLinear on a
    non-initializer), in graph order."""
    inits = _init_arrays(model)
    out: "OrderedDict[str, ActivationQuant]" = OrderedDict()
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            scale = inits.get(n.input[1])
            if scale is None or scale.size != 1:
                raise CalibrationError(f"activation {n.input[0]} has a non-scalar or non-constant scale; expected "
                                       f"per-tensor activation quantisation")
            zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            out[n.input[0]] = ActivationQuant(float(scale.reshape(-1)[0]),
                                              int(zp.reshape(-1)[0]) if zp is not None else 0,
                                              zp.dtype.name if zp is not None else "uint8")  # ONNX's default type
    return out


def activation_scales(model: onnx.ModelProto) -> "OrderedDict[str, float]":
    """{float tensor name: INT8 scale} of every quantised activation of a symmetric INT8 graph (TensorRT's
    form); CalibrationError for another form (a UINT8 or non-zero zero point), which has no such scale."""
    quant = activation_quant(model)
    odd = [name for name, q in quant.items() if q.dtype != "int8" or q.zero_point != 0]
    if odd:
        raise CalibrationError(f"{len(odd)} activations (e.g. {odd[0]}) are not symmetric INT8 (zero point 0): this "
                               f"Q/DQ graph is not in TensorRT's form; quantise it with --placement tensorrt")
    return OrderedDict((name, q.scale) for name, q in quant.items())


def qdq_summary(model: onnx.ModelProto, prefixes: Sequence[str]) -> Dict[str, Any]:
    """What a Q/DQ graph quantises and where: counts, the compute nodes fed by a DequantizeLinear, any DQ
    output that reaches a node outside the network (should be none), zero points, per-channel weights."""
    inits = _init_arrays(model)
    cons = consumers(model)
    prod = producers(model)
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    quantized, leaks = [], []
    for n in model.graph.node:
        if n.op_type in QDQ_OPS:
            continue
        if any(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear" for i in n.input):
            if under(n.name, prefixes):
                if n.op_type not in SHAPE_OPS:
                    quantized.append(n.name)
            else:
                leaks.append(n.name)
    nonzero_zp: List[str] = []
    for n in q_nodes + dq_nodes:
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None and np.any(zp != 0):
            nonzero_zp.append(n.name)
    weights: List[Dict[str, Any]] = []
    for n in q_nodes + dq_nodes:  # FP32 weight -> Q -> DQ (tensorrt placement) or INT8 weight -> DQ (onnxruntime)
        w = inits.get(n.input[0])
        if w is None or w.dtype == np.int32 or (n.op_type == "DequantizeLinear" and w.dtype == np.float32):
            continue  # an activation, an INT32 bias, or (never written) a float DQ input
        scale = inits.get(n.input[1])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        dq_outs = [n.output[0]] if n.op_type == "DequantizeLinear" else [d.output[0] for d in cons.get(n.output[0], [])]
        users = [c.name for o in dq_outs for c in cons.get(o, [])]
        weights.append({"tensor": n.input[0], "shape": list(w.shape), "stored": w.dtype.name,
                        "scales": int(scale.size) if scale is not None else 0, "axis": int(axis), "used_by": users})
    zp_types = sorted({onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name for i in model.graph.initializer
                       if any(len(n.input) > 2 and n.input[2] == i.name for n in q_nodes)})
    return {
        "quantize_linear": len(q_nodes),
        "dequantize_linear": len(dq_nodes),
        "activation_tensors": sum(1 for n in q_nodes if n.input[0] not in inits),
        "weight_tensors": len(weights),
        "quantized_nodes": quantized,
        "outside_network_fed_by_dq": leaks,
        "nonzero_zero_points": nonzero_zp,
        "zero_point_types": zp_types,
        "weights": weights,
    }


def weight_parameters(model: onnx.ModelProto, names: Iterable[str]) -> int:
    inits = {i.name: i for i in model.graph.initializer}
    total = 0
    for name in names:
        t = inits.get(name)
        if t is not None:
            total += int(np.prod(t.dims)) if len(t.dims) else 1
    return total


__all__ = ["manifest_int8_prefixes", "method_int8_prefixes", "network_prefixes", "network_nodes", "blocks", "under",
           "materialize_identity_initializers", "boundary_outputs", "truncate_to", "bypass_dequantize_leaving",
           "activation_quant", "activation_scales", "ActivationQuant", "qdq_summary", "weight_parameters", "consumers", "producers"]
