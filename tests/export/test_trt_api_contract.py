"""Every TensorRT attribute the toolkit uses exists in each TensorRT release where its capability gate lets it run.

No TensorRT here, so the code is read (ast) and checked against tests/data/tensorrt_binding_names.tsv, the names
each release's Python bindings define (scripts/trt_binding_names.py read them from NVIDIA/TensorRT's pybind11
sources, 8.5.2 ... 11.1). A use's gate is the conjunction of the `caps.X` / `not caps.X` conditions around it
(if / else / conditional expressions), including those around every call of the function it sits in; for each
release whose capabilities satisfy the gate, `Class.attribute` must be in that release's names.
Receivers are typed by a small table: what `trt.X(...)` and TensorRT methods return, plus the parameter and
attribute names the code uses for TensorRT objects (SEEDS).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import pytest

from runtime import trt_version

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tensorrt_binding_names.tsv"
MODULES = ["export/trt_build.py", "export/trt_timing_cache.py", "runtime/backends/tensorrt.py",
           "runtime/trt_version.py"]
MODULE = "tensorrt"
# names that hold TensorRT objects where no assignment in the module says so (parameters, self attributes)
SEEDS = {"trt": MODULE, "network": "INetworkDefinition", "config": "IBuilderConfig", "engine": "ICudaEngine",
         "self._engine": "ICudaEngine", "self._context": "IExecutionContext", "self._runtime": "Runtime"}
# (type, method) -> type of the value returned
RETURNS = {
    ("Builder", "create_network"): "INetworkDefinition", ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("Builder", "build_serialized_network"): "IHostMemory",
    ("INetworkDefinition", "get_input"): "ITensor", ("INetworkDefinition", "get_layer"): "ILayer",
    ("ILayer", "get_output"): "ITensor", ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("ICudaEngine", "get_tensor_dtype"): "DataType", ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache", ("ITimingCache", "serialize"): "IHostMemory",
}
Gate = FrozenSet[Tuple[str, bool]]


def load_names() -> Tuple[List[str], Dict[str, Set[str]]]:
    versions: List[str] = []
    per_version: Dict[str, Set[str]] = {}
    for line in DATA.read_text().splitlines():
        if line.startswith("# versions"):
            versions = line.split("\t")[1].split()
            per_version = {v: set() for v in versions}
        elif line and not line.startswith("#"):
            name, mask = line.split("\t")
            for v, bit in zip(versions, mask):
                if bit == "1":
                    per_version[v].add(name)
    return versions, per_version


def _key(node: ast.AST) -> Optional[str]:
    """'trt', 'self._engine' for a Name / self-attribute expression."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _literals(test: ast.AST) -> Optional[List[Tuple[str, bool]]]:
    """`caps.a and not self._caps.b and x` -> [('a', True), ('b', False)] (unknown conjuncts dropped); None when
    the test is not a conjunction."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        out: List[Tuple[str, bool]] = []
        for v in test.values:
            sub = _literals(v)
            if sub is None:
                return None
            out += sub
        return out
    negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
    inner = test.operand if negated else test
    if isinstance(inner, ast.Attribute) and inner.attr in trt_version.CAPABILITY_NAMES:
        return [(inner.attr, not negated)]
    return [] if not isinstance(test, ast.BoolOp) else None


class Uses(ast.NodeVisitor):
    """Collects (Class.attr, gate, line) for attributes on typed receivers, and the gates at each call of a
    module-level function."""

    def __init__(self, classes: Set[str], entry_gates: Dict[str, Gate]):
        self.classes = classes
        self.entry = entry_gates
        self.types: Dict[str, str] = dict(SEEDS)
        self.gate: Gate = frozenset()
        self.uses: List[Tuple[str, Gate, int]] = []
        self.calls: Dict[str, List[Gate]] = {}

    def type_of(self, node: ast.AST) -> Optional[str]:
        key = _key(node)
        if key is not None and key in self.types:
            return self.types[key]
        if isinstance(node, ast.Attribute):
            base = self.type_of(node.value)
            if base == MODULE and node.attr in self.classes:
                return node.attr
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = self.type_of(node.func.value)
            if base == MODULE and node.func.attr in self.classes:
                return node.func.attr  # a constructor
            return RETURNS.get((base, node.func.attr)) if base else None
        return None

    def learn_types(self, tree: ast.AST) -> None:
        for _ in range(3):  # flow-insensitive; a few rounds settle chains
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign):
                    t = self.type_of(node.value)
                    for target in node.targets:
                        key = _key(target)
                        if t and key:
                            self.types.setdefault(key, t)

    def _with_gate(self, extra: Gate, nodes) -> None:
        saved = self.gate
        self.gate = saved | extra
        for n in nodes:
            self.visit(n)
        self.gate = saved

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._with_gate(self.entry.get(node.name, frozenset()), node.body)

    def visit_If(self, node) -> None:
        self.visit(node.test)
        lits = _literals(node.test)
        self._with_gate(frozenset(lits or ()), node.body if isinstance(node.body, list) else [node.body])
        negated = frozenset((n, not v) for n, v in lits) if lits and len(lits) == 1 else frozenset()
        self._with_gate(negated, node.orelse if isinstance(node.orelse, list) else [node.orelse])

    visit_IfExp = visit_If

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.calls.setdefault(node.func.id, []).append(self.gate)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = self.type_of(node.value)
        if base is not None and not (node.attr.startswith("__") and node.attr != "__version__"):
            self.uses.append((f"{base}.{node.attr}", self.gate, node.lineno))
        self.generic_visit(node)


def collect(source: str, classes: Set[str]) -> List[Tuple[str, Gate, int]]:
    tree = ast.parse(source)
    entry: Dict[str, Gate] = {}
    for _ in range(3):  # a function called only under a gate inherits it (twice nested at most here)
        v = Uses(classes, entry)
        v.learn_types(tree)
        v.visit(tree)
        entry = {name: frozenset.intersection(*gates) for name, gates in v.calls.items()}
    return v.uses


def violations(source: str, versions: List[str], names: Dict[str, Set[str]]) -> List[str]:
    classes = {n.split(".", 1)[1] for n in set().union(*names.values()) if n.startswith(MODULE + ".")}
    out = []
    for name, gate, line in collect(source, classes):
        for v in versions:
            caps = trt_version.capabilities(v)
            if all(getattr(caps, c) == want for c, want in gate) and name not in names[v]:
                out.append(f"line {line}: {name} used on TensorRT {v} (gate {sorted(gate) or 'none'}) but "
                           f"TensorRT {v} has no such attribute")
    return out


VERSIONS, NAMES = load_names()


def test_binding_name_table_covers_8_5_to_11():
    assert VERSIONS[0].startswith("8.5") and any(v.startswith("10.") for v in VERSIONS) \
        and VERSIONS[-1].startswith("11.")
    # spot checks against facts from NVIDIA's release notes
    assert "BuilderFlag.FP16" in NAMES["10.3.0"] and "BuilderFlag.FP16" not in NAMES["11.0"]
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in NAMES["8.6.1"]
    assert "ICudaEngine.device_memory_size_v2" in NAMES["10.1.0"]
    assert "ICudaEngine.device_memory_size_v2" not in NAMES["10.0.1"]
    assert all("IExecutionContext.execute_async_v3" in NAMES[v] for v in VERSIONS)


@pytest.mark.parametrize("module", MODULES)
def test_every_tensorrt_attribute_exists_under_its_gate(module):
    assert violations((ROOT / module).read_text(), VERSIONS, NAMES) == []


def test_the_checker_sees_the_calls_that_matter():
    """Not vacuous: the uses this issue is about are found, with the gates they run under."""
    classes = {n.split(".", 1)[1] for n in NAMES[VERSIONS[0]] if n.startswith(MODULE + ".")}
    found: Dict[str, Set[Gate]] = {}
    for module in MODULES:
        for name, gate, _ in collect((ROOT / module).read_text(), classes):
            found.setdefault(name, set()).add(gate)
    for name in ("IExecutionContext.execute_async_v3", "ICudaEngine.create_execution_context",
                 "IBuilderConfig.clear_flag", "BuilderFlag.TF32", "IBuilderConfig.create_timing_cache",
                 "IBuilderConfig.set_timing_cache", "IBuilderConfig.get_timing_cache", "ITimingCache.serialize",
                 "Builder.build_serialized_network", "IExecutionContext.set_input_shape", "tensorrt.__version__"):
        assert name in found, name
    assert found["ILayer.set_output_type"] == {frozenset({("builder_precision_flags", True)})}
    assert found["BuilderFlag.INT8"] == {frozenset({("builder_precision_flags", True),
                                                    ("int8_flag_needed_for_qdq", True)})}
    assert found["ICudaEngine.device_memory_size_v2"] == {frozenset({("device_memory_size_v2", True)})}
    assert found["ICudaEngine.device_memory_size"] == {frozenset({("device_memory_size_v2", False)})}


def test_the_checker_fails_on_an_ungated_removed_api():
    bad = '''
def build(trt, config, caps):
    config.set_flag(trt.BuilderFlag.FP16)            # removed in 11: must be gated
    if caps.builder_precision_flags:
        config.set_flag(trt.BuilderFlag.INT8)        # fine
    engine = trt.Runtime(None).deserialize_cuda_engine(b"")
    return engine.device_memory_size                 # removed in 11 too
'''
    found = violations(bad, VERSIONS, NAMES)
    assert any("line 3: BuilderFlag.FP16 used on TensorRT 11.0" in f for f in found)
    assert any("line 7: ICudaEngine.device_memory_size used on TensorRT 11.1" in f for f in found)
    assert not any("line 5" in f for f in found)
