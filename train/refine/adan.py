"""Adan: adaptive Nesterov momentum (Xie, Zhou, Li, Lin, Yan; TPAMI 2024), written from the paper's Algorithm 1.

In the (1 - beta) convention of the authors' released defaults, with bias correction, for step t = 1, 2, ...:

    d_t = g_t - g_{t-1}                       (d_1 = 0)
    m_t = b1 m_{t-1} + (1 - b1) g_t           (first moment)
    v_t = b2 v_{t-1} + (1 - b2) d_t           (moment of the gradient difference)
    n_t = b3 n_{t-1} + (1 - b3) (g_t + b2 d_t)^2
    u_t = (m_t / (1 - b1^t) + b2 v_t / (1 - b2^t)) / (sqrt(n_t / (1 - b3^t)) + eps)
    theta_t = (theta_{t-1} - lr * s * u_t) / (1 + lr * weight_decay)

"Recommended parameters" (the F2PAD paper uses them): betas (0.98, 0.92, 0.99), eps 1e-8, no weight decay.
`s` is an optional per-element step multiplier given to `step(scales=...)`: F2PAD's adaptive per-pixel step.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.optim import Optimizer

RECOMMENDED_BETAS = (0.98, 0.92, 0.99)


class Adan(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=RECOMMENDED_BETAS, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or any(not 0.0 <= b < 1.0 for b in betas) or len(betas) != 3:
            raise ValueError(f"Adan needs lr > 0, eps > 0, weight_decay >= 0 and three betas in [0, 1); got "
                             f"lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None, scales: Optional[Sequence[Optional[torch.Tensor]]] = None):
        """One update; `scales`, when given, holds one per-element multiplier (or None) per parameter, in the
        order of the parameters over all groups."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = 0
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            for p in group["params"]:
                scale = scales[index] if scales is not None else None
                index += 1
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["n"] = torch.zeros_like(p)
                    state["prev_grad"] = g.clone()
                state["step"] += 1
                t = state["step"]
                diff = g - state["prev_grad"]
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).add_(diff, alpha=1 - b2)
                state["n"].mul_(b3).addcmul_(g + b2 * diff, g + b2 * diff, value=1 - b3)
                state["prev_grad"].copy_(g)
                denom = (state["n"] / (1 - b3 ** t)).sqrt_().add_(group["eps"])
                update = (state["m"] / (1 - b1 ** t) + b2 * state["v"] / (1 - b2 ** t)) / denom
                if scale is not None:
                    update = update * scale
                p.sub_(update, alpha=group["lr"])
                if group["weight_decay"]:
                    p.div_(1 + group["lr"] * group["weight_decay"])
        return loss
