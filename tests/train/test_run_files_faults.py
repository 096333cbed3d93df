"""Run folders after faults: damaged run files are one error line, the checkpoint is one atomic unit (an
interruption between files cannot pair the tensors of one step with the state of another), a new run in a
folder an interrupted one left does not repeat its history, and run files follow the umask."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train import runs
from train.config import RunConfig
from train.errors import RunError
from train.loop import train

ROOT = Path(__file__).resolve().parents[2]


def _images(n=6):
    rng = np.random.default_rng(0)
    return np.clip(rng.integers(60, 200, (1, 32, 48, 3)) + rng.integers(-20, 20, (n, 32, 48, 3)), 0,
                   255).astype(np.uint8)


def _config(steps):
    return RunConfig(method="fair", c=4, image_size=(32, 48), seed=7, steps=steps, batch_size=2, lr=1e-3)


def _train(out, steps, **kw):
    kw.setdefault("checkpoint_every", 2)
    kw.setdefault("log_every", 2)
    return train(_config(steps), out, _images(), device="cpu", progress=False, **kw)


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(Path(run) / runs.WEIGHTS))


def _steps(run):
    return [json.loads(ln)["step"] for ln in (Path(run) / runs.HISTORY).read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints at 2, 4, 6)."""
    return _train(tmp_path_factory.mktemp("runs") / "full", 6)


# -- 9. the checkpoint is one atomic unit -------------------------------------------------------------------
def test_an_interruption_between_checkpoint_files_cannot_mix_two_steps(finished, tmp_path):
    run = _train(tmp_path / "r", 6, stop_at=2)
    at_step_2 = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith("checkpoint")}
    _train(run, 6, stop_at=4, resume=True)  # writes the checkpoint of step 4 ...
    for name, data in at_step_2.items():  # ... killed after its tensors, before the rest of it was written
        if name != runs.CKPT_TENSORS:
            (run / name).write_bytes(data)
    _train(run, 6, resume=True)
    full, resumed = _weights(finished), _weights(run)
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert _steps(run) == _steps(finished) == [2, 4, 6]


# -- 11. a new run in an interrupted run's folder does not repeat its history ---------------------------------
def test_a_new_run_after_a_kill_before_the_first_checkpoint_has_each_step_once(tmp_path):
    run = _train(tmp_path / "r", 2, checkpoint_every=1000)
    for name in (runs.WEIGHTS, runs.CKPT_TENSORS, runs.CKPT_META):  # as if killed after logging step 2
        if (run / name).exists():
            (run / name).unlink()
    assert _steps(run) == [2]
    _train(run, 4, checkpoint_every=1000)  # started again, without --resume
    assert _steps(run) == [2, 4]


def test_a_history_line_cut_short_by_a_kill_does_not_stop_a_resume(tmp_path):
    run = _train(tmp_path / "r", 4, stop_at=2)
    with open(run / runs.HISTORY, "a") as f:
        f.write('{"step": 3, "lo')  # the kill came mid-line
    _train(run, 4, resume=True)
    assert _steps(run) == [2, 4]


# -- 8. damaged run files are one error line ------------------------------------------------------------------
def _damage(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_run_files_are_one_run_error(finished, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    _damage(run / runs.CKPT_TENSORS)
    with pytest.raises(RunError, match="checkpoint.safetensors is damaged or truncated"):
        _train(run, 8, resume=True)
    _damage(run / runs.WEIGHTS)
    with pytest.raises(RunError, match="model.safetensors is damaged or truncated"):
        runs.load_model(run)
    (run / runs.CONFIG).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunError, match="config.json is nested too deeply"):
        runs.load_config(run)


def test_a_truncated_state_file_of_an_earlier_version_is_one_run_error(finished, tmp_path):
    """Runs of earlier versions: tensors in checkpoint.safetensors, state in checkpoint.json."""
    import shutil

    from safetensors.torch import save_file

    run = tmp_path / "legacy"
    shutil.copytree(finished, run)
    tensors, meta = runs.read_tensors(run / runs.CKPT_TENSORS, "")
    save_file(tensors, str(run / runs.CKPT_TENSORS))  # no state inside: the earlier layout
    state = meta.get(runs.CKPT_KEY, "")
    (run / runs.CKPT_META).write_text(state[: len(state) // 2])
    with pytest.raises(RunError, match="checkpoint.json is damaged or truncated"):
        _train(run, 8, resume=True)
    mismatched = json.loads(state)
    mismatched["step"] = 4  # the tensors are of step 6
    (run / runs.CKPT_META).write_text(json.dumps(mismatched))
    with pytest.raises(RunError, match="interrupted between the two"):
        _train(run, 8, resume=True)


def test_the_export_cli_on_a_damaged_model_is_one_error_line(finished, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    _damage(run / runs.WEIGHTS)
    r = subprocess.run([sys.executable, "-m", "export.onnx", "--run", str(run), "--out", str(tmp_path / "m.onnx")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- 10. run files follow the umask ---------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no POSIX modes on this platform")
def test_run_config_and_weights_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        runs.save_config(tmp_path, _config(2))
        runs.atomic_save_tensors(tmp_path / "model.safetensors", {"w": torch.zeros(2)})  # safetensors writes 0600
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / runs.CONFIG).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "model.safetensors").st_mode) == 0o644
