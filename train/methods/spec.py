"""The contract every method fulfils, part 1: what a method *declares* (`MethodSpec`, static, no torch).

A method is a folder `train/methods/<name>/` and one line of the registry (`train/methods/__init__.py`):
- `spec.py`: a `MethodSpec` subclass, the static declaration below;
- the anomaly model: an `nn.Module` that maps a float RGB batch in [0, 1], shape (N, 3, H, W), to
  `(anomaly_map (N, 1, H, W), score (N,))`. That module is what evaluation runs and what `export` wraps into the
  uint8 inspection graph (see `train.graph`): no formula exists twice;
- the per-run object (`train.methods.run`): a `Trainer` (training = "gradient": loss, optimiser, schedule) or a
  `Fitter` (training = "fit": one pass over the good images) that owns everything one run holds (textures,
  reference images, perceptual nets, the run's options), so the spec and the model carry no run state.

The declarations tell the rest of the toolkit what it needs to know, so that nothing outside the method's folder
switches on its name or guesses from FAIR's shape: whether it has a width `c`, its size multiple, its graph parts
and their roles, which parts may run in FP16 or be quantised, its ONNX opset, its optional extra inputs, how it
learns, its typed options, and its hooks (the per-run object's class, what F2PAD needs from a feature method).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from train.methods.options import MethodOptions, Option, read_options

#: Roles a child module of the anomaly model may play (`MethodSpec.parts`); the manifest's `graph_parts` lists
#: node-name prefixes by role. "memory": fitted constants (memory bank, Gaussians) and the distance math on them.
ROLES = ("preprocess", "network", "scoring", "memory")
#: How a method learns.
TRAINING_KINDS = ("gradient", "fit")


@dataclass(frozen=True)
class ExtraInput:
    """One optional extra graph input beyond the frame (exported with `export.onnx --noise-input`)."""

    shape: Tuple[int, ...]  # without the batch axis
    meaning: str  # written into the manifest's extra_inputs[].meaning


def load_object(path: Any) -> Any:
    """'package.module:Name' -> the object (imported now: declarations name their code lazily); an object given
    itself instead of its path is returned as it is."""
    if not isinstance(path, str):
        return path
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class MethodSpec:
    """Base class of a method's declaration: subclasses set the class attributes and `build_model`."""

    name: str = ""
    #: The method's own options (type, default, help, checks); a run's values are in config.json "options".
    option_specs: Tuple[Option, ...] = ()
    #: Training defaults of the paper (lr, batch size, optimiser constants); read by the command lines and the
    #: method's own Trainer.
    train_defaults: Dict[str, Any] = {}

    #: Whether the model takes a base width `c`. False: RunConfig.c is None, the manifest's c is null, and the
    #: command lines refuse --c.
    has_width: bool = True
    #: What --c defaults to when the method has a width.
    default_width: int = 32
    #: Image sizes (height and width) must be multiples of this (e.g. 16 for a net that pools four times).
    size_multiple: int = 16
    #: Child attribute of the anomaly model -> role (one of ROLES); children not listed are "other".
    parts: Dict[str, str] = {}
    #: Children whose nodes `export.fp16` may cast to FP16 (the rest stays FP32).
    fp16_parts: Tuple[str, ...] = ()
    #: Children whose nodes `calibration.int8` may quantise (Q/DQ); the rest stays FP32.
    int8_parts: Tuple[str, ...] = ()
    #: The ONNX opset the method exports at (17: what TensorRT 8.5 to 11 all read).
    opset: int = 17
    #: "gradient": a `train.methods.run.Trainer` (loss per batch, the optimiser loop of `train.loop`);
    #: "fit": a `train.methods.run.Fitter` (one pass over the good images, `train.fit`).
    training: str = "gradient"
    #: 'module:Class' of the per-run object (a Trainer or a Fitter subclass), imported when a run starts (or the
    #: class itself, where importing it is cheap).
    run_class: Any = ""
    #: F2PAD hook (`train.refine`): 'module:Class' of the method's feature score L(X) on a crop, or "" when the
    #: method's maps cannot be refined. The class is called as
    #: `Class(model, x0, region, origin, image_size, candidates)` (see train/refine/feature_loss.py).
    refine_score: str = ""
    #: F2PAD's stopping tolerance for this method (the paper's, per backbone method); used with refine_score.
    refine_tolerance: Optional[float] = None

    # ------------------------------------------------------------------------------------ declarations read

    @property
    def defaults(self) -> Dict[str, Any]:
        """Option name -> default value."""
        return {o.name: o.default for o in self.option_specs}

    @property
    def scoring_options(self) -> Tuple[str, ...]:
        """Options that change only the scoring: they may change after training."""
        return tuple(o.name for o in self.option_specs if o.scoring)

    def options(self, given: Optional[Mapping[str, Any]] = None) -> MethodOptions:
        """The method's checked options: defaults overridden by `given`; an unknown key or a bad value is a
        ConfigError with one line."""
        return read_options(self.option_specs, given, f"method {self.name!r}")

    def width(self, c: Optional[int]) -> Optional[int]:
        """The width a run of this method uses for a requested `c` (None: not given): the default width when
        the method has one, None when it has none. A width given to a width-less method is an error."""
        from train.errors import ConfigError

        if not self.has_width:
            if c is not None:
                raise ConfigError(f"method {self.name!r} has no width: drop --c (given {c})")
            return None
        c = self.default_width if c is None else c
        if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
            raise ConfigError(f"--c {c!r}: the width of method {self.name!r} must be a positive integer")
        return c

    def label(self, c: Optional[int]) -> str:
        """A short name for files and tables: 'fair_c32', or 'patchcore' for a width-less method."""
        from runtime.manifest import model_label

        return model_label(self.name, c if self.has_width else None)

    @staticmethod
    def node_prefixes(children) -> List[str]:
        """Node-name prefixes of the exported graph for children of the anomaly model (e.g. `fp16_parts`):
        torch module paths survive the export under the inspection graph's `model` child."""
        return [f"/model/{child}/" for child in children]

    def extra_inputs(self, image_size: Tuple[int, int]) -> Dict[str, ExtraInput]:
        """Optional extra graph inputs (name -> ExtraInput), e.g. a fresh noise field. Default: none."""
        return {}

    # ------------------------------------------------------------------------------------ code, lazily

    def build_model(self, c: Optional[int], image_size: Tuple[int, int], options: Mapping[str, Any]):
        """The anomaly model (an nn.Module): float RGB (N,3,H,W) in [0,1] -> (map (N,1,H,W), score (N,)).
        `c` is None for a method without a width. A method whose optional package (a pip extra) is not installed
        raises `train.errors.MissingPackage` here, naming the package (tests skip on it with that reason)."""
        raise NotImplementedError(f"method {self.name!r} has no build_model")

    def start_run(self, options: Mapping[str, Any], image_size: Tuple[int, int]):
        """A new per-run object (Trainer or Fitter) for one run with these options at this model size."""
        if not self.run_class:
            raise NotImplementedError(f"method {self.name!r} declares no run_class")
        return load_object(self.run_class)(self, self.options(options), tuple(int(v) for v in image_size))

    def refine_objective(self, model, x0, region, origin, image_size, candidates: int):
        """F2PAD's L(X) module of this method (see `refine_score`); ConfigError when the method has none."""
        from train.errors import ConfigError

        if not self.refine_score:
            from train.methods import list_methods, get_method

            able = [n for n in list_methods() if get_method(n).refine_score]
            raise ConfigError(f"F2PAD refines the maps of {' or '.join(able)} runs; this run is {self.name!r}")
        return load_object(self.refine_score)(model, x0, region, origin, image_size, candidates)

    # ------------------------------------------------------------------------------------ checks

    def check_declarations(self) -> None:
        """Raise ValueError when a declaration is malformed (called at registration)."""
        where = f"method {self.name!r}"
        if self.training not in TRAINING_KINDS:
            raise ValueError(f"{where}: training {self.training!r} is not one of {TRAINING_KINDS}")
        if not isinstance(self.size_multiple, int) or self.size_multiple < 1:
            raise ValueError(f"{where}: size_multiple {self.size_multiple!r} must be a positive integer")
        if self.has_width and (not isinstance(self.default_width, int) or self.default_width < 1):
            raise ValueError(f"{where}: default_width {self.default_width!r} must be a positive integer")
        bad = {k: v for k, v in self.parts.items() if v not in ROLES}
        if bad:
            raise ValueError(f"{where}: parts {bad} have roles outside {ROLES}")
        for attr in ("fp16_parts", "int8_parts"):
            if isinstance(getattr(self, attr), str):
                raise ValueError(f"{where}: {attr} must be a tuple of child names, not a string")
        names = [o.name for o in self.option_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: an option is declared twice in {names}")
        for option in self.option_specs:
            option.check_declaration(where)
        if self.refine_score and self.refine_tolerance is None:
            raise ValueError(f"{where}: refine_score needs a refine_tolerance")


#: The name the rest of the toolkit (and older code) uses for a method's declaration.
Method = MethodSpec
