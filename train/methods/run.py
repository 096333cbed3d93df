"""The contract every method fulfils, part 2: what one *run* holds (`Trainer`, `Fitter`).

`MethodSpec.start_run(options, image_size)` makes one of these per run; it owns the run's state (its checked
options, textures, reference image, perceptual net, ...), never the spec or the model's attributes. The loops
(`train.loop`, `train.fit`) call the hooks below in this order:

    gradient: prepare(model, images) -> optimizer / scheduler -> loss(...) per step -> after_training(...)
    fit:      fit(model, batches, ...) -> after_training(...)
    update:   update(model, images, ..., context)  (new good images into a finished run: a fitter grows its
              statistics, a trainer fine-tunes a bounded number of steps; `python -m train.update`)
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Tuple

import torch
from torch import nn

from train.errors import ConfigError


class UpdateNotSupported(ConfigError):
    """The method cannot take new good images into a finished run: it has to be trained or fitted again."""


class MethodRun:
    """What a Trainer and a Fitter share: the spec, the run's checked options, the model size."""

    def __init__(self, spec, options: Mapping[str, Any], image_size: Tuple[int, int]):
        self.spec = spec
        self.options = options
        self.image_size = image_size

    def after_training(self, model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device,
                       progress: bool) -> Dict[str, Any]:
        """Hook after the last training step or the fit, on the final model (e.g. fit a score normalisation
        into the model's buffers from the good images). `batches` are the fit's `train.fit.ImageBatches` (float
        RGB in [0, 1] at the model size on `device`). Returns JSON-able facts for history.jsonl; a non-empty
        result makes the loop write the weights again. Default: nothing (and the images are not read)."""
        return {}

    def update(self, model: nn.Module, images, device: torch.device, progress: bool,
               context: Mapping[str, Any]) -> Dict[str, Any]:
        """Hook: take new good images (operator corrections) into a finished run's model in place, instead of a
        full refit or retraining. `images`: uint8 (N, h, w, 3) RGB at the run's image size. `context`: "config"
        (the RunConfig), "fit" (the run's fit facts as they stand, or None), "steps" and "lr" (a bounded
        fine-tune), "seed". Returns JSON-able facts of what was added. Default: UpdateNotSupported."""
        raise UpdateNotSupported(f"method {self.spec.name!r} cannot take new good images into a finished run; "
                                 f"train or fit a new run on all the images")


class Trainer(MethodRun):
    """training = "gradient": a loss per batch in the optimiser loop of `train.loop`."""

    def prepare(self, model: nn.Module, images) -> None:
        """Called once before the first step (also on --resume, before the checkpoint is loaded) with the good
        training images, uint8 (N, h, w, 3) RGB at the run's image size (before any crop); `self.image_size` is
        the size the model was built at (the crop when there is one). E.g. load textures, choose a reference
        image. Default: nothing."""

    def loss(self, model: nn.Module, clean: torch.Tensor, generator: torch.Generator, step: int) -> torch.Tensor:
        """One scalar loss for a batch of clean float RGB images (N,3,H,W) in [0,1].

        Randomness (synthetic anomalies, noise) must come from `generator` (a CPU generator), so that a
        seeded run is deterministic and `--resume` continues the same stream.
        """
        raise NotImplementedError(f"method {self.spec.name!r} (training={self.spec.training!r}) has no loss")

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr)

    def update(self, model: nn.Module, images, device: torch.device, progress: bool,
               context: Mapping[str, Any]) -> Dict[str, Any]:
        """A gradient method learns new good images by a bounded fine-tune of its own loss
        (`train.methods.finetune`)."""
        from train.methods.finetune import finetune

        return finetune(self, model, images, device, progress, context)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Learning-rate schedule stepped once per training step (default: constant)."""
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


class Fitter(MethodRun):
    """training = "fit": one pass over the good images, no gradients (`train.fit`)."""

    def fit(self, model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device,
            progress: bool) -> Dict[str, Any]:
        """Fill the model's buffers in place from one pass over the good images.

        `batches` is re-iterable, has len(), and yields float RGB tensors (N,3,H,W) in [0,1] at the run's image
        size on `device`. Memory must stay bounded for 1000+ images at 256x256 (stream, subsample). Returns a
        dict of JSON-able facts written into history.jsonl (e.g. {"memory_bank": 12345, "feature_dim": 176}).
        """
        raise NotImplementedError(f"method {self.spec.name!r} (training={self.spec.training!r}) has no fit")
