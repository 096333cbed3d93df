"""Compare a backend's outputs with the reference's under per-output tolerances, as data.

The rule is Polygraphy's element-wise one (`CompareFunc.simple`, `check_error_stat="elemwise"`): an element
passes when |got - ref| <= atol or |got - ref| <= rtol * |ref|; an output passes when every element does and
the shapes agree. A non-finite value where the reference is finite fails. Tolerances depend on the precision
the candidate computes in (`TOLERANCES`). Where Polygraphy is installed its comparator is asked too and its
verdict is recorded beside ours (`polygraphy`), as a cross-check: the toolkit runs its own backends (what
ships), so Polygraphy's runners are not used, only its comparison of the outputs.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

log = logging.getLogger("runtime.doctor")

Tolerance = Tuple[float, float]  # (atol, rtol)
OUTPUTS = ("anomaly_map", "score")
#: (atol, rtol) per output role for a candidate computing in this precision, against ONNX Runtime FP32.
#: fp32: the same math, differences from the order of summation only; bf16 (8-bit mantissa) and fp16 (11-bit)
#: round every activation; int8 quantises them (the map keeps its shape, not its last digits).
TOLERANCES: Dict[str, Dict[str, Tolerance]] = {
    "fp32": {"anomaly_map": (1e-4, 1e-3), "score": (1e-4, 1e-3)},
    "fp16": {"anomaly_map": (2e-2, 2e-2), "score": (2e-2, 2e-2)},
    "bf16": {"anomaly_map": (5e-2, 5e-2), "score": (5e-2, 5e-2)},
    "int8": {"anomaly_map": (1.5e-1, 1.5e-1), "score": (1.5e-1, 1.5e-1)},
}


def tolerances_for(precision: str) -> Dict[str, Tolerance]:
    return dict(TOLERANCES.get(precision, TOLERANCES["fp32"]))


def compare_output(ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> Dict[str, Any]:
    """One output: max/mean absolute error, max relative error, fraction of failing elements, verdict."""
    atol, rtol = tol
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    out: Dict[str, Any] = {"atol": atol, "rtol": rtol, "shape": list(got.shape)}
    if ref.shape != got.shape:
        out.update(passed=False, reason=f"shape {list(got.shape)} differs from the reference's {list(ref.shape)}")
        return out
    finite = np.isfinite(ref)
    bad_nonfinite = int(np.count_nonzero(finite & ~np.isfinite(got)))
    diff = np.abs(got - ref)
    diff = np.where(finite, diff, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.abs(ref) > 0, diff / np.abs(ref), np.where(diff > 0, np.inf, 0.0))
    ok = (diff <= atol) | (rel <= rtol)
    failing = int(np.count_nonzero(~ok)) + bad_nonfinite
    out.update(max_abs=float(np.nanmax(diff)) if diff.size else 0.0,
               mean_abs=float(np.nanmean(diff)) if diff.size else 0.0,
               max_rel=float(np.max(np.where(np.isfinite(rel), rel, 0.0))) if rel.size else 0.0,
               ref_range=[float(np.min(ref[finite])), float(np.max(ref[finite]))] if finite.any() else None,
               failing_fraction=failing / max(1, diff.size), nonfinite=bad_nonfinite, passed=failing == 0)
    return out


def compare(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
            tolerances: Mapping[str, Tolerance]) -> Dict[str, Any]:
    """Every output role in `tolerances`: {"outputs": {role: compare_output}, "passed", "polygraphy"}."""
    outputs = {k: compare_output(ref[k], got[k], tolerances[k]) for k in tolerances}
    return {"outputs": outputs, "passed": all(o["passed"] for o in outputs.values()),
            "polygraphy": polygraphy_verdict(ref, got, tolerances)}


def _polygraphy() -> Optional[Any]:
    try:
        from polygraphy import comparator  # noqa: PLC0415 - optional cross-check
        from polygraphy.logger import G_LOGGER  # noqa: PLC0415
    except ImportError:
        return None
    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # its verdict is recorded; its log would repeat ours
    return comparator


def polygraphy_verdict(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                       tolerances: Mapping[str, Tolerance]) -> Optional[bool]:
    """Polygraphy's element-wise comparison of the same outputs with the same tolerances; None when Polygraphy
    is not installed (it is optional: `pip install polygraphy`) or cannot compare."""
    pg = _polygraphy()
    if pg is None:
        return None
    try:
        results = pg.RunResults()
        results.append(("reference", [pg.IterationResult({k: np.asarray(ref[k]) for k in tolerances},
                                                         runner_name="reference")]))
        results.append(("candidate", [pg.IterationResult({k: np.asarray(got[k]) for k in tolerances},
                                                         runner_name="candidate")]))
        atol = {k: float(t[0]) for k, t in tolerances.items()}
        rtol = {k: float(t[1]) for k, t in tolerances.items()}
        simple = getattr(pg, "SimpleCompareFunc", None)
        func = simple(atol=atol, rtol=rtol, check_error_stat="elemwise") if simple else \
            pg.CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat="elemwise")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return bool(pg.Comparator.compare_accuracy(results, compare_func=func))
    except Exception as e:  # a Polygraphy version with another API: the cross-check is optional
        log.debug("polygraphy comparison failed: %s", e)
        return None


__all__ = ["compare", "compare_output", "polygraphy_verdict", "tolerances_for", "TOLERANCES", "OUTPUTS"]
