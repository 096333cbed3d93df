"""The contract every method fulfils.

A method is a `Method` object registered by name. It builds one `nn.Module` (the *anomaly model*) that maps
a float RGB batch in [0, 1], shape (N, 3, H, W), to `(anomaly_map (N, 1, H, W), score (N,))`. That module is
what evaluation runs and what `export` wraps into the uint8 inspection graph (see `train.graph`): no formula
exists twice.

A method also *declares* what the rest of the toolkit needs to know about it (class attributes below), so that
nothing outside `train/methods` and `train/nets` guesses from FAIR's shape: whether it has a width `c`, its size
multiple, its graph parts and their roles, which parts may run in FP16 or be quantised, its ONNX opset, its
optional extra inputs and what they mean, and how it learns: `training = "gradient"` (a loss per batch, the
optimiser loop of `train.loop`) or `training = "fit"` (one pass over the good images, `Method.fit`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

#: Roles a child module of the anomaly model may play (`Method.parts`); the manifest's `graph_parts` lists
#: node-name prefixes by role. "memory": fitted constants (memory bank, Gaussians) and the distance math on them.
ROLES = ("preprocess", "network", "scoring", "memory")
#: How a method learns.
TRAINING_KINDS = ("gradient", "fit")


@dataclass(frozen=True)
class ExtraInput:
    """One optional extra graph input beyond the frame (exported with `export.onnx --noise-input`)."""

    shape: Tuple[int, ...]  # without the batch axis
    meaning: str  # written into the manifest's extra_inputs[].meaning


class Method:
    """Base class: subclasses set `name`, `defaults` and the declarations below, and implement `build_model`
    and either `training_loss` (training = "gradient") or `fit` (training = "fit")."""

    name: str = ""
    #: Default values of the method's own options (stored in a run's config.json under "options").
    defaults: Dict[str, Any] = {}
    #: Options that change only the scoring, not what the network learns: they may be changed after training
    #: (`python -m benchmarks.accuracy --option KEY=VALUE`).
    scoring_options: Tuple[str, ...] = ()
    #: Training defaults of the paper (lr, optimiser, schedule, batch size).
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
    fp16_parts: Tuple[str, ...] = ("net",)
    #: Children whose nodes `calibration.int8` may quantise (Q/DQ); the rest stays FP32.
    int8_parts: Tuple[str, ...] = ("net",)
    #: The ONNX opset the method exports at (17: what TensorRT 8.5 to 11 all read).
    opset: int = 17
    #: "gradient": `training_loss` + the optimiser loop; "fit": one pass over the good images, `fit`.
    training: str = "gradient"

    def options(self, given: Dict[str, Any] | None = None) -> Dict[str, Any]:
        """The method's options: defaults overridden by `given` (unknown keys are an error)."""
        from train.errors import ConfigError

        given = dict(given or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no option(s) {unknown}; known: {sorted(self.defaults)}"
            )
        out = dict(self.defaults)
        out.update({k: v for k, v in given.items() if v is not None})
        return out

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

    def build_model(self, c: Optional[int], image_size: Tuple[int, int], options: Dict[str, Any]) -> nn.Module:
        """The anomaly model: float RGB (N,3,H,W) in [0,1] -> (map (N,1,H,W), score (N,)).
        `c` is None for a method without a width. A method whose optional package (a pip extra) is not installed
        raises `train.errors.MissingPackage` here, naming the package (tests skip on it with that reason)."""
        raise NotImplementedError

    def prepare_training(self, model: nn.Module, options: Dict[str, Any], image_size: Tuple[int, int]) -> None:
        """Hook called once before training (e.g. load external textures). Default: nothing."""

    def prepare_data(self, model: nn.Module, images, options: Dict[str, Any], image_size: Tuple[int, int]) -> None:
        """Hook called once before training (also on --resume, before the checkpoint is loaded) with the good
        training images, uint8 (N, h, w, 3) RGB at the run's image size (before any crop); `image_size` is the
        size the model was built at (the crop when there is one). E.g. choose a reference image. Default: nothing."""

    def extra_inputs(self, image_size: Tuple[int, int]) -> Dict[str, ExtraInput]:
        """Optional extra graph inputs (name -> ExtraInput), e.g. a fresh noise field. Default: none."""
        return {}

    def training_loss(
        self, model: nn.Module, clean: torch.Tensor, generator: torch.Generator, step: int
    ) -> torch.Tensor:
        """training == "gradient": one scalar loss for a batch of clean float RGB images (N,3,H,W) in [0,1].

        Randomness (synthetic anomalies, noise) must come from `generator` (a CPU generator), so that a
        seeded run is deterministic and `--resume` continues the same stream.
        """
        raise NotImplementedError(f"method {self.name!r} (training={self.training!r}) has no training_loss")

    def fit(self, model: nn.Module, batches: Iterable[torch.Tensor], options: Dict[str, Any],
            device: torch.device, progress: bool) -> Dict[str, Any]:
        """training == "fit": fill the model's buffers in place from one pass over the good images.

        `batches` is re-iterable, has len(), and yields float RGB tensors (N,3,H,W) in [0,1] at the run's image
        size on `device`. Memory must stay bounded for 1000+ images at 256x256 (stream, subsample). Returns a
        dict of JSON-able facts written into history.jsonl (e.g. {"memory_bank": 12345, "feature_dim": 176}).
        """
        raise NotImplementedError(f"method {self.name!r} (training={self.training!r}) has no fit")

    def update(self, model: nn.Module, images, options: Dict[str, Any], device: torch.device, progress: bool,
               context: Dict[str, Any]) -> Dict[str, Any]:
        """Learn from new good images (operator corrections) in place, instead of a full refit or retraining
        (`python -m train.update`). `images`: uint8 (N, h, w, 3) RGB at the run's image size. `context`: "config"
        (RunConfig), "fit" (the run's fit history line or None), "steps" and "lr" (the bounded fine-tune), "seed".
        Returns JSON-able facts of what was added. Default: a gradient method fine-tunes for context["steps"]
        steps (`train.methods.finetune`); a fit method without its own update refuses."""
        if self.training != "gradient":
            from train.errors import ConfigError

            raise ConfigError(f"method {self.name!r} has no incremental update: refit it with `python -m train`")
        from train.methods.finetune import finetune

        return finetune(self, model, images, device, progress, context)

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Learning-rate schedule stepped once per training step (default: constant)."""
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

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
