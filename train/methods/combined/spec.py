"""The combined method's declaration: members (PatchCore / PaDiM heads with their own options) on one shared
backbone pass, each member's map standardised on good images (globally or per pixel), weighted, summed."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List

from train.errors import ConfigError
from train.methods._feature_spec import FLIP_OPTION, FeatureMethodSpec
from train.methods.options import Option

#: Methods whose heads can share a backbone pass.
MEMBER_METHODS = ("patchcore", "padim")
DEFAULT_MEMBERS = [{"method": "patchcore", "options": {}}, {"method": "padim", "options": {}}]


def parse_members(value: Any) -> List[Dict[str, Any]]:
    """[{"method": "patchcore", "options": {...}}, ...] (or its JSON text) -> the same with every member's options
    checked and completed by its own spec; all members must name the same backbone (one pass feeds them all)."""
    from train.methods import BUILTIN, load_object

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"option members={value!r}: not JSON like "
                              f"[{{\"method\": \"patchcore\", \"options\": {{}}}}, ...]") from None
    if not isinstance(value, list) or len(value) < 2:
        raise ConfigError("option members: a list of at least two {\"method\": ..., \"options\": {...}} heads")
    members = []
    for item in value:
        if not isinstance(item, dict) or item.get("method") not in MEMBER_METHODS:
            raise ConfigError(f"option members: each head is {{\"method\": one of {', '.join(MEMBER_METHODS)}, "
                              f"\"options\": {{...}}}}, got {item!r}")
        # the member's spec class itself, not the registry: this runs while the registry checks its defaults
        options = dict(load_object(BUILTIN[item["method"]])().options(item.get("options") or {}))
        if options.get("flip", "none") != "none":
            raise ConfigError("option members: flip is an option of the combined method, not of a head")
        members.append({"method": item["method"], "options": options})
    backbones = {(m["options"]["backbone"], m["options"]["backbone_weights"]) for m in members}
    if len(backbones) > 1:
        raise ConfigError(f"option members: the heads name different backbones {sorted(map(str, backbones))}; "
                          f"one backbone pass feeds them all")
    return members


def parse_weights(value: Any):
    """"1,0.5" or [1, 0.5] -> [1.0, 0.5] (null: equal weights)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"option weights={value!r}: a list of numbers like 1,0.5") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        weights = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"option weights={value!r}: a list of numbers like 1,0.5") from None
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"option weights={value!r}: non-negative numbers, not all zero")
    return weights


class Combined(FeatureMethodSpec):
    name = "combined"
    option_specs = (
        Option("members", DEFAULT_MEMBERS, "members", "the heads on one backbone pass, as JSON: [{\"method\": "
               "\"patchcore\", \"options\": {...}}, {\"method\": \"padim\", \"options\": {...}}]",
               parse=parse_members),
        Option("standardize", "pixel", "str", "each head's map as z-scores of good images' maps: per pixel "
               "(pixel) or one mean/std per head (global)", choices=("pixel", "global"), scoring=True),
        Option("score", "max", "str", "image score: the max of the combined map, or the weighted sum of the "
               "heads' image scores standardised on good images (sum)", choices=("max", "sum"), scoring=True),
        Option("weights", None, "weights", "weight of each head's z-map, e.g. 1,0.5 (default: equal)",
               optional=True, parse=parse_weights, scoring=True),
        # The flips change the maps the statistics are fitted on: here they are fixed when the run is made.
        dataclasses.replace(FLIP_OPTION, scoring=False),
    )
    parts = {"backbone": "network", "heads": "memory"}
    run_class = "train.methods.combined.fitter:CombinedFitter"

    def build_model(self, c, image_size, options):
        from train.methods.combined.model import CombinedModel

        return CombinedModel(image_size, options)
