"""Noise-to-norm's declaration (paper-noise-to-norm.txt).

Training: blend a good image with a fresh Gaussian field (x = (1 - lam) x0 + lam eps), reconstruct it with an
M-net, and minimise MS-SSIM + L1 (Zhao et al.) against the clean image. Inspection: blend the frame with a fixed,
seeded field (a constant of the graph; an optional `noise` input replaces it), reconstruct, and score the
reconstruction against the frame; the image score is the map's maximum.
"""
from __future__ import annotations

from typing import Dict, Tuple

from train.methods.options import Option
from train.methods.spec import ExtraInput, MethodSpec


class Noise2Norm(MethodSpec):
    name = "noise2norm"
    option_specs = (
        Option("lam", 0.3, "float", "noise blending weight lambda (paper Table 4: best 0.3)", minimum=0.0,
               maximum=1.0),
        Option("noise_seed", 0, "int", "seed of the fixed inference noise field (a graph constant)"),
        Option("alpha", 0.84, "float", "MS-SSIM weight of the loss and the map (Zhao et al.)", minimum=0.0,
               maximum=1.0),
    )
    # Paper: AdamW betas (0.5, 0.999), lr 1e-6, cosine annealing to eta_min 1e-6. Measured on skimage's `gravel`
    # texture (64x64 tiles, c=16, batch 8, 200 steps, this optimiser and schedule; held-out tiles with painted
    # blobs and scratches):   lr     val loss  pixel AUROC
    #                         1e-6   0.913     0.43   (the loss has barely moved from its initial ~0.91)
    #                         1e-4   0.446     0.92
    #                         2e-4   0.378     0.92
    #                         5e-4   0.352     0.91
    #                         1e-3   0.342     0.91
    # 2e-4: the best localisation of the sweep at a loss within 10 % of the lowest; higher rates lower the loss a
    # little more but do not localise better. The paper's 1e-6 stays reachable with --lr.
    train_defaults = {"lr": 2e-4, "batch_size": 8, "betas": (0.5, 0.999), "weight_decay": 1e-2, "eta_min": 1e-6}
    # An M-net of width c that pools four times.
    has_width = True
    default_width = 32
    size_multiple = 16
    parts = {"blend": "preprocess", "net": "network", "metric": "scoring"}
    fp16_parts = ("net",)
    int8_parts = ("net",)
    opset = 17
    training = "gradient"
    run_class = "train.methods.noise2norm.trainer:Noise2NormTrainer"

    def build_model(self, c, image_size, options):
        from train.methods.noise2norm.model import Noise2NormModel

        return Noise2NormModel(c, image_size, options)

    def extra_inputs(self, image_size: Tuple[int, int]) -> Dict[str, ExtraInput]:
        """The optional run-time noise input: a standard-normal field (3, H, W) that replaces the fixed one."""
        h, w = (int(v) for v in image_size)
        meaning = ("standard-normal noise field, one per frame (N, 3, H, W) at the model size, blended into the "
                   "frame instead of the seeded constant field; a graph exported without --noise-input has no "
                   "such input and uses its constant field")
        return {"noise": ExtraInput(shape=(3, h, w), meaning=meaning)}
