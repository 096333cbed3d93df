"""A tiny trained run and its exported ONNX, for the tests that need real trained weights (a few steps of a
small FAIR on random or generated images): one helper instead of a fixture written again in every test file."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np


def tiny_images(n: int = 4, size: Tuple[int, int] = (32, 32), seed: int = 0) -> np.ndarray:
    """`n` random uint8 RGB images (N, H, W, 3) around a common base, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1,) + tuple(size) + (3,))
    return np.clip(base + rng.integers(-20, 20, size=(n,) + tuple(size) + (3,)), 0, 255).astype(np.uint8)


def train_tiny(out: "str | Path", images: Optional[np.ndarray] = None, method: str = "fair", c: Optional[int] = 4,
               steps: int = 2, batch_size: int = 2, seed: int = 0, **config: Any) -> Path:
    """Train `method` for `steps` steps on `images` (default: 4 random 32x32 images) into the run folder `out`,
    on the CPU; `config` adds RunConfig fields (lr, data, category, options, ...)."""
    from train.config import RunConfig
    from train.loop import train

    images = tiny_images() if images is None else images
    cfg = RunConfig(method=method, c=c, image_size=tuple(images.shape[1:3]), seed=seed, steps=steps,
                    batch_size=batch_size, **config)
    return Path(train(cfg, Path(out), images, device="cpu", progress=False, checkpoint_every=1000))


def train_tiny_cli(data: "str | Path", category: str, out: "str | Path", size: int = 32, steps: int = 2,
                   holdout: "float | None" = None) -> Path:
    """FAIR c=8 trained by the command line (`python -m train`, in process) on a data set in the MVTec layout, so
    the run records its data and category as a user's run does."""
    from train.cli import main as train_main

    argv = ["--method", "fair", "--c", "8", "--data", str(data), "--category", category, "--out", str(out),
            "--image-size", str(size), "--steps", str(steps), "--device", "cpu", "--no-progress"]
    if holdout is not None:
        argv += ["--holdout", str(holdout)]
    assert train_main(argv) == 0
    return Path(out)


def export_tiny(run: "str | Path", path: "str | Path", **options: Any) -> Path:
    """Export `run`'s inspection graph to the ONNX `path` (its manifest beside it, naming the run)."""
    from export.graph import graph_from_run
    from export.onnx import export_onnx

    graph, config = graph_from_run(run)
    return Path(export_onnx(graph, config, Path(path), source_run=str(run), **options))


def train_and_export(folder: "str | Path", name: str = "fair", images: Optional[np.ndarray] = None,
                     **train_options: Any) -> Tuple[Path, Path]:
    """(ONNX path, run folder): `train_tiny` into FOLDER/run, exported to FOLDER/NAME.onnx."""
    run = train_tiny(Path(folder) / "run", images, **train_options)
    return export_tiny(run, Path(folder) / f"{name}.onnx"), run


__all__: Sequence[str] = ["tiny_images", "train_tiny", "train_tiny_cli", "export_tiny", "train_and_export"]
