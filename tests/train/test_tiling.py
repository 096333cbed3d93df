"""Tiling inside the graph (`--option tiles=RxC` of PatchCore): the frame cut into model-size tiles that go through
the network as one batch, fitted on the same tiles, the maps put back in place."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.features import fitted, needs_lite0, onnx_parity, relative_error, tiny_images
from train.errors import ConfigError
from train.ops.tiling import TileViews, parse_tiles


def test_expand_is_tile_major_and_merge_puts_every_tile_back():
    views = TileViews("2x3", (4, 9), 1)
    x = torch.arange(2 * 1 * 4 * 9, dtype=torch.float32).reshape(2, 1, 4, 9)
    tiles = views.expand(x)
    assert tiles.shape == (12, 1, 2, 3) and views.tile_size == (2, 3)
    # tile (row r, column c) of frame n sits at (r * 3 + c) * 2 + n
    assert torch.equal(tiles[(1 * 3 + 2) * 2 + 1], x[1, :, 2:4, 6:9])
    assert torch.equal(views.merge(tiles), x)
    assert torch.equal(views.merge_scores(torch.arange(12.0)), torch.tensor([10.0, 11.0]))  # the worst tile
    assert TileViews("1x1", (5, 7), 16).expand(x) is x  # no tiling: no nodes, any size


def test_bad_tiles_are_refused_with_one_line():
    assert parse_tiles("2X3") == (2, 3)
    for bad in ("2by2", "0x2", "x3"):
        with pytest.raises(ConfigError, match="tiles"):
            parse_tiles(bad)
    with pytest.raises(ConfigError, match="must divide by 48"):
        TileViews("3x3", (64, 64), 16)


@needs_lite0
def test_tiled_patchcore_is_the_whole_frame_model_run_on_each_tile():
    """The tiled fit's bank is the bank of an untiled fit on the tiles cut by hand, and the tiled map is that
    model's per-tile patch maps put back in place, then upsampled and smoothed."""
    from train.methods import get_method

    method, opts, tiled, _ = fitted("patchcore", max_patches=500, tiles="2x2")
    assert opts["tiles"] == "2x2" and "tiles" not in method.scoring_options  # the fit sees the tiles
    views = TileViews("2x2", (64, 64), 16)
    plain_opts = get_method("patchcore").options({"max_patches": 500})
    plain = method.build_model(None, (32, 32), plain_opts)
    images = tiny_images(12)
    method.start_run(plain_opts, (32, 32)).fit(
        plain, [views.expand(images[i:i + 4]) for i in range(0, 12, 4)], "cpu", False)
    assert torch.equal(plain.memory.bank, tiled.memory.bank)
    x = tiny_images(3, seed=4)
    with torch.no_grad():
        per_tile, _ = plain.eval().memory(plain.embed(plain.backbone(views.expand(x))))
        expected, _ = tiled.scorer(views.merge(per_tile), None)
        got, score = tiled(x)
    assert got.shape == (3, 1, 64, 64)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(score, got.amax(dim=(1, 2, 3)))


@needs_lite0
def test_tiled_patchcore_exports_and_onnx_runtime_matches_torch(tmp_path):
    method, opts, model, _ = fitted("patchcore", max_patches=500, tiles="2x2", flip="h")
    frames = (tiny_images(2, seed=7).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    ref, got, path = onnx_parity(model, "patchcore", dict(opts), tmp_path, frames)
    assert relative_error(ref[0], got[0]) < 1e-4 and relative_error(ref[1], got[1]) < 1e-4
    assert ref[0].shape == (2, 1, 64, 64) and ref[1].shape == (2,)
    from export.opcheck import check_onnx

    report = check_onnx(path)  # Reshape/Transpose with a dynamic batch parse on every TensorRT target
    assert report.ok, report.summary()
