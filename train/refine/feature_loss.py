"""L(X) of F2PAD (Sec. III-B): the feature method's own anomaly score of X, summed over feature positions.

Built from the fitted model of a run (its frozen backbone, patch embedding and memory), on a crop of the image
whose origin and size are multiples of the backbone's deepest stride, so the crop's feature grid is a window of
the full image's grid (the backbone's "same" padding depends only on the stride when the size divides by it).
Each feature method declares its L(X) (`MethodSpec.refine_score`, e.g. train/methods/patchcore/f2pad.py) and
its stopping tolerance (`refine_tolerance`); a method without them cannot be refined.

Only positions whose cell overlaps the optimised region count (Sec. III-E2: "only the anomaly scores affected
by the region being optimised"); the others are constant in X up to the backbone's context.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F


def deepest_stride(model) -> int:
    return int(max(model.backbone.strides))


def finest_stride(model) -> int:
    return int(min(model.backbone.strides))


def counted_positions(region: torch.Tensor, stride: int) -> torch.Tensor:
    """(1, 1, h, w) optimised region -> (h/stride * w/stride,) bool: cells that overlap it, grown by one cell."""
    cells = F.max_pool2d(region.float(), stride, stride)
    cells = F.max_pool2d(cells, 3, 1, padding=1)
    return cells.flatten() > 0


def feature_score(method: str, model, x0: torch.Tensor, region: torch.Tensor, origin: Tuple[int, int],
                  image_size: Tuple[int, int], candidates: int) -> nn.Module:
    """The L(X) module for a crop: `x0` and the module's input are (1, 3, h, w) RGB in [0, 1]; `region` is the
    (1, 1, h, w) optimised region of the crop whose top-left pixel sits at `origin` of the full image.
    ConfigError when `method` declares no F2PAD score."""
    from train.methods import get_method

    return get_method(method).refine_objective(model, x0, region, origin, image_size, candidates)
