"""Score-threshold calibration: the pass/fail threshold and score normalisation of a model, written into its
manifest with their provenance (the threshold is not part of the graph, so recalibrating needs no rebuild).

    python -m calibration.threshold --model MODEL.onnx --data DIR [--category CAT] \
        (--target-fpr 0.01 | --f1 --val DIR [--val-category CAT]) [--images N] [--holdout 0.2] \
        [--backend onnxruntime|openvino|tensorrt|torch|triton] [--device cpu] [--threads N]

Which good images are scored (never a test split; such a path is refused):

- ``--data`` in the MVTec / MPDD / VisA layout: a hold-out of the good *training* images, the last
  ``--holdout`` fraction (default 0.2) in sorted path order: the same rule as `python -m train --holdout`, so a
  run trained with that option never saw them (read from the run's config.json through the manifest's
  source_run). Without it they were likely trained on: their scores run low and the realised false-positive
  rate on new good parts may be above the target; the provenance and a warning say so.
- ``--data`` a plain folder of good images (no layout, no category): all of them (a user-given validation
  folder).
- ``--images N`` keeps N of those, evenly spaced.

Rules (a frame is anomalous when ``score >= value``):

- ``--target-fpr F``: the (1 - F) quantile of the good scores, linearly interpolated (`numpy.quantile`).
  With few images this is a poor estimate (the 0.99 quantile of 20 scores is set by the top two); a warning
  says so when fewer than 5 good images are expected above the threshold.
- ``--f1 --val DIR``: the F1-optimal threshold over labelled validation images the user supplies
  (``DIR/good/*`` and one sub-folder per defect type), halfway between the lowest score called anomalous and
  the next lower score.

Normalisation: mean and standard deviation (ddof 1) of the good scores; the runtime reports
``(score - good_mean) / (threshold - good_mean)``: 0 at a typical good part, 1.0 at the threshold.
Scoring runs the artifact itself through the runtime's backend (`runtime.backends.create_backend`; default
onnxruntime on the CPU, numpy only, no torch), so the threshold is set on the numbers the deployment computes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from calibration.data import (good_train_samples, holdout as take_holdout, is_plain_folder, labelled_folder_samples,
                              load_frames, refuse_test_split, relative_paths, spread)
from calibration.errors import CalibrationError
from runtime.backends import DEVICES, REGISTRY, create_backend, select_backend
from runtime.errors import cli_exit
from runtime.files import write_json
from runtime.manifest import (Normalization, Threshold, ThresholdProvenance, load_manifest, verify_artifact,
                              write_manifest)

DEFAULT_HOLDOUT = 0.2
#: Below this many good images expected above the threshold, the quantile is flagged as a poor estimate.
MIN_EXPECTED_ABOVE = 5

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ rules
def fpr_threshold(good_scores: Sequence[float], target_fpr: float) -> float:
    """The (1 - target_fpr) quantile of the good scores (linear interpolation)."""
    s = np.asarray(good_scores, dtype=np.float64).reshape(-1)
    if s.size < 2:
        raise CalibrationError(f"the target-FPR rule needs at least 2 good images, got {s.size}")
    if not 0.0 < float(target_fpr) < 1.0:
        raise CalibrationError(f"--target-fpr must be in (0, 1), got {target_fpr}")
    return float(np.quantile(s, 1.0 - float(target_fpr)))


def f1_threshold(scores: Sequence[float], labels: Sequence[int]) -> Dict[str, float]:
    """F1-optimal threshold (anomalous when score >= value) over labelled scores: {value, f1, precision, recall}.

    The value lies halfway between the lowest score called anomalous and the next lower score, so the
    labelled images are classified the same way with some margin."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.size != y.size:
        raise CalibrationError(f"{s.size} scores but {y.size} labels")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise CalibrationError(f"the F1 rule needs good and defect images, got {y.size - n_pos} good and "
                               f"{n_pos} defect")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # thresholds between distinct scores only
    idx = np.nonzero(last_of_tie)[0]
    precision = tp[idx] / (tp[idx] + fp[idx])
    recall = tp[idx] / n_pos
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    k = int(np.argmax(f1))
    i = idx[k]
    value = s_sorted[i]
    if i + 1 < s_sorted.size:
        value = 0.5 * (s_sorted[i] + s_sorted[i + 1])
    return {"value": float(value), "f1": float(f1[k]), "precision": float(precision[k]), "recall": float(recall[k])}


#: Quantiles of the good scores kept in the provenance: the runtime's drift band (`runtime.drift`) is built on them.
GOOD_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def good_quantiles(good_scores: Sequence[float]) -> Dict[str, float]:
    """{"good_q05": ..., "good_q50": ..., "good_q99": ...}: the good-score distribution the runtime compares a
    running line with (`runtime.drift.DriftBand`)."""
    s = np.asarray(good_scores, dtype=np.float64).reshape(-1)
    return {f"good_q{round(q * 100):02d}": float(np.quantile(s, q)) for q in GOOD_QUANTILES}


def normalization(good_scores: Sequence[float]) -> Tuple[float, float]:
    s = np.asarray(good_scores, dtype=np.float64).reshape(-1)
    return float(s.mean()), float(s.std(ddof=1)) if s.size > 1 else 0.0


# ------------------------------------------------------------------------------------------------ images
def run_holdout(source_run: Optional[str]) -> Optional[float]:
    """The `--holdout` fraction the model's training run kept out of training (its config.json), if known."""
    if not source_run:
        return None
    try:
        with open(os.path.join(source_run, "config.json")) as f:
            value = json.load(f).get("holdout")
    except (OSError, ValueError):
        return None
    return float(value) if value else None


def good_images(data: "str | os.PathLike", category: Optional[str], holdout: Optional[float],
                images: Optional[int], trained_holdout: Optional[float] = None) -> Tuple[list, Dict[str, Any]]:
    """The good images to score and a description of the rule that picked them."""
    pool = good_train_samples(data, category, "--data")
    root = os.path.abspath(os.fspath(data))
    if is_plain_folder(data, category):
        chosen = take_holdout(pool, holdout) if holdout is not None else pool
        desc: Dict[str, Any] = {
            "source": "folder", "data": root, "available": len(pool),
            "selection": ("all images of the folder" if holdout is None else
                          f"the last {holdout:.0%} of the folder in sorted path order"),
        }
    else:
        frac = DEFAULT_HOLDOUT if holdout is None else float(holdout)
        chosen = take_holdout(pool, frac)
        desc = {
            "source": "holdout", "data": root, "category": category, "split": "train/good", "fraction": frac,
            "available": len(pool),
            "selection": f"the last {frac:.0%} of the good training images in sorted path order",
        }
        if trained_holdout is not None and trained_holdout >= frac:
            desc["unseen"] = f"the run was trained with --holdout {trained_holdout:g}: these images were not trained on"
        else:
            desc["caveat"] = ("the run may have trained on these images (train it with `python -m train ... "
                              f"--holdout {frac:g}`); their scores run low, so the false-positive rate on new good "
                              "parts may exceed the target: prefer unseen good images")
    if images is not None:
        if int(images) < 1:
            raise CalibrationError(f"--images must be >= 1, got {images}")
        if int(images) < len(chosen):
            chosen = spread(chosen, int(images))
            desc["selection"] += f", {len(chosen)} of them evenly spaced (--images)"
    desc["used"] = len(chosen)
    desc["files"] = relative_paths(chosen, data)
    return chosen, desc


def _data_text(desc: Dict[str, Any]) -> str:
    where = desc["data"]
    if desc.get("category"):
        where = os.path.join(where, desc["category"], "train", "good")
    return f"{where}: {desc['selection']} ({desc['used']} of {desc['available']} images)"


def _library_version(backend: str) -> str:
    """'NAME VERSION' of the library a loaded backend runs on (its module of the same name), else the name."""
    version = getattr(sys.modules.get(backend), "__version__", None)
    return f"{backend} {version}" if version else backend


# ------------------------------------------------------------------------------------------------ main function
def calibrate_threshold(
    model: "str | os.PathLike",
    data: "str | os.PathLike",
    category: Optional[str] = None,
    *,
    target_fpr: Optional[float] = None,
    f1: bool = False,
    val: "str | os.PathLike | None" = None,
    val_category: Optional[str] = None,
    images: Optional[int] = None,
    holdout: Optional[float] = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    threads: Optional[int] = None,
    progress: bool = True,
    write: bool = True,
    log: Optional[Log] = None,
) -> Dict[str, Any]:
    """Score held-out good images (and labelled validation images for the F1 rule), fix the threshold and the
    normalisation, and write them into MODEL's manifest. Returns {threshold, provenance, warnings}."""
    say: Log = log or (lambda msg: None)
    if (target_fpr is None) == (not f1):
        raise CalibrationError("give exactly one rule: --target-fpr F (e.g. 0.01) or --f1 with --val DIR")
    if f1 and val is None:
        raise CalibrationError("--f1 needs --val DIR, a folder of labelled validation images (good/ and one "
                               "sub-folder per defect type) that is not the test split")
    if target_fpr is not None and not 0.0 < float(target_fpr) < 0.5:
        raise CalibrationError(f"--target-fpr must be in (0, 0.5), e.g. 0.01 for 1 % false alarms; got {target_fpr}")
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise CalibrationError(f"--model {path} does not exist: give an exported model (MODEL.onnx, .engine or .xml "
                               f"with MODEL.json beside it; the manifest is updated in place)")
    manifest = load_manifest(path)
    verify_artifact(path, manifest)
    size_hw = manifest.input.size
    choice = select_backend(manifest.artifact_kind, backend, device)  # refuses a backend that cannot run it

    refuse_test_split(data, category, "--data")
    val_root, val_samples = labelled_folder_samples(val, val_category) if f1 else (None, [])
    goods, good_desc = good_images(data, category, holdout, images, run_holdout(manifest.source_run))
    options = {"threads": threads} if threads is not None else {}
    with create_backend(choice.name, path, manifest, device=choice.device, **options) as scorer:
        say(f"scoring {len(goods)} good images ({good_desc['selection']}) on {scorer.describe()}")
        order = manifest.input.channel_order  # the backend takes frames in the model's channel order
        good_scores = scorer.infer(load_frames(goods, size_hw, order, progress))[1].astype(np.float64)
        val_scores = (scorer.infer(load_frames(val_samples, size_hw, order, progress))[1].astype(np.float64)
                      if f1 else None)
        scored_by = f"{_library_version(choice.name)}: {scorer.describe()}"
    mean, std = normalization(good_scores)
    warnings: List[str] = []
    if good_desc.get("caveat"):
        warnings.append("the good images are a hold-out of train/good that the run may have trained on: the "
                        "real false-positive rate may exceed the target; prefer --data with a folder of unseen "
                        "good images")

    provenance: Dict[str, Any] = {"good_images": good_desc}
    if f1:
        say(f"scored {len(val_samples)} labelled validation images from {val_root}")
        labels = np.array([s.label for s in val_samples])
        best = f1_threshold(val_scores, labels)
        value, rule, n_images = best["value"], "f1", len(val_samples)
        data_text = (f"{os.path.abspath(os.fspath(val_root))}: {int((labels == 0).sum())} good + "
                     f"{int(labels.sum())} defect labelled validation images (F1-optimal); normalisation from "
                     + _data_text(good_desc))
        provenance["validation"] = {
            "data": os.path.abspath(os.fspath(val_root)), "good": int((labels == 0).sum()),
            "defect": int(labels.sum()), "f1": best["f1"], "precision": best["precision"],
            "recall": best["recall"], "files": relative_paths(val_samples, val_root),
        }
        definition = ("F1-optimal over the labelled validation images, halfway between the lowest score called "
                      "anomalous and the next lower score")
    else:
        value, rule, n_images = fpr_threshold(good_scores, float(target_fpr)), "target_fpr", len(goods)
        data_text = _data_text(good_desc)
        definition = "the (1 - target_fpr) quantile of the good scores, linear interpolation (numpy.quantile)"
        expected_above = len(goods) * float(target_fpr)
        if expected_above < MIN_EXPECTED_ABOVE:
            warnings.append(f"only {len(goods)} good images: about {expected_above:.1f} of them lie above the "
                            f"{1 - float(target_fpr):.4g} quantile, so the threshold is a poor estimate of the "
                            f"target FPR {target_fpr}; use at least "
                            f"{int(np.ceil(MIN_EXPECTED_ABOVE / float(target_fpr)))} good images")
    if not value > mean:
        raise CalibrationError(f"the {rule} threshold {value:.6g} is not above the mean good score {mean:.6g}: the "
                               f"model does not separate these images; check the data, or use another rule")
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    provenance.update({
        "rule": rule, "target_fpr": float(target_fpr) if target_fpr is not None else None,
        "definition": definition + "; a frame is anomalous when score >= value",
        "scores": {"good_mean": mean, "good_std": std, "good_min": float(good_scores.min()),
                   "good_max": float(good_scores.max()),
                   "good_fraction_at_or_above": float(np.mean(good_scores >= value)),
                   **good_quantiles(good_scores)},
        "backend": scored_by, "model_sha256": manifest.sha256, "date": date,
        "warnings": warnings,
    })
    threshold = Threshold(value=float(value), rule=rule, images=int(n_images), data=data_text, date=date,
                          target_fpr=float(target_fpr) if target_fpr is not None else None,
                          normalization=Normalization(good_mean=mean, good_std=std))
    for w in warnings:
        say(f"warning: {w}")
    written = None
    if write:
        manifest.threshold = threshold
        manifest.threshold_provenance = ThresholdProvenance(**provenance)
        written = write_manifest(path, manifest)
    return {"threshold": threshold, "provenance": provenance, "warnings": warnings, "manifest": written,
            "good_scores": good_scores}


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m calibration.threshold",
        description="Calibrate the pass/fail threshold and score normalisation of an exported model on held-out "
                    "good images and write them, with their provenance, into its manifest.")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="exported model (MODEL.onnx FP32/FP16/INT8, .engine, .xml); MODEL.json is updated in place")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="data root (MVTec/MPDD/VisA layout: a hold-out of train/good is used) or a folder of good "
                        "validation images (all are used)")
    p.add_argument("--category", default=None, metavar="CAT", help="category under --data")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--target-fpr", type=float, default=None, metavar="F",
                      help="threshold = (1 - F) quantile of the good scores, e.g. 0.01")
    rule.add_argument("--f1", action="store_true", help="F1-optimal threshold over labelled images (--val)")
    p.add_argument("--val", default=None, metavar="DIR",
                   help="labelled validation folder for --f1: good/ and one sub-folder per defect type (never the "
                        "test split)")
    p.add_argument("--val-category", default=None, metavar="CAT", help="category sub-folder of --val")
    p.add_argument("--images", type=int, default=None, metavar="N", help="use at most N good images (evenly spaced)")
    p.add_argument("--holdout", type=float, default=None,
                   help=f"fraction of train/good held out, last in sorted order (default {DEFAULT_HOLDOUT}; for a "
                        f"plain folder default: all images)")
    p.add_argument("--backend", default="onnxruntime", choices=tuple(REGISTRY),
                   help="runtime backend that scores the images (default onnxruntime: the embedded default; "
                        "calibrate through the backend that will run the model when it computes differently, e.g. "
                        "openvino with bf16, or tensorrt for an engine)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="device for the backend (default cpu: the same numbers on every machine)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of the backend (default: the physical cores)")
    p.add_argument("--dry-run", action="store_true", help="print the threshold, do not write the manifest")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write threshold and provenance to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(args: argparse.Namespace) -> int:
    res = calibrate_threshold(
        args.model, args.data, args.category, target_fpr=args.target_fpr, f1=args.f1, val=args.val,
        val_category=args.val_category, images=args.images, holdout=args.holdout, backend=args.backend,
        device=args.device, threads=args.threads, progress=not args.no_progress, write=not args.dry_run,
        log=lambda m: print(m, file=sys.stderr))
    t = res["threshold"]
    rule = f"target FPR {t.target_fpr}" if t.rule == "target_fpr" else "F1-optimal"
    print(f"threshold {t.value:.6g} ({rule}; {t.images} images) normalisation: "
          f"good_mean {t.normalization.good_mean:.6g}, good_std {t.normalization.good_std:.6g}")
    print(f"images: {t.data}")
    print(f"manifest: {res['manifest']}" if res["manifest"] else "manifest not written (--dry-run)")
    if args.json:
        write_json(args.json, what=f"--json {args.json}", data={
            "threshold": {"value": t.value, "rule": t.rule, "target_fpr": t.target_fpr, "images": t.images,
                          "data": t.data, "date": t.date,
                          "normalization": {"good_mean": t.normalization.good_mean,
                                            "good_std": t.normalization.good_std}},
            "provenance": res["provenance"]})
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
