"""One rank of a torchrun training launched by tests/train/test_train_distributed.py (not a test module itself).

    torchrun --nproc_per_node N tests/train/ddp_train_worker.py IMAGES.npy OUT METHOD C STEPS BATCH [STOP_AT] [--resume]
             [--sgd]

--sgd trains with plain SGD (momentum 0.9) instead of the method's Adam: Adam's first steps move every weight
by about lr * sign(gradient), so a weight whose true gradient is ~0 (a conv bias before BatchNorm) moves by
+-lr on float noise alone, which hides what the equality test checks (the gradient itself).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from train.config import RunConfig
from train.loop import train
from train.methods import get_method

LR = 1e-2


def use_sgd(method: str, monkeypatch=None) -> None:
    """Make `method` train with SGD (momentum 0.9), in this process (or through pytest's monkeypatch)."""
    def sgd(self, model, lr):
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    from train.methods.spec import load_object

    target = load_object(get_method(method).run_class)  # the method's Trainer class
    if monkeypatch is not None:
        monkeypatch.setattr(target, "optimizer", sgd)
    else:
        target.optimizer = sgd


def main(argv) -> None:
    resume = "--resume" in argv
    args = [a for a in argv if a not in ("--resume", "--sgd")]
    images_path, out, method, c, steps, batch = args[:6]
    if "--sgd" in argv:
        use_sgd(method)
    stop_at = int(args[6]) if len(args) > 6 else None
    images = np.load(images_path, allow_pickle=False)
    config = RunConfig(method=method, c=int(c), image_size=images.shape[1:3], seed=7, steps=int(steps),
                       batch_size=int(batch), lr=LR)
    train(config, out, images, device="cpu", resume=resume, progress=False, checkpoint_every=2, log_every=1,
          stop_at=stop_at)


if __name__ == "__main__":
    main(sys.argv[1:])
