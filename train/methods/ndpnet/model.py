"""The NDP-Net anomaly model: float RGB (N,3,H,W) in [0,1] -> (anomaly_map (N,1,H,W), score (N,)).

Inspection path (paper Sec. III, the same as training phase 2): encoder -> RBAM on layers 3-5 (attention against
the reference image's features, graph constants) -> decoder -> reconstruction through the encoder again (layers
1-3) -> MSDSM on (input, reconstruction) features -> Eq. 11 fusion -> 5x5 mean and median filters -> max.

State: the networks' weights plus two kinds of buffers fixed by training: `reference_image` (3, h, w), the
chosen defect-free training image, and each RBAM's `reference` features (computed from it by the frozen
encoder). Their sizes are the training size (the crop when training on crops), so loading resizes them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from train.nets.ndpnet_autoencoder import Decoder, Encoder, encoder_widths
from train.nets.ndpnet_msdsm import MSDSM
from train.nets.ndpnet_rbam import RBAM
from train.ops.ndp_scoring import NDPScorer

#: Encoder layers (0-based) that carry RBAMs (the paper's layers 3-5) and that feed MSDSM (layers 1-3).
RBAM_LAYERS = (2, 3, 4)
MSDSM_LAYERS = (0, 1, 2)
STRIDES = (1, 2, 4, 8, 16)


class NDPNetModel(nn.Module):
    def __init__(self, c: int, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        h, w = (int(v) for v in image_size)
        widths = encoder_widths(c)
        self.encoder = Encoder(c)
        self.rbam = nn.ModuleList([
            RBAM(widths[i], (h // STRIDES[i], w // STRIDES[i]), patch_sides=(2, 4),
                 softmax_scale=float(options["softmax_scale"]), m=int(options["fusion_kernel"]))
            for i in RBAM_LAYERS])
        self.decoder = Decoder(c)
        self.msdsm = MSDSM([widths[i] for i in MSDSM_LAYERS])
        self.scorer = NDPScorer(int(options["mean_filter"]), int(options["median_filter"]))
        self.register_buffer("reference_image", torch.zeros(3, h, w))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "reference_image")
        if stored is not None and stored.dim() == 3 and stored.shape[0] == 3:
            self.reference_image = torch.empty_like(stored, dtype=self.reference_image.dtype,
                                                    device=self.reference_image.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- pieces used by training and inspection -------------------------------------------------------------
    def set_reference_image(self, image: torch.Tensor) -> None:
        self.reference_image = image.detach().reshape(3, *image.shape[-2:]).to(self.reference_image).contiguous()

    @torch.no_grad()
    def bake_reference(self) -> None:
        """Encode the reference image with the (frozen, eval-mode) encoder and store its layer 3-5 features."""
        was_training = self.encoder.training
        self.encoder.eval()
        feats = self.encoder(self.reference_image[None])
        for rbam, i in zip(self.rbam, RBAM_LAYERS):
            rbam.set_reference(feats[i][0])
        self.encoder.train(was_training)

    def repair(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [rbam(feats[i]) for rbam, i in zip(self.rbam, RBAM_LAYERS)]

    def decode(self, deep: Sequence[torch.Tensor], feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Reconstruction from (layer 3, 4, 5) features; `feats` gives the layer 1/2 sizes."""
        return self.decoder(deep, feats[0].shape[-2:])

    def segment(self, feats: Sequence[torch.Tensor], recon: torch.Tensor) -> List[torch.Tensor]:
        recon_feats = self.encoder(recon, depth=max(MSDSM_LAYERS) + 1)
        return self.msdsm([feats[i] for i in MSDSM_LAYERS], [recon_feats[i] for i in MSDSM_LAYERS])

    def forward(self, image: torch.Tensor):
        feats = self.encoder(image)
        recon = self.decode(self.repair(feats), feats)
        return self.scorer(self.segment(feats, recon), image.shape[-2:])
