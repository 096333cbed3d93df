"""Covariance shrinkage of the per-position Gaussians: what it computes, that it keeps the trace, that the
streaming update can undo it, and that it leaves the default fit unchanged."""
from __future__ import annotations

import pytest
import torch

from train.ops.mahalanobis import GaussianAccumulator, shrink, unshrink


def _fitted(n: int = 12, positions: int = 5, dim: int = 8) -> GaussianAccumulator:
    g = torch.Generator().manual_seed(3)
    acc = GaussianAccumulator(positions, dim)
    acc.add(torch.randn(n, positions, dim, generator=g) * torch.linspace(0.2, 3.0, dim))
    return acc


def test_shrinkage_is_the_convex_mix_with_the_mean_variance_identity():
    acc = _fitted()
    mean, inv0 = acc.finish(0.0)
    _, inv = acc.finish(0.0, shrinkage=0.25)
    cov = torch.linalg.inv(inv0)
    m = cov.diagonal(dim1=1, dim2=2).mean(-1)
    want = 0.75 * cov + 0.25 * m[:, None, None] * torch.eye(8, dtype=torch.float64)
    assert torch.allclose(torch.linalg.inv(inv), want, rtol=1e-8, atol=1e-8)
    # same trace, better conditioned (n = 12 images, 8 channels: the plain estimate is poorly conditioned)
    assert torch.allclose(want.diagonal(dim1=1, dim2=2).sum(-1), cov.diagonal(dim1=1, dim2=2).sum(-1))
    assert bool((torch.linalg.cond(want) < torch.linalg.cond(cov)).all())


def test_default_is_no_shrinkage_and_unshrink_inverts_shrink():
    acc = _fitted()
    for got, want in zip(acc.finish(0.01), acc.finish(0.01, shrinkage=0.0)):
        assert torch.equal(got, want)
    cov = torch.linalg.inv(acc.finish(0.0)[1])
    assert torch.allclose(unshrink(shrink(cov, 0.3), 0.3), cov, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="shrinkage"):
        shrink(cov, 1.0)


def test_streaming_update_with_shrinkage_equals_a_fit_over_all_images():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(20, 6, 4, generator=g), torch.randn(7, 6, 4, generator=g) + 0.5
    first = GaussianAccumulator(6, 4)
    first.add(a)
    mean, inv_cov = first.finish(0.01, shrinkage=0.2)
    resumed = GaussianAccumulator.from_gaussian(mean, inv_cov, first.count, 0.01, shrinkage=0.2)
    resumed.add(b)
    together = GaussianAccumulator(6, 4)
    together.add(torch.cat([a, b]))
    for got, want in zip(resumed.finish(0.01, shrinkage=0.2), together.finish(0.01, shrinkage=0.2)):
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-8)
