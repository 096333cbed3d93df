"""The inspection graph to export: from a trained run, or with random weights for timing.

Both return `(train.graph.InspectionGraph, train.config.RunConfig)`; the graph is the very module that
`benchmarks.accuracy` evaluates (no second copy of any formula), in eval mode on the CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple, Union

import torch

from export.errors import ExportError
from runtime.manifest import CHANNEL_ORDERS
from train.config import RunConfig
from train.graph import InspectionGraph

if TYPE_CHECKING:
    from train.methods import ExtraInput

SizeLike = Union[None, str, int, Sequence[int]]


def parse_frame_size(size: SizeLike) -> Optional[Tuple[int, int]]:
    """None -> None (the model's size); '480x640' / (480, 640) / 256 -> (H, W). Any positive size is fine: the
    graph resizes bilinearly to the model's size."""
    if size is None:
        return None
    try:
        if isinstance(size, str):
            parts = size.lower().replace(" ", "").split("x")
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
            if len(parts) > 2:
                raise ValueError
        elif isinstance(size, int):
            h = w = size
        else:
            h, w = (int(v) for v in size)
    except (ValueError, TypeError):
        raise ExportError(f"frame size {size!r} is not N or HxW (e.g. 480x640, height x width)") from None
    if h <= 0 or w <= 0:
        raise ExportError(f"frame size {h}x{w} must be positive (e.g. 480x640)")
    return h, w


def _check_order(channel_order: str) -> str:
    order = str(channel_order).upper()
    if order not in CHANNEL_ORDERS:
        raise ExportError(f"channel order {channel_order!r} is not RGB or BGR (OpenCV frames are BGR)")
    return order


def graph_from_run(run_dir, frame_size: SizeLike = None, channel_order: str = "RGB"
                   ) -> Tuple[InspectionGraph, RunConfig]:
    """The trained run's inspection graph (CPU, eval) and its config. `frame_size` (H, W) differing from the
    model's size puts a bilinear resize into the graph; `channel_order` 'BGR' takes OpenCV frames as they are."""
    from train.runs import load_graph

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"run folder {run_dir} does not exist; train one with `python -m train --method fair "
                          f"--c 32 --data DIR --category CAT --out {run_dir}`")
    graph, config = load_graph(run_dir, "cpu", parse_frame_size(frame_size), _check_order(channel_order))
    return graph.eval(), config


def graph_random(method: str, c: Optional[int] = None, image_size: SizeLike = 256,
                 options: Optional[Dict[str, Any]] = None, seed: int = 0, frame_size: SizeLike = None,
                 channel_order: str = "RGB") -> Tuple[InspectionGraph, RunConfig]:
    """A graph of the right architecture with seeded random weights: for timing and op checks only (its scores
    mean nothing). `c` None: the method's default width (None for a method without one). Returns a RunConfig
    (no data, no versions) describing it."""
    from train.config import parse_image_size
    from train.methods import get_method

    m = get_method(method)
    width = m.width(None if c is None else int(c))
    size = parse_image_size(image_size if not isinstance(image_size, (tuple, list)) else list(image_size),
                            m.size_multiple)
    opts = m.options(options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = m.build_model(width, size, opts)
    graph = InspectionGraph(model.eval(), size, parse_frame_size(frame_size), _check_order(channel_order)).eval()
    config = RunConfig(method=method, c=width, image_size=size, seed=int(seed), steps=0, options=opts)
    return graph, config


def method_extra_inputs(config: RunConfig) -> Dict[str, "ExtraInput"]:
    """The method's optional extra graph inputs (name -> train.methods.ExtraInput: shape without batch and
    meaning), e.g. noise2norm's `noise`."""
    from train.methods import get_method

    inputs = get_method(config.method).extra_inputs(tuple(config.image_size)) or {}
    return {str(k): v for k, v in inputs.items()}


__all__ = ["graph_from_run", "graph_random", "parse_frame_size", "method_extra_inputs"]
