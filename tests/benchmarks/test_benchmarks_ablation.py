"""The ablation command trains one run per option value and reports metrics for each."""
from __future__ import annotations

import json

from benchmarks.ablation import main
from train.demo_data import generate


def test_noise2norm_lambda_ablation_runs(tmp_path):
    generate(tmp_path / "data", categories=["gravel"], size=64, n_train=4, n_test_good=2, n_test_defect=1,
             progress=False)
    out = tmp_path / "abl.json"
    rc = main(["--method", "noise2norm", "--option", "lam", "0", "0.3", "--data", str(tmp_path / "data"),
               "--category", "gravel", "--c", "4", "--image-size", "32", "--steps", "1", "--batch-size", "2",
               "--device", "cpu", "--out", str(tmp_path / "runs"), "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["value"] for r in rows] == [0, 0.3]
    for r in rows:
        assert 0.0 <= r["image_auroc"] <= 1.0 and 0.0 <= r["pixel_auroc"] <= 1.0
        cfg = json.loads((tmp_path / "runs" / f"lam={r['value']}" / "config.json").read_text())
        assert cfg["options"]["lam"] == r["value"] and cfg["steps"] == 1


def test_ablation_needs_values(capsys):
    assert main(["--method", "noise2norm", "--option", "lam", "--data", "x", "--out", "y"]) == 2
    assert "needs a name and at least one value" in capsys.readouterr().err
