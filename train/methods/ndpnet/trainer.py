"""One NDP-Net training run (normal reference attention and defect-perception network, Luo, Yao, Yu, IEEE TIM 2023).

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
The run (`NDPNetTrainer`) holds the perceptual net, the textures and the chosen reference's index; the model
holds only what inspection needs. See docs/ndpnet.md for how this departs from the paper.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from train.methods.ndpnet.model import MSDSM_LAYERS, RBAM_LAYERS, NDPNetModel
from train.methods.run import Trainer
from train.ops.medoid import medoid_index
from train.ops.ndp_losses import (
    defect_perception_loss, feature_repair_loss, focal_loss, perceptual_l1, resize_mask,
)
from train.synthesis.paste import paste_anomalies


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


class NDPNetTrainer(Trainer):
    perceptual = None  # the frozen perceptual net of the losses (not part of the model or its state)
    textures = None  # (K, 3, H, W) anomaly-source images, or None
    reference_index: Optional[int] = None  # which good training image became the reference

    def prepare(self, model: NDPNetModel, images) -> None:
        from train.backbones.perceptual import build_perceptual

        options = self.options
        device = model.reference_image.device
        self.perceptual = build_perceptual(options["perceptual"], self.image_size,
                                           options["perceptual_weights"]).to(device)
        if options["texture_dir"]:
            from train.synthesis.textures import load_texture_folder

            self.textures = load_texture_folder(options["texture_dir"], self.image_size)
        self.reference_index, image = choose_reference(self.perceptual, images, self.image_size,
                                                       options["reference_pool"], device)
        model.set_reference_image(image)

    def optimizer(self, model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=self.spec.train_defaults["weight_decay"])

    def loss(self, model: NDPNetModel, clean, generator, step):
        options = self.options
        defective, mask = paste_anomalies(clean, generator, float(options["anomaly_p"]), self.textures)
        if step < int(options["phase1_steps"]):
            return self.phase1_loss(model, clean, defective, mask, options)
        if step == int(options["phase1_steps"]):
            model.bake_reference()
        return self.phase2_loss(model, clean, defective, mask, options)

    def _perceptual_loss(self, model, recon, clean) -> torch.Tensor:
        net = self.perceptual
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
