"""Method registry: one line per method, name -> its spec class ('module:Class'), imported when first asked for.

Adding a method is its folder `train/methods/<name>/` (spec.py, the model, the trainer or fitter; see
docs/adding-a-method.md) and one line below. A spec imports no torch, so listing the methods stays cheap.
"""
from __future__ import annotations

from typing import Dict, List

from train.errors import ConfigError
from train.methods.spec import ExtraInput, Method, MethodSpec, load_object

BUILTIN: Dict[str, str] = {
    "combined": "train.methods.combined.spec:Combined",
    "fair": "train.methods.fair.spec:Fair",
    "ndpnet": "train.methods.ndpnet.spec:NDPNet",
    "noise2norm": "train.methods.noise2norm.spec:Noise2Norm",
    "padim": "train.methods.padim.spec:Padim",
    "patchcore": "train.methods.patchcore.spec:PatchCore",
}

_REGISTRY: Dict[str, MethodSpec] = {}


def register_method(spec_cls):
    """Register a spec class under `spec_cls.name` (its declarations are checked now); usable as a decorator.
    The built-in methods are registered from BUILTIN; this is for a method kept outside the tree (and tests)."""
    _load_builtin()
    _add(spec_cls)
    return spec_cls


def _add(spec_cls) -> None:
    inst = spec_cls()
    if not inst.name:
        raise ValueError(f"{spec_cls.__name__} has no name")
    inst.check_declarations()
    if inst.name in _REGISTRY:
        raise ValueError(f"method {inst.name!r} registered twice")
    _REGISTRY[inst.name] = inst


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests that register a temporary one); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    for name, path in BUILTIN.items():
        if name not in _REGISTRY:
            spec_cls = load_object(path)
            if spec_cls.name != name:
                raise ValueError(f"registry line {name!r} names a spec called {spec_cls.name!r}")
            _add(spec_cls)


def list_methods() -> List[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


__all__ = ["BUILTIN", "ExtraInput", "Method", "MethodSpec", "register_method", "unregister_method", "get_method",
           "list_methods"]
