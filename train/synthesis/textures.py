"""An optional external texture folder for the Perlin branch (e.g. DTD images), loaded once at the model's size."""
from __future__ import annotations

import os
from typing import Tuple

import torch

from imagesets.dataset import load_images
from imagesets.folder import read_folder


def load_texture_folder(folder: "str | os.PathLike", size_hw: Tuple[int, int], progress: bool = True) -> torch.Tensor:
    """Every image under ``folder`` (recursively), resized to ``size_hw``: float32 (M, 3, h, w) in [0, 1].
    Raises :class:`train.errors.DataError` when the folder is missing or holds no image."""
    arr = load_images(read_folder(folder), size_hw, progress=progress)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
