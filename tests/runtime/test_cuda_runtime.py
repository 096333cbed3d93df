"""runtime.cuda_runtime: ctypes prototypes and constants against the CUDA headers recorded in
tests/data/cuda_runtime_api.tsv, every call site's argument count, the library search, and the error path
(no libcudart at all; a real libcudart without a driver or GPU, as on this machine)."""
from __future__ import annotations

import ast
import ctypes
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime import cuda_runtime as cr
from runtime.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "cuda_runtime_api.tsv"
INT_P, VOID_PP = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_void_p)
# C type in cuda_runtime_api.h -> the ctypes type that passes it (enums are int, handles are pointers)
C_TO_CTYPES = {
    "cudaError_t": ctypes.c_int, "const char *": ctypes.c_char_p, "int": ctypes.c_int, "int *": INT_P,
    "size_t": ctypes.c_size_t, "unsigned long long": ctypes.c_ulonglong, "void *": ctypes.c_void_p,
    "const void *": ctypes.c_void_p, "void **": VOID_PP, "struct cudaDeviceProp *": ctypes.c_void_p,
    "cudaStream_t": ctypes.c_void_p, "cudaStream_t *": VOID_PP, "cudaGraph_t": ctypes.c_void_p,
    "cudaGraph_t *": VOID_PP, "cudaGraphExec_t": ctypes.c_void_p, "cudaGraphExec_t *": VOID_PP,
}


def _ctype(c: str):
    return ctypes.c_int if c.startswith("enum ") else C_TO_CTYPES[c]


def _rows(kind: str):
    return [line.split("\t")[1:] for line in DATA.read_text().splitlines() if line.startswith(kind + "\t")]


def test_prototypes_match_the_headers():
    recorded = {}
    for name, ret, params, versions in _rows("fn"):
        recorded.setdefault(name, []).append((ret, [p for p in params.split(";") if p], versions.split()))
    assert set(recorded) == set(cr.PROTOTYPES)
    for name, (restype, argtypes) in cr.PROTOTYPES.items():
        assert len(recorded[name]) == 1, f"{name}: declared differently across CUDA versions {recorded[name]}"
        ret, params, versions = recorded[name][0]
        assert versions == ["12.9", "13.0"]
        assert restype is _ctype(ret), name
        assert list(argtypes) == [_ctype(p) for p in params], name


def test_every_function_is_exported_by_cuda_11_12_and_13():
    exported = {name: versions.split() for name, versions in _rows("sym")}
    for name in cr.PROTOTYPES:
        assert exported[name] == ["11.x", "12.9", "13.0"], name
    assert exported[cr.PROPERTIES_V2] == ["12.9"]  # why the device name is read through either symbol


def test_constants_match_driver_types():
    enum = {name: int(value) for name, value in _rows("enum")}
    assert (cr.SUCCESS, cr.ERROR_INSUFFICIENT_DRIVER, cr.ERROR_NO_DEVICE) == \
        (enum["cudaSuccess"], enum["cudaErrorInsufficientDriver"], enum["cudaErrorNoDevice"])
    assert (cr.MEMCPY_HOST_TO_DEVICE, cr.MEMCPY_DEVICE_TO_HOST) == \
        (enum["cudaMemcpyHostToDevice"], enum["cudaMemcpyDeviceToHost"])
    assert cr.STREAM_CAPTURE_MODE_THREAD_LOCAL == enum["cudaStreamCaptureModeThreadLocal"]
    assert (cr.DEV_ATTR_CC_MAJOR, cr.DEV_ATTR_CC_MINOR) == \
        (enum["cudaDevAttrComputeCapabilityMajor"], enum["cudaDevAttrComputeCapabilityMinor"])


def test_every_call_site_passes_as_many_arguments_as_the_prototype():
    tree = ast.parse((ROOT / "runtime" / "cuda_runtime.py").read_text())
    sites = 0
    for node in ast.walk(tree):
        # self.fn["cudaX"](args...)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript):
            key = node.func.slice
            if sys.version_info < (3, 9) and isinstance(key, ast.Index):  # 3.8 wraps subscripts
                key = key.value  # type: ignore[attr-defined]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                assert key.value in cr.PROTOTYPES, key.value
                assert len(node.args) == len(cr.PROTOTYPES[key.value][1]), f"line {node.lineno}: {key.value}"
                sites += 1
    assert sites >= 15


def test_candidates_include_pip_wheels_and_the_override(tmp_path):
    for rel in ("nvidia/cuda_runtime/lib/libcudart.so.12", "nvidia/cu13/lib/libcudart.so.13"):
        (tmp_path / rel).parent.mkdir(parents=True)
        (tmp_path / rel).write_bytes(b"")
    found = cr.candidate_libraries(environ={}, search_path=[str(tmp_path)])
    assert str(tmp_path / "nvidia/cu13/lib/libcudart.so.13") in found
    assert str(tmp_path / "nvidia/cuda_runtime/lib/libcudart.so.12") in found
    assert found.index(str(tmp_path / "nvidia/cu13/lib/libcudart.so.13")) < found.index("libcudart.so.12")
    assert cr.candidate_libraries(environ={cr.LIBCUDART_ENV: "/opt/x/libcudart.so.12"}) == ["/opt/x/libcudart.so.12"]


def test_choose_takes_the_newest_runtime_the_driver_supports():
    def rt(runtime, driver):
        return SimpleNamespace(runtime_version=runtime, driver_version=driver)

    cu11, cu12, cu13 = rt(11040, 12060), rt(12060, 12060), rt(13000, 12060)
    assert cr.choose([cu13, cu11, cu12]) is cu12  # a CUDA 12.6 driver (JetPack 6) cannot run libcudart 13
    no_driver = [rt(13000, 0), rt(12090, 0)]
    assert cr.choose(no_driver) is no_driver[0]  # nothing fits: the first, whose calls then say why


def test_without_libcudart_the_reason_names_what_was_tried(tmp_path, monkeypatch):
    missing = str(tmp_path / "libcudart.so.12")
    with pytest.raises(cr.CudaUnavailable, match=r"no CUDA runtime library \(libcudart\) could be loaded") as e:
        cr.probe_device([missing])
    assert missing in e.value.reason and cr.LIBCUDART_ENV in e.value.reason
    # the TensorRT backend's probe turns it into "unavailable" with that reason
    from runtime.backends import tensorrt as trt_backend

    monkeypatch.setenv(cr.LIBCUDART_ENV, missing)
    monkeypatch.setattr(cr, "_CUDA", None)
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' is not available .*no CUDA runtime library"):
        trt_backend._cuda()


def _real_runtime():
    try:
        cuda = cr.load(cr.candidate_libraries(environ={}))
    except cr.CudaUnavailable as e:
        pytest.skip(f"no libcudart on this machine ({e.reason[:80]}...); `pip install nvidia-cuda-runtime-cu12`")
    return cuda


def test_real_libcudart_without_a_gpu_reports_code_and_versions():
    """On a machine with libcudart but no driver or GPU (this one), cudaGetDevice's error comes back with its
    name, code, the runtime's CUDA version, the driver state and the library path."""
    cuda = _real_runtime()
    try:
        dev = cuda.device_info()
    except cr.CudaError as e:
        msg = str(e)
        assert msg.startswith("cudaGetDevice failed: cudaError")
        assert f"({e.code}: " in msg and e.name.startswith("cudaError") and e.code != 0
        assert "CUDA runtime " in msg and cuda.path in msg
        assert ("no NVIDIA driver found" in msg) == (cuda.driver_version == 0)
        with pytest.raises(cr.CudaUnavailable, match=r"cudaGetDevice failed: cudaError\w+ \(\d+"):
            cr.probe_device([cuda.path])
    else:
        pytest.skip(f"a GPU answers here ({dev.name}): the no-GPU error path is not reachable")


def test_real_libcudart_prototypes_load():
    cuda = _real_runtime()
    for name, (restype, argtypes) in cr.PROTOTYPES.items():
        assert name in cuda.fn, f"{cuda.path} lacks {name}"
        assert cuda.fn[name].restype is restype and list(cuda.fn[name].argtypes) == list(argtypes)
    assert cuda.missing_graph_functions == []
    assert cuda.error_name(cr.ERROR_INSUFFICIENT_DRIVER) == "cudaErrorInsufficientDriver"
    assert cuda.error_name(cr.ERROR_NO_DEVICE) == "cudaErrorNoDevice"
    assert re.match(r"CUDA runtime \d+\.(\d+|x) \(", cuda.versions), cuda.versions
