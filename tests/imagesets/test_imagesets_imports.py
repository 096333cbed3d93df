"""imagesets is the torch-free home of the data-set readers: it, and the calibration modules that read data
through it, import without torch, so calibration runs on a machine that has only the runtime's libraries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).replace(".__init__", "")
                 for p in (ROOT / "imagesets").glob("*.py")) + ["calibration.data", "calibration.metrics"]


def test_imagesets_and_calibration_data_import_without_torch():
    assert "imagesets.mvtec" in MODULES and "imagesets.visa" in MODULES
    code = ("import importlib, json, sys\n"
            f"for m in {MODULES!r}: importlib.import_module(m)\n"
            "print(json.dumps({'torch': 'torch' in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": False}


def test_train_data_is_the_same_readers():
    import imagesets
    import train.data

    assert train.data.find_samples is imagesets.find_samples and train.data.DataError is imagesets.DataError
