"""Learning from operator corrections (a run's `update` hook, `python -m train.update`): PatchCore continues its greedy
coreset from the bank, PaDiM's streaming Gaussian equals a fit over old and new images together, a gradient
method fine-tunes a bounded number of steps, and the command writes a new, signed version whose manifest names
its parent, with a threshold recalibrated on held-out good images and the parent untouched."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from tests.helpers.features import SIZE, needs_lite0, tiny_images
from train.ops.coreset import extend_coreset
from train.ops.mahalanobis import GaussianAccumulator


def test_extend_coreset_adds_the_uncovered_points_first_and_never_a_covered_one():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 16, generator=g)
    far = torch.randn(5, 16, generator=g) + 20.0  # five points no bank row covers
    candidates = torch.cat([bank[:30], far])  # 30 already in the bank
    index = extend_coreset(bank, candidates, 5, seed=0, projection_dim=0)
    assert sorted(index.tolist()) == list(range(30, 35))
    more = extend_coreset(bank, candidates, 100, seed=0, projection_dim=0)
    assert len(more) == 5  # the covered candidates (distance 0) are never added
    assert len(extend_coreset(bank, candidates, 3, seed=0, projection_dim=8)) == 3


def test_streaming_gaussian_recovered_from_its_result_equals_a_fit_over_all_images():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(20, 6, 4, generator=g), torch.randn(7, 6, 4, generator=g) + 0.5
    first = GaussianAccumulator(6, 4)
    first.add(a)
    mean, inv_cov = first.finish(0.01)
    resumed = GaussianAccumulator.from_gaussian(mean, inv_cov, first.count, 0.01)
    resumed.add(b)
    together = GaussianAccumulator(6, 4)
    together.add(torch.cat([a, b]))
    for got, want in zip(resumed.finish(0.01), together.finish(0.01)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)
    assert resumed.count == 27


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _context(method, fit_facts, **extra):
    from train.config import RunConfig

    config = RunConfig(method=method, image_size=SIZE, batch_size=4)
    return dict({"config": config, "fit": fit_facts, "steps": 3, "lr": 1e-4, "seed": 0}, **extra)


def _fit(method_name, images, **options):
    from train.fit import ImageBatches
    from train.methods import get_method

    method = get_method(method_name)
    opts = method.options(options)
    model = method.build_model(None, SIZE, opts)
    run = method.start_run(opts, SIZE)
    facts = run.fit(model, ImageBatches(images, 4, torch.device("cpu")), torch.device("cpu"), False)
    return run, opts, model.eval(), dict(facts, images=len(images))


@needs_lite0
def test_padim_update_equals_a_fit_over_old_and_new_images():
    images = _uint8(tiny_images(18, seed=3))
    run, _, model, facts = _fit("padim", images[:12], channels=16)
    run.update(model, images[12:], torch.device("cpu"), False, _context("padim", facts))
    _, _, refit, _ = _fit("padim", images, channels=16)
    probe = torch.from_numpy(_uint8(tiny_images(2, seed=9))).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        got, want = model(probe)[0], refit(probe)[0]
    assert torch.allclose(got, want, rtol=2e-3, atol=2e-3)
    assert torch.allclose(model.memory.mean, refit.memory.mean, atol=1e-5)


@needs_lite0
def test_patchcore_update_grows_the_bank_by_the_coreset_rule_and_lowers_the_corrected_score():
    images = _uint8(tiny_images(12, seed=4))
    run, _, model, facts = _fit("patchcore", images, coreset_ratio=0.25)
    stripes = (np.indices(SIZE)[1] * 4 % 256).astype(np.uint8)  # a pattern the fit never saw: a false alarm
    odd = np.ascontiguousarray(np.repeat(stripes[None, :, :, None], 3, axis=3))
    as_tensor = torch.from_numpy(odd).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        before = float(model(as_tensor)[1][0])
    old_bank = model.memory.bank.clone()
    added = run.update(model, odd, torch.device("cpu"), False, _context("patchcore", facts))
    with torch.no_grad():
        after = float(model(as_tensor)[1][0])
    per_image = facts["patches_collected"] / facts["images"]
    assert added["memory_bank_rows_added"] == int(np.ceil(0.25 * per_image))
    assert torch.equal(model.memory.bank[:len(old_bank)], old_bank)  # the bank only grows
    assert after < 0.8 * before


def test_a_gradient_method_fine_tunes_a_bounded_number_of_steps_and_a_fit_method_without_update_refuses():
    from train.methods import get_method
    from train.methods.run import Fitter, UpdateNotSupported
    from train.methods.spec import MethodSpec

    method = get_method("fair")
    opts = method.options({})
    model = method.build_model(8, (16, 16), opts)
    before = [p.detach().clone() for p in model.parameters()]
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    run = method.start_run(opts, (16, 16))
    facts = run.update(model, images, torch.device("cpu"), False, _context("fair", None, steps=1))
    assert facts["fine_tune_steps"] == 1 and facts["images_added"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    class FitOnly(MethodSpec):
        name, training = "fit-only", "fit"

    with pytest.raises(UpdateNotSupported, match="cannot take new good images"):
        Fitter(FitOnly(), {}, (16, 16)).update(model, images, torch.device("cpu"), False, {})


def _dataset(root):
    """16 good training images, test/good images of a noisier batch (false alarms), a defect with a mask."""
    rng = np.random.default_rng(0)
    cat = root / "parts"
    for split, kind, n, noise in [("train", "good", 16, 12), ("test", "good", 6, 40), ("test", "dent", 2, 12)]:
        (cat / split / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im = cv2.GaussianBlur(np.clip(120 + rng.normal(0, noise, (64, 64, 3)), 0, 255).astype(np.uint8), (3, 3), 0)
            if kind == "dent":
                im[20:34, 20:34] = 250
                (cat / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                m = np.zeros((64, 64), np.uint8)
                m[20:34, 20:34] = 255
                cv2.imwrite(str(cat / "ground_truth" / kind / f"{i:03d}_mask.png"), m)
            cv2.imwrite(str(cat / split / kind / f"{i:03d}.png"), im)
    return root


@needs_lite0
def test_update_command_writes_a_signed_new_version_and_never_touches_the_parent(tmp_path):
    from calibration.threshold import calibrate_threshold
    from export.graph import graph_from_run
    from export.onnx import export_onnx
    from runtime import Inspector
    from runtime.feedback import record_result
    from runtime.manifest import load_manifest, sha256_file
    from runtime.swap import check_signature
    from train.cli import main as train_main
    from train.update import main as update_main

    data = _dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert train_main(["--method", "patchcore", "--data", str(data), "--category", "parts", "--out", str(run),
                       "--image-size", "64", "--holdout", "0.25", "--no-progress"]) == 0
    graph, config = graph_from_run(run, None, "BGR")
    v1 = tmp_path / "v1" / "model.onnx"
    export_onnx(graph, config, v1, source_run=str(run))
    calibrate_threshold(v1, data, "parts", target_fpr=0.25, progress=False)
    parent_files = {p: sha256_file(p) for p in (v1, v1.with_suffix(".json"), run / "model.safetensors")}

    feedback = tmp_path / "feedback"
    with Inspector(str(v1), backend="onnxruntime") as insp:
        goods = [cv2.imread(str(p)) for p in sorted((data / "parts" / "test" / "good").iterdir())]
        flagged = [r for r in insp.inspect_batch(goods) if r.is_anomalous]
        assert flagged, "the noisier batch should raise false alarms on the parent"
        for r in flagged:
            record_result(str(feedback), r, "good", "anna")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    out = tmp_path / "v2"
    report = tmp_path / "report.json"
    assert update_main(["--model", str(v1), "--feedback", str(feedback), "--out", str(out), "--sign-key", str(key),
                        "--json", str(report), "--no-progress"]) == 0
    new = out / "model.onnx"
    m = load_manifest(new)
    assert m.version.number == 2 and m.version.parent_sha256 == parent_files[v1]
    assert m.version.parent_artifact == "model.onnx" and m.version.change == "update from operator corrections"
    assert m.version.added["corrections_good"] == len(flagged) and m.version.added["memory_bank_rows_added"] >= 1
    prov = m.version.provenance
    assert [c["who"] for c in prov["corrections"]] == ["anna"] * len(flagged)
    assert all(c["judged_by"] == parent_files[v1] for c in prov["corrections"])
    assert m.threshold_provenance.model_sha256 == m.sha256  # recalibrated on the new version
    assert m.threshold_provenance.good_images["source"] == "holdout"  # the run's hold-out, not the corrections
    check_signature(str(new), b"k" * 32)
    assert json.loads(report.read_text())["version"] == 2
    assert {p: sha256_file(p) for p in parent_files} == parent_files  # the parent is never written to
    with Inspector(str(v1), backend="onnxruntime") as insp:
        insp.swap(str(new), key=b"k" * 32)
        assert insp.inspect(goods[0]).model_sha256 == m.sha256
    # never over the parent, never calibrated on a corrected frame
    assert update_main(["--model", str(v1), "--feedback", str(feedback), "--out", str(v1.parent)]) == 2
    holdout_image = sorted((data / "parts" / "train" / "good").iterdir())[-1]
    with Inspector(str(v1), backend="onnxruntime") as insp:
        record_result(str(feedback), insp.inspect(cv2.imread(str(holdout_image))), "good", "anna")
    assert update_main(["--model", str(v1), "--feedback", str(feedback), "--out", str(tmp_path / "v3")]) == 2
    assert not (tmp_path / "v3" / "model.onnx").exists()
