"""F2PAD's pieces of math against hand values and numpy: LOG, TV, range, pixel prior, Adan, gradient sharing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.refine.adan import Adan
from train.refine.penalties import SMOOTH, log_penalty, range_penalty, vectorial_tv
from train.refine.pixel_prior import PixelPrior, fit_pixel_prior
from train.refine.solver import adaptive_scale, share_gradients


def test_log_penalty_hand_values():
    a = torch.zeros(1, 3, 1, 3)
    a[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0])  # ||a|| = 5
    a[0, :, 0, 1] = torch.tensor([0.0, 0.0, -1.0])  # ||a|| = 1
    eps = 0.5
    expected = math.log(1 + 5 / eps) + math.log(1 + 1 / eps) + math.log(1 + SMOOTH / eps)
    assert log_penalty(a, eps).item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[[[0.0, 1.0, 1.0]]]])
    assert log_penalty(a, eps, mask).item() == pytest.approx(math.log(3.0) + math.log(1 + SMOOTH / eps), rel=1e-6)


def test_vectorial_tv_hand_values():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[0.0, 3.0], [4.0, 0.0]])  # channel 0
    x[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # channel 1
    # pixel (0,0): dx = (3, 0, 0), dy = (4, 0, 0) -> sqrt(25) = 5
    # pixel (0,1): dx = 0 (last column), dy = (0-3, 1-0, 0) -> sqrt(10)
    # pixel (1,0): dx = (0-4, 1-0, 0), dy = 0 (last row) -> sqrt(17)
    # pixel (1,1): 0
    expected = 5 + math.sqrt(10) + math.sqrt(17) + 0
    assert vectorial_tv(x, delta=0.0).item() == pytest.approx(expected, rel=1e-6)


def test_range_penalty_hand_values():
    x = torch.tensor([[[[-0.5, 0.5]], [[1.25, 1.0]], [[0.0, 2.0]]]])  # (1, 3, 1, 2)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    assert range_penalty(x, zero, one).item() == pytest.approx(0.25 + 0.0625 + 1.0)


def test_pixel_prior_matches_numpy():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 3))
    factors = rng.normal(size=(4, 3, 3))
    precisions = factors @ factors.transpose(0, 2, 1) + 0.5 * np.eye(3)
    x = rng.normal(size=(2, 3, 5, 6))
    prior = PixelPrior(torch.tensor(means), torch.tensor(precisions))
    got = prior(torch.tensor(x, dtype=torch.float32)).numpy()
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    dist = np.stack([np.einsum("pi,ij,pj->p", pixels - m, p, pixels - m) for m, p in zip(means, precisions)], 1)
    expected = dist.min(1).reshape(2, 5, 6)[:, None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pixel_prior_fit_finds_the_colour_clusters_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    centres = np.array([[-1.0, 0.0, 1.0], [1.5, 1.5, -0.5]])
    pixels = np.concatenate([c + 0.05 * rng.normal(size=(600, 3)) for c in centres]).astype(np.float32)
    prior = fit_pixel_prior(pixels, components=4, seed=0)
    near = prior(torch.tensor(centres, dtype=torch.float32).T.reshape(1, 3, 1, 2))
    far = prior(torch.zeros(1, 3, 1, 1))
    assert near.max() < 1.0 < far.item()
    prior.save(tmp_path / "p.safetensors", {"components": 4})
    again = PixelPrior.load(tmp_path / "p.safetensors", {"components": "4"})
    assert torch.equal(again.means, prior.means)
    assert PixelPrior.load(tmp_path / "p.safetensors", {"components": "5"}) is None


def _adan_by_hand(theta, grads_of, lr, b1, b2, b3, eps, steps, scale=1.0):
    """Adan's Algorithm 1 written out with plain floats for a one-dimensional parameter."""
    m = v = n = 0.0
    prev = None
    for t in range(1, steps + 1):
        g = grads_of(theta)
        d = 0.0 if prev is None else g - prev
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + b2 * d) ** 2
        u = (m / (1 - b1 ** t) + b2 * v / (1 - b2 ** t)) / (math.sqrt(n / (1 - b3 ** t)) + eps)
        theta = theta - lr * scale * u
        prev = g
    return theta


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_adan_matches_hand_steps_on_a_quadratic(scale):
    # f(theta) = (theta - 3)^2 / 2 + theta^3 / 10: gradient theta - 3 + 0.3 theta^2
    grad = lambda t: t - 3.0 + 0.3 * t * t  # noqa: E731
    p = torch.nn.Parameter(torch.tensor([0.7], dtype=torch.float64))
    opt = Adan([p], lr=0.1, betas=(0.9, 0.8, 0.7), eps=1e-8)
    for _ in range(3):
        opt.zero_grad()
        loss = (p - 3.0) ** 2 / 2 + p ** 3 / 10
        loss.sum().backward()
        opt.step(scales=[torch.full_like(p, scale)])
    expected = _adan_by_hand(0.7, grad, 0.1, 0.9, 0.8, 0.7, 1e-8, 3, scale)
    assert p.item() == pytest.approx(expected, rel=1e-12)


def test_adan_first_step_is_lr_times_sign_and_rejects_bad_settings():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    p.grad = torch.tensor([0.3, -5.0])
    Adan([p], lr=0.01).step()
    # step 1: m/bc1 = g, v = 0, sqrt(n/bc3) = |g| -> update = g / (|g| + eps) = sign(g)
    np.testing.assert_allclose(p.detach().numpy(), [0.99, -1.99], rtol=1e-6)
    with pytest.raises(ValueError, match="betas"):
        Adan([p], betas=(0.98, 0.92))


def test_gradient_sharing_keeps_a_uniform_field_and_feeds_a_dead_pixel():
    image = torch.zeros(1, 3, 7, 7)
    grad = torch.ones(1, 3, 7, 7)
    assert torch.allclose(share_gradients(grad, image, 5, 1.0, 1.1), grad)
    grad[0, :, 3, 3] = 0.0  # a pixel whose own gradient vanished
    shared = share_gradients(grad, image, 5, 1.0, 1.1)
    assert 0.5 < shared[0, 0, 3, 3].item() < 1.0
    other = image.clone()
    other[0, :, :, 4:] = 5.0  # neighbours of another colour count (almost) nothing
    grad2 = torch.zeros(1, 3, 7, 7)
    grad2[..., 4:] = 1.0
    assert share_gradients(grad2, other, 5, 1.0, 1.1)[0, 0, 3, 3].item() < 1e-3


def test_adaptive_scale_is_larger_where_the_direction_is_small():
    d = torch.zeros(1, 3, 1, 3)
    d[0, 0] = torch.tensor([[1.0, 0.1, 0.5]])
    region = torch.ones(1, 1, 1, 3)
    s = adaptive_scale(d, region, 3.0)[0, 0, 0]
    mean = (1.0 + 0.1 + 0.5) / 3
    np.testing.assert_allclose(s.numpy(), [1.0, 3.0, mean / 0.5], rtol=1e-6)
