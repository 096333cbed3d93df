"""NDP-Net's declaration (Luo, Yao, Yu, IEEE TIM 2023): an autoencoder with reference attention (RBAM) and
defect-segmentation heads (MSDSM), trained in two phases (see trainer.py)."""
from __future__ import annotations

from train.errors import ConfigError
from train.methods.options import Option
from train.methods.spec import MethodSpec

#: The smallest model side: layer 5 (stride 16) must hold one patch of the largest RBFRM side (4).
MIN_SIDE = 64


class NDPNet(MethodSpec):
    name = "ndpnet"
    option_specs = (
        Option("phase1_steps", 1000, "int", "steps of Phase 1; --steps is the total (paper: 400 + 200 epochs, "
               "i.e. 2/3 + 1/3)", minimum=0),
        Option("softmax_scale", 1.0, "float", "RBFRM softmax temperature factor: 1 = the paper; ~10 = "
               "contextual attention", minimum=0.0),
        Option("fusion_kernel", 5, "int", "m of the FFM convolutions (paper: 5)", minimum=1),
        Option("perceptual", "efficientnet_lite0", "str", "perceptual net of the losses: efficientnet_lite0 "
               "(offline, pinned) or vgg16 (with perceptual_weights=PATH)"),
        Option("perceptual_weights", None, "path", "weights file of the perceptual net (vgg16)", optional=True),
        Option("rec_weight", 100.0, "float", "weight of the reconstruction MSE (Eqs. 14/17)", minimum=0.0),
        Option("focal_gamma", 2.0, "float", "focal loss gamma (not stated in the paper)", minimum=0.0),
        Option("focal_alpha", 0.5, "float", "focal loss alpha (0.5 = no class weighting)", minimum=0.0,
               maximum=1.0),
        Option("anomaly_p", 0.5, "float", "fraction of training images given a synthetic defect (DRAEM-like)",
               minimum=0.0, maximum=1.0),
        Option("texture_dir", None, "path", "folder of anomaly-source images (the paper: ImageNet photos); "
               "default: other images of the batch", optional=True),
        Option("reference_pool", 256, "int", "at most this many good images are considered for the reference "
               "medoid", minimum=1),
        Option("mean_filter", 5, "int", "side of the map's mean filter", minimum=1, scoring=True),
        Option("median_filter", 5, "int", "side of the map's median filter", minimum=1, scoring=True),
    )
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
    run_class = "train.methods.ndpnet.trainer:NDPNetTrainer"

    def build_model(self, c, image_size, options):
        if min(int(v) for v in image_size) < MIN_SIDE:
            raise ConfigError(f"ndpnet needs images (or --crop) of at least {MIN_SIDE}x{MIN_SIDE}, got "
                              f"{image_size[0]}x{image_size[1]}: encoder layer 5 (stride 16) must hold one 4x4 "
                              f"reference patch")
        from train.methods.ndpnet.model import NDPNetModel

        return NDPNetModel(c, image_size, options)
