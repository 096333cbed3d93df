"""The steps of `benchmarks.gpu_check`, each writing into the check's folder and saying what it skipped.

- `doctor`: `python -m runtime.doctor --json` (the machine, the self-test graph on every backend, the TensorRT
  smoke build);
- `tests`: every test file that holds `gpu`/`trt` tests or skips without TensorRT/a GPU (`GPU_TEST_FILES`, plus
  any file that uses the markers), with pytest's skip reasons;
- `parity`: per model, the FP32 ONNX (seeded random weights, `export.artifacts`; PatchCore and PaDiM fitted on
  the generated demo images, since their memory bank / Gaussians are data) on ONNX Runtime as the
  reference, against OpenVINO and PyTorch on the CPU, PyTorch on CUDA, and TensorRT engines of the FP32, FP16
  and Q/DQ INT8 graphs (each against ONNX Runtime on the graph it was built from, with and without a CUDA graph);
- `latency`: `benchmarks/latency.py`'s `tensorrt` and torch-CUDA rows.
A step or part that cannot run here adds (what, why) to the check's SKIPPED list instead of failing.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
#: files whose tests need TensorRT or a GPU (they skip with a reason without them), whatever their markers
GPU_TEST_FILES = ("tests/runtime/test_runtime_trt.py", "tests/runtime/test_cuda_runtime.py",
                  "tests/runtime/test_cuda_graphs.py", "tests/export/test_export_trt.py",
                  "tests/export/test_trt_build_checks.py", "tests/export/test_trt_api_contract.py")
MARKERS = re.compile(r"pytest\.mark\.(gpu|trt)\b")


class Check:
    """The state of one check: its folder, its deadline, what each step found and what was skipped."""

    def __init__(self, out: Path, budget_s: float, gpu_reason: Optional[str]):
        self.out = out
        self.deadline = time.monotonic() + budget_s
        self.gpu_reason = gpu_reason  # None: a GPU and TensorRT are here
        self.steps: Dict[str, Any] = {}
        self.skipped: List[Tuple[str, str]] = []
        (out / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def gpu(self) -> bool:
        return self.gpu_reason is None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))

    def skip_gpu(self, what: str) -> None:
        """`what` needs the GPU path, which is not here (the full reason heads the output once)."""
        self.skip(what, "needs an NVIDIA GPU and TensorRT (GPU path: see the head of SKIPPED.md)")

    def run(self, name: str, cmd: Sequence[str]) -> Tuple[int, str]:
        """Run `cmd` with the remaining time as its limit; stdout+stderr to logs/NAME.log. (rc, output); rc 124
        when it ran out of time."""
        log = self.out / "logs" / f"{name}.log"
        limit = max(1.0, self.remaining())
        try:
            proc = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True, timeout=limit)
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc = 124
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text += f"\n[gpu_check] stopped after {limit:.0f} s: the check's time budget ran out\n"
        log.write_text(" ".join(cmd) + "\n\n" + text)
        return rc, text


def gpu_status() -> Optional[str]:
    """None when an NVIDIA GPU answers and TensorRT imports; else why not (the runtime's own probes)."""
    from runtime import cuda_runtime, trt_version
    from runtime.errors import BackendUnavailable

    try:
        cuda_runtime.probe_device()
    except cuda_runtime.CudaUnavailable as e:
        return f"no usable NVIDIA GPU: {e.reason}"
    try:
        trt_version.import_tensorrt()
    except BackendUnavailable as e:
        return str(e)
    return None


# -- doctor ------------------------------------------------------------------------------------------------------
def step_doctor(check: Check) -> None:
    rc, text = check.run("doctor", [sys.executable, "-m", "runtime.doctor", "--json", str(check.out / "doctor.json"),
                                    "--keep-engines", str(check.out / "engines" / "doctor")])
    (check.out / "doctor.txt").write_text(text)
    check.steps["doctor"] = {"rc": rc, "passed": rc == 0}
    if rc not in (0, 1):
        check.skip("doctor", f"python -m runtime.doctor exited {rc} (logs/doctor.log)")


# -- tests -------------------------------------------------------------------------------------------------------
def gpu_test_files() -> List[str]:
    files = set(GPU_TEST_FILES)
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if MARKERS.search(path.read_text(encoding="utf-8")):
            files.add(str(path.relative_to(ROOT)))
    return sorted(f for f in files if (ROOT / f).is_file())


def junit_summary(xml_path: Path) -> Dict[str, Any]:
    """passed / failed / skipped counts and the skip reasons (reason -> count) of a pytest junit XML."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    reasons: Dict[str, int] = {}
    failed: List[str] = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        if skipped is not None:
            counts["skipped"] += 1
            why = (skipped.get("message") or "").strip()
            reasons[why] = reasons.get(why, 0) + 1
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failed.append(name)
        else:
            counts["passed"] += 1
    return {**counts, "skip_reasons": reasons, "failed_tests": failed}


def step_tests(check: Check, files: Optional[Sequence[str]] = None) -> None:
    files = list(files) if files is not None else gpu_test_files()
    xml = check.out / "tests.xml"
    rc, _ = check.run("tests", [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                f"--junitxml={xml}", *files])
    summary = junit_summary(xml) if xml.is_file() else {"passed": 0, "failed": 0, "skipped": 0,
                                                        "skip_reasons": {}, "failed_tests": []}
    check.steps["tests"] = {"rc": rc, "files": files, **summary, "passed_all": rc == 0}
    for why, n in summary["skip_reasons"].items():
        check.skip(f"tests ({n})", why)


# -- parity ------------------------------------------------------------------------------------------------------
def demo_data(check: Check, category: str = "brick") -> Tuple[str, str]:
    """Good images for INT8 calibration: the generated demo set (one category, small), made once."""
    root = check.out / "data"
    if not (root / category / "train" / "good").is_dir():
        check.run("demo_data", [sys.executable, "-m", "train.demo_data", "--out", str(root), "--categories",
                                category, "--train", "16", "--test-good", "2", "--test-defect", "1", "--no-progress"])
    return str(root), category


def fitted_run(check: Check, method: str, image_size: int) -> Optional[str]:
    """For a method that learns in one pass over good images (PatchCore, PaDiM: `training == "fit"`), a run
    fitted on the demo images (its memory bank or Gaussians are data, not random weights); None for a method
    trained by gradient descent, whose seeded random weights are enough for parity and timing."""
    from train.methods import get_method

    if get_method(method).training != "fit":
        return None
    run = check.out / "runs" / f"{method}_{image_size}"
    if not (run / "model.safetensors").is_file():
        data, category = demo_data(check)
        rc, _ = check.run(f"fit_{method}", [sys.executable, "-m", "train", "--method", method, "--data", data,
                                            "--category", category, "--image-size", str(image_size), "--out",
                                            str(run), "--device", "cuda" if check.gpu else "cpu"])
        if rc != 0:
            raise RuntimeError(f"fitting {method} on the demo images failed (logs/fit_{method}.log)")
    return str(run)


def model_parity(check: Check, spec: str, image_size: int, precisions: Sequence[str], iters: int,
                 profile: Tuple[int, int, int]) -> Dict[str, Any]:
    """One model: its FP32 ONNX on ONNX Runtime (the reference) against every other leg that runs here."""
    from export.artifacts import Calibration, GraphSource, ModelArtifacts
    from export.manifest import graph_manifest
    from runtime.backends import backend_class, create_backend
    from runtime.doctor import parity
    from runtime.manifest import model_label

    method, _, width = spec.partition(":")
    run = fitted_run(check, method, image_size)
    source = GraphSource(method=method, c=int(width) if width else None, image_size=image_size, run=run)
    data, category = demo_data(check) if "int8" in precisions and check.gpu else (None, None)  # INT8 calibration
    # the folder benchmarks/latency.py uses for the same model under the same --work-dir: its engines reuse
    # this folder's TensorRT timing cache, so the latency step's builds take seconds
    label = model_label(method, source.c)
    folder = check.out / "engines" / f"{label}_{image_size}x{image_size}_{'run' if run else 'random'}"
    art = ModelArtifacts(folder, label, source,
                         calibration=Calibration(data, category, images=16, auto_keep=False, progress=False)
                         if data else None)
    onnx = art.onnx("fp32")
    manifest = art.manifest("fp32")
    frames = parity.synthetic_frames(manifest)
    legs: Dict[str, Any] = {}
    with create_backend("onnxruntime", str(onnx), manifest, device="cpu") as ref:
        ref_out, info = parity.measure(ref, frames, iters, 3.0)
    legs["onnxruntime"] = {"status": "reference", **info}

    def leg(label: str, make, precision: str = "fp32") -> None:
        try:
            with make() as b:
                out, info = parity.measure(b, frames, iters, 3.0)
            legs[label] = parity.judge(ref_out, out, precision, label.split(" ")[0], info)
        except Exception as e:  # a backend's failure is a finding, recorded, not a crash of the check
            legs[label] = {"status": "error", "reason": str(e).splitlines()[0][:300]}

    graph, config = art.graph_and_config()
    leg("openvino", lambda: create_backend("openvino", str(onnx), manifest, device="cpu",
                                           inference_precision="f32"))
    leg("torch (cpu)", lambda: backend_class("torch").from_graph(graph, graph_manifest(config, graph), "cpu"))
    if check.gpu:
        leg("torch (cuda)", lambda: backend_class("torch").from_graph(graph, graph_manifest(config, graph), "cuda"))
    else:
        check.skip_gpu(f"{spec}: torch (cuda)")
    art.release()
    for p in precisions:
        if not check.gpu:
            check.skip_gpu(f"{spec}: tensorrt {p} engine and its parity, with and without a CUDA graph")
            continue
        if check.remaining() < 30:
            check.skip(f"{spec}: tensorrt {p} engine", "the check's time budget ran out")
            continue
        try:
            engine, res = art.engine(p, profile)
            report = parity.check_model(str(engine), iters=iters)
            legs[f"tensorrt {p}"] = {**report["legs"]["tensorrt"], "build_seconds": res.seconds}
        except Exception as e:
            legs[f"tensorrt {p}"] = {"status": "error", "reason": str(e).splitlines()[0][:300]}
    return {"model": spec, "image_size": image_size, "onnx": str(onnx), "legs": legs,
            "passed": all(v["status"] in ("reference", "pass") for v in legs.values())}


def step_parity(check: Check, models: Sequence[str], image_size: int, precisions: Sequence[str], iters: int,
                profile: Tuple[int, int, int]) -> None:
    results = []
    for spec in models:
        if check.remaining() < 20:
            check.skip(f"{spec}: parity", "the check's time budget ran out")
            continue
        try:
            results.append(model_parity(check, spec, image_size, precisions, iters, profile))
        except Exception as e:  # e.g. a method whose backbone weights are not installed
            results.append({"model": spec, "legs": {}, "passed": False, "error": str(e).splitlines()[0][:300]})
    check.steps["parity"] = {"models": results, "passed": all(r["passed"] for r in results)}


# -- latency -----------------------------------------------------------------------------------------------------
def step_latency(check: Check, models: Sequence[str], image_size: int, precisions: Sequence[str],
                 batches: Sequence[int], iters: int) -> None:
    """benchmarks/latency.py's tensorrt and torch-CUDA rows, one run per method; CUDA-graph timings of the
    engines come from the parity step (the latency rows run without CUDA graphs)."""
    check.skip("torch (cuda) with CUDA graphs", "the torch backend has no CUDA-graph mode; TensorRT's CUDA-graph "
                                                "timings are in the parity table")
    if not check.gpu:
        check.skip_gpu("latency rows: tensorrt and torch (cuda)")
        return
    by_method: Dict[str, List[str]] = {}
    for spec in models:
        method, _, width = spec.partition(":")
        by_method.setdefault(method, []).extend([width] if width else [])
    runs = {}
    for method, widths in by_method.items():
        if check.remaining() < 30:
            check.skip(f"latency {method}", "the check's time budget ran out")
            continue
        data, category = demo_data(check)
        fitted = fitted_run(check, method, image_size)
        which = ["--runs", fitted] if fitted else (["--c", *widths] if widths else [])
        json_out = check.out / f"latency_{method}.json"
        cmd = [sys.executable, "benchmarks/latency.py", "--method", method, *which,
               "--backend", "tensorrt", "torch", "--device", "cuda", "--precision", *precisions,
               "--batch-sizes", *map(str, batches), "--image-size", str(image_size), "--data", data, "--category",
               category, "--calib-images", "16", "--iters", str(iters), "--warmup", "5", "--max-seconds", "10",
               "--work-dir", str(check.out / "engines"), "--json", str(json_out),
               "--markdown", str(check.out / f"latency_{method}.md"), "--no-progress"]
        rc, _ = check.run(f"latency_{method}", cmd)
        runs[method] = {"rc": rc, "json": json_out.name if json_out.is_file() else None}
    check.steps["latency"] = runs


__all__ = ["Check", "gpu_status", "gpu_test_files", "junit_summary", "step_doctor", "step_tests", "step_parity",
           "step_latency", "GPU_TEST_FILES"]
