"""F2PAD's solver (Sec. III-D): Adan on the pixels of the optimised region, with local gradient sharing,
an adaptive per-pixel step, clipping of the update direction and the paper's stopping rule.

Per iteration: g = dObjective/dX (zero outside the region);
  d_ij = sum over the w x w window of w_ij,pq g_pq, with bilateral weights
         w = exp(-|dpos|^2 / (2 sigma_s^2)) * exp(-|dX|^2 / (2 sigma_c^2)) normalised to sum 1 (Eqs. 13-14,
         the bilateral form is inferred), so a pixel whose own gradient vanished still moves with its similar
         neighbours;
  d clipped to [-clip, clip] per value (paper: 0.03);
  Adan's update of pixel ij multiplied by s_ij = clip(mean_region ||d|| / ||d_ij||, 1, step_max) (Eq. 15's
         "larger step where the gradient is small"; the exact form is stripped in our copy, this one is ours).
Stop when the objective decreases by less than `tol` (paper: 0.05 PatchCore, 0.1 PaDiM), or after `max_iters`
(paper: 1200). Ours: the decrease is that of the best objective so far over the last `patience` iterations
(after `min_iters`), because Adan's steps are not monotone and a single uphill step would otherwise stop it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from torch.nn import functional as F

from train.refine.adan import Adan
from train.refine.settings import RefineSettings


def share_gradients(grad: torch.Tensor, image: torch.Tensor, window: int, sigma_space: float,
                    sigma_colour: float) -> torch.Tensor:
    """(1, C, H, W) gradient and image -> the bilateral-weighted neighbourhood average of the gradient."""
    if window <= 1:
        return grad
    n, c, h, w = grad.shape
    pad = window // 2
    offsets = torch.arange(window, dtype=grad.dtype, device=grad.device) - pad
    space = torch.exp(-(offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) / (2 * sigma_space ** 2)).flatten()
    k = window * window
    nb_img = F.unfold(image, window, padding=pad).view(n, c, k, h * w)
    nb_grad = F.unfold(grad, window, padding=pad).view(n, c, k, h * w)
    inside = F.unfold(torch.ones(1, 1, h, w, dtype=grad.dtype, device=grad.device), window,
                      padding=pad).view(1, k, h * w)  # neighbours beyond the border do not count
    colour = ((nb_img - image.view(n, c, 1, h * w)) ** 2).sum(dim=1)  # (n, k, HW)
    weight = space.view(1, k, 1) * torch.exp(-colour / (2 * sigma_colour ** 2)) * inside
    weight = weight / weight.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return (nb_grad * weight.unsqueeze(1)).sum(dim=2).view(n, c, h, w)


def adaptive_scale(direction: torch.Tensor, region: torch.Tensor, step_max: float) -> torch.Tensor:
    """(1, C, H, W) direction, (1, 1, H, W) region -> per-pixel step multiplier in [1, step_max]."""
    norm = torch.sqrt((direction ** 2).sum(dim=1, keepdim=True))
    inside = region > 0
    if not inside.any():
        return torch.ones_like(norm)
    mean = norm[inside].mean()
    return (mean / norm.clamp_min(1e-12)).clamp(1.0, float(step_max)) * region


@dataclass
class SolveResult:
    x: torch.Tensor
    iterations: int
    loss: float
    history: List[float] = field(default_factory=list)


def solve(y: torch.Tensor, x_init: torch.Tensor, region: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
          settings: RefineSettings, tol: float, progress: Optional[Callable[[int, float], None]] = None) -> SolveResult:
    """Minimise objective(X) over the pixels of `region` (1, 1, H, W in {0, 1}); X = Y elsewhere.
    `y` and `x_init` are (1, 3, H, W) ImageNet-normalised."""
    region = region.to(y.dtype)
    variable = x_init.detach().clone().requires_grad_(True)
    optimiser = Adan([variable], lr=settings.lr)
    history: List[float] = []
    best = [math.inf]  # best objective so far, per iteration
    iterations = 0
    for iteration in range(1, int(settings.max_iters) + 1):
        x = region * variable + (1 - region) * y
        total = objective(x)
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        value = float(total.detach())
        history.append(value)
        if progress is not None:
            progress(iteration, value)
        best.append(min(best[-1], value))
        window = int(settings.patience)
        if iteration > max(settings.min_iters, window) and best[-1 - window] - best[-1] < tol:
            break
        iterations = iteration
        with torch.no_grad():
            direction = variable.grad * region
            if settings.gradient_sharing:
                direction = share_gradients(direction, x.detach(), settings.share_window,
                                            settings.share_sigma_space, settings.share_sigma_colour) * region
            direction = direction.clamp(-settings.clip, settings.clip)
            variable.grad = direction
            scale = adaptive_scale(direction, region, settings.step_max) if settings.adaptive_step else None
        optimiser.step(scales=[scale])
    with torch.no_grad():
        x = region * variable + (1 - region) * y
        final = float(objective(x))
    return SolveResult(x.detach(), iterations, final, history)
