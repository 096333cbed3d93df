"""export.onnx / export.fp16 on a tiny trained FAIR run: ONNX Runtime vs the torch graph on the same uint8 frames
(batch 1 and > 1), the manifest, node names, the CLI (BGR + in-graph resize, fixed batch), the demo AUROC through
calibration.evaluate on the onnxruntime backend vs the torch backend (the graph in memory), and the FP16 variant."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from calibration.evaluate import evaluate
from export.errors import ExportError
from export.graph import graph_from_run
from export.manifest import graph_manifest
from export.onnx import export_onnx, fp16_variant
from export.opcheck import check_onnx
from runtime.backends import create_backend
from runtime.backends.torch import TorchBackend
from runtime.manifest import load_manifest, sha256_file, verify_artifact
from tests.helpers.tiny_runs import train_tiny

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
TOL = 1e-4  # max abs error ORT CPU vs torch, map and score


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from train import demo_data

    root = tmp_path_factory.mktemp("demo")
    demo_data.generate(root, ["brick"], size=SIZE, n_train=6, n_test_good=4, n_test_defect=2, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_run(demo, tmp_path_factory):
    """FAIR c=8 at 64x64, a few steps: enough to have non-trivial weights."""
    from imagesets import find_samples, load_images

    images = load_images(find_samples(demo, "brick", "train"), (SIZE, SIZE), progress=False)
    return train_tiny(tmp_path_factory.mktemp("runs") / "fair8", images, c=8, steps=4, batch_size=4, lr=1e-3,
                      data=str(demo), category="brick", options={})


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    graph, config = graph_from_run(tiny_run)
    path = export_onnx(graph, config, tmp_path_factory.mktemp("onnx") / "fair8.onnx", source_run=str(tiny_run))
    return graph, config, path


def _frames(n, h=SIZE, w=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _ort(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3])
def test_ort_matches_torch(exported, batch):
    graph, _, path = exported
    frames = _frames(batch, seed=batch)
    amap, score = _ort(path).run(None, {"frame": frames})
    with torch.no_grad():
        tmap, tscore = graph(torch.from_numpy(frames))
    assert amap.shape == (batch, 1, SIZE, SIZE) and amap.dtype == np.float32
    assert score.shape == (batch,) and score.dtype == np.float32
    assert np.abs(amap - tmap.numpy()).max() <= TOL
    assert np.abs(score - tscore.numpy()).max() <= TOL
    assert float(tmap.abs().max()) > 0  # the comparison is not between two zero maps


def test_graph_io_and_node_names(exported):
    _, _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (inp,) = model.graph.input
    assert inp.name == "frame" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]
    assert [o.name for o in model.graph.output] == ["anomaly_map", "score"]
    readers = [n for n in model.graph.node if "frame" in n.input]
    assert [n.op_type for n in readers] == ["Cast"]  # TensorRT: UINT8 only as network I/O
    names = [n.name for n in model.graph.node]
    for prefix in ("/model/highpass/", "/model/net/enc.0/", "/model/scorer/"):
        assert any(s.startswith(prefix) for s in names), prefix
    assert not any(n.op_type in ("DFT", "Constant", "Identity") for n in model.graph.node)  # simplified


def test_manifest(exported, tiny_run):
    graph, config, path = exported
    m = load_manifest(path)
    verify_artifact(path, m)
    assert m.sha256 == sha256_file(path)
    assert (m.method, m.c, m.precision, m.artifact_kind) == ("fair", 8, "fp32", "onnx")
    assert m.options == config.options and m.source_run == str(tiny_run)
    assert (m.input.name, m.input.dtype, m.input.layout, m.input.channel_order) == ("frame", "uint8", "NHWC", "RGB")
    assert m.input.size == (SIZE, SIZE) and m.input.resizes_in_graph is False
    assert m.outputs.anomaly_map.name == "anomaly_map" and m.outputs.anomaly_map.shape == [-1, 1, SIZE, SIZE]
    assert m.outputs.score.name == "score" and m.outputs.score.shape == [-1]
    assert m.batch.dynamic and m.threshold is None and m.tensorrt is None
    assert {"torch", "onnx", "onnxruntime"} <= set(m.versions)
    parts = m.graph_parts.to_dict()
    assert parts["preprocess"] == ["/model/highpass"] and parts["network"] == ["/model/net"]
    assert parts["scoring"] == ["/model/scorer"]
    names = [n.name for n in onnx.load(str(path)).graph.node]
    for prefix, count in parts["nodes"].items():
        if prefix not in ("/", "/model/*"):
            assert count == sum(1 for s in names if s.startswith(prefix + "/")) > 0
    assert parts["nodes"]["/model/*"] == 0  # every FAIR op sits in highpass, net or scorer
    assert sum(parts["nodes"].values()) == len(names)


def test_demo_auroc_ort_equals_torch(exported, demo):
    """The ONNX graph's image AUROC on the demo test set equals the torch graph's (benchmarks.accuracy's two ways
    in: --model on onnxruntime, --run on torch)."""
    from imagesets import find_samples, load_images, load_masks

    graph, config, path = exported
    samples = find_samples(demo, "brick", "test")
    frames = load_images(samples, (SIZE, SIZE), progress=False)
    masks = load_masks(samples, (SIZE, SIZE))
    labels = [int(s.label) for s in samples]
    types = [str(s.defect_type) for s in samples]
    with create_backend("onnxruntime", str(path), load_manifest(path)) as ort_backend:
        r_ort = evaluate(ort_backend.infer, frames, labels, masks, types, batch_size=4, progress=False)
    with TorchBackend.from_graph(graph, graph_manifest(config, graph)) as torch_backend:
        r_torch = evaluate(torch_backend.infer, frames, labels, masks, types, batch_size=4, progress=False)
    assert r_ort["n_defect"] > 0 and r_ort["n_good"] > 0
    assert r_ort["image_auroc"] == r_torch["image_auroc"]
    assert abs(r_ort["pixel_auroc"] - r_torch["pixel_auroc"]) < 1e-4
    assert np.abs(np.asarray(r_ort["scores"]) - np.asarray(r_torch["scores"])).max() <= TOL


def test_cli_bgr_resize_fixed_batch(tiny_run, tmp_path):
    out = tmp_path / "bgr.onnx"
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--run", str(tiny_run), "--out", str(out),
                           "--frame-size", "80x96", "--channel-order", "BGR", "--batch-size", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = load_manifest(out)
    assert m.input.channel_order == "BGR" and m.input.resizes_in_graph is True
    assert m.input.size == (80, 96) and tuple(m.input.model_size) == (SIZE, SIZE)
    assert not m.batch.dynamic and m.batch.max == 2
    sess = _ort(out)
    assert sess.get_inputs()[0].shape == [2, 80, 96, 3]
    bgr = _frames(2, 80, 96, seed=5)
    amap, score = sess.run(None, {"frame": bgr})
    graph, _ = graph_from_run(tiny_run, (80, 96), "BGR")
    with torch.no_grad():
        tmap, tscore = graph(torch.from_numpy(bgr))
    assert amap.shape == (2, 1, SIZE, SIZE)
    assert np.abs(amap - tmap.numpy()).max() <= TOL and np.abs(score - tscore.numpy()).max() <= TOL
    # the BGR graph on BGR frames = the RGB graph on the same frames in RGB order
    rgb_graph, _ = graph_from_run(tiny_run, (80, 96), "RGB")
    with torch.no_grad():
        rmap, _ = rgb_graph(torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])))
    assert np.abs(rmap.numpy() - tmap.numpy()).max() <= 1e-5
    assert check_onnx(out).ok


@pytest.mark.parametrize("noise_input", [False, True], ids=["const-noise", "noise-input"])
def test_noise2norm_parity(tmp_path, noise_input):
    """noise2norm (random weights): the seeded constant field by default, an optional `noise` input on request."""
    from export.graph import graph_random
    from train.methods import list_methods

    if "noise2norm" not in list_methods():
        pytest.skip("noise2norm is not registered in this checkout")
    graph, config = graph_random("noise2norm", 8, SIZE)
    path = export_onnx(graph, config, tmp_path / "n2n.onnx", noise_input=noise_input)
    sess = _ort(path)
    frames = _frames(2, seed=11)
    feed = {"frame": frames}
    args = [torch.from_numpy(frames)]
    if noise_input:
        noise = np.random.default_rng(3).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
        feed["noise"] = noise
        args.append(torch.from_numpy(noise))
    amap, score = sess.run(None, feed)
    with torch.no_grad():
        tmap, tscore = graph(*args)
    assert np.abs(amap - tmap.numpy()).max() <= TOL and np.abs(score - tscore.numpy()).max() <= TOL
    m = load_manifest(path)
    assert [e.name for e in m.extra_inputs] == (["noise"] if noise_input else [])
    assert [i.name for i in sess.get_inputs()] == (["frame", "noise"] if noise_input else ["frame"])
    assert m.graph_parts.network == ["/model/net"]


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--run", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "m.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "python -m train" in proc.stderr


def test_bad_arguments(exported, tmp_path):
    graph, config, _ = exported
    with pytest.raises(ExportError, match=".onnx"):
        export_onnx(graph, config, tmp_path / "model.bin")
    with pytest.raises(ExportError, match="batch"):
        export_onnx(graph, config, tmp_path / "m.onnx", batch=0)
    with pytest.raises(ExportError, match="no optional inputs"):
        export_onnx(graph, config, tmp_path / "m.onnx", noise_input=True)


def test_fp16_variant(exported):
    graph, _, path = exported
    path16 = fp16_variant(path)
    m = load_manifest(path16)
    verify_artifact(path16, m)
    assert m.precision == "fp16" and m.sha256 != load_manifest(path).sha256
    model = onnx.load(str(path16))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    # the network's conv weights are FP16; pre-processing and scoring constants stay FP32
    users = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n.name)
    kinds = {}
    for init in model.graph.initializer:
        for user in users.get(init.name, []):
            part = "net" if user.startswith("/model/net/") else "other"
            kinds.setdefault(part, set()).add(init.data_type)
    assert onnx.TensorProto.FLOAT16 in kinds["net"]
    assert onnx.TensorProto.FLOAT16 not in kinds.get("other", set())
    assert path16.stat().st_size < path.stat().st_size
    frames = _frames(3, seed=7)
    m32, s32 = _ort(path).run(None, {"frame": frames})
    m16, s16 = _ort(path16).run(None, {"frame": frames})
    assert m16.dtype == np.float32 and m16.shape == m32.shape
    # FP16 network: errors of the order of FP16 rounding of the reconstruction, far below the map's scale
    scale = float(np.abs(m32).max())
    assert np.abs(m16 - m32).max() <= 0.005 * scale
    assert np.abs(s16 - s32).max() <= 0.005 * float(np.abs(s32).max())
    report = check_onnx(path16)
    assert report.ok, report.summary()


def test_fp16_cli_flag(tiny_run, tmp_path):
    out = tmp_path / "f16.onnx"
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--run", str(tiny_run), "--out", str(out), "--fp16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert load_manifest(out).precision == "fp16"
    assert json.loads(out.with_suffix(".json").read_text())["versions"].get("onnxconverter_common")


def test_fp16_and_int8_prefixes_come_from_the_manifest(exported):
    """The manifest carries the method's FP16/INT8 parts; a manifest from before they were declared takes its
    method's declaration (an unregistered method is one clear error), and an empty declaration is one clear error."""
    from types import SimpleNamespace

    from calibration.qdq import manifest_int8_prefixes
    from export.fp16 import manifest_fp16_prefixes
    from runtime.manifest import GraphParts

    _, _, path = exported
    m = load_manifest(path)
    assert m.graph_parts.fp16 == ["/model/net/"] and m.graph_parts.int8 == ["/model/net/"]
    assert manifest_fp16_prefixes(m) == ("/model/net/",)
    assert manifest_int8_prefixes(m.graph_parts.to_dict()) == ["/model/net/"]
    old = SimpleNamespace(method="fair", graph_parts=GraphParts(network=["/model/net"]))
    assert manifest_fp16_prefixes(old) == ("/model/net/",)
    assert manifest_int8_prefixes(old.graph_parts.to_dict()) is None
    for graph_parts in (None, GraphParts(network=["/model/backbone"])):  # no graph_parts at all, or no fp16 entry
        older = SimpleNamespace(method="patchcore", graph_parts=graph_parts)
        assert manifest_fp16_prefixes(older) == ("/model/backbone/",)
    with pytest.raises(ExportError, match="method 'gone' is not registered here: re-export"):
        manifest_fp16_prefixes(SimpleNamespace(method="gone", graph_parts=None))
    backbone = SimpleNamespace(graph_parts=GraphParts(fp16=["/model/backbone/"]))
    assert manifest_fp16_prefixes(backbone) == ("/model/backbone/",)
    with pytest.raises(ExportError, match="declares no part that may run in FP16"):
        manifest_fp16_prefixes(SimpleNamespace(graph_parts=GraphParts(fp16=[])))
