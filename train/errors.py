"""Errors raised on user input by the training side: one actionable line each (what, value, what to do)."""
from __future__ import annotations

from imagesets.errors import ConfigError, DataError  # noqa: F401  (the data readers' errors, one class each)
from runtime.errors import InspectError  # noqa: F401  (the toolkit's one error root, re-exported)


class RunError(InspectError):
    """A run folder is missing, incomplete or does not match what was asked."""


class MissingPackage(ConfigError):
    """An optional package a method needs (its pip extra, e.g. `pip install edge-inspect[features]`) is not
    installed; the message names the package and the extra."""
