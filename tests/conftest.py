"""Shared test fixtures. The tests mirror the packages (tests/train, tests/export, tests/calibration,
tests/runtime, tests/benchmarks); helpers they share live in `tests.helpers` (tiny ONNX models and manifests,
tiny data sets, a real ffmpeg camera, the feature methods' fitted models). `tests` is a package and this file
sits at its top, so pytest puts the repository root on sys.path (its rootdir-based "prepend" import mode) and
`from tests.helpers... import` works under `pytest` and `python -m pytest` alike: no test edits sys.path."""
from __future__ import annotations

import pytest

from tests.helpers.datasets import write_tiny_mvtec


@pytest.fixture
def tiny_mvtec(tmp_path):
    """A tiny MVTec-layout data root (category 'tiles': 4 train good, 3 test good, 2 scratch, 2 blob)."""
    return write_tiny_mvtec(tmp_path / "data")
