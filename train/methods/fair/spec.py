"""FAIR's declaration (frequency-aware image restoration, Liu et al.).

Training: corrupt a good image with synthetic anomalies, high-pass it, and train the UNet to restore the clean
colour image (MSE + 1 - SSIM). Inspection: high-pass the frame itself, restore it, score the restoration against
the frame with MSGMS + CIELAB colour distance and a mean filter; the image score is the max.
"""
from __future__ import annotations

from train.methods.options import Option
from train.methods.spec import MethodSpec


class Fair(MethodSpec):
    name = "fair"
    option_specs = (
        Option("filter", "bhpf", "str", "high-pass: bhpf, ghpf, ihpf (frequency) or sobel-xy3, sobel-x3, "
               "sobel-y3, sobel-xy5, sobel-x5, sobel-y5"),
        Option("d0", 30.0, "float", "cut-off of the frequency filters, in frequency samples (paper: 30 at 256x256)",
               minimum=0.0),
        Option("order", 2, "int", "Butterworth order", minimum=1),
        Option("lab_weight", 3e-4, "float", "weight of the CIELAB colour distance in the map", minimum=0.0,
               scoring=True),
        Option("mean_filter", 21, "int", "side of the map's mean filter in pixels (paper: 21 at 256x256 on "
               "MVTec; about the defect size suits tiny defects)", minimum=1, scoring=True),
        Option("texture_dir", None, "path", "folder of external textures for the Perlin branch (default: none, "
               "textures from the batch itself)", optional=True),
    )
    # Paper: Adam 1e-4, batch 8, lr x0.2 at 80 % and 90 % of training.
    train_defaults = {"lr": 1e-4, "batch_size": 8}
    # A UNet of width c that pools four times.
    has_width = True
    default_width = 32
    size_multiple = 16
    parts = {"highpass": "preprocess", "net": "network", "scorer": "scoring"}
    # FP16: the network only (export/fp16.py gives the measurement); INT8: the network only (calibration.qdq).
    fp16_parts = ("net",)
    int8_parts = ("net",)
    opset = 17
    training = "gradient"
    run_class = "train.methods.fair.trainer:FairTrainer"

    def build_model(self, c, image_size, options):
        from train.methods.fair.model import FairModel

        return FairModel(c, image_size, options)
