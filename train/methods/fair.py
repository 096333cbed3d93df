"""FAIR: frequency-aware image restoration (Liu et al.).

Training: corrupt a good image with synthetic anomalies, high-pass it, and train the UNet to restore the clean
colour image (MSE + 1 - SSIM). Inspection: high-pass the frame itself, restore it, score the restoration
against the frame with MSGMS + CIELAB colour distance and a 21x21 mean filter; the image score is the max.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from train.methods import register_method
from train.methods.base import Method
from train.nets.unet import UNet
from train.ops.highpass import make_highpass
from train.ops.scoring import FairScorer
from train.ops.ssim import ssim
from train.synthesis.corrupt import make_training_batch


class FairModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] -> (anomaly_map (N,1,H,W), score (N,))."""

    def __init__(self, c: int, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        self.highpass = make_highpass(
            options["filter"], image_size, d0=options["d0"], order=options["order"]
        )
        self.net = UNet(self.highpass.out_channels, c)
        self.scorer = FairScorer(lab_weight=options["lab_weight"], mean_filter=options["mean_filter"])

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(self.highpass(image))

    def forward(self, image: torch.Tensor):
        return self.scorer(self.restore(image), image)


@register_method
class Fair(Method):
    name = "fair"
    defaults = {
        "filter": "bhpf",  # bhpf | ghpf | ihpf | sobel-xy3 | sobel-x3 | ...
        "d0": 30.0,  # cut-off of the frequency filters, in frequency samples (paper: 30 at 256x256)
        "order": 2,  # Butterworth order
        "lab_weight": 3e-4,
        "mean_filter": 21,  # paper, at 256x256 on MVTec; about the defect size in pixels suits tiny defects
        "texture_dir": None,  # optional folder of external textures for the Perlin branch (no-DTD default)
    }
    scoring_options = ("lab_weight", "mean_filter")
    # Paper: Adam 1e-4, batch 8, lr x0.2 at 80 % and 90 % of training.
    train_defaults = {"lr": 1e-4, "batch_size": 8}
    # Declarations (train.methods.base.Method): a UNet of width c that pools four times.
    has_width = True
    default_width = 32
    size_multiple = 16
    parts = {"highpass": "preprocess", "net": "network", "scorer": "scoring"}
    # FP16: the network only (export/fp16.py gives the measurement); INT8: the network only (calibration.qdq).
    fp16_parts = ("net",)
    int8_parts = ("net",)
    opset = 17
    training = "gradient"

    def build_model(self, c, image_size, options):
        return FairModel(c, image_size, options)

    def prepare_training(self, model: FairModel, options: Dict[str, Any], image_size) -> None:
        """Load optional external textures once (kept on the model object, not in its state)."""
        textures = None
        if options.get("texture_dir"):
            from train.synthesis.textures import load_texture_folder

            textures = load_texture_folder(options["texture_dir"], image_size)
        model._textures = textures  # noqa: SLF001 - training-only attachment

    def training_loss(self, model, clean, generator, step):
        textures = getattr(model, "_textures", None)
        # The 30 % +-90 degree rotation changes the target too, hence (target, corrupted) from one call.
        target, corrupted, _ = make_training_batch(clean, generator, textures=textures)
        restored = model.restore(corrupted)
        return F.mse_loss(restored, target) + (1.0 - ssim(restored, target))

    def scheduler(self, optimizer, total_steps):
        milestones = [int(0.8 * total_steps), int(0.9 * total_steps)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
