"""What machine this is: CPU model, cores and flags, memory, GPU (or "none"), library versions.

The facts a benchmark is headed with and the doctor reports
(`runtime.doctor`). Read from /proc and package metadata, so collecting them imports no heavy library (torch
is only asked about CUDA when it is already loaded). Every field is plain JSON; unknown values are strings
that say so. Stdlib only, valid on Python 3.8.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from runtime.backends.base import physical_cores  # noqa: F401  (one definition: the runtime's thread default)

#: CPU flags (/proc/cpuinfo names) that decide the fast CPU paths: vector width, bf16 and INT8 dot products
CPU_FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                         "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "asimdhp", "bf16", "i8mm")

#: distribution names whose versions head a benchmark (the first that is installed of each tuple wins)
LIBRARIES = {
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_libs"),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
}


def _cpuinfo() -> List[Dict[str, str]]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    procs, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                procs.append(cur)
            cur = {}
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            cur[k.strip()] = v.strip()
    if cur:
        procs.append(cur)
    return procs


def cpu_model() -> str:
    for p in _cpuinfo():
        for key in ("model name", "Model", "cpu model", "Hardware"):
            if p.get(key):
                return p[key]
    return platform.processor() or platform.machine() or "unknown"


def logical_cores() -> int:
    """CPUs this process may run on (the affinity mask, i.e. what a container or taskset gives us)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_total_gib() -> Optional[float]:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def gpus() -> List[str]:
    """Names of the NVIDIA GPUs (nvidia-smi, else torch if it is already imported); [] when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            names = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
            if out.returncode == 0 and names:
                return [n.replace(", ", " (driver ") + ")" if ", " in n else n for n in names]
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # a broken CUDA install must not break a CPU benchmark
            pass
    return []


def library_versions() -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for key, dists in LIBRARIES.items():
        out[key] = "not installed"
        for dist in dists:
            try:
                out[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def cpu_flags() -> List[str]:
    """The first CPU's feature flags (x86 "flags", Arm "Features"), as listed by /proc/cpuinfo."""
    first = _cpuinfo()[:1]
    return (first[0].get("flags") or first[0].get("Features") or "").split() if first else []


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU (what OpenVINO and torch's CPU autocast need for fast bf16)."""
    flags = set(cpu_flags())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_has_int8_dot() -> bool:
    """INT8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8; Arm dot product / i8mm): what makes
    OpenVINO's and ONNX Runtime's INT8 convolutions faster than FP32 on a CPU."""
    return bool(set(cpu_flags()) & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def machine_info() -> Dict[str, object]:
    g = gpus()
    return {
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cores": logical_cores(),
        "memory_gib": memory_total_gib(),
        "gpu": ", ".join(g) if g else "none",
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "versions": library_versions(),
    }


def format_machine(info: Dict[str, object]) -> str:
    """A few readable lines for the head of a table."""
    v = info.get("versions", {}) or {}
    libs = ", ".join(f"{k} {val}" for k, val in v.items())  # type: ignore[union-attr]
    return (f"CPU: {info['cpu']} ({info['physical_cores']} physical / {info['logical_cores']} logical cores, "
            f"{info.get('memory_gib')} GiB)\nGPU: {info['gpu']}\nOS: {info.get('os')}\nLibraries: {libs}")


if __name__ == "__main__":  # pragma: no cover - a quick look
    import json

    print(json.dumps(machine_info(), indent=2))
