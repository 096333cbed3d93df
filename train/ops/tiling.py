"""Tiling a large frame into model-size tiles inside the inspection graph (PatchCore: `--option tiles=RxC`).

The frame is cut into R rows x C columns of equal tiles, which go through the backbone and the distance head as
one batch (tile-major, like the flip views of `train.ops.flip_tta`); the tiles' patch maps are put back in their
places before the map is upsampled, smoothed and scored. The backbone then only ever sees tile-size images (what
a fixed-size engine or a small accelerator wants), and the frame keeps its full resolution. The fit sees the
tiles too (`train.methods._features.feature_batches`), so the memory bank holds tile features, border effects
included. Each tile's features stop at the tile's edge: that is the one difference from the whole frame at once.

Exports as Reshape/Transpose with the batch axis dynamic.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from train.errors import ConfigError


def parse_tiles(value) -> Tuple[int, int]:
    """"RxC" (e.g. "2x3"), or an (R, C) pair -> (R, C); "1x1" is the whole frame."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        rows, cols = value
    else:
        parts = str(value).lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"tiles {value!r}: use ROWSxCOLS, e.g. 2x3 (1x1: no tiling)")
        rows, cols = (int(p) for p in parts)
    if int(rows) < 1 or int(cols) < 1:
        raise ConfigError(f"tiles {value!r}: rows and columns must be at least 1")
    return int(rows), int(cols)


class TileViews:
    """`expand` (N, C, H, W) -> (R*C*N, C, H/R, W/C), tile-major; `merge` (R*C*N, K, h, w) -> (N, K, R*h, C*w):
    the tiles' maps in their places; `merge_scores` (R*C*N,) -> (N,): the largest tile score."""

    def __init__(self, tiles, image_size: Tuple[int, int], multiple: int):
        self.rows, self.cols = parse_tiles(tiles)
        height, width = int(image_size[0]), int(image_size[1])
        if self.rows * self.cols > 1 and (height % (self.rows * multiple) or width % (self.cols * multiple)):
            raise ConfigError(
                f"tiles={self.rows}x{self.cols} on {height}x{width}: each tile must be a multiple of {multiple} px, "
                f"so the height must divide by {self.rows * multiple} and the width by {self.cols * multiple}")
        self.tile_size = (height // self.rows, width // self.cols)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return x
        h, w = self.tile_size
        channels = int(x.shape[1])
        # (N, C, R, h, Cols, w) -> (R, Cols, N, C, h, w): tile-major, the batch axis stays dynamic.
        tiles = x.reshape(-1, channels, self.rows, h, self.cols, w).permute(2, 4, 0, 1, 3, 5)
        return tiles.reshape(-1, channels, h, w)

    def merge(self, maps: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return maps
        k, h, w = (int(s) for s in maps.shape[1:])
        grid = maps.reshape(self.rows, self.cols, -1, k, h, w).permute(2, 3, 0, 4, 1, 5)
        return grid.reshape(-1, k, self.rows * h, self.cols * w)

    def merge_scores(self, scores: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if scores is None or self.count == 1:
            return scores
        return scores.reshape(self.count, -1).max(dim=0).values
