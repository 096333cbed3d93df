"""FAIR's network size, the training loop's determinism and resume, and the train CLI's errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train.config import RunConfig, parse_image_size
from train.errors import ConfigError, RunError
from train.loop import batch_indices, train
from train.nets.unet import UNet
from train import runs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("c, table5_mib", [(32, 4.1), (64, 16.5), (128, 65.8)])
def test_unet_params_match_fair_table5(c, table5_mib):
    params = sum(p.numel() for p in UNet(1, c).parameters())
    # Table 5 prints the count in units of 2**20 to one decimal; within 2 % as the issue asks.
    assert abs(params / 2**20 - table5_mib) / table5_mib < 0.02


def test_summary_cli_prints_params_and_gmacs():
    out = subprocess.run(
        [sys.executable, "-m", "train", "--method", "fair", "--c", "32", "--summary"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["params"] == sum(p.numel() for p in UNet(1, 32).parameters())
    # The reference's UNet is ~10.0 GMAC at 256x256 for c=32; the graph adds the high-pass and scoring.
    assert 9.5 < row["gmacs"] < 11.5


def test_image_size_parsing():
    assert parse_image_size("256") == (256, 256)
    assert parse_image_size("224x544") == (224, 544)
    with pytest.raises(ConfigError):
        parse_image_size("250")
    with pytest.raises(ConfigError):
        parse_image_size("big")


def test_batch_indices_cover_each_epoch_once():
    seen = np.concatenate([batch_indices(10, 5, seed=3, step=s) for s in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    assert not np.array_equal(batch_indices(10, 5, 3, 0), batch_indices(10, 5, 4, 0))


def _images(n=6, size=(32, 48), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1, *size, 3))
    return np.clip(base + rng.integers(-20, 20, size=(n, *size, 3)), 0, 255).astype(np.uint8)


def _config(steps):
    return RunConfig(method="fair", c=4, image_size=(32, 48), seed=7, steps=steps, batch_size=2, lr=1e-3)


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / runs.WEIGHTS))


def test_seeded_runs_are_deterministic_and_resume_is_exact(tmp_path):
    images = _images()
    a = train(_config(6), tmp_path / "a", images, device="cpu", progress=False, checkpoint_every=3)
    b = train(_config(6), tmp_path / "b", images, device="cpu", progress=False, checkpoint_every=3)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # Interrupt at step 4 (between checkpoints), then resume to 6: same weights as the uninterrupted run.
    c = train(_config(6), tmp_path / "c", images, device="cpu", progress=False, checkpoint_every=3, stop_at=4)
    train(_config(6), c, images, device="cpu", progress=False, checkpoint_every=3, resume=True)
    wc = _weights(c)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    steps = [json.loads(ln)["step"] for ln in (c / runs.HISTORY).read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    cfg = json.loads((c / runs.CONFIG).read_text())
    assert cfg["method"] == "fair" and cfg["image_size"] == [32, 48] and "torch" in cfg["versions"]


def test_run_loads_as_inspection_graph(tmp_path):
    run = train(_config(2), tmp_path / "r", _images(), device="cpu", progress=False)
    graph, config = runs.load_graph(run)
    frames = torch.from_numpy(_images(3))
    amap, score = graph(frames)
    assert amap.shape == (3, 1, 32, 48) and score.shape == (3,)
    assert torch.allclose(score, amap.flatten(1).amax(1))


def test_refuses_to_overwrite_and_resume_mismatch(tmp_path):
    run = train(_config(2), tmp_path / "r", _images(), device="cpu", progress=False)
    with pytest.raises(RunError, match="--resume"):
        train(_config(2), run, _images(), device="cpu", progress=False)
    other = _config(4)
    other.c = 8
    with pytest.raises(RunError, match="c="):
        train(other, run, _images(), device="cpu", progress=False, resume=True)


def test_cli_bad_inputs_give_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, capture_output=True, text=True)

    r = run("--method", "fair", "--data", str(tmp_path / "nope"), "--category", "x", "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    r = run("--method", "fair", "--image-size", "250", "--summary")
    assert r.returncode != 0 and "multiples of 16" in r.stderr
    r = run("--method", "fair", "--filter", "nope", "--summary")
    assert r.returncode != 0 and "bhpf" in r.stderr
    r = run("--method", "unknown-method", "--summary")
    assert r.returncode != 0 and "fair" in r.stderr


def test_holdout_rule_is_shared_with_threshold_calibration():
    from calibration.data import holdout
    from imagesets.subsets import split_holdout
    from imagesets.samples import Sample

    samples = [Sample(path=f"/d/good/{i:03d}.png", label=0, defect_type="good", mask_path=None) for i in range(10)]
    kept, held = split_holdout(list(reversed(samples)), 0.2)
    assert [s.path for s in held] == ["/d/good/008.png", "/d/good/009.png"]
    assert [s.path for s in holdout(samples, 0.2)] == [s.path for s in held]
    assert not set(s.path for s in kept) & set(s.path for s in held)
    with pytest.raises(ConfigError):
        split_holdout(samples, 0.0)
