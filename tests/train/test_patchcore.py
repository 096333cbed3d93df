"""PatchCore: chunked kNN and greedy coreset against numpy, the fit, the memory-bank resize, ONNX parity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.features import SIZE, fitted, needs_lite0, onnx_parity, relative_error, tiny_images
from train.ops.coreset import greedy_coreset
from train.ops.knn import nearest_index, nearest_squared_distance


def _brute_nearest(q: np.ndarray, bank: np.ndarray):
    d2 = ((q[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1)
    return d2.min(1), d2.argmin(1)


@pytest.mark.parametrize("chunk", [7, 50, 1000])
def test_chunked_knn_matches_brute_force(chunk):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 30, 16)).astype(np.float32)
    bank = rng.normal(size=(50, 16)).astype(np.float32)
    got = nearest_squared_distance(torch.from_numpy(q), torch.from_numpy(bank), chunk).numpy()
    for i in range(2):
        want, want_idx = _brute_nearest(q[i], bank)
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)
        assert (nearest_index(torch.from_numpy(q[i]), torch.from_numpy(bank)).numpy() == want_idx).all()


def test_knn_of_a_bank_row_is_zero():
    bank = torch.randn(20, 8)
    d = nearest_squared_distance(bank[None, 3:6], bank, chunk=4)
    assert torch.all(d >= 0) and torch.all(d < 1e-5)


def _greedy_reference(x: np.ndarray, count: int, start: int):
    chosen, min_d = [start], ((x - x[start]) ** 2).sum(1)
    for _ in range(count - 1):
        nxt = int(np.argmax(min_d))
        chosen.append(nxt)
        min_d = np.minimum(min_d, ((x - x[nxt]) ** 2).sum(1))
    return chosen


def test_coreset_matches_reference_greedy_without_projection():
    x = np.random.default_rng(1).normal(size=(300, 6)).astype(np.float32)
    got = greedy_coreset(torch.from_numpy(x), 25, seed=3, projection_dim=0).tolist()
    assert got == _greedy_reference(x.astype(np.float64), 25, got[0])


def test_coreset_is_seeded_and_covers_clusters():
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=20.0, size=(5, 200))
    points = np.concatenate([c + rng.normal(scale=0.1, size=(40, 200)) for c in centres]).astype(np.float32)
    x = torch.from_numpy(points)
    a = greedy_coreset(x, 5, seed=7, projection_dim=128)
    assert torch.equal(a, greedy_coreset(x, 5, seed=7, projection_dim=128))
    assert not torch.equal(greedy_coreset(x, 20, seed=8), greedy_coreset(x, 20, seed=7))
    assert sorted(int(i) // 40 for i in a) == [0, 1, 2, 3, 4]  # one point from every cluster


@needs_lite0
def test_fit_builds_a_coreset_bank_and_scores_anomalies_higher():
    method, opts, model, facts = fitted("patchcore", coreset_ratio=0.25)
    assert facts["patches_collected"] == 12 * 8 * 8 and facts["memory_bank"] == 12 * 8 * 8 // 4
    assert tuple(model.memory.bank.shape) == (facts["memory_bank"], 40 + 112)
    good = tiny_images(4, seed=0)  # images the bank was fitted on
    bad = good.clone()
    bad[:, :, 20:36, 20:36] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # a magenta square
    with torch.no_grad():
        m_good, s_good = model(good)
        m_bad, s_bad = model(bad)
    assert m_good.shape == (4, 1) + SIZE
    assert torch.all(s_bad > s_good)
    assert torch.allclose(s_good, m_good.amax(dim=(1, 2, 3)))


@needs_lite0
def test_fit_is_deterministic_and_bounded_by_max_patches():
    _, _, a, fa = fitted("patchcore", max_patches=240, coreset_ratio=0.5)
    _, _, b, _ = fitted("patchcore", max_patches=240, coreset_ratio=0.5)
    assert fa["patches_collected"] == 240 and fa["memory_bank"] == 120
    assert torch.equal(a.memory.bank, b.memory.bank)


@needs_lite0
def test_load_state_dict_resizes_the_bank(tmp_path):
    from safetensors.torch import load_file, save_file

    method, opts, model, facts = fitted("patchcore")
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    fresh = method.build_model(None, SIZE, opts)
    assert fresh.memory.bank.shape[0] == 0
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")), strict=True)
    assert torch.equal(fresh.memory.bank, model.memory.bank)
    x = tiny_images(2, seed=5)
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], model(x)[0])
    wrong = {k: v for k, v in model.state_dict().items()}
    wrong["memory.bank"] = torch.zeros(5, 3)  # other feature width: a real mismatch, still an error
    with pytest.raises(RuntimeError, match="memory.bank"):
        method.build_model(None, SIZE, opts).load_state_dict(wrong, strict=True)


@needs_lite0
def test_reweighted_score_matches_numpy_reference():
    method, opts, model, _ = fitted("patchcore", score="reweight", num_neighbours=4, sigma=0.0)
    x = tiny_images(3, seed=9)
    with torch.no_grad():
        feats = model.embed(model.backbone(x))
        _, score = model(x)
    bank = model.memory.bank.double().numpy()
    q_all = feats.flatten(2).transpose(1, 2).double().numpy()
    for i in range(3):
        d2, _ = _brute_nearest(q_all[i], bank)
        dist = np.sqrt(d2)
        m_test = q_all[i][int(dist.argmax())]
        star = int(((bank - m_test) ** 2).sum(1).argmin())
        support = np.argsort(((bank - bank[star]) ** 2).sum(1), kind="stable")[:4]
        d = np.sqrt(((bank[support] - m_test) ** 2).sum(1))
        weight = 1.0 - np.exp(d[0]) / np.exp(d).sum()
        np.testing.assert_allclose(float(score[i]), weight * dist.max(), rtol=1e-4)


@needs_lite0
@pytest.mark.parametrize("score", ["max", "reweight"])
def test_onnx_parity_and_trt_op_tables(tmp_path, score):
    from export.opcheck import check_onnx

    _, opts, model, _ = fitted("patchcore", score=score, knn_chunk=100)  # several chunks in the graph
    frames = (tiny_images(2, seed=4) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    ref, got, path = onnx_parity(model, "patchcore", opts, tmp_path, frames)
    assert relative_error(ref[0], got[0]) <= 1e-4
    assert relative_error(ref[1], got[1]) <= 1e-4
    report = check_onnx(str(path))
    assert report.ok, report.summary()
