"""The one module that knows TensorRT versions.

Callers ask for a named capability (``caps.named_io_tensors``, ``caps.builder_precision_flags``), never compare
version strings. Everything here is a pure function of a version string, so the table is tested on machines
without TensorRT; `import_tensorrt()` is the only place that imports the library (lazily).

Sources: NVIDIA's release notes and API docs:
- 8.5: named I/O tensors (`num_io_tensors`, `get_tensor_name`, `set_input_shape`, `set_tensor_address`,
  `execute_async_v3`); UINT8 network inputs. Floor of this toolkit (JetPack 5.1 ships 8.5.2).
- 8.x: `EXPLICIT_BATCH` network flag needed; no strong typing; FP16 needs `BuilderFlag.FP16` and Q/DQ models
  still need `BuilderFlag.INT8`; INT8 without Q/DQ = implicit calibration with a calibration cache.
- 10.0: `NetworkDefinitionCreationFlag.STRONGLY_TYPED`; explicit batch is the default (flag deprecated).
- 10.1: implicit INT8 calibration deprecated (superseded by explicit quantization = Q/DQ in the ONNX);
  `device_memory_size_v2` (assumed 10.1, with `getDeviceMemorySizeV2`; the facts file only names TRT 11).
- 10.12: weak typing deprecated.
- 11.0: builder precision flags, `int8_calibrator`, calibration profiles removed; networks strongly typed
  only (the STRONGLY_TYPED flag is ignored).
- 11.2: ONNX DFT through a cuFFT plugin.
- ONNX parser opsets: 8.5/8.6 up to 17; 10.0 9-20; 10.15 9-24; 11.x up to 25.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from runtime.errors import BackendUnavailable, RuntimeInspectError

MIN_SUPPORTED = "8.5"
TRT_PACKAGE = "tensorrt"  # pip name; on Jetson TensorRT comes with JetPack (python3-libnvinfer)


def parse_version(version: str) -> Tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0); '8.5' -> (8, 5, 0). Raises ValueError on anything else."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(version))
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r} (expected e.g. '10.3.0')")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


@dataclass(frozen=True)
class TrtCapabilities:
    """What a TensorRT version offers, by name. Build with `capabilities(version)`."""

    version: str
    supported: bool                         # >= 8.5, the floor of this toolkit
    named_io_tensors: bool                  # num_io_tensors / set_tensor_address / execute_async_v3
    uint8_io: bool                          # UINT8 network inputs (frames straight from the camera)
    explicit_batch_flag_required: bool      # create_network(1 << EXPLICIT_BATCH) needed (8.x)
    strongly_typed_flag: bool               # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists
    strongly_typed_always: bool             # networks are always strongly typed (11: the flag is ignored)
    builder_precision_flags: bool           # BuilderFlag.FP16 / INT8 exist
    int8_flag_needed_for_qdq: bool          # Q/DQ ONNX still needs BuilderFlag.INT8 (8.x, no strong typing)
    implicit_int8_calibrator: bool          # config.int8_calibrator / IInt8EntropyCalibrator2 exist
    implicit_int8_calibrator_deprecated: bool
    calibration_cache: bool                 # the implicit-calibration cache is the INT8 route (8.x)
    device_memory_size_v2: bool             # engine.device_memory_size_v2
    weak_typing_deprecated: bool
    onnx_dft: bool                          # ONNX DFT op parses (cuFFT plugin)
    max_onnx_opset: int

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def require(self, capability: str) -> None:
        """Raise RuntimeInspectError 'X is not available on TensorRT version V' when missing."""
        if not getattr(self, capability):
            raise RuntimeInspectError(f"{capability.replace('_', ' ')} is not available on TensorRT version "
                                      f"{self.version}; this toolkit needs TensorRT >= {MIN_SUPPORTED} for it "
                                      f"(JetPack 5.1+ or `pip install {TRT_PACKAGE}`)")


CAPABILITY_NAMES = tuple(f for f in TrtCapabilities.__dataclass_fields__ if f != "version")


def capabilities(version: str) -> TrtCapabilities:
    """The capability table of TensorRT `version` (e.g. '8.5.2.2', '10.3.0', '11.4.1')."""
    v = parse_version(version)

    def at_least(major: int, minor: int = 0) -> bool:
        return v[:2] >= (major, minor)

    if at_least(11):
        opset = 25
    elif at_least(10, 15):
        opset = 24
    elif at_least(10):
        opset = 20
    else:
        opset = 17
    return TrtCapabilities(
        version=str(version).strip(),
        supported=at_least(8, 5),
        named_io_tensors=at_least(8, 5),
        uint8_io=at_least(8, 5),
        explicit_batch_flag_required=not at_least(10),
        strongly_typed_flag=at_least(10),
        strongly_typed_always=at_least(11),
        builder_precision_flags=not at_least(11),
        int8_flag_needed_for_qdq=not at_least(10),
        implicit_int8_calibrator=not at_least(11),
        implicit_int8_calibrator_deprecated=at_least(10, 1),
        calibration_cache=not at_least(10),
        device_memory_size_v2=at_least(10, 1),
        weak_typing_deprecated=at_least(10, 12),
        onnx_dft=at_least(11, 2),
        max_onnx_opset=opset,
    )


def has(capability: str, version: str) -> bool:
    """has('named_io_tensors', '8.5.2') -> True. Unknown capability names raise ValueError listing the known."""
    if capability not in CAPABILITY_NAMES:
        raise ValueError(f"unknown TensorRT capability {capability!r}; known: {', '.join(CAPABILITY_NAMES)}")
    return bool(getattr(capabilities(version), capability))


def same_engine_version(built: str, present: str) -> bool:
    """Engines are tied to the TensorRT version that built them: major.minor.patch must match (the build
    number, a fourth field, may differ)."""
    return parse_version(built) == parse_version(present)


_TRT: Any = None


def import_tensorrt() -> Any:
    """Import tensorrt (once) and check the floor; BackendUnavailable when it is missing or too old."""
    global _TRT
    if _TRT is not None:
        return _TRT
    try:
        import tensorrt as trt  # noqa: PLC0415 - the one lazy import of TensorRT
    except ImportError as e:
        raise BackendUnavailable("tensorrt", TRT_PACKAGE, detail=str(e),
                                 hint="on Jetson it ships with JetPack (apt install python3-libnvinfer)") from None
    caps = capabilities(trt.__version__)
    if not caps.supported:
        raise BackendUnavailable("tensorrt", f"{TRT_PACKAGE}>={MIN_SUPPORTED}",
                                 detail=f"TensorRT {trt.__version__} is older than {MIN_SUPPORTED}")
    _TRT = trt
    return trt


def installed_version() -> Optional[str]:
    """The installed TensorRT version, or None when tensorrt does not import."""
    try:
        return str(import_tensorrt().__version__)
    except BackendUnavailable:
        return None


def current() -> TrtCapabilities:
    """Capabilities of the installed TensorRT (BackendUnavailable when none)."""
    return capabilities(import_tensorrt().__version__)


__all__ = ["TrtCapabilities", "CAPABILITY_NAMES", "MIN_SUPPORTED", "capabilities", "has", "parse_version",
           "same_engine_version", "import_tensorrt", "installed_version", "current"]
