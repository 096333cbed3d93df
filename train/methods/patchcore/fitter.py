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
from train.ops.coreset import greedy_coreset


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
