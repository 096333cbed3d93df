"""The CUDA runtime (libcudart) through ctypes: the few calls the TensorRT backend and builder need.

Why ctypes and not cuda-python or pycuda: a Python binding is built for one CUDA major version (cuda-python 13
needs a CUDA 13 driver, JetPack 5 has CUDA 11.4, JetPack 6 CUDA 12.6) and pycuda must be compiled on the
target. libcudart is already on every machine that runs TensorRT (JetPack installs it, the pip `tensorrt`
wheels pull `nvidia-cuda-runtime-cuXX`), and its C API has been stable across 11.4 ... 13, so calling it
directly follows the system's CUDA with no version coupling (Polygraphy's own CUDA wrapper does the same).

Which libcudart: `$EDGE_INSPECT_LIBCUDART` when set, else every one found (pip wheels under site-packages,
the CUDA toolkit, the loader path) and, of those, the newest whose CUDA major the driver supports.

Errors: a failed call raises `CudaError` with the call, the CUDA error name and code, the runtime's and the
driver's CUDA versions and the library path; no libcudart or no usable GPU raises `CudaUnavailable` with the
reason (the TensorRT backend's availability probe reports it as "unavailable").
Prototypes and enum values: tests/data/cuda_runtime_api.tsv, read from cuda_runtime_api.h and driver_types.h.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from runtime.errors import RuntimeInspectError

LIBCUDART_ENV = "EDGE_INSPECT_LIBCUDART"

# driver_types.h
SUCCESS = 0
ERROR_INSUFFICIENT_DRIVER = 35
ERROR_NO_DEVICE = 100
MEMCPY_HOST_TO_DEVICE = 1
MEMCPY_DEVICE_TO_HOST = 2
STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
DEV_ATTR_CC_MAJOR = 75
DEV_ATTR_CC_MINOR = 76

_INT_P = ctypes.POINTER(ctypes.c_int)
_VOID_PP = ctypes.POINTER(ctypes.c_void_p)
_ERR = ctypes.c_int  # cudaError_t is an enum
# name -> (restype, argtypes), from cuda_runtime_api.h (the same in CUDA 11.4 ... 13); handles are void*
PROTOTYPES: Dict[str, Tuple[Any, Tuple[Any, ...]]] = {
    "cudaRuntimeGetVersion": (_ERR, (_INT_P,)),
    "cudaDriverGetVersion": (_ERR, (_INT_P,)),
    "cudaGetErrorName": (ctypes.c_char_p, (_ERR,)),
    "cudaGetErrorString": (ctypes.c_char_p, (_ERR,)),
    "cudaGetLastError": (_ERR, ()),
    "cudaGetDevice": (_ERR, (_INT_P,)),
    "cudaDeviceGetAttribute": (_ERR, (_INT_P, ctypes.c_int, ctypes.c_int)),
    "cudaGetDeviceProperties": (_ERR, (ctypes.c_void_p, ctypes.c_int)),
    "cudaMalloc": (_ERR, (_VOID_PP, ctypes.c_size_t)),
    "cudaFree": (_ERR, (ctypes.c_void_p,)),
    "cudaMallocHost": (_ERR, (_VOID_PP, ctypes.c_size_t)),
    "cudaFreeHost": (_ERR, (ctypes.c_void_p,)),
    "cudaMemcpyAsync": (_ERR, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)),
    "cudaStreamCreate": (_ERR, (_VOID_PP,)),
    "cudaStreamSynchronize": (_ERR, (ctypes.c_void_p,)),
    "cudaStreamDestroy": (_ERR, (ctypes.c_void_p,)),
    "cudaStreamBeginCapture": (_ERR, (ctypes.c_void_p, ctypes.c_int)),
    "cudaStreamEndCapture": (_ERR, (ctypes.c_void_p, _VOID_PP)),
    "cudaGraphInstantiateWithFlags": (_ERR, (_VOID_PP, ctypes.c_void_p, ctypes.c_ulonglong)),
    "cudaGraphLaunch": (_ERR, (ctypes.c_void_p, ctypes.c_void_p)),
    "cudaGraphExecDestroy": (_ERR, (ctypes.c_void_p,)),
    "cudaGraphDestroy": (_ERR, (ctypes.c_void_p,)),
}
GRAPH_FUNCTIONS = ("cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphInstantiateWithFlags",
                   "cudaGraphLaunch", "cudaGraphExecDestroy", "cudaGraphDestroy")
# CUDA 12 exports the current cudaDeviceProp under _v2 (the plain name keeps the 11.x layout); 11.x and 13 have
# only the plain name. Either way `name[256]` is the struct's first field, which is all we read from it.
PROPERTIES_V2 = "cudaGetDeviceProperties_v2"
_PROPS_BUFFER = 16384  # larger than sizeof(cudaDeviceProp) of any CUDA so far (about 1 KiB)


class CudaUnavailable(RuntimeInspectError):
    """No libcudart, or no GPU it can use; `reason` is the one-line why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class CudaError(RuntimeInspectError):
    """A CUDA runtime call failed; `code` and `name` are CUDA's."""

    def __init__(self, message: str, code: int, name: str):
        self.code = code
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: str  # 'major.minor'


def format_version(v: Optional[int]) -> str:
    """12090 -> '12.9'; 0 / None -> 'none'."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"


def _soname_major(path: str) -> Optional[int]:
    m = re.search(r"cudart(?:64_|\.so\.)(\d+)", os.path.basename(path))
    return int(m.group(1)[:2]) if m else None


def candidate_libraries(environ: Optional[Dict[str, str]] = None,
                        search_path: Optional[Sequence[str]] = None) -> List[str]:
    """Paths and loader names of libcudart to try, most specific first."""
    env = os.environ if environ is None else environ
    if env.get(LIBCUDART_ENV):
        return [env[LIBCUDART_ENV]]
    windows = sys.platform.startswith("win")
    pattern = "cudart64_*.dll" if windows else "libcudart.so.*"
    dirs: List[str] = []
    for site in (sys.path if search_path is None else search_path):  # pip wheels: nvidia-cuda-runtime(-cuXX)
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "lib")))
        dirs += [os.path.join(site, "nvidia", "cuda_runtime", "bin" if windows else "lib")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            dirs += [os.path.join(env[var], "bin" if windows else "lib64")]
    if not windows:
        dirs += env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
        dirs += ["/usr/local/cuda/lib64"] + sorted(glob.glob("/usr/local/cuda/targets/*/lib"))
    found = []
    for d in dirs:
        if d and os.path.isdir(d):
            found += sorted(glob.glob(os.path.join(d, pattern)), reverse=True)
    loader = ["cudart64_13.dll", "cudart64_12.dll", "cudart64_110.dll"] if windows else \
        ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"]
    out: List[str] = []
    for p in found + loader:
        if p not in out and not p.endswith((".a", ".lib")):
            out.append(p)
    return out


class CudaRuntime:
    """One loaded libcudart with typed prototypes. Every method raises CudaError on a failed call."""

    def __init__(self, lib: Any, path: str):
        self.lib = lib
        self.path = path
        missing = [n for n in PROTOTYPES if n not in GRAPH_FUNCTIONS and not hasattr(lib, n)]
        if missing:
            raise CudaUnavailable(f"{path} lacks {', '.join(missing)}: not a CUDA runtime library this toolkit "
                                  f"can use (CUDA 11.4 or newer)")
        self.fn: Dict[str, Callable[..., Any]] = {}
        for name, (restype, argtypes) in PROTOTYPES.items():
            if hasattr(lib, name):
                f = getattr(lib, name)
                f.restype, f.argtypes = restype, list(argtypes)
                self.fn[name] = f
        self.missing_graph_functions = [n for n in GRAPH_FUNCTIONS if n not in self.fn]
        self._props = getattr(lib, PROPERTIES_V2, None) or lib.cudaGetDeviceProperties
        self._props.restype, self._props.argtypes = _ERR, [ctypes.c_void_p, ctypes.c_int]
        self.runtime_version = self._version("cudaRuntimeGetVersion")
        self.driver_version = self._version("cudaDriverGetVersion") or 0

    def _version(self, fn: str) -> Optional[int]:
        v = ctypes.c_int(0)
        return v.value if self.fn[fn](ctypes.byref(v)) == SUCCESS and v.value else None

    # -- errors ---------------------------------------------------------------------------------------
    @property
    def versions(self) -> str:
        runtime = format_version(self.runtime_version) if self.runtime_version else \
            f"{_soname_major(self.path) or '?'}.x"
        driver = (f"driver supports CUDA {format_version(self.driver_version)}" if self.driver_version
                  else "no NVIDIA driver found")
        return f"CUDA runtime {runtime} ({self.path}), {driver}"

    def error_name(self, code: int) -> str:
        name = self.fn["cudaGetErrorName"](code)
        return name.decode(errors="replace") if name else f"cudaError {code}"

    def check(self, code: int, call: str) -> None:
        if code == SUCCESS:
            return
        name = self.error_name(code)
        text = self.fn["cudaGetErrorString"](code)
        text = text.decode(errors="replace") if text else ""
        hint = {ERROR_INSUFFICIENT_DRIVER: "install an NVIDIA driver for this CUDA version (or point "
                                           f"{LIBCUDART_ENV} at the libcudart that matches the driver)",
                ERROR_NO_DEVICE: "no GPU is visible: check nvidia-smi / tegrastats and CUDA_VISIBLE_DEVICES"}
        raise CudaError(f"{call} failed: {name} ({code}: {text}); {self.versions}"
                        + (f"; {hint[code]}" if code in hint else ""), code, name)

    def clear_error(self) -> int:
        """Read and reset the sticky-free last error (after a failed capture); returns it."""
        return int(self.fn["cudaGetLastError"]())

    # -- device ---------------------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        dev, major, minor = ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(0)
        self.check(self.fn["cudaGetDevice"](ctypes.byref(dev)), "cudaGetDevice")
        self.check(self.fn["cudaDeviceGetAttribute"](ctypes.byref(major), DEV_ATTR_CC_MAJOR, dev.value),
                   "cudaDeviceGetAttribute(major)")
        self.check(self.fn["cudaDeviceGetAttribute"](ctypes.byref(minor), DEV_ATTR_CC_MINOR, dev.value),
                   "cudaDeviceGetAttribute(minor)")
        buf = ctypes.create_string_buffer(_PROPS_BUFFER)
        self.check(self._props(buf, dev.value), "cudaGetDeviceProperties")
        name = buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace").strip()
        return DeviceInfo(dev.value, name, f"{major.value}.{minor.value}")

    # -- memory and streams (pointers and handles are ints) ---------------------------------------------
    def _out_ptr(self, fn: str, *args: Any) -> int:
        p = ctypes.c_void_p()
        self.check(self.fn[fn](ctypes.byref(p), *args), fn)
        return int(p.value or 0)

    def malloc(self, nbytes: int) -> int:
        return self._out_ptr("cudaMalloc", nbytes)

    def malloc_host(self, nbytes: int) -> int:
        return self._out_ptr("cudaMallocHost", nbytes)

    def free(self, ptr: int) -> None:
        self.check(self.fn["cudaFree"](ptr), "cudaFree")

    def free_host(self, ptr: int) -> None:
        self.check(self.fn["cudaFreeHost"](ptr), "cudaFreeHost")

    def memcpy_async(self, dst: int, src: int, nbytes: int, to_device: bool, stream: int) -> None:
        kind = MEMCPY_HOST_TO_DEVICE if to_device else MEMCPY_DEVICE_TO_HOST
        self.check(self.fn["cudaMemcpyAsync"](dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def stream_create(self) -> int:
        return self._out_ptr("cudaStreamCreate")

    def stream_synchronize(self, stream: int) -> None:
        self.check(self.fn["cudaStreamSynchronize"](stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        self.check(self.fn["cudaStreamDestroy"](stream), "cudaStreamDestroy")

    # -- CUDA graphs ------------------------------------------------------------------------------------
    def begin_capture(self, stream: int) -> None:
        self.check(self.fn["cudaStreamBeginCapture"](stream, STREAM_CAPTURE_MODE_THREAD_LOCAL),
                   "cudaStreamBeginCapture")

    def end_capture(self, stream: int) -> Tuple[int, int]:
        """(error code, graph handle or 0): does not raise, so a failed capture can still be cleaned up."""
        g = ctypes.c_void_p()
        code = int(self.fn["cudaStreamEndCapture"](stream, ctypes.byref(g)))
        return code, int(g.value or 0)

    def graph_instantiate(self, graph: int) -> int:
        return self._out_ptr("cudaGraphInstantiateWithFlags", graph, 0)

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self.check(self.fn["cudaGraphLaunch"](graph_exec, stream), "cudaGraphLaunch")

    def graph_destroy(self, graph: int) -> None:
        self.check(self.fn["cudaGraphDestroy"](graph), "cudaGraphDestroy")

    def graph_exec_destroy(self, graph_exec: int) -> None:
        self.check(self.fn["cudaGraphExecDestroy"](graph_exec), "cudaGraphExecDestroy")


def _open(candidates: Sequence[str]) -> List[CudaRuntime]:
    out: List[CudaRuntime] = []
    seen = set()
    for c in candidates:
        try:
            lib = ctypes.CDLL(c)
        except OSError:
            continue
        key = os.path.realpath(c) if os.path.sep in c else c
        if key in seen:
            continue
        seen.add(key)
        try:
            out.append(CudaRuntime(lib, c))
        except CudaUnavailable:
            continue
    return out


def choose(runtimes: Sequence[CudaRuntime]) -> CudaRuntime:
    """The newest runtime whose CUDA major the driver supports; without such, the first (its calls then say
    why: no driver, or a driver too old for it)."""
    fits = [r for r in runtimes if r.runtime_version and r.driver_version
            and r.runtime_version // 1000 <= r.driver_version // 1000]
    return max(fits, key=lambda r: r.runtime_version or 0) if fits else runtimes[0]


_CUDA: Optional[CudaRuntime] = None


def load(candidates: Optional[Sequence[str]] = None) -> CudaRuntime:
    """The process's libcudart (cached); CudaUnavailable naming what was searched when none loads."""
    global _CUDA
    if candidates is None and _CUDA is not None:
        return _CUDA
    names = list(candidate_libraries() if candidates is None else candidates)
    runtimes = _open(names)
    if not runtimes:
        raise CudaUnavailable(f"no CUDA runtime library (libcudart) could be loaded (tried {', '.join(names[:6])}"
                              f"{' ...' if len(names) > 6 else ''}): on Jetson it comes with JetPack; on x86 "
                              f"`pip install nvidia-cuda-runtime-cu12` (or the CUDA toolkit), or set "
                              f"{LIBCUDART_ENV}=/path/to/libcudart.so")
    cuda = choose(runtimes)
    if candidates is None:
        _CUDA = cuda
    return cuda


def probe_device(candidates: Optional[Sequence[str]] = None) -> DeviceInfo:
    """libcudart loads and a GPU answers; else CudaUnavailable with the CUDA error and the versions."""
    cuda = load(candidates)
    try:
        return cuda.device_info()
    except CudaError as e:
        raise CudaUnavailable(str(e)) from None


__all__ = ["CudaRuntime", "CudaError", "CudaUnavailable", "DeviceInfo", "PROTOTYPES", "GRAPH_FUNCTIONS",
           "LIBCUDART_ENV", "candidate_libraries", "choose", "load", "probe_device", "format_version"]
