"""The torch backend (comparison on a development machine): a tiny trained FAIR run, exported to ONNX, gives the
same results through the Inspector on torch, ONNX Runtime and OpenVINO."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch not installed", allow_module_level=True)

from runtime import Inspector
from runtime.backends import create_backend
from runtime.manifest import load_manifest
from tests.helpers.tiny_runs import tiny_images, train_and_export

pytestmark = pytest.mark.slow  # trains a 2-step run and exports it (~10 s on 2 cores)


def _images(n=6, size=(32, 48), seed=0):
    return tiny_images(n, size, seed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("export.onnx")
    path, run = train_and_export(tmp_path_factory.mktemp("torch"), "fair", _images(), c=4, seed=3, lr=1e-3)
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


# -- TorchBackend.from_graph: an inspection graph in memory ----------------------------------------------------
@pytest.fixture(scope="module")
def random_graph():
    from export.graph import graph_random
    from export.manifest import graph_manifest

    graph, config = graph_random("fair", 4, (32, 48), seed=1)
    return graph, graph_manifest(config, graph)


def test_graph_manifest_describes_the_graph_like_an_export(random_graph):
    graph, m = random_graph
    assert m.artifact_kind == "graph" and m.method == "fair" and m.c == 4
    assert m.input.size == tuple(graph.frame_size) and m.input.channel_order == graph.channel_order
    assert (m.outputs.anomaly_map.name, m.outputs.score.name) == ("anomaly_map", "score")
    assert m.extra_inputs == []


def test_from_graph_equals_the_graph_called_directly(random_graph):
    import torch

    graph, m = random_graph
    x = _images(5, seed=4)
    before = torch.get_num_threads()
    with create_backend_from_graph(graph, m, threads=1) as b:
        with torch.inference_mode():  # after load: the same thread count, so the same reduction order
            ref_map, ref_score = graph(torch.from_numpy(x))
        maps, scores = b.infer(x)
        b.synchronize()  # CPU: nothing queued
        assert "in-memory graph" in b.describe() and "1 threads" in b.describe()
        assert torch.get_num_threads() == 1
    torch.set_num_threads(before)  # process-wide: give the next tests their default back
    assert maps.dtype == np.float32 and maps.shape == tuple(ref_map.shape) and scores.shape == (5,)
    np.testing.assert_array_equal(maps, ref_map.numpy())
    np.testing.assert_array_equal(scores, ref_score.numpy())


def test_from_graph_bf16_autocast_computes_close_to_fp32(random_graph):
    graph, m = random_graph
    x = _images(2, seed=6)
    with create_backend_from_graph(graph, m) as fp32, create_backend_from_graph(graph, m, autocast="bf16") as bf16:
        s32, s16 = fp32.infer(x)[1], bf16.infer(x)[1]
        assert "autocast bf16" in bf16.describe()
    assert s16.dtype == np.float32 and np.isfinite(s16).all()
    # bf16 keeps 8 bits of mantissa: the scores differ, but only by a few percent of their size
    assert np.abs(s16 - s32).max() <= 0.05 * np.abs(s32).max() + 1e-3


def test_from_graph_refuses_bad_autocast_and_cpu_fp16(random_graph):
    from runtime.errors import RuntimeInspectError

    graph, m = random_graph
    with pytest.raises(RuntimeInspectError, match="autocast must be one of fp16, bf16"):
        create_backend_from_graph(graph, m, autocast="int8")
    with pytest.raises(RuntimeInspectError, match="autocast fp16 runs on CUDA"):
        create_backend_from_graph(graph, m, device="cpu", autocast="fp16").load()


def create_backend_from_graph(graph, manifest, **kw):
    from runtime.backends.torch import TorchBackend

    return TorchBackend.from_graph(graph, manifest, **kw)
