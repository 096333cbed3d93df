"""One PaDiM fit: a streaming pass accumulating each grid position's mean and covariance, then the inverses."""
from __future__ import annotations

from typing import Any, Dict

import torch

from train.errors import ConfigError
from train.methods._features import FitClock, feature_batches
from train.methods.padim.model import PadimModel
from train.methods.run import Fitter
from train.ops.mahalanobis import GaussianAccumulator


class PadimFitter(Fitter):
    def fit(self, model: PadimModel, batches, device, progress: bool) -> Dict[str, Any]:
        options = self.options
        acc = None
        for emb in feature_batches(model, batches, device, progress, "padim features"):
            if acc is None:
                acc = GaussianAccumulator(emb.shape[2] * emb.shape[3], emb.shape[1])
            acc.add(emb.flatten(2).transpose(1, 2))
        if acc is None:
            raise ConfigError("padim: no training images to fit on")
        clock = FitClock()
        mean, inv_cov = acc.finish(float(options["regulariser"]), float(options["shrinkage"]))
        model.memory.mean.copy_(mean.to(torch.float32))
        model.memory.inv_cov.copy_(inv_cov.to(torch.float32))
        return {"images_fitted": acc.count, "positions": int(mean.shape[0]), "feature_dim": int(mean.shape[1]),
                "inverse_seconds": clock.seconds()}

    def update(self, model: PadimModel, images, device, progress: bool, context) -> Dict[str, Any]:
        """The streaming Gaussian goes on: the fit's accumulator is recovered from the stored mean and inverse
        covariance and the fitted image count (`GaussianAccumulator.from_gaussian`), the new images are added,
        and the Gaussians are finished again: the same as a fit over the old and new images together."""
        from train.fit import ImageBatches

        fit = context.get("fit") or {}
        count = fit.get("images_fitted") or fit.get("images")
        if not count:
            raise ConfigError("padim update: the run's history has no fitted image count (images_fitted): refit it")
        reg, shrinkage = float(self.options["regulariser"]), float(self.options["shrinkage"])
        acc = GaussianAccumulator.from_gaussian(model.memory.mean, model.memory.inv_cov, int(count), reg, shrinkage)
        batches = ImageBatches(images, int(context["config"].batch_size), device)
        for emb in feature_batches(model, batches, device, progress, "padim update"):
            acc.add(emb.flatten(2).transpose(1, 2))
        clock = FitClock()
        mean, inv_cov = acc.finish(reg, shrinkage)
        model.memory.mean.copy_(mean.to(torch.float32))
        model.memory.inv_cov.copy_(inv_cov.to(torch.float32))
        return {"images_added": int(len(images)), "images_fitted": acc.count, "inverse_seconds": clock.seconds()}
