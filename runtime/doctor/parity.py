"""Run one model on every backend that can run it here, compare each with ONNX Runtime FP32, time a short run.

The reference is ONNX Runtime on the CPU with the FP32 ONNX graph (for an engine: the ONNX it was built from,
named by its manifest). The candidates ("legs"): ONNX Runtime on the GPU where its build has CUDA/TensorRT
providers, OpenVINO in f32 (and bf16 where its CPU plugin computes bf16), PyTorch when the manifest's training
run is here, and TensorRT: the given engine, or for an ONNX model an FP32 engine built now (`trt_smoke`). A leg
that cannot run says why ("skipped"); one that runs but disagrees beyond the tolerances of its precision
(`compare.TOLERANCES`) is "fail"; one whose library raises is "error". Frames: a few synthetic ones (black,
grey, a smooth pattern with noise, a bright patch) and, when given, real images resized to the model's input.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from runtime.backends import backend_class, create_backend
from runtime.doctor import compare as cmp
from runtime.errors import BackendUnavailable, RuntimeInspectError, SourceError, one_line
from runtime.frames import FramePreparer
from runtime.manifest import Manifest, load_manifest, verify_artifact
from runtime.timing import latency_stats, time_infer

#: one leg: (label, backend, device, options, compute precision for the tolerances)
Leg = Tuple[str, str, str, Dict[str, Any], str]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def synthetic_frames(manifest: Manifest, seed: int = 0) -> np.ndarray:
    """(4, H, W, 3) uint8: black, mid-grey, a smooth pattern with noise, the pattern with a bright patch."""
    h, w = manifest.input.height, manifest.input.width
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = 127 + 60 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None] + rng.normal(0, 15, (h, w, 3))
    pattern = np.clip(pattern, 0, 255).astype(np.uint8)
    patch = pattern.copy()
    patch[h // 3:h // 3 + max(2, h // 6), w // 3:w // 3 + max(2, w // 6)] = 250
    return np.stack([np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 128, np.uint8), pattern, patch])


def real_frames(paths: Sequence[str], manifest: Manifest, limit: int = 8) -> np.ndarray:
    """Images (files, or the image files of folders) read with OpenCV and prepared as the Inspector does:
    resized to the model's input, in its channel order. SourceError when none can be read."""
    import cv2  # noqa: PLC0415

    files: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            files.append(p)
    images = [img for img in (cv2.imread(f, cv2.IMREAD_COLOR) for f in files[:limit]) if img is not None]
    if not images:
        raise SourceError(f"no readable image in {', '.join(paths)}: give image files or folders of them")
    prep = FramePreparer(manifest.input.size, manifest.input.channel_order)
    batch, _ = prep.stack(images, "BGR")
    return np.array(batch)


def _infer_all(backend: Any, frames: np.ndarray) -> Dict[str, np.ndarray]:
    """One frame at a time (every artifact takes batch 1), outputs stacked by role."""
    maps, scores = zip(*(backend.infer(frames[i:i + 1]) for i in range(frames.shape[0])))
    return {"anomaly_map": np.concatenate(maps), "score": np.concatenate(scores)}


def _timing(backend: Any, frame: np.ndarray, iters: int, max_seconds: float) -> Dict[str, Any]:
    lat, _notes = time_infer(backend.infer, frame, warmup=2, iters=iters, max_seconds=max_seconds,
                             synchronize=backend.synchronize)
    stats = latency_stats(lat, 1)
    return {"p50_ms": round(stats["p50_ms"], 3), "mean_ms": round(stats["mean_ms"], 3), "iters": stats["iters"]}


def measure(backend: Any, frames: np.ndarray, iters: int, max_seconds: float
            ) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Outputs of a loaded backend on `frames` (by role), and its batch-1 latency."""
    outputs = _infer_all(backend, frames)
    return outputs, {"describe": backend.describe(), "latency_batch1": _timing(backend, frames[:1], iters,
                                                                               max_seconds)}


def judge(ref_out: Dict[str, np.ndarray], out: Dict[str, np.ndarray], precision: str, backend: str,
          info: Dict[str, Any]) -> Dict[str, Any]:
    """A leg's record: pass/fail under the tolerances of the precision it computes in, errors, timing."""
    result = cmp.compare(ref_out, out, cmp.tolerances_for(precision))
    return {"status": "pass" if result["passed"] else "fail", "backend": backend, "compute": precision,
            **info, **result}


def _run_leg(path: str, manifest: Manifest, backend: str, device: str, options: Dict[str, Any],
             frames: np.ndarray, iters: int, max_seconds: float) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    with create_backend(backend, path, manifest, device=device, **options) as b:
        return measure(b, frames, iters, max_seconds)


def _availability(name: str) -> Optional[str]:
    try:
        backend_class(name).probe()
    except BackendUnavailable as e:
        return str(e)
    return None


def onnx_legs(manifest: Manifest, openvino_bf16: bool) -> Tuple[List[Leg], Dict[str, str]]:
    """The legs that run an ONNX model here, and the skipped ones with their reasons."""
    legs: List[Leg] = []
    skipped: Dict[str, str] = {}
    from runtime.backends.onnxruntime import gpu_providers  # noqa: PLC0415

    if gpu_providers():
        legs.append(("onnxruntime (cuda)", "onnxruntime", "cuda", {}, "fp32"))
    else:
        skipped["onnxruntime (cuda)"] = "this onnxruntime build has no CUDA/TensorRT execution provider " \
                                        "(`pip install onnxruntime-gpu`)"
    why = _availability("openvino")
    if why:
        skipped["openvino"] = why
    else:
        legs.append(("openvino", "openvino", "cpu", {"inference_precision": "f32"}, "fp32"))
        if openvino_bf16:
            legs.append(("openvino (bf16)", "openvino", "cpu", {"inference_precision": "bf16"}, "bf16"))
        else:
            skipped["openvino (bf16)"] = "OpenVINO's CPU plugin reports no BF16 (needs AMX or AVX512-BF16)"
    why = _availability("torch")
    if why:
        skipped["torch"] = why
    elif not manifest.source_run:
        skipped["torch"] = "the manifest names no training run (source_run): torch runs the run's graph"
    else:
        legs.append(("torch", "torch", "cpu", {}, "fp32"))
    return legs, skipped


def check_model(path: str, images: Sequence[str] = (), iters: int = 20, max_seconds: float = 3.0,
                openvino_bf16: bool = False, tensorrt: bool = True,
                engine_dir: Optional[str] = None) -> Dict[str, Any]:
    """The parity section of the report for the model at `path` (.onnx or .engine/.plan with its manifest)."""
    path = os.fspath(path)
    manifest = load_manifest(path)
    verify_artifact(path, manifest)
    frames = synthetic_frames(manifest)
    n_real = 0
    if images:
        real = real_frames(images, manifest)
        n_real = real.shape[0]
        frames = np.concatenate([frames, real])
    ref_path, ref_manifest = path, manifest
    legs: List[Leg] = []
    skipped: Dict[str, str] = {}
    engine_path: Optional[str] = None
    if manifest.artifact_kind == "tensorrt-engine":
        ref_path = _source_onnx(path, manifest)
        ref_manifest = load_manifest(ref_path)
        engine_path = path
    elif manifest.artifact_kind == "onnx":
        legs, skipped = onnx_legs(manifest, openvino_bf16)
    else:
        raise RuntimeInspectError(f"the doctor checks .onnx models and TensorRT engines, not {manifest.artifact_kind}")
    report: Dict[str, Any] = {
        "model": path, "method": manifest.method, "precision": manifest.precision,
        "input": [manifest.input.height, manifest.input.width, manifest.input.channel_order],
        "frames": {"synthetic": 4, "real": n_real}, "reference": "onnxruntime (cpu, fp32 graph)", "legs": {}}
    ref_out, ref_info = _run_leg(ref_path, ref_manifest, "onnxruntime", "cpu", {}, frames, iters, max_seconds)
    report["legs"]["onnxruntime"] = {"status": "reference", "backend": "onnxruntime", **ref_info}
    for label, backend, device, options, precision in legs:
        report["legs"][label] = _checked_leg(path, manifest, backend, device, options, precision, frames, ref_out,
                                             iters, max_seconds)
    if tensorrt:
        report["legs"]["tensorrt"] = _tensorrt_leg(path, manifest, engine_path, frames, ref_out, iters,
                                                   max_seconds, engine_dir)
    for label, why in skipped.items():
        report["legs"][label] = {"status": "skipped", "reason": why}
    report["passed"] = all(leg["status"] in ("reference", "pass", "skipped") for leg in report["legs"].values())
    return report


def _checked_leg(path: str, manifest: Manifest, backend: str, device: str, options: Dict[str, Any],
                 precision: str, frames: np.ndarray, ref_out: Dict[str, np.ndarray], iters: int,
                 max_seconds: float) -> Dict[str, Any]:
    try:
        out, info = _run_leg(path, manifest, backend, device, options, frames, iters, max_seconds)
    except BackendUnavailable as e:
        return {"status": "skipped", "backend": backend, "reason": str(e)}
    except Exception as e:  # a library's own failure is a finding of the doctor, not a crash
        return {"status": "error", "backend": backend, "reason": one_line(e)}
    return judge(ref_out, out, precision, backend, info)


def _source_onnx(engine: str, manifest: Manifest) -> str:
    src = manifest.source_onnx.file if manifest.source_onnx else None
    path = os.path.join(os.path.dirname(os.path.abspath(engine)), src) if src else ""
    if not src or not os.path.isfile(path):
        raise RuntimeInspectError(f"the engine's reference ONNX ({src or 'not named by its manifest'}) is not beside "
                                  f"{engine}: copy the .onnx and .json it was built from next to it")
    return path


def _tensorrt_leg(path: str, manifest: Manifest, engine_path: Optional[str], frames: np.ndarray,
                  ref_out: Dict[str, np.ndarray], iters: int, max_seconds: float,
                  engine_dir: Optional[str]) -> Dict[str, Any]:
    """The given engine, or an FP32 engine of the ONNX built now in `engine_dir` (a temporary folder)."""
    why = _availability("tensorrt")
    if why:
        return {"status": "skipped", "backend": "tensorrt", "reason": why}
    from runtime.doctor import trt_smoke  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="doctor-trt-") as tmp:
        build: Dict[str, Any] = {}
        if engine_path is None:
            try:
                engine_path, build = trt_smoke.build(path, manifest, engine_dir or tmp)
            except Exception as e:
                return {"status": "error", "backend": "tensorrt", "reason": f"engine build failed: {one_line(e)}"}
        engine_manifest = load_manifest(engine_path)
        leg = _checked_leg(engine_path, engine_manifest, "tensorrt", "cuda", {}, engine_manifest.precision, frames,
                           ref_out, iters, max_seconds)
        if leg["status"] == "pass":
            try:
                _, graph_info = _run_leg(engine_path, engine_manifest, "tensorrt", "cuda", {"cuda_graph": True},
                                         frames[:1], iters, max_seconds)
                leg["latency_batch1_cuda_graph"] = graph_info["latency_batch1"]
            except Exception as e:
                leg["cuda_graph_error"] = one_line(e)
    leg["engine"] = engine_path if engine_dir or manifest.artifact_kind == "tensorrt-engine" else "(temporary)"
    leg.update(build)
    return leg


__all__ = ["check_model", "synthetic_frames", "real_frames", "onnx_legs", "measure", "judge"]
