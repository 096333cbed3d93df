"""imagesets.images: decoding every common format to uint8 RGB, masks to bool, and the resize rule."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagesets.images import (IMAGE_EXTENSIONS, is_image_file, read_image, read_mask, resize_image,
                               resize_interpolation, resize_mask)
from runtime import sources
from train.errors import DataError


def _write(path, arr):
    ok, buf = cv2.imencode(path.suffix, arr)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _rgb(h=12, w=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_extensions_case_insensitive_and_hidden_files_skipped():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"} <= set(IMAGE_EXTENSIONS)
    assert IMAGE_EXTENSIONS is sources.IMAGE_EXTENSIONS  # one list for training, calibration and the runtime
    assert is_image_file("a/B.PNG") and is_image_file("x.JpEg") and is_image_file("y.TIFF")
    assert not is_image_file("notes.txt") and not is_image_file("._mac.png") and not is_image_file("a.png.bak")


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff", ".webp", ".PNG"])
def test_lossless_formats_round_trip_as_rgb(tmp_path, ext):
    rgb = _rgb()
    if ext == ".webp":
        ok, buf = cv2.imencode(".webp", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, 101])
        (tmp_path / "a.webp").write_bytes(buf.tobytes())
        path = tmp_path / "a.webp"
    else:
        path = _write(tmp_path / f"a{ext}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_is_rgb_not_bgr(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:, :, 2] = 250  # pure red in OpenCV's BGR order
    for ext in (".jpg", ".jpeg"):
        out = read_image(_write(tmp_path / f"r{ext}", bgr))
        assert out.shape == (16, 16, 3)
        assert out[..., 0].mean() > 240 and out[..., 1].mean() < 10 and out[..., 2].mean() < 10


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(20 * 9, dtype=np.uint8).reshape(20, 9)
    out = read_image(_write(tmp_path / "g.png", gray))
    assert out.shape == (20, 9, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_drops_alpha(tmp_path):
    rgb = _rgb(8, 10)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((8, 10), 7, np.uint8)])
    out = read_image(_write(tmp_path / "a.png", bgra))
    np.testing.assert_array_equal(out, rgb)


def test_16_bit_is_scaled_to_8_bit(tmp_path):
    vals = np.array([[0, 257, 65535, 32896, 128, 129]], dtype=np.uint16)
    out = read_image(_write(tmp_path / "d.png", vals))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128, 0, 1])
    rgb16 = np.full((4, 5, 3), 65535, np.uint16)
    rgb16[..., 0] = 0  # B in OpenCV order
    out = read_image(_write(tmp_path / "c.tif", rgb16))
    assert out.dtype == np.uint8 and (out[..., 2] == 0).all() and (out[..., 0] == 255).all()


def test_corrupt_and_missing_files_raise_data_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError, match="broken.png.*could not be decoded"):
        read_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg.*could not be decoded"):
        read_image(empty)
    with pytest.raises(DataError, match="nothere.png.*does not exist"):
        read_image(tmp_path / "nothere.png")
    with pytest.raises(DataError, match="broken.png"):
        read_mask(bad)


def test_read_mask_any_positive_value_is_defect(tmp_path):
    m = np.zeros((6, 7), np.uint8)
    m[1, 2], m[3, 4] = 1, 255
    out = read_mask(_write(tmp_path / "m.png", m))
    assert out.dtype == bool and out.shape == (6, 7) and out.sum() == 2 and out[1, 2] and out[3, 4]
    colour = np.zeros((6, 7, 3), np.uint8)
    colour[5, 6, 1] = 9
    out = read_mask(_write(tmp_path / "c.png", colour))
    assert out.shape == (6, 7) and out.sum() == 1 and out[5, 6]


def test_resize_rule_area_when_shrinking_linear_otherwise():
    assert resize_interpolation((460, 1130), (224, 544)) == cv2.INTER_AREA
    assert resize_interpolation((100, 100), (100, 100)) == cv2.INTER_AREA
    assert resize_interpolation((100, 100), (200, 200)) == cv2.INTER_LINEAR
    assert resize_interpolation((100, 100), (50, 200)) == cv2.INTER_LINEAR
    img = _rgb(40, 60)
    small = resize_image(img, (20, 30))
    np.testing.assert_array_equal(small, cv2.resize(img, (30, 20), interpolation=cv2.INTER_AREA))
    # INTER_AREA at 2:1 is the exact 2x2 mean
    np.testing.assert_allclose(small[0, 0], img[:2, :2].reshape(-1, 3).mean(0), atol=1)
    big = resize_image(img, (80, 90))
    assert big.shape == (80, 90, 3)
    np.testing.assert_array_equal(big, cv2.resize(img, (90, 80), interpolation=cv2.INTER_LINEAR))
    assert resize_image(img, (40, 60)) is img


def test_resize_mask_nearest_stays_binary():
    m = np.zeros((8, 8), bool)
    m[2:4, 4:8] = True
    out = resize_mask(m, (4, 4))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, m[::2, ::2] | m[1::2, 1::2])
    up = resize_mask(m, (16, 16))
    assert up.sum() == m.sum() * 4
    np.testing.assert_array_equal(up[::2, ::2], m)
    with pytest.raises(DataError):
        resize_mask(m, (0, 4))
