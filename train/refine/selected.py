"""The per-category settings that `python -m train.refine.select` chose, as the refiner and the benchmark read them.

One JSON file (by default RUN/refine_settings.json): {"options": {KEY: VALUE} for `RefineSettings`, "inpainter":
the inpainter folder or null, "threshold": the M0 threshold chosen on the synthetic defects, "provenance": how
they were chosen, "grid": every setting tried with its mean IoU}. `--option KEY=VALUE` given on the command line
wins over the file's options.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from train.errors import ConfigError

SETTINGS_FILE = "refine_settings.json"


def default_path(run: str) -> Path:
    return Path(run) / SETTINGS_FILE


def read_selected(path) -> Tuple[Dict[str, Any], Optional[str]]:
    """(options, inpainter folder or None) from a settings file written by the selection."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--settings {path}: no such file; write it with `python -m train.refine.select --run RUN "
                          f"...` (it goes to RUN/{SETTINGS_FILE})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        options = dict(record["options"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--settings {path}: not a settings file of train.refine.select ({exc})") from None
    return options, record.get("inpainter")


def merged_options(settings_file, inpainter: Optional[str], options) -> Tuple[Dict[str, Any], Optional[str]]:
    """The refine options and inpainter folder a command runs with: the settings file's (when given), then the
    command line's --option and --inpainter on top."""
    merged: Dict[str, Any] = {}
    folder = None
    if settings_file:
        merged, folder = read_selected(settings_file)
    merged.update(dict(options))
    return merged, inpainter or folder
