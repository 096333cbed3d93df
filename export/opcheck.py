"""CPU-side check that an ONNX graph parses with TensorRT's ONNX parser, for TensorRT 8.5, 10.x and 11.

An unsupported operator should fail here, on the machine that exports, and not on a Jetson an hour later. The
check reads the parser's published operator tables (`export._trt_onnx_ops`, from onnx-tensorrt's
`docs/operators.md` per release branch) and the restrictions that matter for inspection graphs:

- operator present in the parser's table, default ONNX domain only (no com.microsoft or custom ops);
- opset within the parser's range (`runtime.trt_version.capabilities(v).max_onnx_opset`: 17 / 20 / 25);
- data types: the type the operator works on is listed for it; UINT8 only as a network input or output
  ("UINT8 is only supported as network input or output tensor types", 10.x table; 8.5 accepts UINT8 inputs
  that are cast right away); INT64 counts as INT32 on 8.5 ("limited support ... cast down to INT32");
- Cast: target type in the Cast row (8.5: FP32, FP16, INT32, INT8, BOOL);
- Resize: modes nearest/linear only, the listed coordinate-transformation and nearest modes, no antialias;
- QuantizeLinear / DequantizeLinear: zero point must be 0 (symmetric), known at build time;
- Slice / Squeeze / Unsqueeze / Reduce* / Pad / CumSum / TopK: `axes` (or K) must be an initializer;
- MaxPool: no `Indices` output;
- DFT: not supported before 11.2 (cuFFT plugin);
- RandomNormal(Like) / RandomUniform(Like): parsed, but the seed is ignored (warning: never bit-equal to ORT).

Usage: ``report = check_onnx("model.onnx")``; ``report.ok``; ``print(report.summary())``;
``python -m export.opcheck --model MODEL.onnx [--trt 8.5 10.0 11.0] [--json]`` (exit 1 when any target fails).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set

import numpy as np
import onnx
from onnx import numpy_helper

from export._trt_onnx_ops import OPS_TRT10, OPS_TRT85
from runtime.errors import cli_exit, one_line
from runtime.trt_version import capabilities, parse_version

#: The TensorRT generations every exported graph must parse on: JetPack 5 (8.5), JetPack 6 / pip 10.x (10.0 is
#: the strictest 10.x: opsets up to 20), and 11 (strongly typed; 11.0 has no DFT).
DEFAULT_TARGETS = ("8.5", "10.0", "11.0")

_TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.DOUBLE: "DOUBLE",
}
# Operators whose "Supported Types" column describes their first input, not their output.
_TYPED_BY_INPUT = {
    "QuantizeLinear", "DequantizeLinear", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "ArgMax",
    "ArgMin", "Shape", "Size", "IsNaN", "IsInf", "NonZero", "Cast", "CastLike", "ConstantOfShape",
}
# Shape plumbing: the tables list only some integer types for these, but the parser handles shape tensors of
# any integer type (INT64 is cast down on 8.5). A type outside the row is a warning here, not an error.
_SHAPE_OPS = {"ConstantOfShape", "Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Range",
              "Equal", "Where", "Expand", "Cast", "Mul", "Add", "Sub", "Div"}
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
# Operator -> index of the input that must be an initializer (a build-time constant).
_CONST_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "CumSum": 1, "TopK": 1, "Pad": 3,
                **{f"Reduce{k}": 1 for k in ("Max", "Min", "Mean", "Sum", "Prod", "L1", "L2", "LogSum",
                                             "LogSumExp", "SumSquare")}}
_RANDOM = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}


@dataclass
class OpIssue:
    target: str  # TensorRT version checked, e.g. "8.5"
    severity: str  # "error" | "warning"
    op_type: str
    node: str
    message: str

    def line(self) -> str:
        return f"TensorRT {self.target}: {self.severity}: {self.op_type} {self.node or '(unnamed)'}: {self.message}"


@dataclass
class OpCheckReport:
    model: str
    opset: int
    targets: List[str]
    op_counts: Dict[str, int]
    issues: List[OpIssue] = field(default_factory=list)

    @property
    def errors(self) -> List[OpIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> List[OpIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def ok_for(self, target: str) -> bool:
        return not any(i.target == target and i.severity == "error" for i in self.issues)

    def failing_ops(self, target: Optional[str] = None) -> Set[str]:
        return {i.op_type for i in self.errors if target is None or i.target == target}

    def summary(self) -> str:
        lines = [f"{self.model}: opset {self.opset}, {sum(self.op_counts.values())} nodes, "
                 f"{len(self.op_counts)} op types ({', '.join(sorted(self.op_counts))})"]
        for t in self.targets:
            errs = [i for i in self.errors if i.target == t]
            warns = [i for i in self.warnings if i.target == t]
            verdict = "OK" if not errs else f"FAILS ({len(errs)} problem(s))"
            lines.append(f"  TensorRT {t}: {verdict}" + (f", {len(warns)} warning(s)" if warns else ""))
        seen = set()
        for i in self.issues:  # one line per distinct problem, not per node
            key = (i.target, i.severity, i.op_type, i.message)
            if key not in seen:
                seen.add(key)
                lines.append("    " + i.line())
        return "\n".join(lines)

    def to_dict(self) -> Dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["ok_per_target"] = {t: self.ok_for(t) for t in self.targets}
        return d


def _table(target: str) -> Dict[str, str]:
    v = parse_version(target)
    table = dict(OPS_TRT10 if v[0] >= 10 else OPS_TRT85)
    if capabilities(target).onnx_dft:
        table["DFT"] = "FP32 FP16"  # 11.2+: cuFFT plugin (NVIDIA/TensorRT v11.2 release notes)
    return table


def _constants(graph: onnx.GraphProto) -> Dict[str, np.ndarray]:
    out = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for a in node.attribute:  # If / Loop / Scan bodies
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_nodes(g)


def _load(model) -> onnx.ModelProto:
    from google.protobuf.message import DecodeError  # onnx's own dependency

    from export.errors import ExportError

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model), load_external_data=False)
    except OSError as e:
        raise ExportError(f"cannot read ONNX {model}: {e.strerror or one_line(e)}") from e
    except (DecodeError, ValueError) as e:  # a truncated or foreign file
        raise ExportError(f"{model} is not an ONNX model ({one_line(e)}); export one with `python -m export.onnx`") \
            from e


def check_onnx(model, targets: Sequence[str] = DEFAULT_TARGETS, name: Optional[str] = None) -> OpCheckReport:
    """Check every node of `model` (a path or ModelProto) against the TensorRT ONNX parser of each target."""
    proto = _load(model)
    label = name or (str(model) if not isinstance(model, onnx.ModelProto) else (proto.graph.name or "model"))
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001 - an unusual graph still gets the operator-level check
        inferred = proto
    g = inferred.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    types: Dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    io_names = {vi.name for vi in g.input} | {vi.name for vi in g.output}
    consts = _constants(g)
    nodes = list(_all_nodes(g))
    report = OpCheckReport(label, opset, list(targets), dict(sorted(Counter(n.op_type for n in nodes).items())))

    for target in targets:
        caps = capabilities(target)
        table = _table(target)
        is85 = parse_version(target)[0] < 10

        def issue(node, msg, severity="error"):
            report.issues.append(OpIssue(target, severity, node.op_type if node is not None else "-",
                                         node.name if node is not None else "", msg))

        if opset > caps.max_onnx_opset:
            issue(None, f"opset {opset} is above what this parser reads ({caps.max_onnx_opset}); export with "
                        f"--opset {min(17, caps.max_onnx_opset)}")
        for vi in g.input:
            t = _TYPE_NAMES.get(vi.type.tensor_type.elem_type, "?")
            if t == "UINT8" and not caps.uint8_io:
                issue(None, f"UINT8 input {vi.name!r} needs TensorRT >= 8.5")
        for node in nodes:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                issue(node, f"custom domain {node.domain!r} is not parsed by TensorRT (no plugin for it)")
                continue
            if op == "DFT" and op not in table:
                issue(node, "DFT is not supported by the TensorRT ONNX parser before 11.2 (cuFFT plugin); "
                            "write the frequency filter as matrix products with constant DFT matrices")
                continue
            if op not in table:
                issue(node, "not supported by this TensorRT ONNX parser (onnx-tensorrt docs/operators.md)")
                continue
            allowed = set(table[op].split())
            # data type the operator works on
            if op in ("Cast", "CastLike"):
                to = _attr(node, "to") if op == "Cast" else types.get(node.input[1] if len(node.input) > 1 else "")
                tname = _TYPE_NAMES.get(to, str(to))
                if is85 and tname == "INT64":
                    tname = "INT32"
                if tname == "UINT8" and not any(o in io_names for o in node.output):
                    issue(node, "Cast to UINT8 inside the graph: UINT8 is only allowed as network input/output")
                elif tname not in allowed and tname != "UINT8":
                    issue(node, f"Cast to {tname} is not supported (Cast types: {table[op]})")
            else:
                probe = node.input[0] if (op in _TYPED_BY_INPUT and node.input) else \
                    (node.output[0] if node.output else "")
                etype = types.get(probe)
                if etype is not None and allowed:
                    tname = _TYPE_NAMES.get(etype, str(etype))
                    if is85 and tname == "INT64":
                        tname = "INT32"
                    if tname == "DOUBLE":
                        issue(node, "DOUBLE tensor: TensorRT casts it down to FP32", "warning")
                    elif tname not in allowed and tname != "UINT8":
                        sev = "warning" if (op in _SHAPE_OPS and tname in ("INT32", "INT64")) else "error"
                        issue(node, f"{tname} is not among its supported types ({table[op]})", sev)
            for out in node.output:  # UINT8 only as network I/O
                if out and types.get(out) == onnx.TensorProto.UINT8 and out not in io_names:
                    issue(node, f"produces UINT8 tensor {out!r} inside the graph; UINT8 is only allowed as "
                                f"network input/output: cast to float right after the input")
            # operator-specific restrictions (the tables' "Restrictions" column)
            if op == "Resize":
                mode = _attr(node, "mode", "nearest")
                if mode not in _RESIZE_MODES:
                    issue(node, f"Resize mode {mode!r}: only nearest and linear are supported")
                coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
                if coord not in _RESIZE_COORD:
                    issue(node, f"Resize coordinate_transformation_mode {coord!r} is not supported "
                                f"({', '.join(sorted(_RESIZE_COORD))})")
                if mode == "nearest" and _attr(node, "nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST:
                    issue(node, f"Resize nearest_mode {_attr(node, 'nearest_mode')!r} is not supported")
                if _attr(node, "antialias", 0):
                    issue(node, "Resize with antialias is not supported")
            elif op in ("QuantizeLinear", "DequantizeLinear"):
                if len(node.input) > 2 and node.input[2]:
                    zp = consts.get(node.input[2])
                    if zp is None:
                        issue(node, "zero point is not a build-time constant; TensorRT needs it to be 0")
                    elif np.any(zp != 0):
                        issue(node, "zero point must be 0 (symmetric quantisation); quantise with "
                                    "ActivationSymmetric/WeightSymmetric")
                    if zp is not None and zp.dtype == np.uint8:
                        issue(node, "UINT8 (asymmetric) quantisation: TensorRT needs INT8 with zero point 0")
            elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
                issue(node, "MaxPool's Indices output is not supported")
            elif op in _RANDOM:
                issue(node, "the seed is ignored by TensorRT: fresh noise every run, never equal to ONNX Runtime; "
                            "export a constant noise field instead", "warning")
            idx = _CONST_INPUT.get(op)
            if idx is not None and len(node.input) > idx and node.input[idx] and node.input[idx] not in consts:
                what = "K" if op == "TopK" else "axes"
                issue(node, f"input {what!r} must be an initializer (a build-time constant)")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.opcheck",
                                description="Check that every ONNX op parses with TensorRT 8.5, 10.x and 11.")
    p.add_argument("--model", nargs="+", required=True, metavar="MODEL.onnx", help="ONNX files to check")
    p.add_argument("--trt", nargs="+", default=list(DEFAULT_TARGETS), metavar="VERSION",
                   help=f"TensorRT versions to check (default: {' '.join(DEFAULT_TARGETS)})")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    """Exit status 0 when every model parses on every target, 1 when one does not (2: a bad input)."""
    reports = [check_onnx(path, args.trt) for path in args.model]
    for report in reports:
        print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
