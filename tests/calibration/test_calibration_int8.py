"""calibration.int8: Q/DQ placement, INT8 vs FP32 closeness, the INT8 manifest, test-split refusal, --keep and the
automatic sensitivity fallback, on a tiny FAIR graph (c=8, 64x64) and a small synthetic MVTec-layout data set."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")

from calibration.errors import CalibrationError, TestSplitRefused
from calibration.int8 import main as int8_main
from calibration.int8 import quantize_onnx
from calibration.int8_search import open_backend
from calibration.trt_cache import read_trt_calibration_cache
from runtime.manifest import load_manifest, sha256_file

SIZE, C = 64, 8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


def _texture(rng, size):
    base = cv2.resize(rng.normal(0, 1, (size // 4, size // 4, 3)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    xx = np.arange(size)[None, :, None]
    stripes = np.sin(xx * 0.5 + rng.uniform(0, 6.28)) * 0.6 * np.array([1.0, 0.8, 0.6])
    return np.clip(128 + 30 * base + 30 * stripes, 0, 255).astype(np.uint8)


def make_dataset(root, cat="tex", n_train=20, n_good=4, n_bad=4, size=SIZE, seed=0):
    """CATEGORY/train/good, test/{good,blob}, ground_truth/blob in the MVTec layout."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, cat)
    for sub in ("train/good", "test/good", "test/blob", "ground_truth/blob"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for i in range(n_train):
        cv2.imwrite(os.path.join(d, "train/good", f"{i:03d}.png"), _texture(rng, size))
    for i in range(n_good):
        cv2.imwrite(os.path.join(d, "test/good", f"{i:03d}.png"), _texture(rng, size))
    for i in range(n_bad):
        img, mask = _texture(rng, size), np.zeros((size, size), np.uint8)
        cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
        cv2.circle(mask, (cx, cy), int(rng.integers(size // 10, size // 6)), 255, -1)
        img[mask > 0] = rng.integers(0, 255, 3).astype(np.uint8)
        cv2.imwrite(os.path.join(d, "test/blob", f"{i:03d}.png"), img)
        cv2.imwrite(os.path.join(d, "ground_truth/blob", f"{i:03d}_mask.png"), mask)
    return root


def export_tiny_fair(path):
    """A tiny FAIR inspection graph with He-initialised weights (so the network's activations are not ~0)."""
    from export.onnx import export_onnx
    from train.config import RunConfig
    from train.graph import InspectionGraph
    from train.methods import get_method

    method = get_method("fair")
    torch.manual_seed(0)
    model = method.build_model(C, (SIZE, SIZE), method.options({})).eval()
    for m in model.net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, 0.0, 0.05)
    graph = InspectionGraph(model, (SIZE, SIZE)).eval()
    export_onnx(graph, RunConfig(method="fair", c=C, image_size=(SIZE, SIZE)), path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    data = make_dataset(str(root / "data"))
    fp32 = export_tiny_fair(str(root / "model.onnx"))
    out = str(root / "model-int8.onnx")
    report = quantize_onnx(fp32, out, data, "tex", images=12, progress=False, calib_cache=str(root / "model.calib"),
                           trt_version="8.5.2")
    return {"root": root, "data": data, "fp32": fp32, "int8": out, "report": report}


def _graph_maps(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    cons = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return inits, prod, cons


def test_qdq_nodes_placed_in_the_network_only(setup):
    model = onnx.load(setup["int8"])
    inits, prod, cons = _graph_maps(model)
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(qs) > 20 and len(dqs) == len(qs)
    # Every dequantised tensor is read by network nodes only: pre-processing and scoring stay FP32.
    for dq in dqs:
        readers = cons.get(dq.output[0], [])
        assert readers, dq.name
        for r in readers:
            assert r.name.startswith("/model/net/"), f"{dq.name} feeds {r.name}"
    for n in model.graph.node:
        if n.name.startswith(("/model/highpass/", "/model/scorer/")) or not n.name.startswith("/model/"):
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                # Q/DQ of the network's input sits on the high-pass output tensor; it must feed the network
                assert all(c.name.startswith("/model/net/") or c.op_type == "DequantizeLinear"
                           for c in cons.get(n.output[0], []))
                continue
            assert not any(i in prod and prod[i].op_type == "DequantizeLinear" for i in n.input), n.name
    # Every network Conv reads a dequantised input and dequantised weights.
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/model/net/")]
    assert len(convs) == 23
    for conv in convs:
        assert prod[conv.input[0]].op_type == "DequantizeLinear", conv.name
        assert prod[conv.input[1]].op_type == "DequantizeLinear", conv.name
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # bias stays FP32
    # The reconstruction handed to the scorer is the FP32 Conv output, not a dequantised copy.
    head = next(n for n in convs if n.name.startswith("/model/net/head/"))
    assert all(c.op_type not in ("QuantizeLinear",) for c in cons[head.output[0]])


def test_zero_points_and_per_channel_weights(setup):
    model = onnx.load(setup["int8"])
    inits, prod, cons = _graph_maps(model)
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not np.any(zp), n.name  # symmetric INT8: zero point 0
    weight_qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert len(weight_qs) == 23
    for q in weight_qs:
        w, scale = inits[q.input[0]], inits[q.input[1]]
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        assert w.dtype == np.float32 and w.ndim == 4
        assert axis == 0 and scale.shape == (w.shape[0],), q.name  # one scale per output channel
        assert np.all(scale > 0)
    act_qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert act_qs and all(inits[q.input[1]].size == 1 for q in act_qs)  # activations: per tensor


def test_int8_runs_in_onnxruntime_and_maps_are_close(setup):
    manifest = load_manifest(setup["int8"])
    from calibration.data import good_train_samples, load_frames

    frames = load_frames(good_train_samples(setup["data"], "tex")[-6:], (SIZE, SIZE), "RGB", progress=False)
    with open_backend(setup["fp32"], load_manifest(setup["fp32"]), threads=1) as fp32:
        m32, s32 = fp32.infer(frames)
    with open_backend(setup["int8"], manifest, threads=1) as int8:
        m8, s8 = int8.infer(frames)
    assert m8.shape == m32.shape == (6, 1, SIZE, SIZE) and m8.dtype == np.float32
    rel = np.abs(m8 - m32).mean() / np.abs(m32).mean()
    assert rel < 0.05, rel
    assert np.abs(s8 - s32).max() < 0.1 * np.abs(s32).mean()
    assert not np.array_equal(m8, m32)  # it really is a different (quantised) computation


def test_int8_manifest_and_report(setup):
    m = load_manifest(setup["int8"])
    src = load_manifest(setup["fp32"])
    assert m.precision == "int8" and m.artifact == "model-int8.onnx"
    assert m.sha256 == sha256_file(setup["int8"]) != src.sha256
    assert m.threshold is None
    assert m.graph_parts == src.graph_parts
    q = m.quantization.to_dict()
    assert q["format"] == "QDQ" and q["method"] == "minmax"
    assert q["calibration"]["images"] == 12 and q["calibration"]["available"] == 20
    assert all(f.startswith(os.path.join("tex", "train", "good")) for f in q["calibration"]["files"])
    assert q["placement"]["network_prefixes"] == ["/model/net/"]
    assert q["placement"]["prefix_source"] == "manifest graph_parts"
    assert q["placement"]["per_channel_weights"] == 23
    assert q["placement"]["qdq"]["zero_point_types"] == ["int8"]
    acc = q["accuracy"]
    assert acc["images"] == 8 and acc["split"] == "test"
    for key in ("image_auroc", "pixel_auroc"):
        assert 0.0 <= acc["fp32"][key] <= 1.0 and 0.0 <= acc["int8"][key] <= 1.0
        assert acc[f"{key}_loss_points"] == pytest.approx(100 * (acc["fp32"][key] - acc["int8"][key]))
    err = q["map_error"]["eval_images"]
    assert err["images"] == 8 and 0 <= err["mean_abs_diff"] <= err["max_abs_diff"]
    assert err["score_correlation"] > 0.9
    assert q["sizes"]["int8_weight_bytes"] * 4 == q["sizes"]["fp32_weight_bytes"] > 0
    assert q["source"]["sha256"] == src.sha256


def test_trt_calibration_cache_from_the_qdq_scales(setup):
    cache = setup["report"]["trt_calibration_cache"]
    assert cache["written"] and cache["header"] == "TRT-8502-EntropyCalibration2"
    header, scales = read_trt_calibration_cache(cache["path"])
    assert header == "TRT-8502-EntropyCalibration2"
    model = onnx.load(setup["int8"])
    inits, prod, _ = _graph_maps(model)
    expected = {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert set(scales) == set(expected)
    for name, s in scales.items():
        assert np.float32(s) == np.float32(expected[name])
    fp32_tensors = {o for n in onnx.load(setup["fp32"]).graph.node for o in n.output}
    assert set(scales) <= fp32_tensors  # names TensorRT will see when it parses the FP32 graph


def test_refuses_test_split(setup, capsys):
    bad = os.path.join(setup["data"], "tex", "test", "good")
    with pytest.raises(TestSplitRefused, match="test split"):
        quantize_onnx(setup["fp32"], str(setup["root"] / "x.onnx"), bad, images=4, progress=False)
    rc = int8_main(["--model", setup["fp32"], "--data", os.path.join(setup["data"], "tex", "test"),
                    "--out", str(setup["root"] / "x.onnx"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "train/good" in err[0]
    assert not os.path.exists(setup["root"] / "x.onnx")


def test_keep_prefix_and_automatic_sensitivity(setup):
    out = str(setup["root"] / "keep.onnx")
    # A goal no placement can meet forces the per-block analysis and the automatic fallback.
    rep = quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=8, progress=False,
                        keep=["/model/net/head"], max_loss_points=-100.0)
    sens = rep["sensitivity"]
    blocks = [r["block"] for r in sens]
    assert len(blocks) == 9 and "/model/net/head/" not in blocks  # 5 enc + 4 dec blocks; head already kept
    ranked = [r["defect_relative_map_error"] for r in sens]  # worst first, on synthetic-defect images
    assert ranked == sorted(ranked, reverse=True) and all(r["good_relative_map_error"] >= 0 for r in sens)
    # Worst blocks are kept in FP32 one after another (at most 3); the best attempt is written.
    assert [a["keep"] for a in rep["attempts"]] == [["/model/net/head/"] + blocks[:i] for i in range(4)]
    assert rep["accuracy"]["goal_met"] is False
    kept = rep["placement"]["kept_fp32"]
    assert kept in [a["keep"] for a in rep["attempts"]] and kept[0] == "/model/net/head/"
    model = onnx.load(out)
    inits, prod, _ = _graph_maps(model)
    for n in model.graph.node:
        if n.op_type == "Conv" and any(n.name.startswith(k) for k in kept):
            assert n.input[1] in inits, f"{n.name} should keep FP32 weights"  # no DQ on kept weights
    with pytest.raises(CalibrationError, match="matches no node"):
        quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=4, progress=False, keep=["/model/nope/"])


def test_calibration_package_never_imports_torch():
    code = ("import sys, calibration.int8, calibration.quantizer, calibration.int8_search, calibration.int8_report, "
            "calibration.trt_cache; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    env = dict(os.environ, PYTHONPATH=REPO)
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO).returncode == 0


def test_onnxruntime_placement_runs_int8_chains_and_an_fp32_reconstruction(setup):
    """UINT8 activations (asymmetric), INT8 per-channel weights stored as INT8: ORT's CPU provider fuses every
    network conv but the head into QLinearConv, drops the ReLUs into the Qs, and runs MaxPool and the skip Adds
    on uint8; the reconstruction reaches the scorer in FP32; TensorRT's cache is refused for this form."""
    import onnxruntime as ort

    from calibration import qdq

    out = str(setup["root"] / "ort.onnx")
    rep = quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=4, placement="onnxruntime",
                        progress=False, auto_keep=False)
    assert rep["placement"]["style"] == "onnxruntime" and rep["activations"].startswith("uint8, asymmetric")
    assert rep["placement"]["qdq"]["zero_point_types"] == ["uint8"] and rep["placement"]["per_channel_weights"] == 23
    model = onnx.load(out)
    inits, prod, cons = _graph_maps(model)
    assert not [n for n in model.graph.node if n.op_type == "Relu" and n.name.startswith("/model/net/")]
    quant = qdq.activation_quant(model)
    assert quant and all(q.dtype == "uint8" for q in quant.values())
    assert any(q.zero_point != 0 for q in quant.values())  # the network input's range is not one-sided
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/model/net/")]
    assert len(convs) == 23
    for conv in convs:
        w = inits[prod[conv.input[1]].input[0]]
        assert w.dtype == np.int8 and w.ndim == 4, conv.name  # weights stored INT8
        readers = {c.op_type for c in cons[conv.output[0]]}
        if conv.name.startswith("/model/net/head/"):
            assert "QuantizeLinear" not in readers  # the reconstruction reaches the scorer in FP32
        else:
            assert readers == {"QuantizeLinear"}, conv.name
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(setup["root"] / "ort-optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert fused.count("QLinearConv") == 22  # every network conv but the head runs in INT8 on the CPU
    assert fused.count("QLinearAdd") == 4  # the decoder's skip connections
    assert "MaxPool" not in fused and fused.count("NhwcMaxPool") == 4  # pooling on uint8, no float round trip
    with pytest.raises(CalibrationError, match="placement tensorrt"):
        quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=4, placement="onnxruntime",
                      progress=False, auto_keep=False, calib_cache=str(setup["root"] / "x.calib"),
                      trt_version="8.5")
    from calibration.trt_cache import write_trt_calibration_cache

    with pytest.raises(CalibrationError, match="not symmetric INT8"):
        write_trt_calibration_cache(model, str(setup["root"] / "y.calib"), "8.5")


def test_headroom_widens_the_activation_ranges(setup):
    out = str(setup["root"] / "headroom.onnx")
    rep = quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=12, headroom=2.0, progress=False,
                        auto_keep=False)
    def act_scales(path):
        inits, _, _ = _graph_maps(onnx.load(path))
        return {n.input[0]: float(inits[n.input[1]]) for n in onnx.load(path).graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in inits}

    base, wide = act_scales(setup["int8"]), act_scales(out)
    assert base and set(base) == set(wide)
    for name in base:
        assert wide[name] == pytest.approx(2.0 * base[name], rel=1e-5), name
    assert rep["headroom"] == 2.0
    ov = rep["range_overshoot"]
    assert ov["tensors"] == len(base) and ov["worst"][0]["ratio"] >= ov["median_ratio"] > 0
    with pytest.raises(CalibrationError, match="headroom"):
        quantize_onnx(setup["fp32"], out, setup["data"], "tex", images=4, headroom=0.5, progress=False)


def test_quantised_prefixes_come_from_the_manifest_with_a_fallback(setup):
    """graph_parts["int8"] names what is quantised; an older manifest (no such entry) quantises what its method
    declares; an empty declaration is refused; a prefix matching no node says how to give one."""
    from calibration import qdq

    model = onnx.load(setup["fp32"])
    assert qdq.network_prefixes(model, {"int8": ["/model/net/"]}) == ["/model/net/"]
    assert qdq.network_prefixes(model, {"network": ["/model/net"]}, method="fair") == ["/model/net/"]  # older
    assert qdq.network_prefixes(model, None, method="noise2norm") == ["/model/net/"]  # no graph_parts at all
    with pytest.raises(CalibrationError, match="'gone' is not registered here"):
        qdq.network_prefixes(model, {"network": ["/model/net"]}, method="gone")
    with pytest.raises(CalibrationError, match="declares no part that may be quantised"):
        qdq.network_prefixes(model, {"int8": []})
    with pytest.raises(CalibrationError, match="graph_parts\\['int8'\\]"):
        qdq.network_prefixes(model, {"int8": ["/model/backbone/"]})


def test_int8_model_gets_its_own_threshold_calibrated_like_the_fp32_one(setup, tmp_path, capsys):
    """calibration.int8 on a calibrated FP32 model: the INT8 model is calibrated with the same rule and good
    images on its own scores (not inherited blindly) and records how far the two thresholds lie apart."""
    import shutil

    from calibration.threshold import calibrate_threshold
    from runtime.manifest import write_manifest

    fp32 = str(tmp_path / "model.onnx")
    shutil.copyfile(setup["fp32"], fp32)
    write_manifest(fp32, load_manifest(setup["fp32"]))
    calibrate_threshold(fp32, setup["data"], "tex", target_fpr=0.05, progress=False)
    out = str(tmp_path / "model-int8.onnx")
    assert int8_main(["--model", fp32, "--data", setup["data"], "--category", "tex", "--images", "8", "--out", out,
                      "--no-progress"]) == 0
    assert "calibrated like" in capsys.readouterr().out
    parent, child = load_manifest(fp32), load_manifest(out)
    assert child.threshold is not None and child.threshold.rule == "target_fpr" and child.threshold.target_fpr == 0.05
    prov = child.threshold_provenance.to_dict()
    assert prov["good_images"]["files"] == parent.threshold_provenance.good_images["files"]
    assert prov["estimate"]["parent"]["parent_sha256"] == parent.sha256
    assert abs(prov["estimate"]["parent"]["difference_normalised"]) < 1.0
