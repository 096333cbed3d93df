"""PaDiM's declaration (Defard et al., "PaDiM: a Patch Distribution Modeling Framework...", ICPR 2021): a frozen
backbone's embeddings, a multivariate Gaussian per grid position fitted in one pass, the Mahalanobis distance as
the map (see model.py, fitter.py)."""
from __future__ import annotations

from train.methods._feature_spec import (BACKBONE_OPTIONS, FLIP_OPTION, LEVEL_NORM_OPTION, FeatureMethodSpec,
                                         layers_option)
from train.methods.options import Option


class Padim(FeatureMethodSpec):
    name = "padim"
    option_specs = BACKBONE_OPTIONS + (
        layers_option((4, 8, 16), "feature strides (paper: ResNet layers 1-3)"),
        Option("channels", 100, "int", "random channel subset (paper: 100 of 448 for ResNet18; here of 176 for "
               "Lite0)", minimum=1),
        LEVEL_NORM_OPTION,
        Option("regulariser", 0.01, "float", "added to the covariance diagonal (paper: 0.01 I)", minimum=0.0),
        Option("shrinkage", 0.0, "float", "covariance shrinkage towards the mean-variance identity, in [0, 1) "
               "(0.1 lifted ball_screw's image AUROC by 0.8-1.2 points, docs/results.md)", minimum=0.0,
               maximum=0.99),
        Option("seed", 0, "int", "seed of the channel subset"),
        Option("sigma", 4.0, "float", "Gaussian smoothing of the map in pixels", minimum=0.0, scoring=True),
        FLIP_OPTION,
    )
    run_class = "train.methods.padim.fitter:PadimFitter"
    refine_score = "train.methods.padim.f2pad:PadimScore"
    refine_tolerance = 0.1  # F2PAD paper: 0.1 for PaDiM

    def build_model(self, c, image_size, options):
        from train.methods.padim.model import PadimModel

        return PadimModel(image_size, options)
