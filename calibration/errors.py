"""Errors of the calibration tools: one actionable line each (what failed, the value found, what to do).

They derive from the runtime's base error, so a caller that catches `runtime.errors.RuntimeInspectError`
(the runtime, `export.trt`) catches these too. Stdlib only.
"""
from __future__ import annotations

from runtime.errors import RuntimeInspectError


class CalibrationError(RuntimeInspectError):
    """INT8 or threshold calibration cannot run as asked (bad option, unusable model or data)."""


class TestSplitRefused(CalibrationError):
    """Calibration data lies in a test split: calibration must never fit on the images it is judged on."""

    __test__ = False  # not a pytest test class


__all__ = ["CalibrationError", "TestSplitRefused"]
