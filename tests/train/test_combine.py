"""`python -m train.combine`: fitted PatchCore and PaDiM runs become one run of method `combined` (one backbone
pass, both heads, each map standardised on the runs' held-out good images, weighted sum, one score) that exports
and runs on ONNX Runtime like any run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers.features import needs_lite0

SIZE = 64


@pytest.fixture(scope="module")
def fitted_runs(tmp_path_factory):
    """A tiny demo set and a PatchCore and a PaDiM run fitted on it with --holdout 0.25 (6 fitted, 2 held out)."""
    from train.cli import main as train_main
    from train.demo_data import generate

    root = tmp_path_factory.mktemp("combine")
    generate(root / "data", ["brick"], size=SIZE, seed=0, n_train=8, n_test_good=2, n_test_defect=1,
             progress=False)
    runs = {}
    for name, option in (("patchcore", "max_patches=300"), ("padim", "channels=16")):
        runs[name] = root / name
        assert train_main(["--method", name, "--data", str(root / "data"), "--category", "brick", "--out",
                           str(runs[name]), "--image-size", str(SIZE), "--batch-size", "4", "--holdout", "0.25",
                           "--option", option, "--device", "cpu", "--no-progress"]) == 0
    return root, runs


def _combine(root, runs, out, *options):
    from train.combine import main

    argv = ["--runs", str(runs["patchcore"]), str(runs["padim"]), "--out", str(out), "--device", "cpu",
            "--no-progress"]
    for option in options:
        argv += ["--option", option]
    return main(argv)


def _frames(root, n=3):
    from imagesets import find_samples, load_images

    return load_images(find_samples(root / "data", "brick", "test")[:n], (SIZE, SIZE), progress=False)


def _held_out(root, runs):
    from imagesets import find_samples, load_images
    from imagesets.subsets import split_holdout

    _, held = split_holdout(find_samples(root / "data", "brick", "train"), 0.25)
    return load_images(held, (SIZE, SIZE), progress=False)


def _member_maps(runs, frames):
    """Each member run's own torch graph on the frames: (N, 2, H, W) maps, (N, 2) scores."""
    from train.runs import load_graph

    maps, scores = [], []
    for name in ("patchcore", "padim"):
        graph, _ = load_graph(runs[name], map_stats=False)
        with torch.no_grad():
            m, s = graph(torch.from_numpy(frames))
        maps.append(m)
        scores.append(s)
    return torch.cat(maps, 1), torch.stack(scores, 1)


@needs_lite0
def test_combined_map_is_the_weighted_sum_of_the_heads_standardised_on_held_out_images(fitted_runs, tmp_path):
    from train.runs import load_graph

    root, runs = fitted_runs
    assert _combine(root, runs, tmp_path / "c", "weights=2,1") == 0
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["method"] == "combined" and config["holdout"] == 0.25
    assert [m["method"] for m in config["options"]["members"]] == ["patchcore", "padim"]
    assert config["options"]["members"][0]["options"]["max_patches"] == 300  # the runs' own options
    record = json.loads((tmp_path / "c" / "history.jsonl").read_text())
    assert record["statistics_images"] == 2 and record["statistics_from"] == "holdout"

    graph, _ = load_graph(tmp_path / "c")
    model = graph.model
    # the statistics are those of the member runs' own maps on the 2 held-out good images
    held_maps, held_scores = _member_maps(runs, _held_out(root, runs))
    assert torch.allclose(model.pixel_mean[0], held_maps.mean(0), rtol=1e-4, atol=1e-4)
    std = held_maps.std(0)  # a pixel's std is floored at 1 % of its head's median (as train.map_stats does)
    floor = 0.01 * std.flatten(1).median(dim=1).values.view(2, 1, 1)
    assert torch.allclose(model.pixel_inv_std[0], 1.0 / torch.maximum(std, floor), rtol=1e-3)
    assert torch.allclose(model.score_mean[0], held_scores.mean(0), rtol=1e-4)

    frames = _frames(root)
    maps, _ = _member_maps(runs, frames)
    expected = ((maps - model.pixel_mean) * model.pixel_inv_std * torch.tensor([2 / 3, 1 / 3]).view(1, 2, 1, 1)
                ).sum(1, keepdim=True)
    with torch.no_grad():
        combined, score = graph(torch.from_numpy(frames))
    assert torch.allclose(combined, expected, rtol=1e-4, atol=1e-3 * float(expected.abs().max()))
    assert torch.allclose(score, combined.amax(dim=(1, 2, 3)))


@needs_lite0
def test_global_standardisation_and_score_sum_are_scoring_options(fitted_runs, tmp_path):
    from train.runs import load_graph

    root, runs = fitted_runs
    assert _combine(root, runs, tmp_path / "c") == 0
    frames = _frames(root)
    maps, scores = _member_maps(runs, frames)
    graph, _ = load_graph(tmp_path / "c", scoring={"standardize": "global", "score": "sum"})
    m = graph.model
    with torch.no_grad():
        combined, score = graph(torch.from_numpy(frames))
    z = (maps - m.global_mean) * m.global_inv_std
    assert torch.allclose(combined, z.mean(1, keepdim=True), rtol=1e-4, atol=1e-4)
    expected = ((scores - m.score_mean) * m.score_inv_std).mean(1)
    assert torch.allclose(score, expected, rtol=1e-4, atol=1e-4)


@needs_lite0
def test_combined_run_exports_and_onnx_runtime_matches_torch(fitted_runs, tmp_path):
    import onnxruntime as ort

    from export.onnx import main as export_main
    from train.runs import load_graph

    root, runs = fitted_runs
    assert _combine(root, runs, tmp_path / "c", "flip=h") == 0
    assert export_main(["--run", str(tmp_path / "c"), "--out", str(tmp_path / "m.onnx")]) == 0
    frames = _frames(root)
    graph, _ = load_graph(tmp_path / "c")
    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(frames))]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: frames})
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        assert float(np.abs(r - g).max()) <= 1e-4 * max(1.0, float(np.abs(r).max()))


@needs_lite0
def test_runs_that_cannot_combine_are_refused_with_one_line(fitted_runs, tmp_path, capsys):
    from train.cli import main as train_main
    from train.combine import main

    root, runs = fitted_runs
    assert main(["--runs", str(runs["padim"]), "--out", str(tmp_path / "one")]) == 2
    assert "two or more" in capsys.readouterr().err
    other = tmp_path / "no_holdout"
    assert train_main(["--method", "padim", "--data", str(root / "data"), "--category", "brick", "--out", str(other),
                       "--image-size", str(SIZE), "--option", "channels=16", "--device", "cpu",
                       "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["--runs", str(runs["patchcore"]), str(other), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagree on holdout" in err[0]
    assert _combine(root, runs, tmp_path / "w", "weights=1,2,3") == 2
    assert "3 values for 2 heads" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
