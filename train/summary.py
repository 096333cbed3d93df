"""Model size and compute: parameters and multiply-accumulates of a method's anomaly model."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: torch.nn.Module, image_size: Tuple[int, int]) -> float:
    """GMACs of one forward pass on one image, counted by torch's flop counter (conv, matmul, ...) / 2."""
    model = model.eval()
    x = torch.rand(1, 3, *image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def summarize(method_name: str, c: Optional[int], image_size: Tuple[int, int],
              options: Dict[str, Any]) -> Dict[str, Any]:
    from train.methods import get_method

    method = get_method(method_name)
    opts = method.options(options)
    model = method.build_model(c, image_size, opts)
    params = count_params(model)
    from train.errors import RunError

    try:
        gmacs: Optional[float] = round(count_gmacs(model, image_size), 3)
        gmacs_note = None
    except RunError as e:  # a fitted method's compute depends on what the fit stores (memory-bank rows)
        gmacs, gmacs_note = None, str(e)
    out = {
        "method": method_name,
        "c": c,
        "label": method.label(c),
        "image_size": list(image_size),
        "params": params,
        "params_mib": round(params / 2**20, 3),  # the unit of FAIR's Table 5 ("4.1 / 16.5 / 65.8")
        "gmacs": gmacs,
        "options": opts,
    }
    if gmacs_note:
        out["gmacs_note"] = gmacs_note
    return out
