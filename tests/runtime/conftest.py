"""Fixtures of the frame-source tests (tests/runtime/test_runtime_sources.py, test_runtime_source_faults.py)."""
from __future__ import annotations

import pytest

from runtime import Inspector
from tests.helpers.tiny_models import make_model


@pytest.fixture(scope="module")
def bgr_model(tmp_path_factory):
    """A tiny BGR inspection graph with its manifest (batch up to 4), one per test module."""
    return make_model(str(tmp_path_factory.mktemp("m")), channel_order="BGR", batch_max=4)


@pytest.fixture(scope="module")
def bgr_inspector(bgr_model):
    """An ONNX Runtime Inspector on `bgr_model`, shared by a module's tests."""
    return Inspector(bgr_model, backend="onnxruntime")
