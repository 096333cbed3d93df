"""The torch backend (comparison on a development machine): a tiny trained FAIR run, exported to ONNX, gives the
same results through the Inspector on torch, ONNX Runtime and OpenVINO."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch not installed", allow_module_level=True)

from runtime import Inspector  # noqa: E402
from runtime.backends import create_backend  # noqa: E402
from runtime.manifest import load_manifest  # noqa: E402

pytestmark = pytest.mark.slow  # trains a 2-step run and exports it (~10 s on 2 cores)


def _images(n=6, size=(32, 48), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1,) + size + (3,))
    return np.clip(base + rng.integers(-20, 20, size=(n,) + size + (3,)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    export_onnx = pytest.importorskip("export.onnx").export_onnx
    from train.config import RunConfig
    from train.loop import train
    from train.runs import load_graph

    d = tmp_path_factory.mktemp("torch")
    config = RunConfig(method="fair", c=4, image_size=(32, 48), seed=3, steps=2, batch_size=2, lr=1e-3)
    run = train(config, d / "run", _images(), device="cpu", progress=False)
    graph, cfg = load_graph(run)
    path = export_onnx(graph, cfg, d / "fair.onnx", source_run=str(run))
    return str(path), str(run)


def test_torch_backend_runs_the_source_run(exported):
    import torch

    from train.runs import load_graph

    path, run = exported
    m = load_manifest(path)
    assert m.source_run == run
    x = _images(3, seed=5)
    with create_backend("torch", path, m) as b:
        maps, scores = b.infer(x)
        assert "torch (cpu" in b.describe()
    graph, _ = load_graph(run)
    with torch.no_grad():
        ref_map, ref_score = graph(torch.from_numpy(x))
    np.testing.assert_allclose(maps, ref_map.numpy(), atol=1e-6)
    np.testing.assert_allclose(scores, ref_score.numpy(), atol=1e-6)


def test_inspector_matches_across_torch_onnxruntime_and_openvino(exported):
    path, _ = exported
    backends = ["torch", "onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    frames = list(_images(4, seed=9)) + [_images(1, size=(64, 96), seed=2)[0]]  # one needs a host resize
    scores = {}
    for name in backends:
        with Inspector(path, backend=name, frame_order="RGB") as insp:
            assert insp.backend == name
            scores[name] = np.array([r.score for r in insp.inspect_batch(frames)])
    for name in backends[1:]:
        assert np.abs(scores[name] - scores["torch"]).max() <= 1e-4, (name, scores)
