"""Compute and size of an exported ONNX graph, read from the graph itself (never typed in).

`onnx_stats(path)` fixes the batch axis to 1, runs ONNX shape inference and sums the multiply-accumulates of
every Conv, ConvTranspose, MatMul and Gemm (and their integer / QLinear forms, so a Q/DQ or QOperator INT8
graph counts the same) from the inferred shapes. The result is GMACs per image of the *whole* inspection
graph: pre-processing (high-pass as matrix products), the network and the scoring convolutions. Additions,
pooling and resizes are not counted (as torch's flop counter, which `train.summary` uses, does not count them).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

# op type -> (index of the data input, index of the weight / B input) for the MAC count
_CONV_LIKE = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_LIKE = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _dims(type_proto) -> Optional[List[int]]:
    """Concrete dims of a tensor type, or None when any dim is unknown / symbolic."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            return None
    return dims


def _fix_batch(model, batch: int = 1) -> None:
    """Set every symbolic or unknown leading input dim to `batch` and drop stale intermediate shapes."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        shape = inp.type.tensor_type.shape
        for i, d in enumerate(shape.dim):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                if i != 0:
                    continue  # only the batch axis is ours to fix; other unknown dims stay unknown
                d.Clear()
                d.dim_value = batch
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _shape_table(model) -> Dict[str, List[int]]:
    shapes: Dict[str, List[int]] = {}
    for init in model.graph.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        d = _dims(vi.type)
        if d is not None:
            shapes.setdefault(vi.name, d)
    for node in model.graph.node:  # Constant nodes carry their shapes in the attribute
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    shapes.setdefault(node.output[0], [int(x) for x in a.t.dims])
    return shapes


def node_macs(node, shapes: Dict[str, List[int]]) -> Optional[int]:
    """MACs of one node (batch as fixed in `shapes`), 0 for ops that are not counted, None when a needed
    shape is unknown."""
    op = node.op_type
    get = shapes.get
    if op in _CONV_LIKE:
        _, wi = _CONV_LIKE[op]
        w, y = get(node.input[wi]), get(node.output[0])
        if w is None or y is None:
            return None
        return _prod(y) * _prod(w[1:])  # each output element: (C_in / groups) * kernel MACs
    if op == "ConvTranspose":
        x, w = get(node.input[0]), get(node.input[1])
        if x is None or w is None:
            return None
        return _prod(x) * _prod(w[1:])  # each input element scatters into (C_out / groups) * kernel outputs
    if op in _MATMUL_LIKE:
        ai, _ = _MATMUL_LIKE[op]
        a, y = get(node.input[ai]), get(node.output[0])
        if a is None or y is None:
            return None
        k = a[-1]
        return _prod(y) * k
    if op == "Gemm":
        a, y = get(node.input[0]), get(node.output[0])
        if a is None or y is None:
            return None
        trans_a = next((int(at.i) for at in node.attribute if at.name == "transA"), 0)
        k = a[0] if trans_a else a[-1]
        return _prod(y) * k
    return 0


def file_size_bytes(onnx_path) -> int:
    """Size on disk of an ONNX file plus the external-data files beside it that it names."""
    import onnx

    path = Path(onnx_path)
    total = path.stat().st_size
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return total
    seen = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                f = path.parent / entry.value
                if f.is_file():
                    total += f.stat().st_size
    return total


def onnx_stats(onnx_path, batch: int = 1) -> Dict[str, object]:
    """GMACs per image (by op type too), initializer elements, node counts by op type, size on disk."""
    import onnx
    from onnx import shape_inference

    path = str(onnx_path)
    model = onnx.load(path)
    _fix_batch(model, batch)
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except ValueError:  # > 2 GiB protobuf: infer through the file
        tmp = path + ".shapes.onnx"
        onnx.save(model, tmp, save_as_external_data=True, location=os.path.basename(tmp) + ".data")
        shape_inference.infer_shapes_path(tmp, tmp, check_type=False, strict_mode=False, data_prop=True)
        inferred = onnx.load(tmp)
        for f in (tmp, tmp + ".data"):
            if os.path.exists(f):
                os.remove(f)
    shapes = _shape_table(inferred)
    by_op: Counter = Counter()
    unresolved: List[str] = []
    for node in inferred.graph.node:
        m = node_macs(node, shapes)
        if m is None:
            unresolved.append(f"{node.op_type}:{node.name or node.output[0]}")
        elif m:
            by_op[node.op_type] += m
    total = sum(by_op.values())
    init_elems = sum(_prod(i.dims) for i in inferred.graph.initializer)
    return {
        "gmacs": total / batch / 1e9,
        "gmacs_by_op": {k: v / batch / 1e9 for k, v in sorted(by_op.items())},
        "unresolved_nodes": unresolved,
        "initializer_elements": init_elems,
        "ops": dict(sorted(Counter(n.op_type for n in inferred.graph.node).items())),
        "size_bytes": file_size_bytes(path),
    }


def relative_difference(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|) (0 when both are 0)."""
    den = max(abs(a), abs(b))
    return abs(a - b) / den if den else 0.0
