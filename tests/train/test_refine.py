"""F2PAD end to end on a tiny fitted PatchCore/PaDiM: the refiner lowers its objective and shrinks a planted,
too-large initial mask onto the planted defect; seeded runs repeat exactly; the CLI writes its outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers.features import SIZE, fitted, needs_lite0, tiny_images

pytestmark = needs_lite0


def _uint8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    from train.refine.pixel_prior import fit_pixel_prior, sample_pixels

    method, opts, model, _ = fitted("patchcore")
    good = [_uint8(t) for t in tiny_images(12)]
    prior = fit_pixel_prior(sample_pixels(good, 1000, 0), 3, 0)
    image = good[0].copy()
    image[24:36, 24:36] = (255, 0, 255)  # the planted defect
    truth = np.zeros(SIZE, bool)
    truth[24:36, 24:36] = True
    too_large = np.zeros(SIZE, np.float32)
    too_large[16:44, 16:44] = 1.0  # an initial map whose mask M0 is 5x the defect
    return dict(method=method, opts=opts, model=model, prior=prior, good=good, image=image, truth=truth,
                map=too_large)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _refine(tiny, **options):
    from train.refine.refiner import Refiner
    from train.refine.settings import RefineSettings

    settings = RefineSettings.with_options(dict(dict(dilate=2, context=16, c=0.3, lr=0.05), **options))
    return Refiner(tiny["model"], "patchcore", SIZE, tiny["prior"], settings).refine(tiny["image"], tiny["map"], 0.5)


def test_refiner_lowers_the_loss_and_shrinks_a_planted_mask(tiny):
    result = _refine(tiny, max_iters=60, second_solve=False)
    f = result.facts
    assert f["final_loss"] < f["initial_loss"]
    m0 = tiny["map"] > 0.5
    assert result.mask.sum() < m0.sum()
    assert _iou(result.mask, tiny["truth"]) > _iou(m0, tiny["truth"])
    assert result.mask[tiny["truth"]].mean() > 0.9  # the defect itself stays in the mask
    assert result.x.shape == tiny["image"].shape and result.a.shape == tiny["image"].shape


def test_init_only_and_empty_mask(tiny):
    only = _refine(tiny, init_only=True)
    assert only.facts["iterations"] == 0 and only.mask.any()
    from train.refine.refiner import Refiner
    from train.refine.settings import RefineSettings

    nothing = Refiner(tiny["model"], "patchcore", SIZE, tiny["prior"], RefineSettings()).refine(
        tiny["image"], tiny["map"], 2.0)
    assert not nothing.mask.any() and nothing.facts["iterations"] == 0


def test_seeded_refinement_repeats_exactly(tiny):
    from train.refine.pixel_prior import fit_pixel_prior, sample_pixels

    a = _refine(tiny, max_iters=8)
    b = _refine(tiny, max_iters=8)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.x, b.x) and np.array_equal(a.a, b.a)
    assert a.facts["final_loss"] == b.facts["final_loss"]
    p1 = fit_pixel_prior(sample_pixels(tiny["good"], 600, 3), 3, 3)
    p2 = fit_pixel_prior(sample_pixels(tiny["good"], 600, 3), 3, 3)
    assert torch.equal(p1.means, p2.means) and torch.equal(p1.precisions, p2.precisions)


def test_padim_score_on_the_full_image_is_the_models_mahalanobis():
    from train.refine.feature_loss import feature_score

    _, _, model, _ = fitted("padim", channels=20)
    x = tiny_images(1, seed=4)
    region = torch.ones(1, 1, *SIZE)
    score = feature_score("padim", model, x, region, (0, 0), SIZE, 10)
    with torch.no_grad():
        expected = (model.memory(model.embed(model.backbone(x))) ** 2).sum()
        assert score(x).item() == pytest.approx(expected.item(), rel=1e-4)


def _write_run(tmp_path: Path, tiny) -> Path:
    from train import runs
    from train.config import RunConfig

    run = tmp_path / "run"
    run.mkdir()
    runs.save_config(run, RunConfig(method="patchcore", c=None, image_size=SIZE, options=tiny["opts"]))
    runs.save_weights(run, tiny["model"])
    return run


def test_cli_images_and_flagged(tmp_path, tiny):
    run = _write_run(tmp_path, tiny)
    good, images = tmp_path / "good", tmp_path / "images"
    good.mkdir()
    images.mkdir()
    for i, g in enumerate(tiny["good"][:4]):
        cv2.imwrite(str(good / f"{i}.png"), cv2.cvtColor(g, cv2.COLOR_RGB2BGR))
    flagged = images / "bad.png"
    cv2.imwrite(str(flagged), cv2.cvtColor(tiny["image"], cv2.COLOR_RGB2BGR))
    base = [sys.executable, "-m", "train.refine", "--run", str(run), "--threshold", "0.0", "--data", str(good),
            "--prior-components", "2", "--prior-pixels", "400", "--no-progress",
            "--option", "max_iters=3", "--option", "min_iters=0"]
    out = tmp_path / "out"
    done = subprocess.run(base + ["--folder", str(images), "--images", "1", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "refine.jsonl").read_text().splitlines()[0])
    assert record["iterations"] >= 1 and record["seconds"] > 0 and record["final_loss"] is not None
    for key in ("mask", "x", "a", "overlay"):
        assert (out / record["files"][key]).is_file()
    assert (out / "pixel_prior.safetensors").is_file()

    inspect = tmp_path / "inspect"
    inspect.mkdir()
    lines = [{"type": "result", "frame": 0, "name": str(flagged), "is_anomalous": True},
             {"type": "result", "frame": 1, "name": str(good / "0.png"), "is_anomalous": False},
             {"type": "summary", "frames": 2}]
    (inspect / "inspect.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out2 = tmp_path / "out2"
    done = subprocess.run(base + ["--flagged", str(inspect), "--out", str(out2)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [json.loads(l)["image"] for l in (out2 / "refine.jsonl").read_text().splitlines()] == [str(flagged)]

    done = subprocess.run(base + ["--folder", str(images), "--out", str(out), "--option", "init=learned"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--inpainter DIR" in done.stderr


def test_images_is_a_count_and_a_folder_there_says_where_folders_go(capsys):
    from train.refine.cli import build_parser

    base = ["--run", "RUN", "--flagged", "OUT", "--out", "DIR", "--threshold", "0.1"]
    assert build_parser().parse_args(base + ["--images", "3"]).images == 3
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(base + ["--images", "some/folder"])
    assert exit_info.value.code == 2 and "--folder DIR" in capsys.readouterr().err


def test_flagged_without_files_is_a_clear_error(tmp_path):
    from train.errors import DataError
    from train.refine.inputs import flagged_images

    (tmp_path / "inspect.jsonl").write_text(json.dumps({"type": "result", "frame": 3, "name": None,
                                                        "is_anomalous": True}) + "\n")
    with pytest.raises(DataError, match="no image file"):
        flagged_images(str(tmp_path))
    with pytest.raises(DataError, match="inspect.jsonl"):
        flagged_images(str(tmp_path / "nowhere"))


def test_padim_run_refines_too(tiny):
    from train.refine.refiner import Refiner
    from train.refine.settings import RefineSettings

    _, _, model, _ = fitted("padim", channels=20)
    settings = RefineSettings.with_options(dict(dilate=2, context=16, max_iters=5, min_iters=0))
    result = Refiner(model, "padim", SIZE, tiny["prior"], settings).refine(tiny["image"], tiny["map"], 0.5)
    assert result.facts["iterations"] >= 1 and np.isfinite(result.facts["final_loss"])
    assert result.mask.shape == SIZE
