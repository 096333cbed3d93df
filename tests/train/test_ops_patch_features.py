"""Patch features: per-level unit normalisation equalises the levels; 'none' keeps the plain concatenation."""
from __future__ import annotations

import pytest
import torch

from train.ops.patch_features import normalise_level, upsample_concat


def _levels():
    g = torch.Generator().manual_seed(0)
    fine = torch.rand(2, 4, 8, 12, generator=g)  # small activations, like a stride-4 level
    coarse = 50.0 * torch.rand(2, 6, 4, 6, generator=g)  # large activations, like a deep level
    return fine, coarse


def test_unit_level_norm_gives_every_level_unit_length():
    fine, coarse = _levels()
    out = upsample_concat([fine, coarse], pool=1, level_norm="unit")
    assert out.shape == (2, 10, 8, 12)
    assert torch.allclose(out[:, :4].norm(dim=1), torch.ones(2, 8, 12), atol=1e-5)
    # the coarse level is normalised before the bilinear resize: its norm stays near 1, far from ~50*sqrt(6)/2
    assert float(out[:, 4:].norm(dim=1).max()) <= 1.0 + 1e-5
    assert float(out[:, 4:].norm(dim=1).min()) > 0.5


def test_no_level_norm_is_the_plain_concat():
    fine, coarse = _levels()
    out = upsample_concat([fine, coarse], pool=1)
    assert torch.equal(out[:, :4], fine)
    assert float(out[:, 4:].abs().max()) > 10.0


def test_zero_vector_stays_finite_and_unknown_mode_fails():
    assert torch.isfinite(normalise_level(torch.zeros(1, 3, 2, 2), "unit")).all()
    with pytest.raises(ValueError, match="unit"):
        normalise_level(torch.zeros(1, 3, 2, 2), "l1")
