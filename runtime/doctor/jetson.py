"""Jetson facts: the L4T release (/etc/nv_tegra_release), the JetPack it belongs to and the TensorRT and
Python that JetPack ships, the power mode (`nvpmodel -q`), and what to fix when they disagree with this
Python environment (docs/jetson.md explains each).

JetPack's TensorRT Python bindings are installed into the system's Python (dist-packages) for JetPack's own
Python version only: a virtual environment must be made with `--system-site-packages` to see them, and
another Python version cannot use them at all.
"""
from __future__ import annotations

import glob
import re
import shutil
import subprocess
from typing import Any, Dict, List, Optional, Tuple

TEGRA_RELEASE = "/etc/nv_tegra_release"
#: L4T release (major, minor) -> (JetPack, TensorRT, Python) as NVIDIA ships them; the newest entry whose
#: key is <= the release applies
JETPACK: Tuple[Tuple[Tuple[int, int], Tuple[str, str, str]], ...] = (
    ((35, 1), ("5.0.2", "8.4.1", "3.8")),
    ((35, 2), ("5.1", "8.5.2", "3.8")),
    ((35, 3), ("5.1.1", "8.5.2", "3.8")),
    ((35, 4), ("5.1.2", "8.5.2", "3.8")),
    ((35, 5), ("5.1.3", "8.5.2", "3.8")),
    ((36, 2), ("6.0 DP", "8.6.2", "3.10")),
    ((36, 3), ("6.0", "8.6.2", "3.10")),
    ((36, 4), ("6.1 / 6.2", "10.3", "3.10")),
)


def parse_tegra_release(text: str) -> Optional[str]:
    """'# R35 (release), REVISION: 4.1, ...' -> '35.4.1'; None when the text is not an L4T release line."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return f"{m.group(1)}.{m.group(2)}" + (f".{m.group(3)}" if m.group(3) else "")


def jetpack_for(l4t: str) -> Optional[Tuple[str, str, str]]:
    """(JetPack, TensorRT, Python) of an L4T release, None when it is older or unknown."""
    parts = tuple(int(p) for p in l4t.split(".")[:2])
    best = None
    for key, value in JETPACK:
        if key[0] == parts[0] and key <= parts:
            best = value
    return best


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _nvpmodel_query() -> Optional[str]:
    """`nvpmodel -q` output (power mode name and id), None where nvpmodel is absent or fails."""
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _system_tensorrt_bindings() -> List[str]:
    """Folders of TensorRT Python bindings installed into the system's Pythons by JetPack (apt)."""
    return sorted(glob.glob("/usr/lib/python3*/dist-packages/tensorrt"))


def jetson_info(python: Dict[str, Any], tensorrt: Dict[str, Any], release_path: str = TEGRA_RELEASE) -> Dict[str, Any]:
    """The Jetson section of the report: `is_jetson` False on any other machine; else the L4T and JetPack
    versions, what JetPack ships, the power mode, and `notes` for each disagreement with this environment."""
    text = _read(release_path)
    l4t = parse_tegra_release(text) if text else None
    if l4t is None:
        return {"is_jetson": False}
    shipped = jetpack_for(l4t)
    jetpack, trt_expected, py_expected = shipped if shipped else (None, None, None)
    power = _nvpmodel_query()
    out: Dict[str, Any] = {"is_jetson": True, "l4t": l4t, "jetpack": jetpack, "jetpack_tensorrt": trt_expected,
                           "jetpack_python": py_expected, "power_mode": power, "notes": []}
    notes: List[str] = out["notes"]
    if shipped is None:
        notes.append(f"L4T {l4t} is not a JetPack this toolkit knows (JetPack 5.1 / L4T 35.2 or newer); "
                     f"TensorRT 8.5 is the floor")
    py_mm = ".".join(str(python.get("version", "")).split(".")[:2])
    if py_expected and py_mm != py_expected:
        notes.append(f"Python {py_mm} is not JetPack {jetpack}'s Python {py_expected}: JetPack's TensorRT bindings "
                     f"only import into Python {py_expected}; create the environment with python{py_expected}")
    if not tensorrt.get("available"):
        if python.get("virtualenv") and not python.get("system_site_packages") and _system_tensorrt_bindings():
            notes.append("this virtual environment cannot see JetPack's TensorRT: recreate it with "
                         "`python3 -m venv --system-site-packages VENV`")
        else:
            notes.append("TensorRT does not import: install it with JetPack (`sudo apt install "
                         "python3-libnvinfer`), not from PyPI")
    elif trt_expected and not str(tensorrt.get("version", "")).startswith(trt_expected):
        notes.append(f"TensorRT {tensorrt.get('version')} is not JetPack {jetpack}'s {trt_expected}: a pip wheel "
                     f"may shadow JetPack's; engines must be built with the TensorRT they run on")
    if power is None:
        notes.append("power mode unknown (`nvpmodel -q` not available): timings depend on it, see docs/jetson.md")
    elif "MAXN" not in power.upper():
        notes.append(f"power mode is {power.splitlines()[0].split(':')[-1].strip()}, not MAXN: for timings set the "
                     f"fastest mode (`sudo nvpmodel -m MODE`) and run `sudo jetson_clocks` (docs/jetson.md)")
    return out


__all__ = ["jetson_info", "parse_tegra_release", "jetpack_for", "JETPACK", "TEGRA_RELEASE"]
