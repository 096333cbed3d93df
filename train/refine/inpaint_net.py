"""F2PAD's learned initialiser: a masked-restoration network trained on good images only (an offline stand-in for
the paper's MAE, which needs pretrained weights that cannot be had here).

The net is FAIR's UNet with four input channels: the image with the hole pre-filled by OpenCV's Telea (a smooth
guess from the hole's border, so the defect cannot be read through it) and the hole's mask. It predicts a
correction of the Telea fill inside the hole only, so pixels outside M0 are exactly Y's and an untrained net
starts at Telea (a net that predicts the whole hole from grey learned less in the same CPU minutes: flat,
off-colour fills on ball_screw after 1000 steps).
Training holes are random blobs and strokes of about the size of a feature method's M0 (`random_holes`).
Weights go to DIR/inpainter.safetensors, the settings to DIR/inpainter.json.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import cv2
import numpy as np
import torch
from torch import nn

from runtime.errors import writing
from runtime.files import atomic_path, write_json
from train.errors import ConfigError
from train.nets.unet import UNet

WEIGHTS = "inpainter.safetensors"
SETTINGS = "inpainter.json"
PREFILL_RADIUS = 5  # OpenCV's neighbourhood radius of the Telea pre-fill


class InpaintNet(nn.Module):
    """(pre-filled image (N,3,H,W) in [0,1], hole (N,1,H,W) in {0,1}) -> restored image (N,3,H,W) in [0,1]: the
    pre-fill outside the hole, pre-fill + the net's correction inside. H, W: multiples of 16 (four poolings)."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.c = int(c)
        self.net = UNet(4, self.c)

    def forward(self, prefilled: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        correction = self.net(torch.cat([prefilled - 0.5, hole], dim=1))
        return (prefilled + hole * correction).clamp(0.0, 1.0)


def prefill(images: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) images and (N, H, W) holes -> the images with the holes filled by Telea."""
    out = images.copy()
    for i in range(len(images)):
        if holes[i].any():
            out[i] = cv2.inpaint(np.ascontiguousarray(images[i]), (holes[i] > 0).astype(np.uint8) * 255,
                                 float(PREFILL_RADIUS), cv2.INPAINT_TELEA)
    return out


def random_holes(n: int, size_hw: Tuple[int, int], radius: Tuple[float, float], rng: np.random.Generator
                 ) -> np.ndarray:
    """n float32 (H, W) masks in {0, 1}: one to three filled ellipses with semi-axes in `radius` pixels, and with
    probability 0.3 a stroke (a bent line 2-3 radii long, 3 to 9 pixels wide) - the shapes of an up-sampled
    feature map thresholded at a defect."""
    h, w = int(size_hw[0]), int(size_hw[1])
    lo, hi = float(radius[0]), float(radius[1])
    out = np.zeros((n, h, w), np.float32)
    for i in range(n):
        canvas = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            axes = (max(1, int(rng.uniform(lo, hi))), max(1, int(rng.uniform(lo, hi))))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0.0, 360.0, 1, thickness=-1)
        if rng.random() < 0.3:
            length = rng.uniform(2.0, 3.0) * hi
            theta = rng.uniform(0, np.pi)
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            mid = (x0 + 0.5 * length * np.cos(theta) + rng.normal(0, 0.1 * length),
                   y0 + 0.5 * length * np.sin(theta) + rng.normal(0, 0.1 * length))
            pts = np.array([[x0, y0], mid, [x0 + length * np.cos(theta), y0 + length * np.sin(theta)]])
            cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 1, thickness=int(rng.integers(3, 10)))
        out[i] = canvas
    return out


class Inpainter:
    """A trained InpaintNet and its settings; `fill(image, hole)` is F2PAD's X0."""

    def __init__(self, net: InpaintNet, settings: Dict[str, Any], device="cpu"):
        self.net = net.to(device).eval()
        self.settings = settings
        self.device = torch.device(device)

    def fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB and bool (H, W) hole -> uint8 (H, W, 3): the net's estimate inside the hole, the
        image itself elsewhere. H and W are padded (reflected) to multiples of 16 for the net."""
        if not hole.any():
            return image.copy()
        h, w = hole.shape
        ph, pw = -h % 16, -w % 16
        filled = prefill(image[None], hole[None])[0]
        x = torch.from_numpy(np.ascontiguousarray(filled.transpose(2, 0, 1))).float().div(255.0)[None]
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
            m = nn.functional.pad(m, (0, pw, 0, ph))
        with torch.no_grad():
            out = self.net(x.to(self.device), m.to(self.device))[0, :, :h, :w].cpu().numpy()
        restored = (out.transpose(1, 2, 0) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        filled = image.copy()
        filled[hole] = restored[hole]
        return filled

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        with writing(f"--out {folder}"):
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / WEIGHTS) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, tmp)
        write_json(folder / SETTINGS, self.settings, f"--out {folder}")

    @classmethod
    def load(cls, folder, device="cpu") -> "Inpainter":
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / WEIGHTS).is_file() or not (folder / SETTINGS).is_file():
            raise ConfigError(f"--inpainter {folder}: no {WEIGHTS} + {SETTINGS} there; train one with "
                              f"`python -m train.refine.inpainter --data DATA --category CAT --out {folder}`")
        settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
        net = InpaintNet(int(settings["c"]))
        net.load_state_dict(load_file(str(folder / WEIGHTS)))
        return cls(net, settings, device)
