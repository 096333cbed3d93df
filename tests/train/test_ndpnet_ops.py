"""NDP-Net's pieces against independent computations: RBFRM vs a naive loop, the fusion's softmax over branches,
the median filter vs numpy, each loss vs numpy on a small example, the medoid rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.nets.ndpnet_rbam import RBAM, FeatureFusion, rbfrm
from train.ops.median import median_filter
from train.ops.medoid import medoid_index
from train.ops.ndp_losses import defect_perception_loss, feature_repair_loss, focal_loss, perceptual_l1


def naive_rbfrm(x: np.ndarray, ref: np.ndarray, k: int, scale: float) -> np.ndarray:
    """Loop over every input patch and every reference patch (float64), as Eqs. 3-5 read."""
    n, c, h, w = x.shape
    hp, wp = -(-h // k) * k, -(-w // k) * k
    xp = np.zeros((n, c, hp, wp))
    xp[:, :, :h, :w] = x
    refs = [ref[:, y:y + k, x0:x0 + k].ravel() for y in range(0, ref.shape[1] - k + 1, k)
            for x0 in range(0, ref.shape[2] - k + 1, k)]
    out = np.zeros_like(xp)
    for b in range(n):
        for y in range(0, hp, k):
            for x0 in range(0, wp, k):
                p = xp[b, :, y:y + k, x0:x0 + k].ravel()
                sims = np.array([p @ r / (np.sqrt(p @ p + 1e-12) * np.sqrt(r @ r + 1e-12)) for r in refs])
                e = np.exp(scale * sims - (scale * sims).max())
                weights = e / e.sum()
                rebuilt = sum(wj * r for wj, r in zip(weights, refs))
                out[b, :, y:y + k, x0:x0 + k] = rebuilt.reshape(c, k, k)
    return out[:, :, :h, :w]


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("size", [(8, 8), (6, 10)])  # (6, 10): not a multiple of 4, padded then cropped
def test_rbfrm_matches_naive_loop(k, scale, size):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, *size, generator=g)
    ref = torch.randn(3, 8, 9, generator=g)  # 9 columns: the last partial patch column is dropped
    got = rbfrm(x, ref, k, scale).numpy()
    want = naive_rbfrm(x.double().numpy(), ref.double().numpy(), k, scale)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rbfrm_with_temperature_is_sharper_than_without():
    """The paper's softmax over cosines (no temperature) is near-uniform; a scale of 10 follows the best match."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4, 8, 8, generator=g)
    x = ref[None].clone()  # the input equals the reference: the best match of each patch is itself
    err_plain = (rbfrm(x, ref, 2, 1.0) - x).abs().mean()
    err_sharp = (rbfrm(x, ref, 2, 10.0) - x).abs().mean()
    assert err_sharp < 0.5 * err_plain


def test_fusion_softmax_is_over_branches_elementwise():
    torch.manual_seed(0)
    fusion = FeatureFusion(channels=3, hidden=4, m=5).eval()
    branches = [torch.randn(2, 3, 6, 6) for _ in range(3)]
    with torch.no_grad():
        a = fusion.weights(branches)
        out = fusion(branches)
        u = fusion.squeeze(branches[0] + branches[1] + branches[2])
        logits = np.stack([conv(u).numpy() for conv in fusion.logits]).astype(np.float64)
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    want_a = e / e.sum(axis=0, keepdims=True)
    assert a.shape == (3, 2, 3, 6, 6)
    np.testing.assert_allclose(a.numpy(), want_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.sum(0).numpy(), 1.0, atol=1e-6)
    want = sum(want_a[i] * branches[i].numpy() for i in range(3))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_rbam_reference_buffer_resizes_on_load():
    small, big = RBAM(4, (4, 4)), RBAM(4, (8, 8))
    small.set_reference(torch.randn(4, 4, 4))
    big.load_state_dict(small.state_dict())
    assert torch.equal(big.reference, small.reference)


def numpy_median(x: np.ndarray, k: int) -> np.ndarray:
    r = k // 2
    p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    h, w = x.shape[-2:]
    stack = np.stack([p[:, :, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)])
    return np.median(stack, axis=0)


@pytest.mark.parametrize("k", [3, 5])
def test_median_filter_matches_numpy(k):
    x = torch.rand(2, 1, 7, 11, generator=torch.Generator().manual_seed(k))
    np.testing.assert_array_equal(median_filter(x, k).numpy(), numpy_median(x.numpy(), k).astype(np.float32))


def test_median_filter_matches_scipy_when_installed():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy not installed (the numpy reference still runs)")
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(1))
    want = ndimage.median_filter(x.numpy()[0, 0], size=5, mode="nearest")
    np.testing.assert_array_equal(median_filter(x, 5).numpy()[0, 0], want)


def test_median_filter_removes_a_lone_spike():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    assert float(median_filter(x, 5).abs().max()) == 0.0


def test_defect_perception_loss_matches_numpy():
    g = torch.Generator().manual_seed(0)
    fo = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 5, 4, 4, generator=g)]
    fd = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 5, 4, 4, generator=g)]
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    got = float(defect_perception_loss(fo, fd, mask))
    terms = []
    for a, b in zip(fo, fd):
        a, b = a.double().numpy(), b.double().numpy()
        s = a.shape[-1]
        m = mask.double().numpy()[:, 0].reshape(2, s, 8 // s, s, 8 // s).mean(axis=(2, 4))  # area resize
        per_image = []
        for i in range(2):
            d = ((a[i] - b[i]) ** 2).mean(axis=0)
            nd = (d - d.min()) / (d.max() - d.min() + 1e-8)
            per_image.append(((nd - m[i]) ** 2).mean())
        terms.append(np.mean(per_image))
    assert got == pytest.approx(np.mean(terms), rel=1e-5)


def test_defect_perception_loss_is_zero_for_identical_features_and_no_defect():
    f = [torch.randn(2, 3, 8, 8)]
    assert float(defect_perception_loss(f, [t.clone() for t in f], torch.zeros(2, 1, 8, 8))) == 0.0


def test_focal_loss_matches_numpy_and_bce_at_gamma_zero():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, 1, 5, 5, generator=g) * 0.98 + 0.01
    t = (torch.rand(2, 1, 5, 5, generator=g) > 0.7).float()
    pn, tn = p.double().numpy(), t.double().numpy()
    pt = np.where(tn == 1, pn, 1 - pn)
    at = np.where(tn == 1, 0.25, 0.75)
    want = (-at * (1 - pt) ** 2 * np.log(pt)).mean()
    assert float(focal_loss(p, t, gamma=2.0, alpha=0.25)) == pytest.approx(want, rel=1e-5)
    bce = float(torch.nn.functional.binary_cross_entropy(p, t))
    assert float(focal_loss(p, t, gamma=0.0, alpha=0.5)) == pytest.approx(0.5 * bce, rel=1e-5)


def test_perceptual_and_feature_repair_losses_match_numpy():
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 6, 2, 2, generator=g)]
    b = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 6, 2, 2, generator=g)]
    l1 = np.mean([np.abs(x.numpy() - y.numpy()).mean() for x, y in zip(a, b)])
    l2 = np.mean([((x.numpy() - y.numpy()) ** 2).mean() for x, y in zip(a, b)])
    assert float(perceptual_l1(a, b)) == pytest.approx(l1, rel=1e-5)
    assert float(feature_repair_loss(a, b)) == pytest.approx(l2, rel=1e-5)


def test_medoid_is_the_member_with_least_summed_distance():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])
    assert medoid_index(pts) == 1  # sums: 13, 11, 11 (first on ties), 27
    assert medoid_index(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.5, 0.5]])) == 2
