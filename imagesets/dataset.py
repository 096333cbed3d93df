"""Decoding a list of samples into one array at the model's size (the training loop samples batches from it).

Decoding runs on a few threads (OpenCV releases the GIL); the order of the result is the order of the samples.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from imagesets.images import read_image, read_mask, resize_image, resize_mask
from imagesets.samples import Sample


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _map(fn: Callable, items: Sequence, progress: bool, desc: str) -> List:
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        it: Iterable = pool.map(fn, items)
        if progress:
            it = tqdm(it, total=len(items), desc=desc, unit="img", leave=False)
        return list(it)


def load_images(samples: Sequence[Sample], size_hw: Tuple[int, int], progress: bool = True) -> np.ndarray:
    """Decode and resize every sample's image: ``uint8 (N, h, w, 3)`` RGB."""
    h, w = int(size_hw[0]), int(size_hw[1])
    out = np.empty((len(samples), h, w, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = resize_image(read_image(samples[i].path), (h, w))

    _map(one, range(len(samples)), progress, "loading images")
    return out


def load_masks(samples: Sequence[Sample], size_hw: Tuple[int, int], progress: bool = False) -> np.ndarray:
    """Ground-truth masks at ``size_hw``: ``bool (N, h, w)``, all False for samples without a mask."""
    h, w = int(size_hw[0]), int(size_hw[1])
    out = np.zeros((len(samples), h, w), dtype=bool)
    with_mask = [i for i, s in enumerate(samples) if s.mask_path]

    def one(i: int) -> None:
        out[i] = resize_mask(read_mask(samples[i].mask_path), (h, w))

    _map(one, with_mask, progress, "loading masks")
    return out


class ImageCache:
    """Keeps decoded arrays in memory, keyed by (paths, size), so that evaluating several runs on one data set
    decodes it once."""

    def __init__(self) -> None:
        self._images: Dict[tuple, np.ndarray] = {}
        self._masks: Dict[tuple, np.ndarray] = {}

    @staticmethod
    def _key(samples: Sequence[Sample], size_hw: Tuple[int, int]) -> tuple:
        return tuple(s.path for s in samples), (int(size_hw[0]), int(size_hw[1]))

    def images(self, samples: Sequence[Sample], size_hw: Tuple[int, int], progress: bool = True) -> np.ndarray:
        key = self._key(samples, size_hw)
        if key not in self._images:
            arr = load_images(samples, size_hw, progress=progress)
            arr.flags.writeable = False  # shared between callers: copy before changing it
            self._images[key] = arr
        return self._images[key]

    def masks(self, samples: Sequence[Sample], size_hw: Tuple[int, int]) -> np.ndarray:
        key = self._key(samples, size_hw)
        if key not in self._masks:
            arr = load_masks(samples, size_hw)
            arr.flags.writeable = False
            self._masks[key] = arr
        return self._masks[key]

    def clear(self) -> None:
        self._images.clear()
        self._masks.clear()
