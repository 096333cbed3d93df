"""`Section`: the base of every manifest section (a dataclass that reads, checks and writes its own JSON object).

A section's fields are its keys. What a field may hold is its type annotation (checked at run time: str, int,
float, bool, Optional, List, Dict, Tuple, a nested Section) plus what `spec(...)` adds: a positive value, a set
of allowed values, a hint for the message. Checks between fields live in the section's `check`. Every message
is one line, `FILE: 'key.path' ...`, that names the key and what is allowed.

Reading (`from_dict`): a missing required key and a wrong value raise ManifestError; a key the schema does not
know is logged as a warning and dropped (an older runtime reading a newer toolkit's manifest keeps working; a
change that older runtimes must not ignore bumps `schema_version` instead). Building in code: unknown keyword
arguments are a TypeError, as for any dataclass, so our own writers cannot add a key the schema lacks.
Stdlib only.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runtime.errors import ManifestError

log = logging.getLogger("runtime.manifest")

_MISSING: Any = dataclasses.MISSING
_SHA256 = re.compile(r"[0-9a-f]{64}")


def spec(default: Any = _MISSING, *, factory: Any = _MISSING, positive: bool = False,
         choices: Optional[Sequence[Any]] = None, nonempty: bool = False, sha256: bool = False,
         hint: str = "") -> Any:
    """A dataclass field with a check: `positive` (numbers > 0, every item of a list), `choices` (allowed
    values), `nonempty` (a string other than ''), `sha256` (64 lower-case hex digits when set), `hint`
    (appended to the message: what to do)."""
    meta = {"positive": positive, "choices": tuple(choices) if choices is not None else None, "nonempty": nonempty,
            "sha256": sha256, "hint": hint}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


def key_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def fail(where: str, path: str, message: str) -> ManifestError:
    """ManifestError `WHERE: 'path' message` (one line)."""
    return ManifestError(f"{where}: '{path}' {message}" if path else f"{where}: {message}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _args(hint: Any) -> Tuple[Any, ...]:
    return tuple(getattr(hint, "__args__", ()) or ())


def _origin(hint: Any) -> Any:
    return getattr(hint, "__origin__", None)


def _describe(hint: Any, positive: bool = False) -> str:
    """'a positive integer', 'a list of strings', 'null or an object', ... for messages."""
    pos = "positive " if positive else ""
    origin = _origin(hint)
    if origin is typing.Union:
        inner = [a for a in _args(hint) if a is not type(None)]
        return " or ".join(_describe(a, positive) for a in inner) + " or null"
    if hint is Any:
        return "any JSON value"
    if hint is str:
        return "a string"
    if hint is bool:
        return "true or false"
    if hint is int:
        return f"a {pos}integer"
    if hint is float:
        return f"a {pos}finite number"
    if origin in (list, tuple):
        args = [a for a in _args(hint) if a is not Ellipsis]
        item = _describe(args[0], positive) if args else "values"
        n = f"{len(args)} " if origin is tuple and Ellipsis not in _args(hint) and len(args) > 1 else ""
        return f"a list of {n}{_plural(item)}"
    if origin is dict or hint is dict:
        return "an object"
    if isinstance(hint, type) and issubclass(hint, Section):
        return "an object"
    return getattr(hint, "__name__", str(hint))


def _plural(text: str) -> str:
    for one, many in (("a positive integer", "positive integers"), ("an integer", "integers"),
                      ("a string", "strings"), ("a positive finite number", "positive numbers"),
                      ("a finite number", "numbers"), ("an object", "objects")):
        if text == one:
            return many
    return text


def _fits(value: Any, hint: Any, positive: bool = False) -> bool:
    """Whether `value` is of the annotated type (and positive where asked)."""
    origin = _origin(hint)
    if hint is Any:
        return True
    if origin is typing.Union:
        return any(_fits(value, a, positive) for a in _args(hint))
    if hint is type(None):
        return value is None
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value) and (not positive or value > 0)
    if hint is float:
        return is_num(value) and math.isfinite(value) and (not positive or value > 0)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = _args(hint)
        if origin is tuple and args and Ellipsis not in args:
            return len(value) == len(args) and all(_fits(v, a, positive) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0], positive) for v in value)
    if origin is dict or hint is dict:
        args = _args(hint)
        if not isinstance(value, dict):
            return False
        return len(args) < 2 or all(_fits(k, args[0]) and _fits(v, args[1], positive) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


class Section:
    """Base of a manifest section; subclasses are dataclasses (see the module doc)."""

    #: Keys left out of the JSON while they hold their default (keys a tool writes only when it has them).
    OMIT_DEFAULTS: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Nested sections given as dicts (a writer passing a JSON-like dict) become their Section type."""
        for f in dataclasses.fields(self):
            sub = _section_of(self._hints()[f.name])
            value = getattr(self, f.name)
            if sub is not None and isinstance(value, dict):
                setattr(self, f.name, sub(**value))

    @classmethod
    def _hints(cls) -> Dict[str, Any]:
        hints = cls.__dict__.get("_hint_cache")
        if hints is None:
            hints = typing.get_type_hints(cls)
            setattr(cls, "_hint_cache", hints)
        return hints

    # -- reading -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest", path: str = "") -> Any:
        """Read this section from its JSON object; raises ManifestError naming the key path."""
        if not isinstance(d, dict):
            raise fail(where, path, f"must be an object, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in d:
            if key not in fields:
                log.warning("%s: unknown key '%s' ignored (a newer toolkit's manifest?); it is dropped if this "
                            "manifest is rewritten", where, key_path(path, key))
        for name, f in fields.items():
            if name not in d and f.default is _MISSING and f.default_factory is _MISSING:
                raise fail(where, "", f"missing field '{key_path(path, name)}' (re-export the model to write a "
                                      f"complete manifest)")
        kwargs = {name: cls._read(name, d[name], where, key_path(path, name)) for name in fields if name in d}
        section = cls(**kwargs)
        section.validate(where, path)
        return section

    @classmethod
    def _read(cls, name: str, value: Any, where: str, path: str) -> Any:
        hint = cls._hints()[name]
        sub = _section_of(hint)
        if sub is not None and value is not None:
            return sub.from_dict(value, where, path)
        item = _list_item_section(hint)
        if item is not None and isinstance(value, list):
            return [item.from_dict(v, where, key_path(path, i)) for i, v in enumerate(value)]
        return value

    # -- checking ------------------------------------------------------------------------------------------
    def validate(self, where: str = "manifest", path: str = "") -> Any:
        """Check every field's type and rule, the nested sections, then `check`; returns self."""
        hints = self._hints()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            p = key_path(path, f.name)
            hint = hints[f.name]
            meta = f.metadata or {}
            choices = meta.get("choices")
            hint_text = f" ({meta['hint']})" if meta.get("hint") else ""
            if choices is not None and value not in choices and not (value is None and _optional(hint)):
                raise fail(where, p, f"is {value!r}; allowed: {', '.join(str(c) for c in choices)}{hint_text}")
            if not _fits(value, hint, bool(meta.get("positive"))):
                raise fail(where, p, f"must be {_describe(hint, bool(meta.get('positive')))}, got "
                                     f"{_short(value)}{hint_text}")
            if meta.get("nonempty") and value == "":
                raise fail(where, p, f"must be a non-empty string{hint_text}")
            if meta.get("sha256") and value is not None and not _SHA256.fullmatch(value):
                raise fail(where, p, f"must be 64 lower-case hex digits, got {value!r} (write it with "
                                     f"runtime.manifest.sha256_file)")
            if isinstance(value, Section):
                value.validate(where, p)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, Section):
                        v.validate(where, key_path(p, i))
        self.check(where, path)
        return self

    def check(self, where: str, path: str) -> None:
        """Checks between fields (subclasses); raise `fail(where, key_path(path, key), message)`."""

    # -- writing -------------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The JSON object (fields in declaration order; tuples as lists; OMIT_DEFAULTS left out at default)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.OMIT_DEFAULTS and value == _default_of(f):
                continue
            out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _default_of(f: "dataclasses.Field[Any]") -> Any:
    return f.default_factory() if f.default_factory is not _MISSING else f.default


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _optional(hint: Any) -> bool:
    return _origin(hint) is typing.Union and type(None) in _args(hint)


def _section_of(hint: Any) -> Optional[type]:
    """The Section class of a field annotated `S` or `Optional[S]`, else None."""
    candidates = _args(hint) if _origin(hint) is typing.Union else (hint,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Section):
            return c
    return None


def _list_item_section(hint: Any) -> Optional[type]:
    candidates = _args(hint) if _origin(hint) is typing.Union else (hint,)
    for c in candidates:
        if _origin(c) in (list, List) and _args(c) and isinstance(_args(c)[0], type) \
                and issubclass(_args(c)[0], Section):
            return _args(c)[0]
    return None


__all__ = ["Section", "spec", "fail", "key_path", "is_int", "is_num"]
