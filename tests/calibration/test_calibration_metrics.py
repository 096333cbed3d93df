"""calibration.metrics against independent computations: scikit-learn's roc_auc_score, brute-force loops,
hand-computed PRO curves."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from calibration import metrics as M

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (dev dependency) is the reference")
skimage_measure = pytest.importorskip("skimage.measure", reason="scikit-image labels the brute-force PRO regions")


# ------------------------------------------------------------------------------------------------ AUROC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + 0.7 * labels
    assert M.roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("levels", [2, 5, 20])
def test_roc_auc_matches_sklearn_with_ties(levels):
    rng = np.random.default_rng(levels)
    labels = rng.integers(0, 2, 400)
    scores = rng.integers(0, levels, 400).astype(np.float32) + (labels * rng.integers(0, 2, 400))
    ours = M.image_auroc(labels, scores)
    assert ours == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_all_tied_is_one_half_and_perfect_is_one():
    labels = np.array([0, 0, 1, 1, 1])
    assert M.roc_auc(labels, np.ones(5)) == 0.5
    assert M.roc_auc(labels, [0.1, 0.2, 0.3, 0.4, 0.5]) == 1.0
    assert M.roc_auc(labels, [0.5, 0.4, 0.3, 0.2, 0.1]) == 0.0


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_roc_auc_one_class_is_nan_with_reason(labels):
    with pytest.warns(M.UndefinedMetricWarning, match="only one class"):
        value = M.roc_auc(labels, [0.1, 0.5, 0.9])
    assert math.isnan(value)


def test_roc_auc_rejects_nan_scores_and_bad_labels():
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0 \\(good\\) or 1"):
        M.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="entries"):
        M.roc_auc([0, 1, 1], [0.1, 0.2])


def test_pixel_auroc_matches_sklearn_on_flattened_pixels():
    rng = np.random.default_rng(3)
    masks = rng.random((6, 32, 40)) < 0.08
    maps = (rng.random((6, 32, 40)) + 0.4 * masks).astype(np.float32)
    maps[:, :4] = 0.25  # a block of tied values across both classes
    expected = sklearn_metrics.roc_auc_score(masks.ravel(), maps.ravel())
    assert M.pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    # (N, 1, h, w) maps and uint8 0/255 masks are accepted too
    assert M.pixel_auroc(masks.astype(np.uint8) * 255, maps[:, None]) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_does_not_modify_inputs_and_handles_a_million_pixels():
    rng = np.random.default_rng(4)
    masks = np.zeros((16, 256, 256), bool)
    masks[:8, 100:140, 60:120] = True
    maps = rng.random((16, 256, 256), dtype=np.float32) + 0.2 * masks
    before = maps.copy()
    value = M.pixel_auroc(masks, maps)
    assert np.array_equal(maps, before)
    # Mann-Whitney on (U(0,1) + 0.2) vs U(0,1): P(X + 0.2 > Y) = 1 - 0.8^2 / 2 = 0.68
    assert value == pytest.approx(0.68, abs=0.01)


def test_pixel_auroc_without_defect_pixels_is_nan():
    with pytest.warns(M.UndefinedMetricWarning, match="no defect pixels"):
        assert math.isnan(M.pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4))))


# ------------------------------------------------------------------------------------------------ F1


def _f1_brute(labels, scores):
    labels = np.asarray(labels).astype(bool)
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & labels)
        fp = np.sum(pred & ~labels)
        fn = np.sum(~pred & labels)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        best = max(best, f1)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_f1_max_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    f1, t = M.f1_max(labels, scores, return_threshold=True)
    assert f1 == pytest.approx(_f1_brute(labels, scores), abs=1e-12)
    pred = scores >= t  # the threshold reproduces the F1
    tp = np.sum(pred & (labels == 1))
    assert 2 * tp / (pred.sum() + labels.sum()) == pytest.approx(f1, abs=1e-12)
    assert f1 == pytest.approx(
        max(sklearn_metrics.f1_score(labels, scores >= u) for u in np.unique(scores)), abs=1e-12
    )


def test_pixel_f1_max_matches_brute_force():
    rng = np.random.default_rng(5)
    masks = rng.random((3, 16, 16)) < 0.1
    maps = np.round(rng.random((3, 16, 16)) + 0.5 * masks, 2)
    assert M.pixel_f1_max(masks, maps) == pytest.approx(_f1_brute(masks.ravel(), maps.ravel()), abs=1e-12)


def test_f1_max_without_defects_is_nan():
    with pytest.warns(M.UndefinedMetricWarning, match="no defect"):
        assert math.isnan(M.f1_max([0, 0], [0.2, 0.3]))


# ------------------------------------------------------------------------------------------------ AUPRO


def _two_region_example():
    """Image A (8x8) has region r1 = a 2x2 block (4 px) and region r2 = 1 px, not touching; image B (8x8) is
    good. Good pixels: 64 - 5 + 64 = 123."""
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 1:3, 1:3] = True  # r1
    masks[0, 6, 6] = True  # r2
    maps = np.zeros((2, 8, 8), np.float32)
    return masks, maps


def test_aupro_hand_example_both_regions_found_after_some_false_positives():
    # Map: 1.0 on 12 good pixels of image B, 0.9 on r1, 0.5 on r2, 0 elsewhere.
    # t = 1.0: FPR = 12/123, PRO = 0 -> flat at 0, no area.
    # t = 0.9: FPR = 12/123, PRO = (1 + 0)/2 = 0.5; t = 0.5: PRO = 1 (vertical steps).
    # t = 0:   FPR = 1, PRO = 1.  So PRO = 1 on [12/123, 0.3]: AUPRO = (0.3 - 12/123) / 0.3.
    masks, maps = _two_region_example()
    maps[1, 0, :8] = 1.0
    maps[1, 1, :4] = 1.0
    maps[0, 1:3, 1:3] = 0.9
    maps[0, 6, 6] = 0.5
    expected = (0.3 - 12 / 123) / 0.3
    assert M.aupro(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_aupro_hand_example_interpolates_at_the_limit():
    # Map: 1.0 on r1 only (r2 and all good pixels 0). t = 1: FPR 0, PRO 0.5 (vertical from (0, 0)).
    # t = 0: FPR 1, PRO 1. On [0, 0.3] the curve is the line from (0, 0.5) to (1, 1): PRO(0.3) = 0.65,
    # area = 0.3 * (0.5 + 0.65) / 2 = 0.1725, AUPRO = 0.1725 / 0.3 = 0.575.
    masks, maps = _two_region_example()
    maps[0, 1:3, 1:3] = 1.0
    assert M.aupro(masks, maps) == pytest.approx(0.575, abs=1e-12)


def test_aupro_overlap_is_per_region_not_per_pixel():
    # r1 half covered (2 of 4 px) at 1.0, r2 (1 px) at 1.0, no good pixel above 0: PRO = (0.5 + 1)/2 = 0.75
    # from FPR 0 to the jump at t = 0 -> line from (0, 0.75) to (1, 1): PRO(0.3) = 0.825,
    # AUPRO = 0.3 * (0.75 + 0.825) / 2 / 0.3 = 0.7875. (Per pixel it would be 3/5 = 0.6 instead.)
    masks, maps = _two_region_example()
    maps[0, 1, 1:3] = 1.0
    maps[0, 6, 6] = 1.0
    assert M.aupro(masks, maps) == pytest.approx(0.7875, abs=1e-12)


def test_aupro_perfect_map_is_one_and_uses_8_connectivity():
    masks, maps = _two_region_example()
    maps[masks] = 1.0
    assert M.aupro(masks, maps) == pytest.approx(1.0, abs=1e-12)
    # A diagonal pair (one region under 8-connectivity, half covered) and a separate covered pixel:
    # PRO = (0.5 + 1) / 2 = 0.75 at FPR 0, then the line to (1, 1): PRO(0.3) = 0.825 -> AUPRO 0.7875.
    # (4-connectivity would give three regions, PRO (1 + 0 + 1) / 3 at FPR 0 -> AUPRO 0.71667.)
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal pair: one region under 8-connectivity
    masks[0, 4, 4] = True
    maps = np.zeros((1, 6, 6), np.float32)
    maps[0, 0, 0] = maps[0, 4, 4] = 1.0
    assert M.aupro(masks, maps) == pytest.approx(0.7875, abs=1e-12)


def _aupro_brute(masks, maps, limit=0.3):
    """Independent reference: a threshold loop over every distinct score, skimage labelling (8-connectivity),
    the curve clipped at `limit` by linear interpolation (np.interp)."""
    regions = []
    for i, m in enumerate(masks):
        lab = skimage_measure.label(m, connectivity=2)
        for r in range(1, lab.max() + 1):
            regions.append((i, lab == r))
    good = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        fprs.append((pred & good).sum() / good.sum())
        pros.append(np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x, y = list(fprs[keep]), list(pros[keep])
    if x[-1] < limit:
        # first point past the limit; take the top of any vertical run at the last x <= limit as start
        j = np.flatnonzero(fprs > limit)[0]
        y_lim = pros[j - 1] + (pros[j] - pros[j - 1]) * (limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1])
        x.append(limit)
        y.append(y_lim)
    x, y = np.array(x), np.array(y)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / limit)


@pytest.mark.parametrize("seed", [0, 1])
def test_aupro_exact_matches_brute_force_threshold_loop(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:6, 3:9] = True
    masks[0, 12:14, 12:18] = True
    masks[1, 5:15, 5:7] = True
    masks[2, 18:20, 0:2] = True
    maps = np.round(rng.random((4, 20, 20)) + 0.5 * masks, 2).astype(np.float32)  # ties across classes
    assert M.aupro(masks, maps) == pytest.approx(_aupro_brute(masks, maps), abs=1e-9)
    # the evenly spaced thresholds variant approaches the exact value
    assert M.aupro(masks, maps, num_thresholds=5000) == pytest.approx(M.aupro(masks, maps), abs=5e-3)


def test_aupro_undefined_cases_are_nan_with_reason():
    with pytest.warns(M.UndefinedMetricWarning, match="no defect region"):
        assert math.isnan(M.aupro(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4))))
    with pytest.warns(M.UndefinedMetricWarning, match="no good pixels"):
        assert math.isnan(M.aupro(np.ones((1, 4, 4), bool), np.zeros((1, 4, 4))))
    with pytest.raises(ValueError, match="fpr_limit"):
        M.aupro(np.ones((1, 4, 4), bool), np.zeros((1, 4, 4)), fpr_limit=0.0)
    with pytest.raises(ValueError, match="same shape"):
        M.aupro(np.ones((1, 4, 4), bool), np.zeros((1, 4, 5)))


def test_aupro_uninformative_map_is_about_0_15():
    # Independent uniform noise: PRO(t) ~ FPR(t), so the normalised area is ~ (0.3^2 / 2) / 0.3 = 0.15.
    rng = np.random.default_rng(7)
    masks = np.zeros((8, 64, 64), bool)
    masks[:, 10:30, 10:30] = True
    maps = rng.random((8, 64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.aupro(masks, maps) == pytest.approx(0.15, abs=0.02)
