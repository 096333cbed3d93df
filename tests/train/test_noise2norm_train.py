"""Noise-to-norm through the shared training loop, run folder and summary CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from train import runs
from train.config import RunConfig
from train.loop import train
from train.nets.mnet import MNet
from train.summary import count_params

ROOT = Path(__file__).resolve().parents[2]


def test_train_steps_save_and_reload_scores_identically(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((6, 64, 64, 3)) * 255).astype(np.uint8)
    config = RunConfig(method="noise2norm", c=8, image_size=(64, 64), seed=0, steps=3, batch_size=2, lr=2e-4)
    out = train(config, tmp_path / "run", images, device="cpu", progress=False, log_every=1)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["lr"] < 2e-4  # cosine annealing stepped
    saved = json.loads((out / "config.json").read_text())
    assert saved["options"] == {"lam": 0.3, "noise_seed": 0, "alpha": 0.84}
    model, _ = runs.load_model(out)
    again, _ = runs.load_model(out)
    x = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert torch.equal(model(x)[1], again(x)[1])


def test_summary_cli_reports_params():
    out = subprocess.run(
        [sys.executable, "-m", "train", "--method", "noise2norm", "--c", "8", "--image-size", "64", "--summary"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["method"] == "noise2norm"
    assert row["params"] == count_params(MNet(8))
    assert row["gmacs"] > 0
