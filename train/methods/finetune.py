"""The update of a gradient-trained method from new good images (`Trainer.update`'s default): a bounded
fine-tune, `context["steps"]` optimiser steps of the method's own loss at `context["lr"]`, on batches drawn
(seeded) from the new images, with the run's crop when it trained on crops. Few steps and a small learning rate
keep it close to the parent; the threshold is recalibrated afterwards in any case (`train.update`)."""
from __future__ import annotations

import time
from typing import Any, Dict, Mapping

import numpy as np
import torch
from tqdm import tqdm

from train.errors import ConfigError


def finetune(trainer, model: torch.nn.Module, images: np.ndarray, device: torch.device, progress: bool,
             context: Mapping[str, Any]) -> Dict[str, Any]:
    """`trainer`: the run's `train.methods.run.Trainer` (its loss, optimiser and prepared state)."""
    from train.loop import random_crop

    config = context["config"]
    steps, lr = int(context["steps"]), float(context["lr"])
    if steps < 1:
        raise ConfigError(f"--steps {steps}: a fine-tune needs at least 1 step")
    generator = torch.Generator().manual_seed(int(context.get("seed", 0)))
    data = torch.from_numpy(np.ascontiguousarray(images))
    batch = min(int(config.batch_size), len(data))
    model.to(device)
    trainer.prepare(model, images)  # textures, reference image, ...: the run's state its loss needs
    model.train()
    optimizer = trainer.optimizer(model, lr)
    t0 = time.perf_counter()
    losses = []
    for step in tqdm(range(steps), desc=f"fine-tune {trainer.spec.name}", disable=not progress, unit="step"):
        pick = torch.randint(len(data), (batch,), generator=generator)
        chosen = data[pick]  # (N, H, W, 3) uint8
        if config.crop:
            chosen = random_crop(chosen, tuple(config.crop), generator)
        clean = chosen.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        loss = trainer.loss(model, clean.to(device), generator, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"images_added": int(len(images)), "fine_tune_steps": steps, "lr": lr,
            "loss_first": round(losses[0], 6), "loss_last": round(losses[-1], 6),
            "fine_tune_seconds": round(time.perf_counter() - t0, 2)}
