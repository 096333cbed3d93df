"""What the refiner writes per image: the refined binary mask, X, A, an overlay, one JSON line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np

from train.errors import RunError
from train.refine.pixel_prior import IMAGENET_STD
from train.refine.refiner import RefineResult

RESULTS = "refine.jsonl"


def output_stem(path: Path) -> str:
    """MVTec names repeat across defect folders (000.png): prefix the parent folder."""
    return f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem


def _write(path: Path, rgb_or_gray: np.ndarray) -> str:
    image = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise RunError(f"cannot write {path}: check --out")
    return path.name


def a_image(a: np.ndarray) -> np.ndarray:
    """A (normalised units) -> uint8 RGB: 128 is zero, in [0, 1] RGB units scaled by 1/2."""
    unit = a * np.array(IMAGENET_STD, np.float32)
    return np.clip(127.5 + 127.5 * unit, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, result: RefineResult) -> np.ndarray:
    """Refined mask tinted red, its outline red, the backbone's M0 outlined yellow."""
    out = image.astype(np.float32)
    red = np.array([255, 0, 0], np.float32)
    out[result.mask] = 0.55 * out[result.mask] + 0.45 * red
    out = out.astype(np.uint8)
    for mask, colour in ((result.initial_mask, (255, 220, 0)), (result.mask, (255, 0, 0))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 1)
    return out


def write_result(out_dir: Path, source: Path, image: np.ndarray, result: RefineResult, log) -> Dict[str, Any]:
    stem = output_stem(source)
    files = {
        "mask": _write(out_dir / f"{stem}_mask.png", result.mask.astype(np.uint8) * 255),
        "x": _write(out_dir / f"{stem}_x.png", result.x),
        "a": _write(out_dir / f"{stem}_a.png", a_image(result.a)),
        "overlay": _write(out_dir / f"{stem}_overlay.png", overlay(image, result)),
    }
    record = dict(image=str(source), **result.facts, files=files)
    log.write(json.dumps(record) + "\n")
    log.flush()
    return record
