"""NDP-Net: normal reference attention and defect-perception network (Luo, Yao, Yu, IEEE TIM 2023).

Two training phases, one `--steps` budget: steps [0, phase1_steps) are Phase 1, the rest Phase 2.
- Phase 1 (Eq. 14): encoder + decoder on clean images, 100 * MSE(I_o, recon) + perceptual(I_o, recon)
  + L_def_per(encoder features of I_o vs of a synthetic-defect I_ad, mask).
- At the first Phase-2 step the encoder is frozen (eval mode, run without gradients from then on) and the
  reference image's layer 3-5 features are baked into the RBAMs.
- Phase 2 (Eq. 17): input I_ad; RBAM + decoder + MSDSM, 100 * MSE(I_o, recon) + perceptual(I_o, recon)
  + L_fea_rep(repaired vs clean features) + L_seg(focal, MSDSM maps vs mask).
One Adam optimiser holds every parameter: a parameter a phase does not train has no gradient (None), which Adam
skips (no update, no weight decay, no moment change), so the phase switch needs no second optimiser and the
run's checkpoint (weights, buffers, Adam state, generator) continues bit-for-bit across the boundary.
Reference image: the medoid of the good training images by perceptual-feature distance (`choose_reference`).
See README "NDP-Net" for how this departs from the paper.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from train.errors import ConfigError
from train.methods import register_method
from train.methods.base import Method
from train.nets.ndpnet_model import MSDSM_LAYERS, RBAM_LAYERS, NDPNetModel
from train.ops.medoid import medoid_index
from train.ops.ndp_losses import (
    defect_perception_loss, feature_repair_loss, focal_loss, perceptual_l1, resize_mask,
)
from train.synthesis.paste import paste_anomalies

#: The smallest model side: layer 5 (stride 16) must hold one patch of the largest RBFRM side (4).
MIN_SIDE = 64


def centre_crop(images: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) -> the centred (N, h, w, 3) window (identity when the size is the same)."""
    h, w = images.shape[1:3]
    ch, cw = int(size[0]), int(size[1])
    y, x = (h - ch) // 2, (w - cw) // 2
    return images[:, y:y + ch, x:x + cw]


@torch.no_grad()
def reference_descriptors(net, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """(M, 3, h, w) in [0, 1] -> (M, D): the perceptual net's 3rd and 4th feature maps, each average-pooled to a
    4 x 4 grid, flattened and concatenated (coarse layout + texture statistics)."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        feats = net(images[start:start + batch_size])
        out.append(torch.cat([F.adaptive_avg_pool2d(f, 4).flatten(1) for f in feats[2:4]], dim=1))
    return torch.cat(out)


def choose_reference(net, images: np.ndarray, size: Tuple[int, int], pool: int, device) -> Tuple[int, torch.Tensor]:
    """The reference rule: among at most `pool` evenly spread good images (centre crops at the model size), the
    medoid by Euclidean distance of :func:`reference_descriptors`. Returns (index into `images`, (3, h, w))."""
    n = images.shape[0]
    idx = np.unique(np.round(np.linspace(0, n - 1, min(n, max(1, int(pool))))).astype(int))
    crops = torch.from_numpy(np.ascontiguousarray(centre_crop(images[idx], size)))
    batch = crops.permute(0, 3, 1, 2).to(device, torch.float32).div_(255.0)
    best = medoid_index(reference_descriptors(net, batch).cpu())
    return int(idx[best]), batch[best]


def _perceptual(model):
    net = getattr(model, "_perceptual", None)
    if net is None:
        raise ConfigError("ndpnet: prepare_training was not called (no perceptual network)")
    return net


@register_method
class NDPNet(Method):
    name = "ndpnet"
    defaults = {
        "phase1_steps": 1000,  # steps of Phase 1; --steps is the total (paper: 400 + 200 epochs, i.e. 2/3 + 1/3)
        "softmax_scale": 1.0,  # RBFRM softmax temperature factor: 1 = the paper; ~10 = contextual attention
        "fusion_kernel": 5,  # m of the FFM convolutions (paper: 5)
        "perceptual": "efficientnet_lite0",  # efficientnet_lite0 (offline, pinned) | vgg16 (perceptual_weights=PATH)
        "perceptual_weights": None,
        "rec_weight": 100.0,  # Eqs. 14/17
        "focal_gamma": 2.0,  # not stated in the paper
        "focal_alpha": 0.5,  # 0.5 = no class weighting
        "anomaly_p": 0.5,  # fraction of training images given a synthetic defect (DRAEM-like)
        "texture_dir": None,  # optional folder of anomaly-source images (the paper: ImageNet photos)
        "reference_pool": 256,  # at most this many good images are considered for the reference medoid
        "mean_filter": 5,
        "median_filter": 5,
    }
    scoring_options = ("mean_filter", "median_filter")
    # Paper: Adam, lr 1e-4, weight decay 1e-5; batch size not stated.
    train_defaults = {"lr": 1e-4, "batch_size": 8, "weight_decay": 1e-5}
    has_width = True
    default_width = 32
    size_multiple = 16
    parts = {"encoder": "network", "rbam": "network", "decoder": "network", "msdsm": "network",
             "scorer": "scoring"}
    # The attention (cosine -> softmax -> weighted sum over reference patches) stays FP32 / unquantised.
    fp16_parts = ("encoder", "decoder", "msdsm")
    int8_parts = ("encoder", "decoder", "msdsm")
    opset = 17
    training = "gradient"

    def build_model(self, c, image_size, options):
        if int(options["phase1_steps"]) < 0:
            raise ConfigError(f"option phase1_steps={options['phase1_steps']!r} must be >= 0")
        if min(int(v) for v in image_size) < MIN_SIDE:
            raise ConfigError(f"ndpnet needs images (or --crop) of at least {MIN_SIDE}x{MIN_SIDE}, got "
                              f"{image_size[0]}x{image_size[1]}: encoder layer 5 (stride 16) must hold one 4x4 "
                              f"reference patch")
        return NDPNetModel(c, image_size, options)

    def prepare_training(self, model: NDPNetModel, options: Dict[str, Any], image_size) -> None:
        from train.backbones.perceptual import build_perceptual

        net = build_perceptual(options["perceptual"], image_size, options.get("perceptual_weights"))
        net = net.to(model.reference_image.device)
        # Training-only attachments, not children: they stay out of the state dict and the exported graph.
        object.__setattr__(model, "_perceptual", net)
        textures = None
        if options.get("texture_dir"):
            from train.synthesis.textures import load_texture_folder

            textures = load_texture_folder(options["texture_dir"], image_size)
        object.__setattr__(model, "_textures", textures)
        object.__setattr__(model, "_options", dict(options))

    def prepare_data(self, model: NDPNetModel, images, options, image_size) -> None:
        index, image = choose_reference(_perceptual(model), images, image_size, options["reference_pool"],
                                        model.reference_image.device)
        model.set_reference_image(image)
        object.__setattr__(model, "_reference_index", index)

    def optimizer(self, model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=self.train_defaults["weight_decay"])

    def training_loss(self, model: NDPNetModel, clean, generator, step):
        options = getattr(model, "_options", None)
        if options is None:
            raise ConfigError("ndpnet: prepare_training was not called (no options on the model)")
        defective, mask = paste_anomalies(clean, generator, float(options["anomaly_p"]),
                                          getattr(model, "_textures", None))
        if step < int(options["phase1_steps"]):
            return self.phase1_loss(model, clean, defective, mask, options)
        if step == int(options["phase1_steps"]):
            model.bake_reference()
        return self.phase2_loss(model, clean, defective, mask, options)

    @staticmethod
    def _perceptual_loss(model, recon, clean) -> torch.Tensor:
        net = _perceptual(model)
        with torch.no_grad():
            target = net(clean)
        return perceptual_l1(net(recon), target)

    def phase1_loss(self, model, clean, defective, mask, options) -> torch.Tensor:
        model.encoder.train()
        n = clean.shape[0]
        feats = model.encoder(torch.cat([clean, defective]))  # one batch: identical images, identical features
        clean_feats = [f[:n] for f in feats]
        recon = model.decode([clean_feats[i] for i in RBAM_LAYERS], clean_feats)
        return (float(options["rec_weight"]) * F.mse_loss(recon, clean)
                + self._perceptual_loss(model, recon, clean)
                + defect_perception_loss(clean_feats, [f[n:] for f in feats], mask))

    def phase2_loss(self, model, clean, defective, mask, options) -> torch.Tensor:
        model.encoder.eval()
        with torch.no_grad():
            feats = model.encoder(defective)
            clean_deep = [model.encoder(clean)[i] for i in RBAM_LAYERS]
        repaired = model.repair(feats)
        recon = model.decode(repaired, feats)
        # The segmentation heads learn from the reconstruction as it is; their loss does not train the decoder.
        with torch.no_grad():
            recon_feats = model.encoder(recon.detach(), depth=max(MSDSM_LAYERS) + 1)
        maps = model.msdsm([feats[i] for i in MSDSM_LAYERS], [recon_feats[i] for i in MSDSM_LAYERS])
        seg = torch.stack([focal_loss(m, resize_mask(mask, m.shape[-2:]), float(options["focal_gamma"]),
                                      float(options["focal_alpha"])) for m in maps]).mean()
        return (float(options["rec_weight"]) * F.mse_loss(recon, clean)
                + self._perceptual_loss(model, recon, clean)
                + feature_repair_loss(repaired, clean_deep)
                + seg)
