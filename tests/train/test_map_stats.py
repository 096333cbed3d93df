"""Per-pixel map standardisation: the op, the statistics, `python -m train.map_stats` on a tiny run, the guards
that tie the statistics to their weights and scoring options, and the export of a standardised graph."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers.datasets import write_tiny_mvtec
from tests.helpers.tiny_runs import train_tiny_cli

from train.errors import RunError
from train.ops.standardize import STD_FLOOR_OF_MEDIAN, MapStandardizer, MapStatistics


def test_statistics_match_torch_over_the_stack():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand((11, 1, 6, 9), generator=g) * torch.linspace(0.1, 2.0, 9)
    stats = MapStatistics()
    for start in range(0, 11, 4):  # batches of 4, 4, 3
        stats.update(maps[start:start + 4])
    mean, std = stats.result()
    assert stats.n == 11 and mean.shape == (6, 9)
    assert torch.allclose(mean, maps[:, 0].mean(0), atol=1e-6)
    assert torch.allclose(std, maps[:, 0].std(0, unbiased=True), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        MapStatistics().result()


def test_standardizer_gives_z_scores_and_their_max():
    mean = torch.full((4, 5), 2.0)
    std = torch.full((4, 5), 0.5)
    std[0, 0] = 0.0  # a pixel that never varied: floored, not divided by zero
    z, score = MapStandardizer(mean, std)(torch.full((2, 1, 4, 5), 3.0))
    assert torch.allclose(z[0, 0, 1:, :], torch.full((3, 5), 2.0))
    assert z[0, 0, 0, 0].item() == pytest.approx(1.0 / (STD_FLOOR_OF_MEDIAN * 0.5))
    assert torch.equal(score, z.amax(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        MapStandardizer(torch.zeros(1, 4, 5), torch.ones(1, 4, 5))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mapstats")
    data = write_tiny_mvtec(root / "data")
    return train_tiny_cli(data, "tiles", root / "run", holdout=0), data  # the statistics come from every image


def test_map_stats_cli_makes_good_images_z_scores(tiny_run, capsys):
    from imagesets import find_samples, load_images
    from train.map_stats import main
    from train.runs import MAP_STATS, load_graph

    run, data = tiny_run
    assert main(["--run", str(run), "--device", "cpu", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out and (run / MAP_STATS).is_file()
    graph, _ = load_graph(run)
    plain, _ = load_graph(run, map_stats=False)
    assert graph.standardizer is not None and plain.standardizer is None
    frames = torch.from_numpy(load_images(find_samples(data, "tiles", "train"), (32, 32), progress=False))
    with torch.inference_mode():
        z, scores = graph(frames)
        raw, _ = plain(frames)
    # On the very images the statistics came from: mean z 0 and std 1 at every pixel (float32 rounding aside).
    assert z.mean(dim=0).abs().max().item() < 1e-3
    assert (z.std(dim=0, unbiased=True) - 1).abs().max().item() < 1e-3
    assert torch.allclose(scores, z.amax(dim=(1, 2, 3)))
    assert not torch.allclose(z, raw)


def test_map_stats_are_tied_to_weights_and_scoring(tiny_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from train.map_stats import main
    from train.runs import MAP_STATS, WEIGHTS, load_graph

    run, _ = tiny_run
    assert main(["--run", str(run), "--device", "cpu", "--no-progress"]) == 0
    with pytest.raises(RunError, match="scoring options"):
        load_graph(run, scoring={"mean_filter": 7})
    load_graph(run, scoring={"mean_filter": 7}, map_stats=False)  # allowed without the statistics
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    w = load_file(str(copy / WEIGHTS))
    w = {k: v + 1e-3 if v.is_floating_point() else v for k, v in w.items()}
    save_file(w, str(copy / WEIGHTS))
    with pytest.raises(RunError, match="other weights"):
        load_graph(copy)
    assert main(["--run", str(copy), "--remove"]) == 0
    assert not (copy / MAP_STATS).exists() and load_graph(copy)[0].standardizer is None


def test_standardised_graph_exports_and_matches_onnxruntime(tiny_run, tmp_path):
    import onnxruntime as ort

    from export.graph import graph_from_run
    from export.onnx import main as export_main
    from train.map_stats import main

    run, data = tiny_run
    assert main(["--run", str(run), "--device", "cpu", "--no-progress"]) == 0
    out = tmp_path / "std.onnx"
    assert export_main(["--run", str(run), "--out", str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert "map_standardization" in manifest
    assert "/standardizer" in manifest["graph_parts"]["scoring"]
    graph, _ = graph_from_run(run)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        ref_map, ref_score = (t.numpy() for t in graph(torch.from_numpy(x)))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got_map, got_score = sess.run(["anomaly_map", "score"], {"frame": x})
    # z-scores are large numbers (the map divided by a small std): compare relative to their size
    assert np.abs(got_map - ref_map).max() <= 1e-4 * max(1.0, np.abs(ref_map).max())
    assert np.abs(got_score - ref_score).max() <= 1e-4 * max(1.0, np.abs(ref_score).max())
    # The PyTorch runtime backend rebuilds the graph from the run: with the standardisation, as the manifest says.
    from runtime.backends import create_backend
    from runtime.manifest import load_manifest

    with create_backend("torch", str(out), load_manifest(str(out))) as b:
        t_map, t_score = b.infer(x)
    assert np.abs(t_score - got_score).max() <= 1e-4 * max(1.0, np.abs(ref_score).max())


def test_map_stats_images_takes_an_even_spread(tiny_run, capsys):
    from safetensors import safe_open

    from train.map_stats import main
    from train.runs import MAP_STATS

    run, _ = tiny_run
    assert main(["--run", str(run), "--device", "cpu", "--no-progress", "--images", "3"]) == 0
    assert "3 good images" in capsys.readouterr().out
    with safe_open(str(run / MAP_STATS), framework="pt") as f:
        assert f.metadata()["images"] == "3"
    assert main(["--run", str(run), "--device", "cpu", "--no-progress", "--images", "1"]) == 2


def test_map_stats_split_holdout_uses_only_the_held_out_images(tmp_path, capsys):
    from imagesets import find_samples, load_images
    from imagesets.subsets import split_holdout
    from safetensors import safe_open

    from train.map_stats import main
    from train.runs import MAP_STATS, load_graph

    data = write_tiny_mvtec(tmp_path / "data")
    run = train_tiny_cli(data, "tiles", tmp_path / "run", holdout=0.5)
    capsys.readouterr()
    assert main(["--run", str(run), "--device", "cpu", "--no-progress", "--split", "holdout"]) == 0
    fitted, held = split_holdout(find_samples(data, "tiles", "train"), 0.5)
    assert f"{len(held)} good images (holdout)" in capsys.readouterr().out
    with safe_open(str(run / MAP_STATS), framework="pt") as f:
        assert f.metadata()["split"] == "holdout" and f.metadata()["images"] == str(len(held))
    graph, _ = load_graph(run)
    with torch.inference_mode():
        z_held, _ = graph(torch.from_numpy(load_images(held, (32, 32), progress=False)))
        z_fit, _ = graph(torch.from_numpy(load_images(fitted, (32, 32), progress=False)))
    assert z_held.mean(dim=0).abs().max().item() < 1e-3  # the held-out images are the statistics' own
    assert z_fit.mean(dim=0).abs().max().item() > 1e-2  # the fitted ones are not
    no_holdout = train_tiny_cli(data, "tiles", tmp_path / "run0", holdout=0)
    capsys.readouterr()
    assert main(["--run", str(no_holdout), "--device", "cpu", "--no-progress", "--split", "holdout"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fitted without --holdout" in err[0]
