"""One PatchCore fit: collect the good images' patch features (spread over the images, bounded), keep a greedy
coreset of them as the memory bank."""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

from train.errors import ConfigError
from train.methods._features import FitClock, feature_batches
from train.methods.patchcore.model import PatchCoreModel
from train.methods.run import Fitter
from train.ops.coreset import extend_coreset, greedy_coreset


class PatchCoreFitter(Fitter):
    def fit(self, model: PatchCoreModel, batches, device, progress: bool) -> Dict[str, Any]:
        options = self.options
        generator = torch.Generator().manual_seed(int(options["seed"]))
        per_image = None
        kept, seen = [], 0
        for emb in feature_batches(model, batches, device, progress, "patchcore features"):
            n, d, h, w = emb.shape
            if per_image is None:  # spread max_patches evenly over all images
                n_images = len(batches) * n if hasattr(batches, "__len__") else None  # upper bound
                budget = int(options["max_patches"] or 0)
                per_image = h * w if not (budget and n_images) else max(1, min(h * w, budget // n_images))
            patches = emb.flatten(2).transpose(1, 2).to("cpu")  # (N, P, D)
            seen += n * h * w
            if per_image < h * w:
                pick = torch.stack([torch.randperm(h * w, generator=generator)[:per_image] for _ in range(n)])
                patches = torch.gather(patches, 1, pick.unsqueeze(-1).expand(-1, -1, d))
            # Bounded by max_patches: keep exact float32; unbounded: fp16 halves the collected memory.
            kept.append(patches.reshape(-1, d).to(torch.float32 if options["max_patches"] else torch.float16))
        if not kept:
            raise ConfigError("patchcore: no training images to fit on")
        collected = torch.cat(kept).to(torch.float32)
        del kept
        count = max(1, int(math.ceil(float(options["coreset_ratio"]) * collected.shape[0])))
        clock = FitClock()
        if count < collected.shape[0]:
            index = greedy_coreset(collected, count, int(options["seed"]), int(options["coreset_projection"]),
                                   progress)
            bank = collected[index]
        else:
            bank = collected
        model.memory.set_bank(bank)
        return {"patches_seen": seen, "patches_collected": int(collected.shape[0]),
                "memory_bank": int(bank.shape[0]), "feature_dim": int(bank.shape[1]),
                "coreset_seconds": clock.seconds()}

    def update(self, model: PatchCoreModel, images, device, progress: bool, context) -> Dict[str, Any]:
        """Add the new good images' patches to the memory bank under the fit's coreset rule: the fit kept
        `coreset_ratio` of its patches per image budget (`max_patches` spread over the images); the update keeps
        the same number per new image, chosen by continuing the greedy k-center selection from the existing bank
        over *all* the new patches (the farthest from the bank first: the patches the bank did not cover)."""
        from train.fit import ImageBatches

        options = self.options
        fit = context.get("fit") or {}
        batches = ImageBatches(images, int(context["config"].batch_size), device)
        new = torch.cat([emb.flatten(2).transpose(1, 2).reshape(-1, emb.shape[1]).to("cpu", torch.float32)
                         for emb in feature_batches(model, batches, device, progress, "patchcore update")])
        per_image = new.shape[0] / max(1, len(images))
        if fit.get("patches_collected") and fit.get("images"):  # the fit's budget per image
            per_image = min(per_image, float(fit["patches_collected"]) / float(fit["images"]))
        count = max(1, int(math.ceil(float(options["coreset_ratio"]) * per_image * len(images))))
        clock = FitClock()
        bank = model.memory.bank.to("cpu")
        index = extend_coreset(bank, new, count, int(options["seed"]), int(options["coreset_projection"]))
        model.memory.set_bank(torch.cat([bank, new[index]]))
        return {"images_added": int(len(images)), "patches_considered": int(new.shape[0]),
                "memory_bank_before": int(bank.shape[0]), "memory_bank_rows_added": int(index.numel()),
                "memory_bank": int(model.memory.bank.shape[0]), "coreset_seconds": clock.seconds()}
