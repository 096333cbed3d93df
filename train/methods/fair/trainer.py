"""One FAIR training run: the optional external textures, the loss, the paper's step schedule."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from train.methods.run import Trainer
from train.ops.ssim import ssim
from train.synthesis.corrupt import make_training_batch


class FairTrainer(Trainer):
    textures = None  # (K, 3, H, W) external textures for the Perlin branch, or None

    def prepare(self, model, images) -> None:
        if self.options["texture_dir"]:
            from train.synthesis.textures import load_texture_folder

            self.textures = load_texture_folder(self.options["texture_dir"], self.image_size)

    def loss(self, model, clean, generator, step):
        # The 30 % +-90 degree rotation changes the target too, hence (target, corrupted) from one call.
        target, corrupted, _ = make_training_batch(clean, generator, textures=self.textures)
        restored = model.restore(corrupted)
        return F.mse_loss(restored, target) + (1.0 - ssim(restored, target))

    def scheduler(self, optimizer, total_steps):
        milestones = [int(0.8 * total_steps), int(0.9 * total_steps)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
