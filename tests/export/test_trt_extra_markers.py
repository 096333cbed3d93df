"""The `[trt]` extra resolves to the right packages on JetPack 5, JetPack 6 and x86 (markers evaluated per
platform with `packaging`; pip cannot resolve `tensorrt` offline, its packages are sdists that download from
NVIDIA's index)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

Requirement = pytest.importorskip("packaging.requirements").Requirement
tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml with tomllib")

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = {
    # JetPack 5.1 (Orin/Xavier): Ubuntu 20.04, Python 3.8, CUDA 11.4, TensorRT 8.5.2 from JetPack
    "jetpack5": {"platform_machine": "aarch64", "python_version": "3.8", "python_full_version": "3.8.10",
                 "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython"},
    # JetPack 6.1/6.2: Ubuntu 22.04, Python 3.10, CUDA 12.6, TensorRT 10.3 from JetPack
    "jetpack6": {"platform_machine": "aarch64", "python_version": "3.10", "python_full_version": "3.10.12",
                 "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython"},
    "x86_linux": {"platform_machine": "x86_64", "python_version": "3.10", "python_full_version": "3.10.12",
                  "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython"},
    "x86_windows": {"platform_machine": "AMD64", "python_version": "3.11", "python_full_version": "3.11.9",
                    "sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython"},
}
EXPECTED = {"jetpack5": {"polygraphy"}, "jetpack6": {"polygraphy"}, "x86_linux": {"tensorrt", "polygraphy"},
            "x86_windows": {"tensorrt", "polygraphy"}}
# Python bindings built for one CUDA major: what broke JetPack (cuda-python>=12 -> 13.x needs a CUDA 13 driver)
CUDA_COUPLED = {"cuda-python", "cuda-bindings", "pycuda", "cupy"}


def _trt_extra():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["optional-dependencies"]["trt"]]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_trt_extra_per_platform(platform):
    env = PLATFORMS[platform]
    chosen = {r.name for r in _trt_extra() if r.marker is None or r.marker.evaluate(env)}
    assert chosen == EXPECTED[platform]


def test_no_cuda_version_coupled_binding_anywhere():
    names = {re.sub(r"[-_.]+", "-", r.name.lower()) for r in _trt_extra()}
    assert not names & CUDA_COUPLED
    tensorrt = [r for r in _trt_extra() if r.name == "tensorrt"]
    assert tensorrt and tensorrt[0].specifier.contains("8.5.2") and not tensorrt[0].specifier.contains("8.4.3")
