"""What the PatchCore and PaDiM runs share: the backbone, the no-grad pass over the good images, fit timing.
(Their shared declarations are in _feature_spec.py.)"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Mapping

import torch
from tqdm import tqdm

from train.distributed import gather_rows
from train.errors import ConfigError


def make_backbone(options: Mapping[str, Any], strides, image_size):
    from train.backbones import build_backbone

    strides = tuple(strides)
    if max(strides) > 16 and (image_size[0] % max(strides) or image_size[1] % max(strides)):
        raise ConfigError(f"features at stride {max(strides)} need an image size that is a multiple of "
                          f"{max(strides)}, got {image_size[0]}x{image_size[1]}")
    return build_backbone(options["backbone"], strides, image_size, options.get("backbone_weights"))


def feature_batches(model, batches: Iterable[torch.Tensor], device, progress: bool, desc: str
                    ) -> Iterator[torch.Tensor]:
    """Yield `model.embed(model.backbone(batch))` for every batch, without gradients, in eval mode.

    Batches that are `split_over_ranks` (train.fit.ImageBatches under torchrun) hold this rank's rows only:
    each step's embeddings are gathered over the ranks (one batch at a time, so memory stays bounded), so every
    rank yields the whole batch's embeddings in the 1-process order."""
    model.to(device).eval()
    gather = getattr(batches, "split_over_ranks", False)
    if gather:
        batches.features_gathered = True  # train.fit checks that a split pass was gathered
    total = len(batches) if hasattr(batches, "__len__") else None
    with torch.no_grad():
        for batch in tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress):
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = batch.to(device, torch.float32)
            tiles = getattr(model, "tiles", None)  # a tiled model is fitted on its tiles (train.ops.tiling)
            emb = model.embed(model.backbone(tiles.expand(batch) if tiles is not None else batch))
            yield gather_rows(emb) if gather else emb


class FitClock:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)

