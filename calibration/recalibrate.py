"""Calibrate a derived artifact (FP16/INT8 ONNX, TensorRT engine, OpenVINO IR) the way its parent was: the same
rule and the same good images, scored through the artifact's own backend and precision, so every artifact that
runs can say pass/fail on its own numbers.

`like_parent(parent)` turns the parent's threshold provenance into `calibrate_threshold` arguments (for the
F1 rule, the labelled validation folder too); `compare` records how far the two thresholds lie apart on the
parent's normalised scale (0 = the good mean, 1 = the threshold), which says whether the precision moved the
scores. `calibration.int8` calls this for the INT8 model it writes; `python -m calibration.threshold --model
ENGINE --like PARENT.onnx --backend tensorrt --device cuda` does it for an engine.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from calibration.errors import CalibrationError
from runtime.manifest import Manifest, load_manifest


def like_parent(parent_path: "str | os.PathLike") -> Dict[str, Any]:
    """`calibrate_threshold` keyword arguments that repeat PARENT's calibration (rule, images, estimate)."""
    parent = load_manifest(os.fspath(parent_path))
    t, prov = parent.threshold, parent.threshold_provenance
    if t is None or prov is None:
        raise CalibrationError(f"--like {parent_path}: it has no calibrated threshold; calibrate it first "
                               f"(python -m calibration.threshold --model {parent_path} ...)")
    good = dict(prov.good_images or {})
    kw: Dict[str, Any] = {}
    if good.get("source") == "frames":
        kw.update(source=good.get("argument"), frames=good.get("used"), every=int(good.get("every", 1)))
        if not kw["source"] or "***" in str(kw["source"]):
            raise CalibrationError(f"--like {parent_path}: its frames came from {good.get('spec')}, which cannot be "
                                   f"reopened from the record; give --source and --frames")
    elif good.get("source") in ("holdout", "folder"):
        kw.update(data=good["data"], category=good.get("category"), images=good.get("used"))
        if good.get("source") == "holdout":
            kw["holdout"] = good.get("fraction")
        elif "last" in str(good.get("selection", "")):
            raise CalibrationError(f"--like {parent_path}: its folder selection ({good.get('selection')}) cannot "
                                   f"be repeated; give --data and the options by hand")
    else:
        raise CalibrationError(f"--like {parent_path}: its threshold provenance names no good images")
    if t.rule == "target_fpr":
        est = prov.estimate or {}
        kw.update(target_fpr=t.target_fpr, estimate=est.get("estimate", "quantile") if est else "quantile")
        if est.get("outlier_z") is not None:
            kw["outlier_z"] = est["outlier_z"]
    elif t.rule == "f1" and prov.validation:
        kw.update(f1=True, val=prov.validation["data"])
    else:
        raise CalibrationError(f"--like {parent_path}: rule {t.rule!r} cannot be repeated; calibrate by hand")
    return kw


def compare(parent: Manifest, threshold_value: float) -> Dict[str, Any]:
    """How far a derived artifact's threshold lies from its parent's, in the parent's normalised units."""
    t = parent.threshold
    out: Dict[str, Any] = {"parent_sha256": parent.sha256, "parent_threshold": t.value}
    if t.normalization is not None:
        den = float(t.value) - float(t.normalization.good_mean)
        out["difference_normalised"] = (float(threshold_value) - float(t.value)) / den
    return out


__all__ = ["like_parent", "compare"]
