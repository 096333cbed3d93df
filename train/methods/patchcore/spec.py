"""PatchCore's declaration (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022):
a frozen backbone's patch features, a greedy coreset of the good images' patches as the memory bank, the
distance to the nearest bank row as the map (see model.py, fitter.py)."""
from __future__ import annotations

from train.methods._feature_spec import (BACKBONE_OPTIONS, FLIP_OPTION, LEVEL_NORM_OPTION, TILES_OPTION,
                                         FeatureMethodSpec, layers_option)
from train.methods.options import Option

#: Memory-bank rows per MatMul in the graph (train.ops.knn.DEFAULT_CHUNK, the distance functions' default).
KNN_CHUNK = 2048


class PatchCore(FeatureMethodSpec):
    name = "patchcore"
    option_specs = BACKBONE_OPTIONS + (
        layers_option((8, 16), "feature strides (paper: ResNet layers 2+3 = strides 8, 16); add 4 or 32 if wanted"),
        LEVEL_NORM_OPTION,
        Option("neighbourhood", 3, "int", "local aggregation window (paper: p = 3)", minimum=1),
        Option("projection_dim", None, "int", "random projection of the patch features to this many channels "
               "(default: keep all channels)", optional=True, minimum=1),
        Option("coreset_ratio", 0.1, "float", "memory bank = this fraction of the collected patches (paper: "
               "1-25 %)", minimum=0.0, maximum=1.0),
        Option("coreset_projection", 128, "int", "random-projection dim of the greedy selection (paper: 128)",
               minimum=1),
        Option("max_patches", 100000, "int", "patches collected for the coreset, spread evenly over the images "
               "(bounds memory and time; 0 or null: all)", optional=True, minimum=0),
        Option("seed", 0, "int", "seed of the patch subsampling, coreset and projection"),
        Option("sigma", 4.0, "float", "Gaussian smoothing of the map in pixels (paper/anomalib: 4)", minimum=0.0,
               scoring=True),
        Option("score", "max", "str", "image score: the map's max, or the paper's Eq. 7 reweighting",
               choices=("max", "reweight"), scoring=True),
        Option("num_neighbours", 9, "int", "b of the reweighting", minimum=1, scoring=True),
        Option("knn_chunk", KNN_CHUNK, "int", "memory-bank rows per MatMul in the graph", minimum=1, scoring=True),
        FLIP_OPTION,
        TILES_OPTION,
    )
    run_class = "train.methods.patchcore.fitter:PatchCoreFitter"
    refine_score = "train.methods.patchcore.f2pad:PatchCoreScore"
    refine_tolerance = 0.05  # F2PAD paper: 0.05 for PatchCore (and CFLOW-AD)

    def build_model(self, c, image_size, options):
        from train.methods.patchcore.model import PatchCoreModel

        return PatchCoreModel(image_size, options)
