"""Run configuration: what a run folder's config.json holds, and parsing of sizes given on the command line."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from train.errors import ConfigError


def parse_option(text: str) -> Tuple[str, Any]:
    """'KEY=VALUE' -> (key, value), the value read as JSON when it is JSON (numbers, true, null), else a string."""
    if "=" not in text:
        raise ConfigError(f"--option {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def option_argument(text: str) -> Tuple[str, Any]:
    """`parse_option` as an argparse `type=`: a malformed option is a usage error of the command."""
    import argparse

    try:
        return parse_option(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_image_size(text: str | int | Tuple[int, int] | list, multiple: int = 16) -> Tuple[int, int]:
    """'256' -> (256, 256); '224x544' -> (224, 544) as (height, width). Both must be positive multiples of
    `multiple` (the method's `size_multiple`: 16 for a net that pools four times)."""
    if isinstance(text, (tuple, list)):
        h, w = int(text[0]), int(text[1])
    elif isinstance(text, int):
        h = w = text
    else:
        s = str(text).lower().replace(" ", "")
        try:
            if "x" in s:
                hs, ws = s.split("x")
                h, w = int(hs), int(ws)
            else:
                h = w = int(s)
        except ValueError:
            raise ConfigError(f"image size {text!r} is not N or HxW (e.g. 256 or 224x544)") from None
    m = max(1, int(multiple))
    if h <= 0 or w <= 0 or h % m or w % m:
        example = f"{m * max(1, 256 // m)} or {m * max(1, 224 // m)}x{m * max(1, 544 // m)}"
        raise ConfigError(f"image size {h}x{w} must be positive multiples of {m} (e.g. {example})")
    return h, w


@dataclass
class RunConfig:
    method: str
    image_size: Tuple[int, int]
    # Base width of the network; None for a method without a width (Method.has_width False).
    c: Optional[int] = None
    seed: int = 0
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    data: Optional[str] = None
    category: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    # Train on random crops of this size (h, w) cut from the images at `image_size`; the trained weights are
    # size-agnostic and inspection runs on the full `image_size`. None: train on whole images.
    crop: Optional[Tuple[int, int]] = None
    # Fraction of train/good held out of training (last in sorted order) for threshold calibration.
    holdout: Optional[float] = None
    # Camera variations added to the fit/training images (imagesets.camera_variations), e.g.
    # {"kinds": ["jpeg", "shift"], "copies": 1}; None: the images as read.
    fit_augment: Optional[Dict[str, Any]] = None
    versions: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["crop"] = list(self.crop) if self.crop else None
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["image_size"] = tuple(d["image_size"])
        if d.get("crop"):
            d["crop"] = tuple(d["crop"])
        return cls(**d)
