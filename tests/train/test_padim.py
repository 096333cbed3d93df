"""PaDiM: streaming Gaussians and Mahalanobis against numpy, blur, channel subset, fit and ONNX parity."""
from __future__ import annotations

import numpy as np
import torch

from tests.helpers.features import SIZE, fitted, needs_lite0, onnx_parity, relative_error, tiny_images
from train.ops.blur import GaussianBlur, kernel_size_for
from train.ops.mahalanobis import GaussianAccumulator, mahalanobis_squared


def test_streaming_gaussians_match_numpy():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(23, 6, 5)) * rng.uniform(0.5, 2.0, size=(1, 6, 5))
    acc = GaussianAccumulator(6, 5)
    for start in range(0, 23, 5):  # uneven batches
        acc.add(torch.from_numpy(feats[start:start + 5]))
    mean, inv = acc.finish(0.01)
    for p in range(6):
        np.testing.assert_allclose(mean[p].numpy(), feats[:, p].mean(0), rtol=1e-10)
        cov = np.cov(feats[:, p], rowvar=False) + 0.01 * np.eye(5)
        np.testing.assert_allclose(inv[p].numpy(), np.linalg.inv(cov), rtol=1e-8, atol=1e-10)


def test_mahalanobis_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 7, 4)).astype(np.float32)
    mean = rng.normal(size=(7, 4)).astype(np.float32)
    a = rng.normal(size=(7, 4, 4))
    inv = np.einsum("pij,pkj->pik", a, a).astype(np.float32) + np.eye(4, dtype=np.float32)
    got = mahalanobis_squared(torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(inv)).numpy()
    diff = x - mean
    want = np.einsum("npi,pij,npj->np", diff, inv, diff)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_blur_keeps_constants_and_matches_separable_numpy_inside():
    blur = GaussianBlur(2.0, (40, 48))
    assert torch.allclose(blur(torch.full((1, 1, 40, 48), 3.0)), torch.full((1, 1, 40, 48), 3.0), atol=1e-5)
    x = torch.rand(1, 1, 40, 48)
    got = blur(x)[0, 0].numpy()
    taps = kernel_size_for(2.0)
    t = np.arange(taps) - taps // 2
    g = np.exp(-0.5 * (t / 2.0) ** 2)
    g /= g.sum()
    r = taps // 2
    xn = x[0, 0].double().numpy()
    rows = np.stack([np.convolve(row, g, mode="valid") for row in xn])
    want = np.stack([np.convolve(col, g, mode="valid") for col in rows.T]).T
    np.testing.assert_allclose(got[r:-r, r:-r], want, rtol=1e-5, atol=1e-6)


@needs_lite0
def test_channel_subset_is_seeded():
    from train.methods import get_method

    method = get_method("padim")
    a = method.build_model(None, SIZE, method.options({"seed": 1}))
    b = method.build_model(None, SIZE, method.options({"seed": 1}))
    c = method.build_model(None, SIZE, method.options({"seed": 2}))
    assert a.embed.index.shape == (100,) and torch.equal(a.embed.index, b.embed.index)
    assert not torch.equal(a.embed.index, c.embed.index)
    assert int(a.embed.index.max()) < 24 + 40 + 112


@needs_lite0
def test_fit_gives_per_position_gaussians_of_the_embeddings():
    method, opts, model, facts = fitted("padim", channels=20)
    assert facts == {**facts, "images_fitted": 12, "positions": 16 * 16, "feature_dim": 20}
    with torch.no_grad():
        emb = model.embed(model.backbone(tiny_images(12))).flatten(2).transpose(1, 2).double()
    torch.testing.assert_close(model.memory.mean.double(), emb.mean(0), rtol=1e-4, atol=1e-5)
    x = tiny_images(2, seed=3)
    bad = x.clone()
    bad[:, :, 24:40, 24:40] = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.all(model(bad)[1] > model(x)[1])


@needs_lite0
def test_onnx_parity_and_trt_op_tables(tmp_path):
    from export.opcheck import check_onnx

    _, opts, model, _ = fitted("padim")
    frames = (tiny_images(2, seed=4) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    ref, got, path = onnx_parity(model, "padim", opts, tmp_path, frames)
    assert relative_error(ref[0], got[0]) <= 1e-4
    assert relative_error(ref[1], got[1]) <= 1e-4
    report = check_onnx(str(path))
    assert report.ok, report.summary()
