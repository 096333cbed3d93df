"""What the host offers, without any backend library: Python (and its virtual environment), numpy, OpenCV
with its video back-ends, the CPU (cores, the flags that decide the fast CPU paths), memory and the OS.

Each probe is a small function returning plain JSON data; the ones that read the outside world
(`_opencv_build_information`, `runtime.machine.cpu_flags`) are separate so tests replace them. Torch-free,
Python 3.8.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from typing import Any, Dict, Optional

from runtime import machine


def python_info() -> Dict[str, Any]:
    """Version, interpreter, and whether it runs in a virtual environment that sees the system's packages
    (on a Jetson, JetPack's TensorRT lives in the system's site-packages)."""
    venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    return {"version": platform.python_version(), "executable": sys.executable,
            "implementation": platform.python_implementation(), "virtualenv": venv,
            "system_site_packages": _venv_sees_system_packages() if venv else True}


def _venv_sees_system_packages() -> Optional[bool]:
    """`include-system-site-packages` of this venv's pyvenv.cfg; None when there is no such file."""
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    try:
        with open(cfg) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "include-system-site-packages":
                    return value.strip().lower() == "true"
    except OSError:
        return None
    return False


def numpy_info() -> Dict[str, Any]:
    import numpy as np  # noqa: PLC0415 - the runtime's own dependency; imported when the report is made

    return {"version": np.__version__}


def _opencv_build_information() -> Optional[str]:
    """cv2.getBuildInformation(), or None when OpenCV does not import (the probe tests replace)."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError:
        return None
    return str(cv2.getBuildInformation())


def _build_flag(text: str, name: str) -> Optional[bool]:
    """'YES ...' / 'NO' of one line of OpenCV's "Video I/O" section; None when the line is absent."""
    m = re.search(rf"^\s*{name}:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    if not m:
        return None
    return not m.group(1).upper().startswith("NO")


def opencv_info() -> Dict[str, Any]:
    """OpenCV's version and whether it can read video files and streams: FFmpeg (files, RTSP, HTTP) and
    GStreamer (CSI cameras on a Jetson, hardware decoding), each with the reason when it cannot."""
    text = _opencv_build_information()
    if text is None:
        return {"available": False, "version": None, "ffmpeg": False, "gstreamer": False,
                "reason": "OpenCV does not import: `pip install opencv-python-headless` (on a Jetson, JetPack's "
                          "OpenCV has GStreamer)"}
    m = re.search(r"General configuration for OpenCV\s+(\S+)", text)
    ffmpeg, gstreamer = _build_flag(text, "FFMPEG"), _build_flag(text, "GStreamer")
    out: Dict[str, Any] = {"available": True, "version": m.group(1) if m else "unknown",
                           "ffmpeg": bool(ffmpeg), "gstreamer": bool(gstreamer), "reason": None}
    reasons = []
    if not ffmpeg:
        reasons.append("built without FFmpeg: video files, RTSP and HTTP streams cannot be read (install "
                       "opencv-python-headless from PyPI, which has it)")
    if not gstreamer:
        reasons.append("built without GStreamer: no nvarguscamerasrc/CSI cameras or hardware decoding pipelines "
                       "(the PyPI wheels lack it; on a Jetson use JetPack's OpenCV)")
    out["notes"] = reasons
    return out


def cpu_info() -> Dict[str, Any]:
    """Model, cores, memory, and the CPU features that decide the fast CPU paths (bf16: AMX / AVX512-BF16;
    INT8: VNNI / AMX-INT8 / Arm dot product)."""
    flags = set(machine.cpu_flags())
    return {"model": machine.cpu_model(), "architecture": platform.machine(),
            "physical_cores": machine.physical_cores(), "logical_cores": machine.logical_cores(),
            "memory_gib": machine.memory_total_gib(),
            "flags": [f for f in machine.CPU_FLAGS_OF_INTEREST if f in flags],
            "bf16": machine.cpu_has_bf16(), "int8_dot_product": machine.cpu_has_int8_dot()}


def os_info() -> Dict[str, Any]:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine()}


__all__ = ["python_info", "numpy_info", "opencv_info", "cpu_info", "os_info"]
