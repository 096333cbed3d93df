"""Write the doctor's self-test model: runtime/doctor/selftest.onnx and its manifest selftest.json.

A tiny inspection graph (a few KB, seeded weights) that follows the contract, frame (N, 32, 32, 3) uint8 ->
anomaly_map (N, 1, 32, 32) float32, score (N,) float32, with the ops every real model uses and TensorRT 8.5 to
11 parses (opset 17): Cast, scale, Transpose, two 3x3 Convs with a ReLU, Abs, a mean filter (AveragePool) and
ReduceMax. `python -m runtime.doctor` runs it on every backend without --model, and builds a TensorRT engine of
it where TensorRT is present. Deterministic: running this again writes the same ONNX bytes.

    python scripts/make_doctor_model.py [--out runtime/doctor/selftest.onnx]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.errors import cli_exit  # noqa: E402
from runtime.manifest import BatchSpec, InputSpec, Manifest, write_manifest  # noqa: E402

SIZE = 32
DEFAULT_OUT = os.path.join("runtime", "doctor", "selftest.onnx")


def build_model(size: int = SIZE, seed: int = 0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "scale"),
        numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.4, (1, 4, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0.05], np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("Transpose", ["fs"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["c2"], ["a"]),
        helper.make_node("AveragePool", ["a"], ["anomaly_map"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "doctor_selftest",
        [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", size, size, 3])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, size, size]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-inspect")
    model.ir_version = 8  # readable by every ONNX Runtime / TensorRT parser the toolkit supports
    onnx.checker.check_model(model)
    return model


def write(out: str) -> str:
    import onnx

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx.save(build_model(), out)
    manifest = Manifest(artifact="", artifact_kind="onnx", sha256="", method="selftest", c=None,
                        input=InputSpec(height=SIZE, width=SIZE, channel_order="RGB"),
                        batch=BatchSpec(dynamic=True, min=1, opt=2, max=4), versions={"onnx_opset": "17"},
                        created="2026-12-07T00:00:00Z",
                        notes=["the doctor's self-test graph (scripts/make_doctor_model.py): seeded weights, "
                               "no training; it checks backends, not anomaly detection"])
    write_manifest(out, manifest)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write the doctor's tiny self-test inspection graph and manifest.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="FILE", help=f"ONNX path; the manifest goes beside it (default "
                                                      f"{DEFAULT_OUT})")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        print(write(args.out))
        return 0

    return cli_exit(run)


if __name__ == "__main__":
    sys.exit(main())
