"""Flip test-time augmentation inside the inspection graph (PatchCore, PaDiM: `--option flip=h|v|hv`).

The frame and its flips go through the backbone and the distance head as one batch; each view's patch-distance
map is flipped back onto the frame's grid and the views are averaged, before the map is upsampled, smoothed and
scored. A defect scores in every view, a good structure that one view happens to match badly is averaged down.

    none: the frame alone (no extra nodes in the graph)
    h:    the frame and its left-right mirror (2 views)
    v:    the frame and its top-bottom mirror (2 views)
    hv:   the frame, both mirrors and the 180-degree turn (4 views)
    rot180: the frame and its 180-degree turn (2 views): the one view that keeps a part's handedness (a mirrored
          screw thread turns the other way and matches no good patch; turned by 180 degrees it is still a good thread)

The cost is the views: 2x or 4x the backbone and the distance head per frame. Averaging on the patch grid and
averaging the full-size maps give the same map (bilinear upsampling with align_corners=False and the symmetric
Gaussian blur commute with a flip), so the cheaper grid is used. Exports as Slice with step -1 (ONNX Flip).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

FLIP_MODES = ("none", "h", "v", "hv", "rot180")
#: Each view as the tensor dims it is flipped along ((): the frame itself), for (N, C, H, W) tensors.
_VIEWS = {
    "none": ((),),
    "h": ((), (3,)),
    "v": ((), (2,)),
    "hv": ((), (3,), (2,), (2, 3)),
    "rot180": ((), (2, 3)),
}


class FlipViews:
    """`expand` (N, C, H, W) -> (V*N, C, H, W), view-major; `merge` (V*N, C, h, w) -> (N, C, h, w): the mean of
    the views, each flipped back; `merge_scores` (V*N,) -> (N,): the mean of the views' scores."""

    def __init__(self, mode: str = "none"):
        if mode not in _VIEWS:
            raise ValueError(f"flip {mode!r}: use one of {', '.join(FLIP_MODES)}")
        self.mode = mode
        self.views: Tuple[Tuple[int, ...], ...] = _VIEWS[mode]

    @property
    def count(self) -> int:
        return len(self.views)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return x
        return torch.cat([torch.flip(x, dims) if dims else x for dims in self.views], dim=0)

    def merge(self, maps: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return maps
        # (V*N, C, h, w) -> (V, N, C, h, w): the batch axis stays dynamic in the exported graph.
        per_view = maps.reshape((self.count, -1) + tuple(maps.shape[1:]))
        total: Optional[torch.Tensor] = None
        for k, dims in enumerate(self.views):
            view = per_view[k]
            view = torch.flip(view, dims) if dims else view  # a flip is its own inverse
            total = view if total is None else total + view
        return total * (1.0 / self.count)

    def merge_scores(self, scores: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if scores is None or self.count == 1:
            return scores
        return scores.reshape(self.count, -1).mean(dim=0)
