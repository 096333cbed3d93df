"""calibration.evaluate with small numpy detectors on synthetic frames; the overlay report; the runtime backends
(torch graph in memory, ONNX Runtime, OpenVINO) feeding it; the accuracy command line end to end on a tiny run."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from calibration import metrics as M
from calibration.evaluate import evaluate, json_ready
from benchmarks.report import metrics_table, select_overlays, write_overlays
from train.errors import DataError, RunError

H = W = 32


def synthetic_set():
    """4 good frames (flat grey with mild noise), 3 'scratch' and 3 'blob' frames with a bright defect; masks."""
    rng = np.random.default_rng(0)
    frames, masks, labels, types = [], [], [], []
    for i in range(10):
        f = np.clip(100 + rng.normal(0, 5, (H, W, 3)), 0, 255).astype(np.uint8)
        m = np.zeros((H, W), bool)
        if i < 4:
            t = "good"
        elif i < 7:
            t = "scratch"
            m[4 + i : 6 + i, 2:30] = True
        else:
            t = "blob"
            m[8:16, 8 + i : 16 + i] = True
        f[m] = 250
        frames.append(f)
        masks.append(m)
        labels.append(0 if t == "good" else 1)
        types.append(t)
    return np.stack(frames), np.array(labels), np.stack(masks), types


def bright_detector(sign=1.0, stride=1):
    """Map = brightness above 200 (sign -1: inverted), computed at 1/stride resolution; score = max of the map."""
    calls = []

    def infer(batch):
        calls.append(batch.shape[0])
        assert batch.dtype == np.uint8 and batch.ndim == 4
        bright = (batch[:, ::stride, ::stride, 0] > 200).astype(np.float32)
        return sign * bright[:, None], sign * bright.reshape(len(batch), -1).max(axis=1)

    infer.calls = calls
    return infer


def test_perfect_detector_scores_one_everywhere():
    frames, labels, masks, types = synthetic_set()
    infer = bright_detector()
    r = evaluate(infer, frames, labels, masks, types, batch_size=4, progress=False)
    assert infer.calls == [4, 4, 2]  # batches, last one partial
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max"):
        assert r[key] == pytest.approx(1.0), key
    assert (r["n_images"], r["n_good"], r["n_defect"]) == (10, 4, 6)
    assert set(r["per_defect_type"]) == {"scratch", "blob"}
    for t, entry in r["per_defect_type"].items():
        assert set(entry) >= {"image_auroc", "pixel_auroc", "aupro", "n"}
        assert entry["n"] == 3
        assert entry["image_auroc"] == entry["pixel_auroc"] == pytest.approx(1.0)
        assert entry["aupro"] == pytest.approx(1.0)
    assert r["undefined"] == {}
    assert r["maps"].shape == (10, H, W) and r["maps"].dtype == np.float32
    assert r["scores"] == [0.0] * 4 + [1.0] * 6 and r["labels"] == labels.tolist()


def test_inverted_detector_scores_zero():
    frames, labels, masks, types = synthetic_set()
    r = evaluate(bright_detector(sign=-1.0), frames, labels, masks, types, batch_size=3, progress=False)
    assert r["image_auroc"] == pytest.approx(0.0)
    assert r["pixel_auroc"] == pytest.approx(0.0)
    assert r["aupro"] == pytest.approx(0.0)
    assert all(e["image_auroc"] == pytest.approx(0.0) for e in r["per_defect_type"].values())


def test_maps_are_resized_bilinearly_to_the_masks():
    frames, labels, masks, types = synthetic_set()
    r = evaluate(bright_detector(stride=2), frames, labels, masks, types, batch_size=8, progress=False)
    assert r["maps"].shape == (10, H, W)
    half = (frames[:, ::2, ::2, 0] > 200).astype(np.float32)
    expected = cv2.resize(half[7], (W, H), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(r["maps"][7], expected, atol=1e-6)
    assert r["image_auroc"] == pytest.approx(1.0)
    assert r["pixel_auroc"] == pytest.approx(M.pixel_auroc(masks, r["maps"]), abs=1e-12)


def test_per_type_metrics_use_that_type_and_all_good_images():
    frames, labels, masks, types = synthetic_set()
    rng = np.random.default_rng(1)
    noise = rng.random(10)

    def infer(batch):  # a score that is not tied to the frames: compare with a direct computation
        n = len(batch)
        idx = infer.seen
        infer.seen += n
        return rng.random((n, 1, H, W)).astype(np.float32), noise[idx : idx + n]

    infer.seen = 0
    r = evaluate(infer, frames, labels, masks, types, batch_size=4, progress=False)
    sel = np.array([t in ("good", "blob") for t in types])
    assert r["per_defect_type"]["blob"]["image_auroc"] == pytest.approx(M.image_auroc(labels[sel], noise[sel]))
    assert r["per_defect_type"]["blob"]["pixel_auroc"] == pytest.approx(M.pixel_auroc(masks[sel], r["maps"][sel]))
    assert r["image_auroc"] == pytest.approx(M.image_auroc(labels, noise))


def test_one_class_gives_nan_with_reason_and_json_null():
    frames, labels, masks, types = synthetic_set()
    keep = labels == 0
    r = evaluate(bright_detector(), frames[keep], labels[keep], masks[keep], [types[i] for i in np.flatnonzero(keep)],
                 progress=False)
    assert math.isnan(r["image_auroc"]) and math.isnan(r["aupro"]) and math.isnan(r["f1_max"])
    assert "only one class" in r["undefined"]["image_auroc"]
    assert r["per_defect_type"] == {}
    j = json_ready(r)
    assert "maps" not in j and j["image_auroc"] is None
    json.dumps(j, allow_nan=False)  # strict JSON
    assert "n/a" in metrics_table(r)


def test_bad_inputs_and_outputs_raise_our_errors():
    frames, labels, masks, types = synthetic_set()
    with pytest.raises(DataError, match="labels"):
        evaluate(bright_detector(), frames, labels[:5], masks, types, progress=False)
    with pytest.raises(DataError, match="uint8"):
        evaluate(bright_detector(), frames.astype(np.float32), labels, masks, types, progress=False)
    with pytest.raises(RunError, match="maps of shape"):
        evaluate(lambda b: (np.zeros((len(b), 3, H, W)), np.zeros(len(b))), frames, labels, masks, types,
                 progress=False)
    with pytest.raises(RunError, match="NaN"):
        evaluate(lambda b: (np.full((len(b), 1, H, W), np.nan), np.zeros(len(b))), frames, labels, masks, types,
                 progress=False)


def test_overlays_pick_false_alarms_hits_and_misses(tmp_path):
    scores = [0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.05]
    labels = [0, 0, 0, 1, 1, 1, 1]
    sel = select_overlays(scores, labels, k=2)
    assert sel == {"good_highest": [1, 2], "defect_highest": [3, 5], "defect_lowest": [6, 4]}
    frames, labels, masks, types = synthetic_set()
    r = evaluate(bright_detector(stride=2), frames, labels, masks, types, progress=False)
    names = [f"{t}_{i:03d}" for i, t in enumerate(types)]
    written = write_overlays(tmp_path / "ov", frames, r["maps"], masks, r["scores"], labels, names, k=2)
    assert len(written) == 6 and all(p.is_file() for p in written)
    img = cv2.imread(str(written[0]))
    f = -(-192 // H)  # small frames are enlarged to >= 192 rows, with a 24-row header line
    assert img.shape == (24 + H * f, 3 * W * f + 8, 3)
    assert any(p.name.startswith("defect_lowest_01_") for p in written)


# ------------------------------------------------------------------------------------ backends feeding evaluate

torch = pytest.importorskip("torch", reason="the torch backend needs torch")


class TinyBrightModel(torch.nn.Module):
    """Float RGB (N,3,H,W) in [0,1] -> map = a 3x3 mean of the red channel, score = max of the map."""

    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x):
        amap = self.pool(x[:, :1])
        return amap, amap.amax(dim=(1, 2, 3))


def _tiny_graph():
    from train.graph import InspectionGraph

    return InspectionGraph(TinyBrightModel(), (H, W)).eval()


def _manifest_of(graph):
    """The manifest an export of the tiny graph gets (a method name, no width, no options)."""
    from types import SimpleNamespace

    from export.manifest import graph_manifest

    return graph_manifest(SimpleNamespace(method="tiny", c=None, options={}), graph)


def _torch_backend(graph):
    from runtime.backends.torch import TorchBackend

    return TorchBackend.from_graph(graph, _manifest_of(graph))


def test_torch_backend_from_graph_feeds_evaluate():
    frames, labels, masks, types = synthetic_set()
    with _torch_backend(_tiny_graph()) as backend:
        r = evaluate(backend.infer, frames, labels, masks, types, batch_size=4, progress=False)
    assert r["image_auroc"] == pytest.approx(1.0)
    assert r["pixel_auroc"] > 0.95


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_exported_model_through_a_backend_matches_torch(tmp_path, name):
    from runtime.backends import create_backend, is_available
    from runtime.manifest import load_manifest

    if not is_available(name):
        pytest.skip(f"{name} not installed")
    path = tmp_path / "tiny.onnx"
    graph = _export_tiny(path)
    frames, labels, masks, types = synthetic_set()
    with create_backend(name, str(path), load_manifest(path)) as backend:
        a = evaluate(backend.infer, frames, labels, masks, types, batch_size=3, progress=False)
    with _torch_backend(graph) as backend:
        b = evaluate(backend.infer, frames, labels, masks, types, batch_size=3, progress=False)
    np.testing.assert_allclose(a["maps"], b["maps"], atol=1e-6)
    # float rounding differs slightly between the backends, which can break or make ties: near, not equal
    assert a["image_auroc"] == pytest.approx(b["image_auroc"], abs=1e-3)
    assert a["aupro"] == pytest.approx(b["aupro"], abs=1e-3)


# ------------------------------------------------------------------------------------ command line




def _export_tiny(path, batch=None, channel_order="RGB"):
    """The tiny graph as ONNX with its manifest (batch: a fixed batch size, else dynamic)."""
    from export.manifest import batch_spec, write

    graph = _tiny_graph()
    example = torch.zeros((batch or 2, H, W, 3), dtype=torch.uint8)
    dyn = None if batch else {"frame": {0: "n"}, "anomaly_map": {0: "n"}, "score": {0: "n"}}
    torch.onnx.export(graph, (example,), str(path), input_names=["frame"], output_names=["anomaly_map", "score"],
                      dynamic_axes=dyn, opset_version=17, dynamo=False)
    manifest = _manifest_of(graph)
    manifest.artifact_kind, manifest.batch = "onnx", batch_spec(batch or "dynamic")
    manifest.input.channel_order = channel_order
    write(path, manifest)
    return graph


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_static_batch_is_split_and_padded(tmp_path):
    from runtime.backends import create_backend
    from runtime.manifest import load_manifest

    graph = _export_tiny(tmp_path / "b2.onnx", batch=2)
    manifest = load_manifest(tmp_path / "b2.onnx")
    assert manifest.batch.dynamic is False and manifest.batch.max == 2
    frames = synthetic_set()[0][:5]
    with create_backend("onnxruntime", str(tmp_path / "b2.onnx"), manifest) as backend:
        maps, scores = backend.infer(frames)
    assert maps.shape == (5, 1, H, W) and scores.shape == (5,)
    with torch.inference_mode():
        ref = graph(torch.from_numpy(frames))[1].numpy()
    np.testing.assert_allclose(scores, ref, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_accuracy_cli_with_onnx_writes_json_table_and_overlays(tiny_mvtec, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime evaluates the exported graph")
    pytest.importorskip("imagesets", reason="imagesets reads the test split")
    from benchmarks.accuracy import main

    data = tiny_mvtec
    _export_tiny(tmp_path / "m.onnx")
    out = tmp_path / "res" / "acc.json"
    rc = main(["--model", str(tmp_path / "m.onnx"), "--data", str(data), "--category", "tiles", "--json", str(out),
               "--batch-size", "3", "--no-progress", "--overlays-per-set", "2"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["backend"] == "onnxruntime" and report["image_size"] == [H, W] and report["n_images"] == 7
    assert report["model_path"] == str(tmp_path / "m.onnx") and "CPUExecutionProvider" in report["runs_on"]
    assert set(report["per_defect_type"]) == {"scratch", "blob"}
    # the tiny model's map is the blurred red channel: bright defects score highest
    assert report["image_auroc"] == 1.0
    for key in ("pixel_auroc", "aupro", "f1_max"):
        assert 0.5 < report[key] <= 1.0
    assert len(report["scores"]) == len(report["paths"]) == 7
    pngs = sorted((tmp_path / "res" / "overlays").glob("*.png"))
    assert len(pngs) == 6 and report["overlays"] and "maps" not in report
    shown = capsys.readouterr().out
    assert "image AUROC" in shown and "scratch" in shown and "blob" in shown


def test_accuracy_cli_bad_input_is_one_error_line(tmp_path, capsys):
    from benchmarks.accuracy import main

    rc = main(["--model", str(tmp_path / "missing.onnx"), "--data", str(tmp_path), "--category", "x",
               "--json", str(tmp_path / "a.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --model ") and "missing.onnx" in err[0]
    rc = main(["--data", str(tmp_path), "--category", "x", "--json", str(tmp_path / "a.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: give --run RUN (a trained run folder), or --model MODEL.onnx"]
    rc = main(["--run", str(tmp_path / "norun"), "--data", str(tmp_path), "--category", "x",
               "--json", str(tmp_path / "a.json"), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("error: ") and "norun" in err[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_accuracy_cli_backends_agree_and_a_bgr_model_gets_bgr_frames(tiny_mvtec, tmp_path):
    from benchmarks.accuracy import build_parser, main
    from runtime.backends import REGISTRY, is_available

    action = next(a for a in build_parser()._actions if a.dest == "backend")
    assert tuple(action.choices) == tuple(REGISTRY)
    data = tiny_mvtec
    _export_tiny(tmp_path / "m.onnx")
    # the same graph declared BGR: the red channel it reads is then the images' blue one
    _export_tiny(tmp_path / "bgr.onnx", channel_order="BGR")
    backends = ["onnxruntime"] + (["openvino"] if is_available("openvino") else [])
    reports = {}
    for name, model in [(b, "m") for b in backends] + [("onnxruntime", "bgr")]:
        out = tmp_path / f"{name}-{model}.json"
        assert main(["--model", str(tmp_path / f"{model}.onnx"), "--backend", name, "--data", str(data),
                     "--category", "tiles", "--json", str(out), "--no-progress", "--no-overlays"]) == 0
        reports[name, model] = json.loads(out.read_text())
    for name in backends[1:]:
        assert reports[name, "m"]["backend"] == name
        np.testing.assert_allclose(reports[name, "m"]["scores"], reports["onnxruntime", "m"]["scores"], atol=1e-6)
    from imagesets import find_samples, load_images

    frames = load_images(find_samples(data, "tiles", "test"), (H, W), progress=False)
    with torch.inference_mode():
        blue_first = _tiny_graph()(torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])))[1].numpy()
    np.testing.assert_allclose(reports["onnxruntime", "bgr"]["scores"], blue_first, atol=1e-6)


@pytest.mark.slow
def test_accuracy_cli_on_a_tiny_trained_run(tiny_mvtec, tmp_path, capsys):
    """End to end: train a 2-step FAIR run (c=8, 32x32) with `python -m train`, evaluate it with the torch
    graph from `train.runs.load_graph`, and check the JSON and the overlays."""
    pytest.importorskip("imagesets", reason="imagesets reads the data set")
    from benchmarks.accuracy import main
    from tests.helpers.tiny_runs import train_tiny_cli

    data = tiny_mvtec
    run = train_tiny_cli(data, "tiles", tmp_path / "run")
    out = tmp_path / "acc.json"
    rc = main(["--run", str(run), "--data", str(data), "--category", "tiles", "--json", str(out), "--device", "cpu",
               "--batch-size", "4", "--no-progress", "--overlays-per-set", "1"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert (report["backend"], report["device"], report["method"], report["c"]) == ("torch", "cpu", "fair", 8)
    assert report["image_size"] == [32, 32] and report["n_images"] == 7 and (report["n_good"], report["n_defect"]) == (3, 4)
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max"):
        assert 0.0 <= report[key] <= 1.0, key  # an untrained model: defined, in range, not necessarily good
    assert set(report["per_defect_type"]) == {"scratch", "blob"}
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 3
    # A scoring option can change after training (same weights, another mean filter); a trained one cannot.
    out7 = tmp_path / "acc7.json"
    rc = main(["--run", str(run), "--data", str(data), "--category", "tiles", "--json", str(out7), "--device", "cpu",
               "--no-progress", "--no-overlays", "--option", "mean_filter=7"])
    assert rc == 0, capsys.readouterr().err
    report7 = json.loads(out7.read_text())
    assert report7["options"]["mean_filter"] == 7 and report["options"]["mean_filter"] == 21
    assert report7["scores"] != report["scores"]
    rc = main(["--run", str(run), "--data", str(data), "--category", "tiles", "--json", str(out7), "--device", "cpu",
               "--no-progress", "--option", "filter=ghpf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "cannot change after training" in err[0] and "mean_filter" in err[0]
