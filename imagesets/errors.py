"""Errors on user input about data and settings: one actionable line each (what, value, what to do). The training
side re-exports them (`train.errors`), so a data error is the same class wherever it is caught."""
from __future__ import annotations

from runtime.errors import InspectError  # the toolkit's one error root


class DataError(InspectError):
    """A data folder, image or mask is missing, empty, mis-laid or unreadable."""


class ConfigError(InspectError):
    """A command-line value or run configuration is not valid."""


__all__ = ["DataError", "ConfigError"]
