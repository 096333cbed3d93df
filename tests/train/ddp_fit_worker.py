"""One rank of a torchrun fit (PatchCore/PaDiM) launched by tests/train/test_train_distributed.py (not a test module).

    torchrun --nproc_per_node N tests/train/ddp_fit_worker.py IMAGES.npy OUT METHOD BATCH OPTIONS_JSON
"""
from __future__ import annotations

import json
import sys

import numpy as np

from train.config import RunConfig
from train.loop import train


def fit_config(method: str, size, batch: int, options: dict) -> RunConfig:
    """The run both the 1-process and the torchrun fit use (width-less, fitted: c None, steps 0)."""
    return RunConfig(method=method, c=None, image_size=tuple(size), seed=7, steps=0, batch_size=batch,
                     options=dict(options))


def main(argv) -> None:
    images_path, out, method, batch, options = argv[:5]
    images = np.load(images_path, allow_pickle=False)
    train(fit_config(method, images.shape[1:3], int(batch), json.loads(options)), out, images, device="cpu",
          progress=False)


if __name__ == "__main__":
    main(sys.argv[1:])
