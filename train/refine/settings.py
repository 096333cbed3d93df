"""F2PAD's settings: every hyper-parameter in one place, with where its value comes from.

The paper (arXiv 2407.06519) tunes c, lambda2 and the number of mixture components per category by grid
search and does not print them; its text copy lost most symbols. Values marked "ours" were chosen here (on
the generated demo set), "paper" are printed in Sec. IV-A3, "inferred" are the paper's numbers assigned to
stripped symbols by their order of appearance (shared/refs/f2pad-facts.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

from train.errors import ConfigError

INITS = ("telea", "ns", "learned")


@dataclass(frozen=True)
class RefineSettings:
    # --- objective -------------------------------------------------------------------------------------------
    c: float = 0.002  # ours: lambda1 = c / (estimated anomaly size as a fraction of the image's pixels)
    log_eps: float = 0.1  # ours: eps of the LOG penalty, ImageNet-normalised units
    prior_weight: float = 0.01  # ours: lambda2 of the min-Mahalanobis pixel prior (per pixel)
    tv_weight: float = 0.05  # ours: weight of the vectorial TV (per pixel)
    range_weight: float = 10.0  # ours: weight of the valid-range penalty (pixels must stay in [0, 1] RGB)
    use_sparsity: bool = True  # ablation "w/o sparsity": False
    use_prior: bool = True  # ablation "w/o pixel prior": False (drops the mixture and the TV)
    candidates: int = 10  # ours (stripped in the paper): k nearest memory-bank rows of X0's feature (PatchCore)
    # --- initialisation --------------------------------------------------------------------------------------
    init: str = "telea"  # X0: telea | ns (OpenCV) | learned (an inpainter net, --inpainter DIR); paper: an MAE
    inpaint_radius: int = 5  # ours: OpenCV's neighbourhood radius (init telea / ns)
    dilate: int = 8  # ours (stripped): radius in pixels of the disk that dilates M0 into the optimised region
    context: int = 32  # ours: pixels of context around the optimised region fed to the backbone (crop margin)
    mask_threshold: float = 0.2  # paper's init-only rule (L2 over channels, normalised units), reused for Eq. 2
    # --- optimiser (Sec. III-D) --------------------------------------------------------------------------------
    lr: float = 0.01  # ours: Adan's step in normalised units; betas/eps are Adan's recommended ones
    share_window: int = 5  # inferred: the neighbourhood size of local gradient sharing (Eq. 13)
    share_sigma_space: float = 1.0  # inferred: spatial scale of the sharing weights, pixels (Eq. 14)
    share_sigma_colour: float = 1.1  # inferred: colour scale of the sharing weights, normalised units (Eq. 14)
    step_max: float = 3.0  # inferred: bound of the adaptive per-pixel step multiplier (Eq. 15)
    gradient_sharing: bool = True
    adaptive_step: bool = True
    clip: float = 0.03  # paper: clipping of the update direction
    tol: Optional[float] = None  # paper: stop when the loss decreases by less than this; None = the method's
    max_iters: int = 1200  # paper
    min_iters: int = 10  # ours: Adan's first steps are bias-corrected guesses; do not stop on them
    patience: int = 20  # ours: the stopping rule compares the best objective now and `patience` iterations ago
    second_solve: bool = True  # paper Sec. III-E3: re-estimate X with lambda1 = 0 inside the final mask
    init_only: bool = False  # ablation "init only": the mask is |Y - X0| > mask_threshold, no optimisation

    def stop_tolerance(self, method: str) -> float:
        """`tol`, else the method's declared tolerance (`MethodSpec.refine_tolerance`, the paper's per method)."""
        if self.tol is not None:
            return float(self.tol)
        from train.methods import get_method

        declared = get_method(method).refine_tolerance
        if declared is None:
            raise ConfigError(f"F2PAD has no stopping tolerance for method {method!r}: give --option tol=VALUE")
        return float(declared)

    @classmethod
    def with_options(cls, options: Dict[str, Any]) -> "RefineSettings":
        known = {f.name: f for f in dataclasses.fields(cls)}
        bad = sorted(set(options) - set(known))
        if bad:
            raise ConfigError(f"unknown refine option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        settings = cls(**options)
        if settings.init not in INITS:
            raise ConfigError(f"option init={settings.init!r}: use one of {', '.join(INITS)}")
        if settings.share_window < 1 or settings.share_window % 2 == 0:
            raise ConfigError(f"option share_window={settings.share_window}: use an odd size >= 1")
        return settings
