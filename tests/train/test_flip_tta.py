"""Flip test-time augmentation (`--option flip=h|v|hv` of PatchCore and PaDiM): the views in one batch, each map
flipped back, averaged; off by default; a scoring option, so a fitted run is scored and exported with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.features import fitted, needs_lite0, onnx_parity, relative_error, tiny_images
from train.errors import ConfigError
from train.ops.flip_tta import FLIP_MODES, FlipViews

SMALL = {"patchcore": {"max_patches": 500}, "padim": {"channels": 16}}


def _with_flip(method, opts, model, mode: str):
    """The fitted `model` rebuilt with another flip option (a scoring option: the same fitted constants)."""
    other = method.build_model(None, (64, 64), method.options({**opts, "flip": mode}))
    other.load_state_dict(model.state_dict())
    return other.eval()


@pytest.mark.parametrize("mode", FLIP_MODES)
def test_merge_undoes_expand_view_by_view(mode):
    views = FlipViews(mode)
    x = torch.arange(2 * 1 * 3 * 5, dtype=torch.float32).reshape(2, 1, 3, 5)
    expanded = views.expand(x)
    assert expanded.shape == (views.count * 2, 1, 3, 5)
    if views.count > 1:
        assert torch.equal(expanded[2:4], torch.flip(x, views.views[1]))  # view-major, flipped
    assert torch.equal(views.merge(expanded), x)  # every view flipped back lands on the frame's grid
    assert torch.equal(views.merge_scores(torch.arange(views.count * 2.0)),
                       torch.arange(views.count * 2.0).reshape(views.count, 2).mean(0))
    with pytest.raises(ValueError, match="use one of"):
        FlipViews("d")


@needs_lite0
@pytest.mark.parametrize("mode,dims", [("h", (3,)), ("rot180", (2, 3))])
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_two_views_are_the_mean_of_the_frame_and_its_flip_scored_alone(name, mode, dims):
    method, opts, model, _ = fitted(name, **SMALL[name])
    assert opts["flip"] == "none" and "flip" in method.scoring_options  # off by default, changeable after fit
    flipped = _with_flip(method, opts, model, mode)
    x = tiny_images(3, seed=5)
    with torch.no_grad():
        plain, _ = model(x)
        mirror, _ = model(torch.flip(x, dims))
        tta, score = flipped(x)
        tta_of_mirror, _ = flipped(torch.flip(x, dims))
    expected = (plain + torch.flip(mirror, dims)) / 2
    scale = float(plain.abs().max())
    assert float((tta - expected).abs().max()) <= 1e-5 * scale
    assert torch.allclose(score, tta.amax(dim=(1, 2, 3)))  # one score: the max of the averaged map
    # the averaged map no longer depends on which way the part faces
    assert float((tta_of_mirror - torch.flip(tta, dims)).abs().max()) <= 1e-5 * scale
    assert not torch.allclose(tta, plain)
    with pytest.raises(ConfigError, match="use one of none, h, v, hv, rot180"):
        method.options({"flip": "x"})


@needs_lite0
def test_patchcore_reweighted_score_is_the_mean_over_the_views():
    method, opts, model, _ = fitted("patchcore", max_patches=500, score="reweight")
    flipped = _with_flip(method, opts, model, "v")
    x = tiny_images(2, seed=3)
    with torch.no_grad():
        _, s_plain = model(x)
        _, s_mirror = model(torch.flip(x, (2,)))
        _, s_tta = flipped(x)
    assert torch.allclose(s_tta, (s_plain + s_mirror) / 2, rtol=1e-5)


@needs_lite0
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_flip_hv_exports_and_onnx_runtime_matches_torch(name, tmp_path):
    method, opts, model, _ = fitted(name, **SMALL[name])
    flipped = _with_flip(method, opts, model, "hv")
    frames = (tiny_images(2, seed=7).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    ref, got, path = onnx_parity(flipped, name, dict(method.options({**opts, "flip": "hv"})), tmp_path, frames)
    assert relative_error(ref[0], got[0]) < 1e-4 and relative_error(ref[1], got[1]) < 1e-4
    assert ref[0].shape == (2, 1, 64, 64) and ref[1].shape == (2,)  # one map and one score per frame
    from export.opcheck import check_onnx

    report = check_onnx(path)  # the flips (Slice with step -1) parse on every TensorRT target
    assert report.ok, report.summary()


@needs_lite0
def test_map_statistics_fitted_before_the_flip_option_still_load(tmp_path):
    """Statistics whose scoring record predates `flip` were fitted without flips: they load while flip is none
    and are refused with flip on (other maps)."""
    import json

    from train import runs
    from train.config import RunConfig
    from train.errors import RunError

    method, opts, model, _ = fitted("patchcore", max_patches=500)
    config = RunConfig(method="patchcore", image_size=(64, 64), steps=0, options=dict(opts))
    runs.save_config(tmp_path, config)
    runs.save_weights(tmp_path, model)
    old_scoring = {k: opts[k] for k in method.scoring_options if k != "flip"}
    runs.atomic_save_tensors(tmp_path / runs.MAP_STATS, {"mean": torch.zeros(64, 64), "std": torch.ones(64, 64)},
                             metadata={"images": "2", "weights_sha256": runs._weights_digest(tmp_path),
                                       "scoring": json.dumps(old_scoring)})
    assert runs.load_standardizer(tmp_path, config) is not None
    with pytest.raises(RunError, match="was fitted with scoring options"):
        runs.load_graph(tmp_path, scoring={"flip": "h"})
