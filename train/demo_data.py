"""A small, deterministic demo data set in the MVTec layout, made from textures that ship with scikit-image.

    python -m train.demo_data --out DIR [--categories brick grass gravel] [--size 256] [--seed 0]
                              [--train 40] [--test-good 12] [--test-defect 4]

writes, per category::

    DIR/CATEGORY/train/good/NNN.png
    DIR/CATEGORY/test/good/NNN.png
    DIR/CATEGORY/test/{scratch,blob,stain,missing}/NNN.png
    DIR/CATEGORY/ground_truth/{scratch,blob,stain,missing}/NNN_mask.png      (0/255)

Images are tiles cut at random positions from ``skimage.data.brick()/grass()/gravel()`` (bundled with
scikit-image, no download) with a small brightness/contrast jitter, tinted with a fixed colour per category
(so colour matters: a stain changes colour more than structure). Each defective image carries one defect with a
strength drawn from a range that runs from subtle to clear. The same arguments give byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from runtime.cli_flags import add_no_progress
from runtime.errors import cli_exit, writing
from train.errors import ConfigError

CATEGORIES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "blob", "stain", "missing")
#: Fixed RGB tint per category (multiplies the grayscale texture).
TINTS: Dict[str, Tuple[float, float, float]] = {
    "brick": (1.00, 0.58, 0.44),
    "grass": (0.58, 0.95, 0.42),
    "gravel": (0.82, 0.86, 1.00),
}
_FOREIGN_COLOURS = np.array([(0.95, 0.85, 0.30), (0.30, 0.45, 0.95), (0.85, 0.30, 0.75), (0.35, 0.85, 0.85),
                             (0.98, 0.98, 0.95), (0.25, 0.22, 0.20)], dtype=np.float32)
_STAIN_COLOURS = np.array([(0.62, 0.45, 0.25), (0.45, 0.45, 0.52), (1.20, 1.10, 0.65), (0.70, 0.85, 1.15)],
                          dtype=np.float32)
_MARKER = ".demo_data.json"


def load_texture(name: str) -> np.ndarray:
    """The bundled scikit-image texture ``name`` as float32 (H, W) in [0, 1]."""
    import skimage.data

    if name not in CATEGORIES:
        raise ConfigError(f"unknown demo category {name!r}; choose from {', '.join(CATEGORIES)}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)
    return img.astype(np.float32) / 255.0


def _texture_for(gray: np.ndarray, size: int) -> np.ndarray:
    """Enlarge the texture when tiles would cover too much of it (big --size)."""
    side = min(gray.shape)
    if side >= 1.5 * size:
        return gray
    f = 1.5 * size / side
    return cv2.resize(gray, (round(gray.shape[1] * f), round(gray.shape[0] * f)), interpolation=cv2.INTER_CUBIC)


def make_tile(gray: np.ndarray, size: int, tint: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """A tinted ``(size, size, 3)`` float32 RGB tile in [0, 1] cut at a random position, with a small
    brightness/contrast jitter."""
    y = int(rng.integers(0, gray.shape[0] - size + 1))
    x = int(rng.integers(0, gray.shape[1] - size + 1))
    t = gray[y:y + size, x:x + size]
    contrast = rng.uniform(0.92, 1.08)
    brightness = rng.uniform(-0.04, 0.04)
    t = (t - t.mean()) * contrast + t.mean() + brightness
    return np.clip(t[:, :, None] * np.asarray(tint, np.float32)[None, None, :], 0.0, 1.0).astype(np.float32)


def _point(size: int, rng: np.random.Generator, margin: float = 0.15) -> Tuple[float, float]:
    return tuple(rng.uniform(margin * size, (1 - margin) * size, 2))  # (x, y)


def _blend(img: np.ndarray, fill: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[:, :, None].astype(np.float32)
    return np.clip(img * (1.0 - a) + fill * a, 0.0, 1.0).astype(np.float32)


def _ellipse(size: int, centre, axes, angle: float) -> np.ndarray:
    """Anti-aliased filled ellipse as float32 coverage in [0, 1] (sub-pixel precision via shift=4)."""
    canvas = np.zeros((size, size), np.uint8)
    c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
    ax = (max(16, int(round(axes[0] * 16))), max(16, int(round(axes[1] * 16))))
    cv2.ellipse(canvas, c, ax, float(angle), 0.0, 360.0, 255, thickness=-1, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _random_ellipse(size: int, rng, smallest: float, largest: float) -> Tuple[np.ndarray, np.ndarray]:
    """(coverage, axes) of an ellipse at a random place and angle, its semi-axes a random fraction of `size`
    in [smallest, largest)."""
    centre = _point(size, rng)
    axes = rng.uniform(smallest, largest, 2) * size
    return _ellipse(size, centre, axes, rng.uniform(0, 180)), axes


def _scratch(img, rng, ctx):
    size = img.shape[0]
    s = size / 256.0
    x0, y0 = _point(size, rng)
    length = rng.uniform(0.25, 0.6) * size
    theta = rng.uniform(0, np.pi)
    dx, dy = np.cos(theta) * length, np.sin(theta) * length
    bend = rng.uniform(-0.12, 0.12) * length
    pts = np.array([[x0, y0], [x0 + dx / 2 - np.sin(theta) * bend, y0 + dy / 2 + np.cos(theta) * bend],
                    [x0 + dx, y0 + dy]])
    canvas = np.zeros((size, size), np.uint8)
    thickness = max(1, int(round(rng.uniform(1.0, 3.5) * s)))
    cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, thickness=thickness,
                  lineType=cv2.LINE_AA, shift=4)
    cover = canvas.astype(np.float32) / 255.0
    bright = rng.random() < 0.5
    strength = rng.uniform(0.3, 0.85)
    target = np.ones_like(img) if bright else np.zeros_like(img)
    return _blend(img, target, cover * strength), canvas >= 96


def _blob(img, rng, ctx):
    size = img.shape[0]
    cover, _ = _random_ellipse(size, rng, 0.035, 0.11)
    colour = _FOREIGN_COLOURS[int(rng.integers(len(_FOREIGN_COLOURS)))]
    if rng.random() < 0.5:  # another category's texture in a foreign colour
        other = ctx["foreign"]
        fill = make_tile(other, size, colour, rng)
    else:  # a flat foreign colour with a little grain
        grain = rng.normal(0.0, 0.03, (size, size, 1)).astype(np.float32)
        fill = np.clip(colour[None, None, :] + grain, 0, 1)
    strength = rng.uniform(0.45, 1.0)
    return _blend(img, fill, cover * strength), cover >= 0.5


def _stain(img, rng, ctx):
    size = img.shape[0]
    cover, axes = _random_ellipse(size, rng, 0.06, 0.16)
    sigma = 0.35 * float(min(axes))
    soft = cv2.GaussianBlur(cover, (0, 0), sigmaX=sigma, sigmaY=sigma)
    soft /= max(float(soft.max()), 1e-6)
    colour = _STAIN_COLOURS[int(rng.integers(len(_STAIN_COLOURS)))]
    strength = rng.uniform(0.4, 0.85)
    return _blend(img, img * colour[None, None, :], soft * strength), soft >= 0.5


def _missing(img, rng, ctx):
    size = img.shape[0]
    cx, cy = _point(size, rng)
    radius = rng.uniform(0.05, 0.13) * size
    k = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = radius * rng.uniform(0.6, 1.0, k)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    cover = canvas.astype(np.float32) / 255.0
    if rng.random() < 0.5:  # blurred-out, shaded content (a chipped recess): texture gone, a little darker
        sigma = rng.uniform(4.0, 10.0) * size / 256.0
        fill = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma) * rng.uniform(0.5, 0.8)
    else:  # a flat hole, darker or lighter than the mean
        shade = rng.uniform(0.35, 0.7) if rng.random() < 0.7 else rng.uniform(1.25, 1.5)
        flat = img.reshape(-1, 3).mean(axis=0) * shade
        fill = np.broadcast_to(np.clip(flat, 0, 1), img.shape).astype(np.float32)
    return _blend(img, fill, cover), canvas >= 128


DEFECTS: Dict[str, Callable] = {"scratch": _scratch, "blob": _blob, "stain": _stain, "missing": _missing}


def make_defect(img: np.ndarray, kind: str, rng: np.random.Generator,
                foreign: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Put one defect of ``kind`` into a float RGB tile: returns (image, mask bool (H, W)). ``foreign`` is a
    grayscale texture for blobs of another texture (default: gravel)."""
    if kind not in DEFECTS:
        raise ConfigError(f"unknown defect type {kind!r}; choose from {', '.join(DEFECT_TYPES)}")
    ctx = {"foreign": foreign if foreign is not None else _texture_for(load_texture("gravel"), img.shape[0])}
    for _ in range(20):  # a defect drawn (almost) outside the tile is redrawn
        out, mask = DEFECTS[kind](img, rng, ctx)
        if mask.sum() >= 4:
            return out, mask
    return out, mask


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _write_png(path: Path, rgb_or_gray: np.ndarray) -> None:
    img = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _prepare(folder: Path) -> None:
    if folder.exists():
        if (folder / _MARKER).is_file():
            shutil.rmtree(folder)
        elif not folder.is_dir() or any(folder.iterdir()):
            raise ConfigError(f"{folder} exists and was not written by train.demo_data; choose another --out "
                              f"or remove it")
    folder.mkdir(parents=True, exist_ok=True)


def generate(out: "str | Path", categories: Sequence[str] = CATEGORIES, size: int = 256, seed: int = 0,
             n_train: int = 40, n_test_good: int = 12, n_test_defect: int = 4, progress: bool = True) -> Dict:
    """Write the demo data set; returns a summary dict. Raises :class:`ConfigError` on bad arguments."""
    categories = list(dict.fromkeys(categories))
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ConfigError(f"unknown demo category {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(CATEGORIES)}")
    if size < 32 or size > 2048:
        raise ConfigError(f"--size {size} is out of range; use 32 to 2048 (e.g. 256)")
    for name, v in (("--train", n_train), ("--test-good", n_test_good), ("--test-defect", n_test_defect)):
        if v < 0:
            raise ConfigError(f"{name} {v} is negative; give a count >= 0")
    if n_train < 1:
        raise ConfigError(f"--train {n_train}: a category needs at least one training image")
    out = Path(out)
    textures = {c: _texture_for(load_texture(c), size) for c in CATEGORIES}
    total = len(categories) * (n_train + n_test_good + n_test_defect * len(DEFECT_TYPES))
    with tqdm(total=total, desc="demo data", unit="img", disable=not progress) as bar, \
            writing(f"the demo data to {out}"):
        for cat in categories:
            _write_category(out / cat, cat, textures, size, seed, n_train, n_test_good, n_test_defect, bar)
    return {"out": str(out), "categories": categories, "size": size, "seed": seed, "train": n_train,
            "test_good": n_test_good, "test_defect": n_test_defect * len(DEFECT_TYPES)}


def _write_category(root: Path, cat: str, textures: Dict[str, np.ndarray], size: int, seed: int, n_train: int,
                    n_test_good: int, n_test_defect: int, bar: tqdm) -> None:
    """One category's train/test/ground_truth folders (replacing an earlier demo copy of it)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(cat.encode())])
    gray, tint = textures[cat], TINTS[cat]
    foreign = textures[CATEGORIES[(CATEGORIES.index(cat) + 1) % len(CATEGORIES)]]
    _prepare(root)
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)
    for i in range(n_train):
        _write_png(root / "train" / "good" / f"{i:03d}.png", _to_uint8(make_tile(gray, size, tint, rng)))
        bar.update()
    for i in range(n_test_good):
        _write_png(root / "test" / "good" / f"{i:03d}.png", _to_uint8(make_tile(gray, size, tint, rng)))
        bar.update()
    for kind in DEFECT_TYPES if n_test_defect else ():
        (root / "test" / kind).mkdir(parents=True)
        (root / "ground_truth" / kind).mkdir(parents=True)
        for i in range(n_test_defect):
            img, mask = make_defect(make_tile(gray, size, tint, rng), kind, rng, foreign=foreign)
            _write_png(root / "test" / kind / f"{i:03d}.png", _to_uint8(img))
            _write_png(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
            bar.update()
    params = {"category": cat, "size": size, "seed": seed, "train": n_train, "test_good": n_test_good,
              "test_defect_per_type": n_test_defect, "defect_types": list(DEFECT_TYPES), "tint": list(tint)}
    (root / _MARKER).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.demo_data",
                                description="Write a small deterministic demo data set (MVTec layout) from "
                                            "scikit-image's bundled textures.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per category)")
    p.add_argument("--categories", nargs="+", default=list(CATEGORIES), metavar="CAT",
                   help=f"categories to write (default: {' '.join(CATEGORIES)})")
    p.add_argument("--size", type=int, default=256, help="tile side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    p.add_argument("--train", type=int, default=40, help="training images per category (default 40)")
    p.add_argument("--test-good", type=int, default=12, help="good test images per category (default 12)")
    p.add_argument("--test-defect", type=int, default=4,
                   help=f"test images per defect type ({', '.join(DEFECT_TYPES)}) per category (default 4)")
    add_no_progress(p, "no progress bar")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(a: argparse.Namespace) -> int:
    s = generate(a.out, a.categories, a.size, a.seed, a.train, a.test_good, a.test_defect, progress=not a.no_progress)
    print(f"wrote {len(s['categories'])} categor{'y' if len(s['categories']) == 1 else 'ies'} "
          f"({', '.join(s['categories'])}) to {s['out']}: {s['train']} train, {s['test_good']} good + "
          f"{s['test_defect']} defective test images each, {s['size']}x{s['size']}, seed {s['seed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
