"""The inspection graph: uint8 camera frames in, anomaly map and image score out.

`InspectionGraph` wraps a method's anomaly model (float RGB in [0, 1]) with the frame adapter: cast,
scale, channel order, and a bilinear resize when the frame size differs from the model size, and, when a
run has fitted one (`python -m train.map_stats`), the per-pixel standardisation of the map. Evaluation
(`benchmarks.accuracy`), the ONNX export and the runtime's PyTorch backend all run this one module.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from runtime.manifest import CHANNEL_ORDERS

#: uint8 (N, H, W, 3) camera frames (the default), or float (N, 3, H, W) pixel values in [0, 255] (DeepStream)
FRAME_FORMATS = ("uint8_nhwc", "float_nchw")


class InspectionGraph(nn.Module):
    """frame (N, H, W, 3) uint8 -> anomaly_map (N, 1, h, w) float32, score (N,) float32.

    `model_size` is (h, w) of the anomaly model; `frame_size` the (H, W) the graph accepts (default: the
    model size, no resize). `channel_order` says what the frames are ("RGB" or "BGR", OpenCV's order).
    Extra inputs (e.g. a fresh noise field) are passed through to the model. `standardizer` (a
    `train.ops.standardize.MapStandardizer` at the model size) turns the map into per-pixel z-scores.
    `frame_format` "float_nchw" takes (N, 3, H, W) float pixel values in [0, 255] instead of uint8 NHWC: the
    planar float tensor DeepStream's nvinfer hands a network (`export.deepstream`); everything after is the same.
    """

    def __init__(
        self,
        model: nn.Module,
        model_size: Tuple[int, int],
        frame_size: Optional[Tuple[int, int]] = None,
        channel_order: str = "RGB",
        standardizer: Optional[nn.Module] = None,
        frame_format: str = "uint8_nhwc",
    ):
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        self.model = model
        self.model_size = tuple(int(v) for v in model_size)
        self.frame_size = tuple(int(v) for v in (frame_size or model_size))
        self.channel_order = channel_order
        self.resizes = self.frame_size != self.model_size
        if standardizer is not None and tuple(standardizer.size) != self.model_size:
            raise ValueError(f"map statistics of size {tuple(standardizer.size)} do not fit the model size "
                             f"{self.model_size}")
        self.standardizer = standardizer  # train.ops.standardize.MapStandardizer or None
        if frame_format not in FRAME_FORMATS:
            raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {frame_format!r}")
        self.frame_format = frame_format

    @property
    def input_channels_reversed(self) -> bool:
        return self.channel_order == "BGR"

    def forward(self, frame: torch.Tensor, *extra: torch.Tensor):
        # Cast before anything else touches the frame: TensorRT takes UINT8 only as a network input/output,
        # so the first op reading the input must be the Cast (a Transpose on UINT8 fails to build).
        x = frame.to(torch.float32)
        if self.frame_format == "uint8_nhwc":
            x = x.permute(0, 3, 1, 2)
        x = x * (1.0 / 255.0)
        if self.channel_order == "BGR":
            x = torch.cat([x[:, 2:3], x[:, 1:2], x[:, 0:1]], dim=1)
        if self.resizes:
            x = F.interpolate(x, size=self.model_size, mode="bilinear", align_corners=False)
        anomaly_map, score = self.model(x, *extra)
        if self.standardizer is not None:
            anomaly_map, score = self.standardizer(anomaly_map)
        return anomaly_map.to(torch.float32), score.to(torch.float32)
