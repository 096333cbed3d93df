"""Record the CUDA runtime prototypes and enum values that runtime/cuda_runtime.py calls through ctypes.

    python scripts/cuda_runtime_signatures.py HEADER_DIR [HEADER_DIR ...] -- LIBCUDART [LIBCUDART ...] \
        > tests/data/cuda_runtime_api.tsv

HEADER_DIR holds `cuda_runtime_api.h` and `driver_types.h` (the `nvidia-cuda-runtime-cu12` and
`nvidia-cuda-runtime` wheels ship them under nvidia/cuda_runtime/include and nvidia/cu13/include); LIBCUDART
are shared libraries (libcudart.so.11.0, .12, .13 from those wheels) whose exported symbols are listed too.
Output lines:

    fn<TAB>NAME<TAB>RETURN<TAB>PARAM;PARAM;...<TAB>CUDA versions whose header declares it the same way
    sym<TAB>NAME<TAB>library versions that export it
    enum<TAB>NAME<TAB>VALUE

tests/runtime/test_cuda_runtime.py checks runtime/cuda_runtime.py's prototypes and constants against this file.
"""
from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

FUNCTIONS = ("cudaRuntimeGetVersion", "cudaDriverGetVersion", "cudaGetErrorName", "cudaGetErrorString",
             "cudaGetLastError", "cudaGetDevice", "cudaDeviceGetAttribute", "cudaGetDeviceProperties",
             "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaMemcpyAsync", "cudaStreamCreate",
             "cudaStreamSynchronize", "cudaStreamDestroy", "cudaStreamBeginCapture", "cudaStreamEndCapture",
             "cudaGraphInstantiateWithFlags", "cudaGraphLaunch", "cudaGraphExecDestroy", "cudaGraphDestroy")
SYMBOLS = FUNCTIONS + ("cudaGetDeviceProperties_v2",)
ENUMS = ("cudaSuccess", "cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorStreamCaptureInvalidated",
         "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost", "cudaStreamCaptureModeThreadLocal",
         "cudaDevAttrComputeCapabilityMajor", "cudaDevAttrComputeCapabilityMinor")


def _normal(c_decl: str) -> str:
    """'const  void *src' -> 'const void *', 'unsigned long long flags __dv(0)' -> 'unsigned long long': the type
    of a parameter declaration (every parameter of these prototypes is named)."""
    t = re.sub(r"__dv\([^)]*\)", "", c_decl)
    t = re.sub(r"\b\w+\s*$", "", t.strip())  # the parameter name
    t = re.sub(r"\s*\*\s*", "*", t.strip())
    return re.sub(r"\s+", " ", t.replace("*", " *", 1)).replace("* *", "**").strip()


def prototypes(header_dir: Path) -> Tuple[str, Dict[str, Tuple[str, List[str]]]]:
    text = (header_dir / "cuda_runtime_api.h").read_text(errors="replace")
    version = re.search(r"#define CUDART_VERSION\s+(\d+)", text).group(1)
    out = {}
    for name in FUNCTIONS:
        m = re.search(r"extern\s+__host__[^;]*?\b(cudaError_t|const char\s*\*)\s*CUDARTAPI\s+" + name + r"\s*\(([^;]*?)\)\s*;",
                      text, flags=re.S)
        if not m:
            continue
        params = [] if m.group(2).strip() == "void" else [_normal(p) for p in m.group(2).split(",")]
        out[name] = (re.sub(r"\s*\*", " *", re.sub(r"\s+", " ", m.group(1))), params)
    return f"{int(version) // 1000}.{int(version) % 1000 // 10}", out


def enums(header_dir: Path) -> Dict[str, int]:
    text = (header_dir / "driver_types.h").read_text(errors="replace")
    return {n: int(re.search(r"\b" + n + r"\s*=\s*(\d+)", text).group(1)) for n in ENUMS}


def library_version(path: str) -> str:
    lib = ctypes.CDLL(path)
    v = ctypes.c_int(0)
    if lib.cudaRuntimeGetVersion(ctypes.byref(v)) == 0 and v.value:
        return f"{v.value // 1000}.{v.value % 1000 // 10}"
    return re.search(r"\.so\.(\d+)", path).group(1) + ".x"  # 11.x's call needs a driver


def main(argv: List[str]) -> int:
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    headers, libs = [Path(p) for p in argv[:cut]], argv[cut + 1:]
    protos = [prototypes(h) for h in headers]
    print("# CUDA runtime API used by runtime/cuda_runtime.py, read by scripts/cuda_runtime_signatures.py from "
          "cuda_runtime_api.h / driver_types.h and libcudart of the nvidia-cuda-runtime wheels")
    for name in FUNCTIONS:
        seen: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
        for version, table in protos:
            if name in table:
                ret, params = table[name]
                seen.setdefault((ret, tuple(params)), []).append(version)
        for (ret, params), versions in seen.items():
            print(f"fn\t{name}\t{ret}\t{';'.join(params)}\t{' '.join(versions)}")
    lib_versions = [(library_version(p), ctypes.CDLL(p)) for p in libs]
    for name in SYMBOLS:
        print(f"sym\t{name}\t" + " ".join(v for v, lib in lib_versions if hasattr(lib, name)))
    values = enums(headers[0])
    for other in headers[1:]:
        assert enums(other) == values, f"enum values differ in {other}"
    for name, value in values.items():
        print(f"enum\t{name}\t{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
