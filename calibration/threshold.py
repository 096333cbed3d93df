"""Score-threshold calibration: the pass/fail threshold and score normalisation of a model, written into its
manifest with their provenance (the threshold is not part of the graph, so recalibrating needs no rebuild).

    python -m calibration.threshold --model MODEL.onnx (--data DIR [--category CAT] | --source VIDEO|URL|DIR|0
        --frames N) (--target-fpr 0.01 [--estimate auto|quantile|tail] | --f1 --val DIR) [--images N]
        [--holdout 0.2] [--outliers DIR] [--backend onnxruntime|openvino|tensorrt|torch|triton] [--device cpu]

Which good images are scored (`calibration.threshold_images`; never a test split, never an image the model
was fitted or trained on: the run's record of content hashes is checked and a match refused):

- ``--data`` in the MVTec / MPDD / VisA layout: the last ``--holdout`` fraction (default 0.2) of train/good in
  sorted path order, which `python -m train` holds out by default; a plain folder: all of its images.
- ``--source``: frames read where the model will run (a video, a stream URL, a camera index, a folder) through
  the runtime's own frame path (decode, colour order, resize: `calibration.source_frames`), ``--frames N`` of
  them, so the camera's compression, exposure and size are in the threshold. Show it good parts only.

Rules (a frame is anomalous when ``score >= value``):

- ``--target-fpr F`` (`calibration.tail.robust_threshold`): good images whose scores stand far from the rest
  (robust z above ``--outlier-z``, default 5) are flagged, written to ``--outliers`` (default
  ``MODEL.outliers/`` beside the model: overlays and outliers.json) for a person to look at, and left out. The
  threshold is the (1 - F) quantile of the kept scores, or a generalised Pareto model of their upper tail
  (``--estimate auto`` takes the tail model when outliers were found or fewer than 5 images are expected
  above the quantile). The provenance's ``estimate`` says which was taken and why, gives both values, and the
  95 % Clopper-Pearson interval of the false-alarm rate the images imply.
- ``--f1 --val DIR``: the F1-optimal threshold over labelled validation images the user supplies
  (``DIR/good/*`` and one sub-folder per defect type), halfway between the lowest score called anomalous and
  the next lower score.

Normalisation: mean and standard deviation (ddof 1) of the kept good scores; the runtime reports
``(score - good_mean) / (threshold - good_mean)``: 0 at a typical good part, 1.0 at the threshold.
Scoring runs the artifact itself through the runtime's backend (`runtime.backends.create_backend`; default
onnxruntime on the CPU, numpy only, no torch), so the threshold is set on the numbers the deployment computes:
calibrate every artifact that ships (FP32, FP16, INT8, engine) through its own backend.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from calibration.data import labelled_folder_samples, load_frames, refuse_test_split, relative_paths
from calibration.errors import CalibrationError
from calibration.outlier_report import write_outliers
from calibration.tail import ESTIMATES, MIN_EXPECTED_ABOVE, OUTLIER_Z, robust_threshold, robust_z
from calibration.threshold_images import DEFAULT_HOLDOUT, data_text, good_frames
from runtime.backends import DEVICES, REGISTRY, create_backend, select_backend
from runtime.errors import cli_exit
from runtime.files import write_json
from runtime.manifest import (Normalization, Threshold, ThresholdProvenance, load_manifest, verify_artifact,
                              write_manifest)

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


def _library_version(backend: str) -> str:
    """'NAME VERSION' of the library a loaded backend runs on (its module of the same name), else the name."""
    version = getattr(sys.modules.get(backend), "__version__", None)
    return f"{backend} {version}" if version else backend


# ------------------------------------------------------------------------------------------------ main function
def _outlier_folder(model: str, outliers: "str | os.PathLike | None") -> str:
    return os.fspath(outliers) if outliers else os.path.splitext(model)[0] + ".outliers"


def calibrate_threshold(
    model: "str | os.PathLike",
    data: "str | os.PathLike | None" = None,
    category: Optional[str] = None,
    *,
    source: "str | int | None" = None,
    frames: Optional[int] = None,
    every: int = 1,
    target_fpr: Optional[float] = None,
    estimate: str = "auto",
    outlier_z: Optional[float] = OUTLIER_Z,
    outliers: "str | os.PathLike | None" = None,
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
    parent: "str | os.PathLike | None" = None,
) -> Dict[str, Any]:
    """Score good images the model never saw (and labelled validation images for the F1 rule), fix the
    threshold and the normalisation, and write them into MODEL's manifest. Returns {threshold, provenance,
    warnings, manifest, good_scores, estimate}."""
    say: Log = log or (lambda msg: None)
    if (target_fpr is None) == (not f1):
        raise CalibrationError("give exactly one rule: --target-fpr F (e.g. 0.01) or --f1 with --val DIR")
    if f1 and val is None:
        raise CalibrationError("--f1 needs --val DIR, a folder of labelled validation images (good/ and one "
                               "sub-folder per defect type) that is not the test split")
    if target_fpr is not None and not 0.0 < float(target_fpr) < 0.5:
        raise CalibrationError(f"--target-fpr must be in (0, 0.5), e.g. 0.01 for 1 % false alarms; got {target_fpr}")
    if (data is None) == (source is None):
        raise CalibrationError("give the good images with exactly one of --data DIR (a hold-out of train/good or a "
                               "folder) and --source VIDEO|URL|DIR|CAMERA (frames where the model will run)")
    if estimate not in ESTIMATES:
        raise CalibrationError(f"--estimate must be one of {', '.join(ESTIMATES)}, got {estimate!r}")
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise CalibrationError(f"--model {path} does not exist: give an exported model (MODEL.onnx, .engine or .xml "
                               f"with MODEL.json beside it; the manifest is updated in place)")
    manifest = load_manifest(path)
    verify_artifact(path, manifest)
    choice = select_backend(manifest.artifact_kind, backend, device)  # refuses a backend that cannot run it

    if data is not None:
        refuse_test_split(data, category, "--data")
    val_root, val_samples = labelled_folder_samples(val, val_category) if f1 else (None, [])
    batch, names, good_desc, warnings = good_frames(manifest, data, category, source, frames, every, holdout,
                                                     images, progress)
    options = {"threads": threads} if threads is not None else {}
    with create_backend(choice.name, path, manifest, device=choice.device, **options) as scorer:
        say(f"scoring {good_desc['used']} good images ({good_desc['selection']}) on {scorer.describe()}")
        maps, good_scores = scorer.infer(batch)
        good_scores = np.asarray(good_scores, dtype=np.float64).reshape(-1)
        val_scores = (scorer.infer(load_frames(val_samples, manifest.input.size, manifest.input.channel_order,
                                               progress))[1].astype(np.float64) if f1 else None)
        scored_by = f"{_library_version(choice.name)}: {scorer.describe()}"
    if not np.isfinite(good_scores).all():
        raise CalibrationError(f"the model gave {int((~np.isfinite(good_scores)).sum())} non-finite scores on the "
                               f"good images: check the model and its precision before calibrating")

    provenance: Dict[str, Any] = {"good_images": good_desc}
    kept_scores, est = good_scores, None
    if f1:
        say(f"scored {len(val_samples)} labelled validation images from {val_root}")
        labels = np.array([s.label for s in val_samples])
        best = f1_threshold(val_scores, labels)
        value, rule, n_images = best["value"], "f1", len(val_samples)
        text = (f"{os.path.abspath(os.fspath(val_root))}: {int((labels == 0).sum())} good + "
                f"{int(labels.sum())} defect labelled validation images (F1-optimal); normalisation from "
                + data_text(good_desc))
        provenance["validation"] = {
            "data": os.path.abspath(os.fspath(val_root)), "good": int((labels == 0).sum()),
            "defect": int(labels.sum()), "f1": best["f1"], "precision": best["precision"],
            "recall": best["recall"], "files": relative_paths(val_samples, val_root),
        }
        definition = ("F1-optimal over the labelled validation images, halfway between the lowest score called "
                      "anomalous and the next lower score")
    else:
        if good_scores.size < 2:
            raise CalibrationError(f"the target-FPR rule needs at least 2 good images, got {good_scores.size}")
        try:
            est = robust_threshold(good_scores, float(target_fpr), estimate, outlier_z)
        except ValueError as e:
            raise CalibrationError(str(e)) from None
        value, rule, n_images = est["value"], "target_fpr", int(good_scores.size)
        kept = np.ones(good_scores.size, bool)
        kept[est["outliers"]] = False
        kept_scores = good_scores[kept]
        text = data_text(good_desc)
        how = ("the (1 - target_fpr) quantile of a generalised Pareto model of the upper tail"
               if est["estimate"] == "tail" else "the (1 - target_fpr) quantile (numpy.quantile)")
        definition = f"{how} of the good scores, outlying images left out"
        say(f"estimate: {est['estimate']} ({est['why']})")
        if est["estimate"] == "quantile" and est["kept"] * float(target_fpr) < MIN_EXPECTED_ABOVE:
            warnings.append(f"only {est['kept']} good images: about {est['kept'] * float(target_fpr):.1f} of them lie "
                            f"above the {1 - float(target_fpr):.4g} quantile, so the threshold is a poor estimate of "
                            f"the target FPR {target_fpr}; use at least "
                            f"{int(np.ceil(MIN_EXPECTED_ABOVE / float(target_fpr)))} good images")
    mean, std = normalization(kept_scores)
    if not value > mean:
        raise CalibrationError(f"the {rule} threshold {value:.6g} is not above the mean good score {mean:.6g}: the "
                               f"model does not separate these images; check the data, or use another rule")
    folder = None
    if est is not None:
        z = robust_z(good_scores, kept_scores)
        flagged = [{"image": names[i], "score": float(good_scores[i]), "robust_z": float(z[i])}
                   for i in est["outliers"]]
        if flagged:
            folder = _outlier_folder(path, outliers)
            write_outliers(folder, batch, maps[:, 0] if maps.ndim == 4 else maps, good_scores, z, names,
                           est["outliers"], manifest.input.channel_order, mean, value)
            warnings.append(f"{len(flagged)} good image(s) score far above the rest (left out; look at them in "
                            f"{folder}): a mislabelled part or a real change of the line")
        provenance["estimate"] = {k: v for k, v in est.items() if k != "outliers"}
        provenance["estimate"]["outliers"] = flagged
    if parent is not None:  # a derived artifact calibrated like its parent: how far the thresholds lie apart
        from calibration.recalibrate import compare

        diff = compare(load_manifest(os.fspath(parent)), value)
        (provenance.get("estimate") or provenance["validation"])["parent"] = diff
        if "difference_normalised" in diff:
            say(f"threshold {value:.6g} vs the parent's {diff['parent_threshold']:.6g}: "
                f"{100 * diff['difference_normalised']:+.1f} % of the parent's good-mean-to-threshold band")
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
    threshold = Threshold(value=float(value), rule=rule, images=int(n_images), data=text, date=date,
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
            "good_scores": good_scores, "estimate": est, "outliers": folder}


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m calibration.threshold",
        description="Calibrate the pass/fail threshold and score normalisation of an exported model on held-out "
                    "good images and write them, with their provenance, into its manifest.")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="exported model (MODEL.onnx FP32/FP16/INT8, .engine, .xml); MODEL.json is updated in place")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="ROOT",
                       help="data root (MVTec/MPDD/VisA layout: a hold-out of train/good is used) or a folder of good "
                            "validation images (all are used)")
    where.add_argument("--source", metavar="SRC",
                       help="good frames where the model will run: a video file, a stream URL, a camera index or a "
                            "folder, read through the runtime's frame path (decode, colour order, resize)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="with --source: read N good frames (default: every frame of a file or folder; required "
                        "for a camera or stream)")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="with --source: keep one frame in K (spread the frames over a slow line; default 1)")
    p.add_argument("--category", default=None, metavar="CAT", help="category under --data")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--target-fpr", type=float, default=None, metavar="F",
                      help="false-alarm rate to aim at, e.g. 0.01: threshold from the good scores' (1 - F) quantile "
                           "or their tail model (--estimate)")
    p.add_argument("--estimate", default="auto", choices=ESTIMATES,
                   help="for --target-fpr: quantile, tail (generalised Pareto model of the upper tail) or auto (the "
                        "tail model when outlying good images were found or the quantile rests on fewer than 5 "
                        "images; default)")
    p.add_argument("--outlier-z", type=float, default=OUTLIER_Z, metavar="Z",
                   help=f"flag good images whose robust z-score (median/MAD) exceeds Z and leave them out (default "
                        f"{OUTLIER_Z:g})")
    p.add_argument("--outliers", default=None, metavar="DIR",
                   help="where to write flagged good images (overlays and outliers.json; default MODEL.outliers/ "
                        "beside the model)")
    rule.add_argument("--f1", action="store_true", help="F1-optimal threshold over labelled images (--val)")
    p.add_argument("--val", default=None, metavar="DIR",
                   help="labelled validation folder for --f1: good/ and one sub-folder per defect type (never the "
                        "test split)")
    p.add_argument("--val-category", default=None, metavar="CAT", help="category sub-folder of --val")
    p.add_argument("--images", type=int, default=None, metavar="N", help="use at most N good images (evenly spaced)")
    p.add_argument("--holdout", type=float, default=None,
                   help=f"fraction of train/good held out, last in sorted order (default {DEFAULT_HOLDOUT}, the "
                        f"hold-out of `python -m train`; for a plain folder default: all images)")
    p.add_argument("--backend", default="onnxruntime", choices=tuple(REGISTRY),
                   help="runtime backend that scores the images (default onnxruntime: the embedded default; "
                        "calibrate through the backend that will run the model when it computes differently, e.g. "
                        "openvino with bf16, or tensorrt for an engine)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="device for the backend (default cpu: the same numbers on every machine)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of the backend (default: the physical cores)")
    p.add_argument("--like", default=None, metavar="PARENT",
                   help="calibrate like PARENT (the calibrated FP32 model this FP16/INT8 model or engine was made "
                        "from): its rule and good images, scored through this artifact's own --backend")
    p.add_argument("--dry-run", action="store_true", help="print the threshold, do not write the manifest")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write threshold and provenance to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.source is None and (args.frames is not None or args.every != 1):
        raise CalibrationError("--frames and --every read from --source; with --data use --images N")
    if args.source is not None and (args.category or args.holdout is not None or args.images is not None):
        raise CalibrationError("--category, --holdout and --images choose images under --data; --source reads "
                               "--frames N frames")
    common = dict(outliers=args.outliers, backend=args.backend, device=args.device, threads=args.threads,
                  progress=not args.no_progress, write=not args.dry_run, log=lambda m: print(m, file=sys.stderr))
    if args.like:
        from calibration.recalibrate import like_parent

        if args.data or args.source or args.target_fpr is not None or args.f1:
            raise CalibrationError("--like takes the rule and the good images from PARENT: drop --data/--source "
                                   "and --target-fpr/--f1")
        res = calibrate_threshold(args.model, parent=args.like, **like_parent(args.like), **common)
    else:
        res = calibrate_threshold(
            args.model, args.data, args.category, source=args.source, frames=args.frames, every=args.every,
            target_fpr=args.target_fpr, estimate=args.estimate, outlier_z=args.outlier_z, f1=args.f1, val=args.val,
            val_category=args.val_category, images=args.images, holdout=args.holdout, **common)
    t = res["threshold"]
    rule = f"target FPR {t.target_fpr}" if t.rule == "target_fpr" else "F1-optimal"
    print(f"threshold {t.value:.6g} ({rule}; {t.images} images) normalisation: "
          f"good_mean {t.normalization.good_mean:.6g}, good_std {t.normalization.good_std:.6g}")
    print(f"images: {t.data}")
    est = res["estimate"]
    if est is not None:
        tail = f"{est['tail']['value']:.6g}" if est["tail"] else "n/a"
        ci = est["fpr_interval"]
        print(f"estimate: {est['estimate']} ({est['why']}); quantile {est['quantile']:.6g} (all images "
              f"{est['quantile_all_images']:.6g}), tail model {tail}; {est['kept_at_or_above']} of {est['kept']} "
              f"good images at or above: false-alarm rate {100 * ci['low']:.2f}-{100 * ci['high']:.2f} % (95 %)")
        if est["outliers"]:
            print(f"outliers: {len(est['outliers'])} good images left out; overlays and scores in {res['outliers']}")
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
