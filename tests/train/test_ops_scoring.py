"""MSGMS and FAIR's scorer against an independent OpenCV / NumPy / scikit-image computation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from train.ops.msgms import MSGMS
from train.ops.scoring import FairScorer, box_filter

PREWITT_X = np.array([[1, 0, -1]] * 3, np.float32) / 3.0
PREWITT_Y = PREWITT_X.T.copy()
C = 0.0026


def _gms_channel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def mag(x):
        gx = cv2.filter2D(x, cv2.CV_32F, PREWITT_X, borderType=cv2.BORDER_CONSTANT)  # correlation, zero pad
        gy = cv2.filter2D(x, cv2.CV_32F, PREWITT_Y, borderType=cv2.BORDER_CONSTANT)
        return np.sqrt(gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2 + 1e-12)

    ga, gb = mag(a), mag(b)
    return (2 * ga * gb + C) / (ga ** 2 + gb ** 2 + C)


def _msgms_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 pair -> (H, W) map; 2 scales, half scale via INTER_AREA, back via INTER_LINEAR."""
    h, w = a.shape[:2]
    a2 = cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # = 2x2 mean for even sizes
    b2 = cv2.resize(b, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    maps = []
    for ch in range(3):
        g1 = _gms_channel(a[..., ch], b[..., ch])
        g2 = _gms_channel(a2[..., ch], b2[..., ch]).astype(np.float32)
        g2 = cv2.resize(g2, (w, h), interpolation=cv2.INTER_LINEAR)  # half-pixel centres = align_corners=False
        maps.append(1.0 - (g1 + g2) / 2.0)
    return np.mean(maps, axis=0)


def _pair(seed: int, h: int, w: int):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.0)
    recon = image + 0.05 * rng.standard_normal(image.shape).astype(np.float32)
    # a colour defect, partly outside [0, 1] (exercises the clamp before Lab)
    recon[h // 4 : h // 2, w // 4 : w // 2] += np.float32([0.3, -0.2, 0.1])
    return recon, image


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None])


@pytest.mark.parametrize("h,w", [(32, 32), (48, 64)])
def test_msgms_matches_opencv(h, w):
    recon, image = _pair(0, h, w)
    ref = _msgms_ref(recon, image)
    with torch.no_grad():
        ours = MSGMS()(_t(recon), _t(image))
    assert ours.shape == (1, 1, h, w)
    err = np.abs(ours[0, 0].numpy() - ref).max()
    assert ref.max() > 0.1  # the pair differs: not comparing zeros
    assert err <= 1e-4, f"MSGMS vs OpenCV reference: max abs error {err:.2e} (measured 1.3e-7)"


def test_msgms_zero_for_identical_images():
    x = torch.rand(2, 3, 32, 32)
    assert MSGMS()(x, x).abs().max() < 1e-6


def _scorer_ref(recon: np.ndarray, image: np.ndarray, k: int = 21):
    lab_r = rgb2lab(np.clip(recon, 0.0, 1.0).astype(np.float64))
    lab_i = rgb2lab(image.astype(np.float64))
    colour = ((lab_r[..., 1:] - lab_i[..., 1:]) ** 2).sum(-1)
    raw = (_msgms_ref(recon, image) + 3e-4 * colour).astype(np.float32)
    smooth = cv2.boxFilter(raw, cv2.CV_32F, (k, k), normalize=True, borderType=cv2.BORDER_CONSTANT)
    return smooth, float(smooth.max())


@pytest.mark.parametrize("h,w", [(32, 32), (64, 48)])
def test_fair_scorer_matches_reference(h, w):
    recon, image = _pair(1, h, w)
    ref_map, ref_score = _scorer_ref(recon, image)
    with torch.no_grad():
        amap, score = FairScorer()(_t(recon), _t(image))
    assert amap.shape == (1, 1, h, w) and score.shape == (1,)
    err = np.abs(amap[0, 0].numpy() - ref_map).max()
    assert err <= 1e-4, f"FairScorer map vs reference: max abs error {err:.2e} (measured 3.6e-7)"
    assert abs(float(score[0]) - ref_score) <= 1e-4, f"score {float(score[0])} vs reference {ref_score}"


def test_scorer_batch_and_colour_term_matters():
    recon, image = _pair(2, 32, 32)
    r, i = _t(recon), _t(image)
    scorer = FairScorer()
    with torch.no_grad():
        amap, score = scorer(torch.cat([r, i]), torch.cat([i, i]))
        no_colour, _ = FairScorer(lab_weight=0.0)(r, i)
    assert score.shape == (2,)
    assert float(score[1]) < 1e-6 < float(score[0])  # a perfect reconstruction scores 0
    assert torch.allclose(score, amap.amax(dim=(1, 2, 3)))
    assert (amap[:1] - no_colour).max() > 1e-3  # the a*/b* term contributes
    assert len(scorer.state_dict()) == 0  # all constants are non-persistent buffers


@pytest.mark.parametrize("k", [1, 3, 21])
def test_box_filter_equals_square_pool_and_cv2(k):
    # The two 1-D passes must give the k x k zero-padded mean (cv2.filter2D with a constant border of 0).
    x = torch.rand((2, 1, 37, 50), generator=torch.Generator().manual_seed(k))
    ours = box_filter(x, k)
    square = torch.nn.functional.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)
    assert ours.shape == x.shape
    assert (ours - square).abs().max().item() <= 1e-6
    ref = cv2.filter2D(x[1, 0].numpy(), -1, np.full((k, k), 1.0 / (k * k), np.float32),
                       borderType=cv2.BORDER_CONSTANT)
    assert np.abs(ours[1, 0].numpy() - ref).max() <= 1e-6
