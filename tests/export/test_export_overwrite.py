"""Re-exporting never loses a calibration silently and never overwrites a file that is not ours."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.errors import ExportError
from export.graph import graph_from_run
from export.onnx import export_onnx
from runtime.manifest import Threshold, load_manifest, write_manifest
from train.config import RunConfig
from train.loop import train

ROOT = Path(__file__).resolve().parents[2]


def _run(folder, seed):
    images = np.random.default_rng(0).integers(60, 200, (4, 32, 48, 3)).astype(np.uint8)
    config = RunConfig(method="fair", c=4, image_size=(32, 48), seed=seed, steps=2, batch_size=2, lr=1e-3)
    return train(config, folder, images, device="cpu", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return _run(tmp / "a", seed=1), _run(tmp / "b", seed=2)


def _export_cli(run, out):
    return subprocess.run([sys.executable, "-m", "export.onnx", "--run", str(run), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_reexport_keeps_a_calibration_of_the_same_graph_and_refuses_to_drop_one_of_another(runs, tmp_path):
    a, b = runs
    out = tmp_path / "line3.onnx"
    graph, config = graph_from_run(a)
    export_onnx(graph, config, out, source_run=str(a))
    m = load_manifest(out)
    m.threshold = Threshold(value=0.42, rule="user", images=50, data="line 3 good frames", date="2026-12-01")
    write_manifest(out, m)

    r = _export_cli(a, out)  # the same run again: the same graph
    assert r.returncode == 0, r.stderr
    assert "kept the calibrated threshold 0.42" in r.stdout
    assert load_manifest(out).threshold.value == 0.42

    before = (out.read_bytes(), out.with_suffix(".json").read_bytes())
    r = _export_cli(b, out)  # another run: the calibration would no longer hold
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "threshold 0.42 (user, 2026-12-01) calibrated for another graph" in r.stderr
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before


def test_export_never_overwrites_a_file_that_is_not_ours(runs, tmp_path):
    graph, config = graph_from_run(runs[0])
    data = tmp_path / "data"
    data.mkdir()
    (data / "000.json").write_text(json.dumps({"camera": 3, "labels": ["ok"]}))
    with pytest.raises(ExportError, match="000.json exists and is not a manifest of this toolkit"):
        export_onnx(graph, config, data / "000.onnx")
    assert json.loads((data / "000.json").read_text()) == {"camera": 3, "labels": ["ok"]}
    assert not (data / "000.onnx").exists()
    (data / "001.onnx").write_bytes(b"someone's model")
    with pytest.raises(ExportError, match="001.onnx exists without a manifest"):
        export_onnx(graph, config, data / "001.onnx")
    assert (data / "001.onnx").read_bytes() == b"someone's model"
