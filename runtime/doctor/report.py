"""The doctor's report: collected as one JSON document (`collect`), printed as text (`format_text`).

Schema (`SCHEMA`, version `SCHEMA_VERSION`): top-level sections, each a plain JSON object; every piece that is
absent carries `available: false` and a one-line `reason`. `tests/runtime/test_doctor.py` holds the keys and
types, so a bug report's JSON stays readable by the next version.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from runtime import machine
from runtime.doctor import backends as backend_probe
from runtime.doctor import gpu, jetson, system
from runtime.errors import one_line

SCHEMA = "edge-inspect-doctor"
SCHEMA_VERSION = 1
SELFTEST_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "selftest.onnx")
#: top-level key -> type of its value
SECTIONS: Dict[str, type] = {
    "schema": str, "schema_version": int, "created": str, "python": dict, "numpy": dict, "opencv": dict,
    "cpu": dict, "os": dict, "libraries": dict, "cuda": dict, "tensorrt": dict, "jetson": dict, "backends": dict,
    "selftest": dict, "model": dict, "warnings": list, "ok": bool,
}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _parity(check: Callable[[], Dict[str, Any]], what: str) -> Dict[str, Any]:
    """A parity section, or {"passed": False, "error": ...} when the model itself cannot be checked."""
    try:
        return check()
    except Exception as e:  # the report still comes out: the error is its finding
        return {"passed": False, "error": f"{what}: {one_line(e)}", "legs": {}}


def collect(model: Optional[str] = None, real: Sequence[str] = (), selftest: bool = True, iters: int = 20,
            engine_dir: Optional[str] = None) -> Dict[str, Any]:
    """The whole report. `model`: also check that model (.onnx / .engine); `real`: image files or folders to
    run it on besides synthetic frames; `selftest`: check the bundled self-test graph on every backend."""
    from runtime.doctor.parity import check_model  # noqa: PLC0415 - numpy and OpenCV only when checking

    python = system.python_info()
    trt = gpu.tensorrt_info()
    cuda = gpu.cuda_info()
    backends = backend_probe.backends_report()
    ov_bf16 = bool(backends.get("openvino", {}).get("details", {}).get("bf16"))
    report: Dict[str, Any] = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": _now(),
        "python": python, "numpy": system.numpy_info(), "opencv": system.opencv_info(), "cpu": system.cpu_info(),
        "os": system.os_info(), "libraries": machine.library_versions(), "cuda": cuda, "tensorrt": trt,
        "jetson": jetson.jetson_info(python, trt), "backends": backends, "selftest": {}, "model": {},
    }
    if selftest:
        report["selftest"] = _parity(lambda: check_model(SELFTEST_MODEL, iters=iters, openvino_bf16=ov_bf16,
                                                         engine_dir=engine_dir), "self-test model")
    if model:
        report["model"] = _parity(lambda: check_model(model, real, iters=iters, openvino_bf16=ov_bf16,
                                                      engine_dir=engine_dir), model)
    warnings: List[str] = gpu.gpu_warnings(cuda, trt) + list(report["jetson"].get("notes", []))
    report["warnings"] = warnings
    report["ok"] = all(report[k].get("passed", True) for k in ("selftest", "model"))
    return report


# -- text ----------------------------------------------------------------------------------------------------
def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _absent(section: Dict[str, Any]) -> str:
    return f"unavailable: {section.get('reason')}"


def _system_lines(r: Dict[str, Any]) -> List[str]:
    py, cv, cpu = r["python"], r["opencv"], r["cpu"]
    venv = (f", virtualenv ({'sees' if py['system_site_packages'] else 'does not see'} system site-packages)"
            if py["virtualenv"] else "")
    lines = [f"Python      {py['version']} ({py['executable']}{venv})", f"numpy       {r['numpy']['version']}"]
    if cv["available"]:
        lines.append(f"OpenCV      {cv['version']} (FFmpeg {_yes(cv['ffmpeg'])}, GStreamer {_yes(cv['gstreamer'])})")
        lines += [f"            note: {n}" for n in cv.get("notes", [])]
    else:
        lines.append(f"OpenCV      {_absent(cv)}")
    lines.append(f"CPU         {cpu['model']} ({cpu['architecture']}; {cpu['physical_cores']} physical / "
                 f"{cpu['logical_cores']} logical cores, {cpu['memory_gib']} GiB)")
    lines.append(f"            flags: {' '.join(cpu['flags']) or 'none of interest'}; bf16 {_yes(cpu['bf16'])}, "
                 f"INT8 dot product {_yes(cpu['int8_dot_product'])}")
    lines.append(f"OS          {r['os']['system']} {r['os']['release']} ({r['os']['machine']})")
    return lines


def _gpu_lines(r: Dict[str, Any]) -> List[str]:
    cuda, trt, jet = r["cuda"], r["tensorrt"], r["jetson"]
    if cuda["available"]:
        g = cuda["gpu"]
        mem = (f", {g['memory_gib']} GiB" if g.get("memory_gib") else "") + \
            (f", driver {g['driver']}" if g.get("driver") else "")
        lines = [f"CUDA        runtime {cuda['runtime_version']}, driver supports {cuda['driver_version']} "
                 f"({cuda['library']})", f"GPU         {g['name']} (compute capability {g['compute_capability']}{mem})"]
    else:
        lines = [f"CUDA        {_absent(cuda)}"]
        if cuda.get("library"):
            lines.append(f"            library {cuda['library']}, runtime {cuda['runtime_version']}, driver "
                         f"{cuda['driver_version']}")
    if trt["available"]:
        caps = ", ".join(k for k, v in trt["capabilities"].items() if v)
        lines.append(f"TensorRT    {trt['version']} (ONNX opset <= {trt['max_onnx_opset']}; {caps})")
    else:
        lines.append(f"TensorRT    {_absent(trt)}")
    if jet.get("is_jetson"):
        lines.append(f"Jetson      L4T {jet['l4t']} = JetPack {jet['jetpack']} (ships TensorRT "
                     f"{jet['jetpack_tensorrt']}, Python {jet['jetpack_python']}); power mode: "
                     f"{(jet['power_mode'] or 'unknown').splitlines()[0]}")
    else:
        lines.append("Jetson      no (/etc/nv_tegra_release absent)")
    return lines


def _backend_lines(r: Dict[str, Any]) -> List[str]:
    lines = ["Backends"]
    for name, b in r["backends"].items():
        if not b["available"]:
            lines.append(f"  {name:<12} no   {b['reason']}")
            continue
        d = b.get("details", {})
        extra = ""
        if name == "onnxruntime":
            extra = f"; providers {', '.join(d.get('providers', []))}"
        elif name == "openvino":
            extra = (f"; devices {', '.join(d.get('devices', []))}; CPU bf16 {_yes(d.get('bf16'))}, "
                     f"INT8 {_yes(d.get('int8'))}")
        elif not b["version"]:
            extra = b["role"]
        lines.append(f"  {name:<12} yes  {b['version'] or ''}{extra}")
    return lines


def _parity_lines(title: str, p: Dict[str, Any]) -> List[str]:
    if not p:
        return []
    if p.get("error"):
        return [f"{title}: ERROR {p['error']}"]
    h, w, order = p["input"]
    frames = p["frames"]
    lines = [f"{title}: {p['model']} ({p['method']}, {p['precision']}, {h}x{w} {order}; {frames['synthetic']} "
             f"synthetic + {frames['real']} real frames; reference {p['reference']})"]
    for label, leg in p["legs"].items():
        status = leg["status"]
        if status in ("skipped", "error"):
            lines.append(f"  {label:<20} {status.upper():<8} {leg['reason']}")
            continue
        t = leg.get("latency_batch1", {})
        timing = f"p50 {t.get('p50_ms', float('nan')):.3f} ms"
        if leg.get("latency_batch1_cuda_graph"):
            timing += f" (CUDA graph {leg['latency_batch1_cuda_graph']['p50_ms']:.3f} ms)"
        if status == "reference":
            lines.append(f"  {label:<20} {'REF':<8} {timing}")
            continue
        errs = "; ".join(f"{k} max|d| {o.get('max_abs', float('nan')):.2e} (atol {o['atol']:g}, rtol {o['rtol']:g})"
                         for k, o in leg["outputs"].items())
        pg = {None: "", True: "; Polygraphy agrees", False: "; Polygraphy: FAIL"}[leg.get("polygraphy")]
        lines.append(f"  {label:<20} {status.upper():<8} {errs}; {timing}{pg}")
    return lines


def format_text(r: Dict[str, Any]) -> str:
    lines = ["edge-inspect doctor  " + r["created"], ""]
    lines += _system_lines(r) + _gpu_lines(r) + [""] + _backend_lines(r)
    for title, key in (("Self-test", "selftest"), ("Model", "model")):
        if r[key]:
            lines += [""] + _parity_lines(title, r[key])
    if r["warnings"]:
        lines += ["", "Warnings"] + [f"  - {w}" for w in r["warnings"]]
    lines += ["", "Result: " + ("OK" if r["ok"] else "PROBLEMS FOUND (see FAIL / ERROR above)")]
    return "\n".join(lines)


__all__ = ["collect", "format_text", "SCHEMA", "SCHEMA_VERSION", "SECTIONS", "SELFTEST_MODEL"]
