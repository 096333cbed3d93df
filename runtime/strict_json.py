"""Strict JSON out of the toolkit: what `json.dumps` writes for a NaN or an infinity (`NaN`, `Infinity`) is not
JSON, and strict parsers (browsers' `JSON.parse`, most languages' libraries) refuse the whole document. Every
JSON the toolkit writes (files, the live view, event logs) goes through `dumps`: non-finite numbers become null,
and `allow_nan=False` makes any that slipped through an error here instead of a broken file there. Stdlib only.
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float (also numpy's, also nested in dicts, lists and tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():  # a numpy scalar
        item = value.item()
        return finite_or_none(item) if isinstance(item, float) else item
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `value` that always yields strict JSON (non-finite numbers as null)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


__all__ = ["dumps", "finite_or_none"]
