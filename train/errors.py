"""Errors raised on user input by the training side: one actionable line each (what, value, what to do)."""
from __future__ import annotations

from runtime.errors import InspectError  # the toolkit's one error root, re-exported for the training side


class DataError(InspectError):
    """A data folder, image or mask is missing, empty, mis-laid or unreadable."""


class ConfigError(InspectError):
    """A command-line value or run configuration is not valid."""


class RunError(InspectError):
    """A run folder is missing, incomplete or does not match what was asked."""


class MissingPackage(ConfigError):
    """An optional package a method needs (its pip extra, e.g. `pip install edge-inspect[features]`) is not
    installed; the message names the package and the extra."""
