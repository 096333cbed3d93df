"""Lazy package attributes (PEP 562): `import runtime`, `import export` and `import calibration` stay cheap, and
a name is imported from its module on first use. Stdlib only."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Mapping, Sequence, Tuple


def lazy_exports(package: str, where: Mapping[str, str],
                 public: Sequence[str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """(`__getattr__`, `__dir__`) for `package`: a name of `where` (name -> module) is imported from its module
    when first asked for and kept on the package; any other name is an AttributeError."""

    def __getattr__(name: str) -> Any:
        mod = where.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(mod), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
