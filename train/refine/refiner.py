"""One image through F2PAD: M0 -> inpainted X0 -> first solve -> mask (Eq. 2) -> second solve (lambda1 = 0).

`Refiner` holds the run's model, the pixel prior and the settings; `refine(image, anomaly_map, threshold)`
takes a uint8 (H, W, 3) RGB image at the run's image size and the backbone's (H, W) anomaly map of it.
With init=learned, `inpainter` (an `inpaint_net.Inpainter`) fills M0 for X0.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from train.refine.feature_loss import deepest_stride, feature_score
from train.refine.init import crop_window, dilate, initial_image, initial_mask
from train.refine.objective import Objective, imagenet_stats, sparsity_weight
from train.refine.pixel_prior import PixelPrior, normalise_uint8
from train.refine.settings import RefineSettings
from train.refine.solver import solve


@dataclass
class RefineResult:
    mask: np.ndarray  # bool (H, W): the refined binary mask
    initial_mask: np.ndarray  # bool (H, W): the backbone's M0
    x: np.ndarray  # uint8 (H, W, 3): the recovered defect-free image
    a: np.ndarray  # float32 (H, W, 3): Y - X in ImageNet-normalised units
    facts: Dict[str, object]


def _to_tensor(normalised: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None].to(device)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    mean, std = imagenet_stats(x.device, x.dtype)
    unit = (x * std + mean).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return (unit * 255.0 + 0.5).astype(np.uint8)


def anomaly_norm(a: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) Euclidean norm over the channels."""
    return np.sqrt((a.astype(np.float64) ** 2).sum(axis=2))


class Refiner:
    def __init__(self, model, method: str, image_size, prior: Optional[PixelPrior], settings: RefineSettings,
                 device="cpu", inpainter=None):
        self.inpainter = inpainter  # an inpaint_net.Inpainter, for init=learned
        self.model = model.to(device).eval()
        self.method = method
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.prior = prior.to(device) if prior is not None else None
        self.settings = settings
        self.device = torch.device(device)
        self.align = deepest_stride(model)

    def refine(self, image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> RefineResult:
        s = self.settings
        start = time.perf_counter()
        m0 = initial_mask(anomaly_map, threshold)
        facts: Dict[str, object] = {"threshold": float(threshold), "m0_pixels": int(m0.sum())}
        y_full = normalise_uint8(image)
        if not m0.any():  # nothing flagged at this threshold: nothing to refine
            return RefineResult(m0, m0, image.copy(), np.zeros_like(y_full),
                                dict(facts, iterations=0, seconds=round(time.perf_counter() - start, 3),
                                     final_loss=None, mask_pixels=0))
        x0_image = initial_image(image, m0, s.init, s.inpaint_radius, self.inpainter)
        x0_full = normalise_uint8(x0_image)
        if s.init_only:  # ablation: the inpainting difference thresholded, no optimisation
            a = y_full - x0_full
            mask = anomaly_norm(a) > s.mask_threshold
            return RefineResult(mask, m0, x0_image, a, dict(facts, iterations=0, final_loss=None,
                                seconds=round(time.perf_counter() - start, 3), mask_pixels=int(mask.sum())))
        region = dilate(m0, s.dilate)
        y0, y1, x0, x1 = crop_window(region, s.context, self.align)
        y = _to_tensor(y_full[y0:y1, x0:x1], self.device)
        x_init = _to_tensor(x0_full[y0:y1, x0:x1], self.device)
        r = torch.from_numpy(region[y0:y1, x0:x1].astype(np.float32))[None, None].to(self.device)
        mean, std = imagenet_stats(self.device)
        score = feature_score(self.method, self.model, x_init * std + mean, r, (y0, x0), self.image_size,
                              s.candidates).to(self.device)
        lam1 = sparsity_weight(s.c, int(m0.sum()), m0.size)
        tol = s.stop_tolerance(self.method)
        first = solve(y, x_init, r, Objective(score, self.prior, y, r, lam1, s), s, tol)
        a_crop = (y - first.x)[0].permute(1, 2, 0).cpu().numpy()
        crop_mask = (anomaly_norm(a_crop) > s.mask_threshold) & region[y0:y1, x0:x1]
        x_final, second_iters, second_loss = first.x, 0, None
        if s.second_solve and crop_mask.any():
            m = torch.from_numpy(crop_mask.astype(np.float32))[None, None].to(self.device)
            second = solve(y, first.x, m, Objective(score, self.prior, y, m, 0.0, s), s, tol)
            x_final, second_iters, second_loss = second.x, second.iterations, second.loss
        mask = np.zeros_like(m0)
        mask[y0:y1, x0:x1] = crop_mask
        x_out = image.copy()
        x_out[y0:y1, x0:x1] = _to_uint8(x_final)
        a_full = np.zeros_like(y_full)
        a_full[y0:y1, x0:x1] = (y - x_final)[0].permute(1, 2, 0).cpu().numpy()
        facts.update(iterations=first.iterations + second_iters, iterations_first=first.iterations,
                     iterations_second=second_iters, final_loss=round(first.loss, 6),
                     final_loss_second=None if second_loss is None else round(second_loss, 6),
                     initial_loss=round(first.history[0], 6), lambda1=lam1, crop=[y0, y1, x0, x1],
                     mask_pixels=int(mask.sum()), seconds=round(time.perf_counter() - start, 3))
        return RefineResult(mask, m0, x_out, a_full, facts)


def anomaly_map_of(model, image: np.ndarray, device="cpu") -> np.ndarray:
    """The run's own (H, W) anomaly map of a uint8 RGB image at the run's size (the backbone-alone result)."""
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None].to(device)
    with torch.no_grad():
        anomaly_map, _ = model(x)
    return anomaly_map[0, 0].cpu().numpy()
