"""Verdict metrics: recall at fixed false-alarm rates and at a threshold, against a hand count."""
from __future__ import annotations

import numpy as np

from benchmarks.report import verdict_lines
from calibration.verdicts import at_threshold, recall_at_fpr, verdicts


def _data():
    good = np.arange(100, dtype=float)            # 0..99
    bad = np.array([99.5, 98.5, 97.5, 50.0, 10.0])
    labels = np.r_[np.zeros(100), np.ones(5)]
    return labels, np.r_[good, bad]


def test_recall_at_fpr_counts_by_hand():
    labels, scores = _data()
    # 1 % of 100 good images: one may score at or above the threshold, so 98 must pass: 99.5 and 98.5 are caught
    assert recall_at_fpr(labels, scores, 0.01) == 2 / 5
    # 0.1 %: none may, the threshold lies above 99: only 99.5
    assert recall_at_fpr(labels, scores, 0.001) == 1 / 5
    # 5 %: five may, above 94: three caught
    assert recall_at_fpr(labels, scores, 0.05) == 3 / 5


def test_at_threshold_and_per_type():
    labels, scores = _data()
    r = at_threshold(labels, scores, 98.0)
    assert (r["false_alarms"], r["fpr"], r["recall"], r["missed"]) == (2, 0.02, 0.4, 3)
    types = ["good"] * 100 + ["scratch", "scratch", "blob", "blob", "blob"]
    v = verdicts(labels, scores, types, threshold=98.0)
    assert v["per_defect_type"]["scratch"]["recall_at_threshold"] == 1.0
    assert v["per_defect_type"]["blob"]["recall_at_fpr"]["0.01"] == 0.0
    text = "\n".join(verdict_lines(v))
    assert "recall 40.0 %, false alarms 2.0 % (2 of 100)" in text
    assert "no threshold" in "\n".join(verdict_lines(verdicts(labels, scores, types)))


def test_evaluate_reports_verdicts_at_the_given_threshold():
    from calibration.evaluate import evaluate, json_ready

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 50, (10, 8, 8, 3), dtype=np.uint8)
    frames[6:] += 150  # the last four are bright: the "defects"
    labels = [0] * 6 + [1] * 4
    types = ["good"] * 6 + ["bright"] * 4

    def infer(batch):  # score = mean brightness
        maps = batch.mean(axis=3, dtype=np.float32)[:, None]
        return maps, maps.reshape(len(batch), -1).mean(1)

    r = evaluate(infer, frames, labels, None, types, progress=False, threshold=100.0)
    v = json_ready(r)["verdicts"]
    assert v["recall_at_fpr"]["0.01"] == 1.0 and v["at_threshold"]["fpr"] == 0.0
    assert v["at_threshold"]["recall"] == 1.0 and v["per_defect_type"]["bright"]["recall_at_threshold"] == 1.0
    assert evaluate(infer, frames, labels, None, types, progress=False)["verdicts"]["at_threshold"] is None
