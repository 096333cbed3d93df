"""The NVIDIA side: the CUDA runtime and driver, the GPU, and TensorRT with the named capabilities the
toolkit uses. Each piece that is absent says why (no libcudart, no driver, no GPU, TensorRT not importable or
too old), in the words of the probes the TensorRT backend itself uses (`runtime.cuda_runtime`,
`runtime.trt_version`), so the doctor reports exactly what the backend would meet.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Any, Dict, List

from runtime import cuda_runtime, trt_version
from runtime.errors import BackendUnavailable

#: the capabilities of `runtime.trt_version` that decide how the toolkit builds and runs engines
TRT_CAPABILITIES_USED = ("named_io_tensors", "uint8_io", "explicit_batch_flag_required", "strongly_typed_flag",
                         "strongly_typed_always", "builder_precision_flags", "int8_flag_needed_for_qdq",
                         "device_memory_size_v2", "onnx_dft")


def _smi_facts() -> Dict[str, Any]:
    """GPU 0's total memory (GiB) and the driver's version from nvidia-smi; None each where there is no
    nvidia-smi (most Jetsons: their GPU shares the system memory, see the CPU line)."""
    out: Dict[str, Any] = {"memory_gib": None, "driver": None}
    smi = shutil.which("nvidia-smi")
    if not smi:
        return out
    try:
        proc = subprocess.run([smi, "--query-gpu=memory.total,driver_version", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10)
        first = proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
        if first:
            memory, _, driver = first.partition(",")
            out.update(memory_gib=round(float(memory) / 1024, 1), driver=driver.strip() or None)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return out


def cuda_info() -> Dict[str, Any]:
    """libcudart (path, runtime version), the driver's CUDA version, and GPU 0 (name, compute capability,
    memory); `available` False with `reason` when any of it is missing."""
    out: Dict[str, Any] = {"available": False, "reason": None, "library": None, "runtime_version": None,
                           "driver_version": None, "gpu": None}
    try:
        cuda = cuda_runtime.load()
    except cuda_runtime.CudaUnavailable as e:
        out["reason"] = e.reason
        return out
    out["library"] = cuda.path
    out["runtime_version"] = cuda_runtime.format_version(cuda.runtime_version)
    out["driver_version"] = cuda_runtime.format_version(cuda.driver_version)
    try:
        dev = cuda.device_info()
    except cuda_runtime.CudaError as e:
        out["reason"] = str(e)
        return out
    out["available"] = True
    out["gpu"] = {"index": dev.index, "name": dev.name, "compute_capability": dev.compute_capability,
                  **_smi_facts()}
    return out


def tensorrt_info() -> Dict[str, Any]:
    """TensorRT's version and capability table, or why it is not usable (not importable, older than the
    floor). The table is read from `runtime.trt_version`, which every builder and runner of ours asks."""
    out: Dict[str, Any] = {"available": False, "reason": None, "version": None, "capabilities": None,
                           "max_onnx_opset": None}
    try:
        trt = trt_version.import_tensorrt()
    except BackendUnavailable as e:
        out["reason"] = str(e)
        return out
    caps = trt_version.capabilities(trt.__version__)
    out.update(available=True, version=caps.version, max_onnx_opset=caps.max_onnx_opset,
               capabilities={name: bool(getattr(caps, name)) for name in TRT_CAPABILITIES_USED})
    return out


def gpu_warnings(cuda: Dict[str, Any], tensorrt: Dict[str, Any]) -> List[str]:
    """Combinations that look installed but cannot work together."""
    notes = []
    if tensorrt.get("available") and not cuda.get("available"):
        notes.append(f"TensorRT {tensorrt['version']} imports but CUDA is not usable ({cuda.get('reason')}): "
                     f"engines can neither be built nor run")
    return notes


__all__ = ["cuda_info", "tensorrt_info", "gpu_warnings", "TRT_CAPABILITIES_USED"]
