"""Method registry: a method is registered under an explicit name; an unknown name lists the known ones."""
from __future__ import annotations

from typing import Dict, List

from train.errors import ConfigError
from train.methods.base import ExtraInput, Method

_REGISTRY: Dict[str, Method] = {}


def register_method(method_cls):
    """Class decorator: instantiate and register under `method_cls.name`."""
    inst = method_cls()
    if not inst.name:
        raise ValueError(f"{method_cls.__name__} has no name")
    inst.check_declarations()
    if inst.name in _REGISTRY:
        raise ValueError(f"method {inst.name!r} registered twice")
    _REGISTRY[inst.name] = inst
    return method_cls


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests that register a temporary one); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    # Importing the modules registers them; kept lazy so `import train.methods` stays cheap.
    from train.methods import fair  # noqa: F401
    try:
        from train.methods import noise2norm  # noqa: F401
    except ImportError:  # not written yet in a partial checkout
        pass
    # Feature-based methods: their optional packages ([features] extra) are imported only when a model is
    # built, so they always register; building without them raises train.errors.MissingPackage naming the extra.
    from train.methods import padim, patchcore  # noqa: F401


def list_methods() -> List[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


__all__ = ["ExtraInput", "Method", "register_method", "unregister_method", "get_method", "list_methods"]
