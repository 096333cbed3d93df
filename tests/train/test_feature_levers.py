"""The feature-method levers measured in docs/results.md are options of the methods: PatchCore's and PaDiM's
`level_norm` (each feature level scaled to unit length before the concat) and PaDiM's covariance `shrinkage`; off by
default, so a run without them is the run it always was."""
from __future__ import annotations

import pytest
import torch

from tests.helpers.features import fitted, needs_lite0, tiny_images
from train.errors import ConfigError
from train.methods import get_method


@needs_lite0
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_level_norm_reaches_the_embedding_and_is_off_by_default(name):
    method = get_method(name)
    assert method.options()["level_norm"] == "none"
    plain = method.build_model(None, (64, 64), method.options({"layers": "4,8,16"}))
    unit = method.build_model(None, (64, 64), method.options({"layers": "4,8,16", "level_norm": "unit"}))
    assert plain.embed.level_norm == "none" and unit.embed.level_norm == "unit"
    with torch.no_grad():
        levels = unit.backbone(tiny_images(2))
        x_plain, x_unit = plain.embed(levels), unit.embed(levels)
    assert x_plain.shape == x_unit.shape and not torch.allclose(x_plain, x_unit)
    with pytest.raises(ConfigError):
        method.options({"level_norm": "l3"})


@needs_lite0
def test_padim_shrinkage_changes_the_gaussian_as_the_accumulator_finishes_it():
    _, _, model_plain, _ = fitted("padim", channels=16)
    _, _, model_shrunk, _ = fitted("padim", channels=16, shrinkage=0.1)
    assert torch.equal(model_plain.memory.mean, model_shrunk.memory.mean)  # shrinkage moves the covariance only
    assert not torch.allclose(model_plain.memory.inv_cov, model_shrunk.memory.inv_cov)
    with pytest.raises(ConfigError):
        get_method("padim").options({"shrinkage": 1.0})
