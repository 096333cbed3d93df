"""Errors of the export side: one actionable line each (what failed, the value found, what to do)."""
from __future__ import annotations

from runtime.errors import InspectError


class ExportError(InspectError):
    """An export input (run, size, option) is invalid, or an exported graph fails a check."""


__all__ = ["ExportError"]
