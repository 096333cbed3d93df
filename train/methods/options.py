"""Typed method options: each method's spec declares its options (`Option`: type, default, help, checks); the
values a run uses come from `read_options`, which refuses an unknown key or a bad value with one line.

No torch here: a spec (and so its options) is read by tools that never build a model (calibration, export
of an older manifest, the command lines' --help).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple

from train.errors import ConfigError

#: Option kinds and how a value given as text (`--option key=value`, read as JSON first) or as a number of
#: another kind becomes one.
KINDS = ("int", "float", "bool", "str", "path")


@dataclass(frozen=True)
class Option:
    """One option of a method. `kind` is one of KINDS; `optional` lets the value be null (None, "no value");
    `choices`, `minimum` (inclusive), `maximum` (inclusive) and `parse` (text or value -> value, raising
    ConfigError) check a value; `scoring` marks an option that changes only the scoring, not what the network
    learns, so it may change after training (`benchmarks.accuracy --option`)."""

    name: str
    default: Any
    kind: str
    help: str
    optional: bool = False
    choices: Tuple[Any, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    parse: Optional[Callable[[Any], Any]] = None
    scoring: bool = False

    def check_declaration(self, where: str) -> None:
        if self.kind not in KINDS and self.parse is None:
            raise ValueError(f"{where}: option {self.name!r} has kind {self.kind!r}, not one of {KINDS}")
        if not self.help:
            raise ValueError(f"{where}: option {self.name!r} has no help text")
        if self.default is None and not self.optional:
            raise ValueError(f"{where}: option {self.name!r} defaults to None but is not optional")
        try:
            self.read(self.default, where)  # the default itself must pass the checks
        except ConfigError as e:
            raise ValueError(f"{where}: the default of option {self.name!r} is refused: {e}") from None

    def read(self, value: Any, where: str) -> Any:
        """`value` as this option's kind, or ConfigError naming the option, the value and what it takes."""
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"option {self.name}=null of {where}: a value is required ({self.describe()})")
        try:
            out = self.parse(value) if self.parse is not None else _convert(self.kind, value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {self.name}={value!r} of {where}: expected {self.describe()}") from None
        if self.choices and out not in self.choices:
            raise ConfigError(f"option {self.name}={value!r} of {where}: use one of "
                              f"{', '.join(str(c) for c in self.choices)}")
        if self.minimum is not None and out < self.minimum:
            raise ConfigError(f"option {self.name}={value!r} of {where}: must be >= {self.minimum}")
        if self.maximum is not None and out > self.maximum:
            raise ConfigError(f"option {self.name}={value!r} of {where}: must be <= {self.maximum}")
        return out

    def describe(self) -> str:
        """What the option takes, for errors and --help: 'a number >= 0', 'one of max, reweight', ..."""
        text = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "path": "a path"}.get(self.kind, self.kind)
        if self.choices:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        if self.minimum is not None:
            text += f" >= {self.minimum}"
        if self.maximum is not None:
            text += f" <= {self.maximum}"
        return text + (" or null" if self.optional else "")


def _convert(kind: str, value: Any) -> Any:
    if isinstance(value, str) and kind in ("int", "float", "bool"):
        value = json.loads(value)  # ValueError on text that is no number / boolean
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)  # str, path


class MethodOptions(dict):
    """The checked options of one run: a dict (JSON-able as it is) that refuses changes; `options["d0"]` or
    `options.d0`. Make changed options with the spec's `options({...})`, which checks them again."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("method options are read-only; make new ones with the spec's options({...})")

    def __reduce__(self):  # copy / pickle through the constructor, not item by item
        return (MethodOptions, (dict(self),))

    __setitem__ = __delitem__ = __setattr__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


def read_options(declared: Iterable[Option], given: Optional[Mapping[str, Any]], where: str) -> MethodOptions:
    """The declared options' defaults overridden by `given` (a None value keeps the default), each checked."""
    by_name = {o.name: o for o in declared}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ConfigError(f"{where} has no option {', '.join(repr(k) for k in unknown)}; its options: "
                          f"{', '.join(by_name) or 'none'}")
    values = {}
    for name, option in by_name.items():
        value = given.get(name)
        values[name] = option.read(option.default if value is None else value, where)
    return MethodOptions(values)
