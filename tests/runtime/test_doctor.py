"""runtime.doctor: the report's schema, the reason of every absent piece (each probe made to fail for real:
a library path that does not exist, a module that cannot import, an OpenCV build without FFmpeg/GStreamer, a
Jetson's release file), parity on the bundled self-test graph, and the CLI without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import cuda_runtime, trt_version
from runtime.doctor import backends as backend_probe
from runtime.doctor import compare, gpu, jetson, report, system
from runtime.doctor.parity import check_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def full_report():
    return report.collect(iters=3)


def test_report_has_every_section_with_its_type(full_report):
    r = full_report
    assert set(r) == set(report.SECTIONS)
    for key, kind in report.SECTIONS.items():
        assert isinstance(r[key], kind), (key, type(r[key]))
    assert r["schema"] == "edge-inspect-doctor" and r["schema_version"] == 1
    assert r["python"]["version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert r["numpy"]["version"] == np.__version__
    assert isinstance(r["cpu"]["physical_cores"], int) and isinstance(r["cpu"]["flags"], list)
    for section in ("cuda", "tensorrt", "opencv"):  # every piece: available, or a reason
        assert isinstance(r[section]["available"], bool)
        assert r[section]["available"] or isinstance(r[section]["reason"], str) and r[section]["reason"]
    assert set(r["backends"]) >= {"onnxruntime", "openvino", "tensorrt", "torch", "triton"}
    for name, b in r["backends"].items():
        assert {"available", "reason", "package", "version", "precisions", "needs_gpu", "details"} <= set(b), name
        assert b["available"] or b["reason"], name
    assert r["backends"]["onnxruntime"]["available"] and "CPUExecutionProvider" in \
        r["backends"]["onnxruntime"]["details"]["providers"]
    assert isinstance(r["jetson"]["is_jetson"], bool)
    json.loads(json.dumps(r))  # plain JSON all the way down


def test_self_test_runs_on_every_cpu_backend_within_tolerance(full_report):
    st = full_report["selftest"]
    assert st["passed"] and st["method"] == "selftest" and st["frames"] == {"synthetic": 4, "real": 0}
    assert st["legs"]["onnxruntime"]["status"] == "reference"
    ov = st["legs"]["openvino"]
    assert ov["status"] == "pass" and ov["compute"] == "fp32"
    for out in ("anomaly_map", "score"):
        assert ov["outputs"][out]["max_abs"] <= ov["outputs"][out]["atol"] or \
            ov["outputs"][out]["max_rel"] <= ov["outputs"][out]["rtol"]
    if not full_report["tensorrt"]["available"]:
        assert st["legs"]["tensorrt"]["status"] == "skipped" and "tensorrt" in st["legs"]["tensorrt"]["reason"]
    # torch runs a training run's graph: the bundled graph has none, and says so
    assert st["legs"]["torch"]["status"] == "skipped" and "source_run" in st["legs"]["torch"]["reason"]


def test_text_report_names_each_absent_piece(full_report):
    text = report.format_text(full_report)
    for head in ("Python", "numpy", "OpenCV", "CPU", "CUDA", "TensorRT", "Jetson", "Backends", "Self-test", "Result"):
        assert head in text
    for name, b in full_report["backends"].items():
        if not b["available"]:
            assert b["reason"] in text


# -- each "unavailable" reason, from the probe itself --------------------------------------------------------
def test_no_cuda_library(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda_runtime, "_CUDA", None)
    monkeypatch.setattr(cuda_runtime, "candidate_libraries", lambda *a, **k: [str(tmp_path / "libcudart.so.12")])
    info = gpu.cuda_info()
    assert info["available"] is False and info["gpu"] is None
    assert "no CUDA runtime library (libcudart) could be loaded" in info["reason"]
    assert "EDGE_INSPECT_LIBCUDART" in info["reason"]


def test_no_tensorrt(monkeypatch):
    monkeypatch.setattr(trt_version, "_TRT", None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    info = gpu.tensorrt_info()
    assert info["available"] is False and info["version"] is None
    assert "pip install tensorrt" in info["reason"] and "JetPack" in info["reason"]
    b = backend_probe.backend_report("tensorrt")
    assert b["available"] is False and "tensorrt" in b["reason"]


def test_tensorrt_older_than_the_floor(monkeypatch):
    old = type(sys)("tensorrt")
    old.__version__ = "8.4.1.5"
    monkeypatch.setattr(trt_version, "_TRT", None)
    monkeypatch.setitem(sys.modules, "tensorrt", old)
    info = gpu.tensorrt_info()
    assert info["available"] is False and "8.4.1.5 is older than 8.5" in info["reason"]


def test_tensorrt_without_a_usable_gpu(monkeypatch, tmp_path):
    """TensorRT imports (a module of a supported version) but libcudart cannot be loaded: the report's
    TensorRT section is available, CUDA says why not, the pair is flagged, and the self-test's TensorRT leg is
    skipped with the CUDA reason instead of building anything."""
    trt = type(sys)("tensorrt")
    trt.__version__ = "10.3.0"
    monkeypatch.setattr(trt_version, "_TRT", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_runtime, "_CUDA", None)
    monkeypatch.setattr(cuda_runtime, "candidate_libraries", lambda *a, **k: [str(tmp_path / "libcudart.so.12")])
    info, cuda = gpu.tensorrt_info(), gpu.cuda_info()
    assert info["available"] and info["version"] == "10.3.0" and info["capabilities"]["strongly_typed_flag"]
    assert info["max_onnx_opset"] == 20 and not cuda["available"]
    assert "engines can neither be built nor run" in gpu.gpu_warnings(cuda, info)[0]
    leg = check_model(report.SELFTEST_MODEL, iters=2)["legs"]["tensorrt"]
    assert leg["status"] == "skipped" and "libcudart" in leg["reason"]


def test_no_openvino(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    b = backend_probe.backend_report("openvino")
    assert b["available"] is False and "pip install openvino" in b["reason"]
    st = check_model(report.SELFTEST_MODEL, iters=2, tensorrt=False)
    assert st["legs"]["openvino"]["status"] == "skipped" and "pip install openvino" in st["legs"]["openvino"]["reason"]
    assert st["passed"]  # a skipped backend is not a failed one


def test_opencv_without_ffmpeg_and_gstreamer(monkeypatch):
    build = ("General configuration for OpenCV 4.8.0 =====\n  Video I/O:\n    DC1394:                      NO\n"
             "    FFMPEG:                      NO\n    GStreamer:                   NO\n    v4l/v4l2:   YES\n")
    monkeypatch.setattr(system, "_opencv_build_information", lambda: build)
    cv = system.opencv_info()
    assert cv["available"] and cv["version"] == "4.8.0" and cv["ffmpeg"] is False and cv["gstreamer"] is False
    assert any("without FFmpeg" in n for n in cv["notes"]) and any("without GStreamer" in n for n in cv["notes"])


def test_opencv_with_both_and_opencv_missing(monkeypatch):
    build = ("General configuration for OpenCV 4.5.4 =====\n    FFMPEG:                      YES\n"
             "      avcodec:                   YES (58.134.100)\n    GStreamer:                   YES (1.16.3)\n")
    monkeypatch.setattr(system, "_opencv_build_information", lambda: build)
    cv = system.opencv_info()
    assert cv["ffmpeg"] and cv["gstreamer"] and cv["notes"] == []
    monkeypatch.setattr(system, "_opencv_build_information", lambda: None)
    cv = system.opencv_info()
    assert cv["available"] is False and "opencv-python-headless" in cv["reason"]


def test_this_opencv_is_read_from_its_own_build_information():
    import cv2

    assert system.opencv_info()["version"] == cv2.__version__


def test_cpu_features(monkeypatch):
    from runtime import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_vnni"])
    cpu = system.cpu_info()
    assert cpu["flags"] == ["avx2", "avx512f", "avx512_vnni"] and cpu["int8_dot_product"] and not cpu["bf16"]
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "amx_tile", "amx_bf16", "amx_int8"])
    cpu = system.cpu_info()
    assert cpu["bf16"] and cpu["int8_dot_product"]


# -- Jetson --------------------------------------------------------------------------------------------------
def test_tegra_release_and_jetpack_table():
    line = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 2023"
    assert jetson.parse_tegra_release(line) == "35.4.1"
    assert jetson.jetpack_for("35.4.1") == ("5.1.2", "8.5.2", "3.8")
    assert jetson.jetpack_for("36.4.3") == ("6.1 / 6.2", "10.3", "3.10")
    assert jetson.jetpack_for("32.7.1") is None and jetson.parse_tegra_release("not a release") is None


def _jetson(tmp_path, monkeypatch, release, python, trt, power="NV Power Mode: MAXN\n0", bindings=()):
    path = tmp_path / "nv_tegra_release"
    path.write_text(release)
    monkeypatch.setattr(jetson, "_nvpmodel_query", lambda: power)
    monkeypatch.setattr(jetson, "_system_tensorrt_bindings", lambda: list(bindings))
    return jetson.jetson_info(python, trt, str(path))


def test_jetson_venv_without_system_site_packages(tmp_path, monkeypatch):
    info = _jetson(tmp_path, monkeypatch, "# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64",
                   {"version": "3.10.12", "virtualenv": True, "system_site_packages": False},
                   {"available": False, "reason": "No module named 'tensorrt'"},
                   bindings=["/usr/lib/python3.10/dist-packages/tensorrt"])
    assert info["is_jetson"] and info["l4t"] == "36.4.3" and info["jetpack_tensorrt"] == "10.3"
    assert any("--system-site-packages" in n for n in info["notes"]), info["notes"]
    assert not any("power mode" in n for n in info["notes"])


def test_jetson_wrong_python_wrong_tensorrt_and_power_mode(tmp_path, monkeypatch):
    info = _jetson(tmp_path, monkeypatch, "# R35 (release), REVISION: 4.1, GCID: 1, BOARD: t186ref, EABI: aarch64",
                   {"version": "3.10.4", "virtualenv": False, "system_site_packages": True},
                   {"available": True, "version": "10.3.0"}, power="NV Power Mode: 15W\n1")
    notes = " | ".join(info["notes"])
    assert info["jetpack"] == "5.1.2" and "Python 3.10 is not JetPack 5.1.2's Python 3.8" in notes
    assert "TensorRT 10.3.0 is not JetPack 5.1.2's 8.5.2" in notes
    assert "power mode is 15W, not MAXN" in notes and "jetson_clocks" in notes
    info = _jetson(tmp_path, monkeypatch, "# R35 (release), REVISION: 4.1", {"version": "3.8.10"},
                   {"available": True, "version": "8.5.2.2"}, power=None)
    assert info["notes"] == ["power mode unknown (`nvpmodel -q` not available): timings depend on it, see "
                             "docs/jetson.md"]


def test_not_a_jetson(tmp_path):
    assert jetson.jetson_info({}, {}, str(tmp_path / "absent")) == {"is_jetson": False}


# -- the comparison ------------------------------------------------------------------------------------------
def test_comparison_finds_an_error_beyond_tolerance_and_a_nan():
    ref = {"anomaly_map": np.linspace(0, 2, 32, dtype=np.float32).reshape(2, 1, 4, 4),
           "score": np.array([1.0, 2.0], np.float32)}
    tol = compare.tolerances_for("fp32")
    same = compare.compare(ref, {k: v + 1e-6 for k, v in ref.items()}, tol)
    assert same["passed"]
    off = dict(ref, anomaly_map=ref["anomaly_map"] + np.float32(0.01))
    res = compare.compare(ref, off, tol)
    assert not res["passed"] and res["outputs"]["score"]["passed"]
    assert res["outputs"]["anomaly_map"]["failing_fraction"] > 0.9
    nan = dict(ref, score=np.array([1.0, np.nan], np.float32))
    res = compare.compare(ref, nan, tol)
    assert not res["outputs"]["score"]["passed"] and res["outputs"]["score"]["nonfinite"] == 1
    short = dict(ref, score=ref["score"][:1])
    assert "shape" in compare.compare(ref, short, tol)["outputs"]["score"]["reason"]


def test_polygraphy_agrees_when_installed():
    pytest.importorskip("polygraphy")
    ref = {"anomaly_map": np.ones((1, 1, 4, 4), np.float32), "score": np.ones(1, np.float32)}
    tol = compare.tolerances_for("fp32")
    assert compare.compare(ref, {k: v + 1e-6 for k, v in ref.items()}, tol)["polygraphy"] is True
    assert compare.compare(ref, {k: v + 1e-2 for k, v in ref.items()}, tol)["polygraphy"] is False


# -- the command line ----------------------------------------------------------------------------------------
def _cli(*args, block_torch=False, timeout=300):
    code = ("import runpy, sys\n" + ("sys.modules['torch'] = None\n" if block_torch else "")
            + f"sys.argv = ['runtime.doctor'] + {list(args)!r}\n"
            "try:\n    runpy.run_module('runtime.doctor', run_name='__main__')\n"
            "finally:\n    print('TORCH_LOADED', sys.modules.get('torch') is not None, file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_help_and_report_without_torch(tmp_path):
    out = _cli("--help", block_torch=True)
    assert "usage: python -m runtime.doctor" in out.stdout and "--model" in out.stdout
    out = _cli("--json", str(tmp_path / "r.json"), "--iters", "2", block_torch=True)
    assert out.returncode == 0, out.stderr
    assert "TORCH_LOADED False" in out.stderr and "Result: OK" in out.stdout
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["backends"]["torch"]["available"] is False and "torch is not installed" in r["backends"]["torch"]["reason"]


def test_bad_input_is_one_error_line(tmp_path):
    out = _cli("--model", str(tmp_path / "missing.onnx"))
    assert out.returncode == 2 and out.stderr.splitlines()[0] == f"error: --model {tmp_path / 'missing.onnx'}: " \
                                                                 f"no such file"
    out = _cli("--real", str(tmp_path))
    assert out.returncode == 2 and "--real needs --model" in out.stderr
    bare = tmp_path / "bare.onnx"
    bare.write_bytes((ROOT / "runtime" / "doctor" / "selftest.onnx").read_bytes())  # no manifest beside it
    out = _cli("--model", str(bare))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "bare.json" in out.stderr.splitlines()[0]


# -- a trained model: ONNX Runtime, OpenVINO and torch agree --------------------------------------------------
@pytest.mark.slow  # trains a 2-step FAIR c=8 run and exports it (~10 s on 2 cores)
def test_trained_model_agrees_on_onnxruntime_openvino_and_torch(tmp_path):
    pytest.importorskip("torch")
    import cv2

    from export.onnx import export_onnx
    from train.config import RunConfig
    from train.loop import train
    from train.runs import load_graph

    rng = np.random.default_rng(0)
    images = np.clip(rng.integers(60, 200, (1, 32, 32, 3)) + rng.integers(-20, 20, (6, 32, 32, 3)), 0,
                     255).astype(np.uint8)
    config = RunConfig(method="fair", c=8, image_size=(32, 32), seed=3, steps=2, batch_size=2, lr=1e-3)
    run = train(config, tmp_path / "run", images, device="cpu", progress=False)
    graph, cfg = load_graph(run)
    model = export_onnx(graph, cfg, tmp_path / "fair_c8.onnx", source_run=str(run))
    real = tmp_path / "real"
    real.mkdir()
    for i in range(2):  # real frames of another size: resized as the Inspector would
        cv2.imwrite(str(real / f"{i}.png"), cv2.resize(images[i], (48, 40)))
    out = _cli("--model", str(model), "--real", str(real), "--no-selftest", "--iters", "2", "--json",
               str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    p = json.loads((tmp_path / "r.json").read_text())["model"]
    assert p["frames"] == {"synthetic": 4, "real": 2} and p["passed"]
    for leg in ("openvino", "torch"):
        assert p["legs"][leg]["status"] == "pass", (leg, p["legs"][leg])
        for o in p["legs"][leg]["outputs"].values():
            assert o["failing_fraction"] == 0.0 and o["shape"][0] == 6
    assert "torch" in out.stdout and "PASS" in out.stdout


def test_text_of_a_gpu_machine(full_report):
    """The text lines for sections only a GPU machine fills (the values are a Jetson's, as its probes return
    them), so the first run on a GPU does not meet untried formatting code."""
    r = json.loads(json.dumps(full_report))
    r["cuda"] = {"available": True, "reason": None, "library": "/usr/local/cuda/lib64/libcudart.so.12",
                 "runtime_version": "12.6", "driver_version": "12.6",
                 "gpu": {"index": 0, "name": "Orin", "compute_capability": "8.7", "memory_gib": None, "driver": None}}
    r["tensorrt"] = {"available": True, "reason": None, "version": "10.3.0", "max_onnx_opset": 20,
                     "capabilities": {"named_io_tensors": True, "strongly_typed_flag": True, "onnx_dft": False}}
    r["jetson"] = {"is_jetson": True, "l4t": "36.4.3", "jetpack": "6.1 / 6.2", "jetpack_tensorrt": "10.3",
                   "jetpack_python": "3.10", "power_mode": "NV Power Mode: MAXN\n0", "notes": []}
    leg = dict(r["selftest"]["legs"]["openvino"], backend="tensorrt",
               latency_batch1_cuda_graph={"p50_ms": 0.05, "mean_ms": 0.05, "iters": 3})
    r["selftest"]["legs"]["tensorrt"] = leg
    text = report.format_text(r)
    assert "GPU         Orin (compute capability 8.7)" in text
    assert "TensorRT    10.3.0 (ONNX opset <= 20; named_io_tensors, strongly_typed_flag)" in text
    assert "L4T 36.4.3 = JetPack 6.1 / 6.2 (ships TensorRT 10.3, Python 3.10); power mode: NV Power Mode: MAXN" in text
    assert "(CUDA graph 0.050 ms)" in text
