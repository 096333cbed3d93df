"""The contract every method fulfils.

A method is a `Method` object registered by name. It builds one `nn.Module` (the *anomaly model*) that maps
a float RGB batch in [0, 1], shape (N, 3, H, W), to `(anomaly_map (N, 1, H, W), score (N,))`. That module is
what evaluation runs and what `export` wraps into the uint8 inspection graph (see `train.graph`): no formula
exists twice. Training asks the method for one loss value per batch of clean images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class ExportSpec:
    """What the method needs from an exporter (declared by the method, not guessed by export)."""

    opset: int = 17
    # Extra graph inputs beyond the frame, name -> shape without batch (e.g. a fresh noise field).
    optional_inputs: Dict[str, Tuple[int, ...]] = field(default_factory=dict)


class Method:
    """Base class: subclasses set `name`, `defaults` and implement `build_model` and `training_loss`."""

    name: str = ""
    #: Default values of the method's own options (stored in a run's config.json under "options").
    defaults: Dict[str, Any] = {}
    #: Options that change only the scoring, not what the network learns: they may be changed after training
    #: (`python -m benchmarks.accuracy --option KEY=VALUE`).
    scoring_options: Tuple[str, ...] = ()
    #: Training defaults of the paper (lr, optimiser, schedule, batch size).
    train_defaults: Dict[str, Any] = {}
    export_spec: ExportSpec = ExportSpec()

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

    def build_model(self, c: int, image_size: Tuple[int, int], options: Dict[str, Any]) -> nn.Module:
        """The anomaly model: float RGB (N,3,H,W) in [0,1] -> (map (N,1,H,W), score (N,))."""
        raise NotImplementedError

    def prepare_training(self, model: nn.Module, options: Dict[str, Any], image_size: Tuple[int, int]) -> None:
        """Hook called once before training (e.g. load external textures). Default: nothing."""

    def export_inputs(self, image_size: Tuple[int, int]) -> Dict[str, Tuple[int, ...]]:
        """Optional extra graph inputs (name -> shape without batch), e.g. a fresh noise field. Default: none."""
        return {}

    def training_loss(
        self, model: nn.Module, clean: torch.Tensor, generator: torch.Generator, step: int
    ) -> torch.Tensor:
        """One scalar loss for a batch of clean float RGB images (N,3,H,W) in [0,1].

        Randomness (synthetic anomalies, noise) must come from `generator` (a CPU generator), so that a
        seeded run is deterministic and `--resume` continues the same stream.
        """
        raise NotImplementedError

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Learning-rate schedule stepped once per training step (default: constant)."""
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
