"""One noise-to-norm training run: reconstruct from a fresh noise blend; AdamW and one half cosine."""
from __future__ import annotations

import torch

from train.methods.run import Trainer


class Noise2NormTrainer(Trainer):
    def loss(self, model, clean, generator, step):
        # A fresh field from the loop's generator whatever the module's mode (train/eval) is.
        noise = model.blend.fresh_noise(clean, generator)
        recon = model.reconstruct(clean, noise)
        return model.metric.loss(recon, clean)

    def optimizer(self, model, lr):
        d = self.spec.train_defaults
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=d["betas"], weight_decay=d["weight_decay"])

    def scheduler(self, optimizer, total_steps):
        # One half cosine over the whole run (the paper anneals over T_max = 100 epochs to eta_min = 1e-6).
        lr = optimizer.param_groups[0]["lr"]
        eta_min = min(self.spec.train_defaults["eta_min"], lr)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(total_steps)), eta_min=eta_min)
