"""A new model version from operator corrections (DESIGN "Model versions"):

    python -m train.update --model v1/model.onnx --feedback FEEDBACK --out v2 [--run RUN] \
        [--data ROOT --category CAT] [--target-fpr F] [--steps 50] [--sign-key KEY] [--json REPORT]

1. The frames operators marked good (`runtime.feedback`, label "good") are learned by the method's own update
   (the run's `update` hook, `train.methods.run`): PatchCore adds their patches to the memory bank under its coreset rule, PaDiM goes on
   with its streaming Gaussian, a gradient-trained method fine-tunes for a bounded number of steps.
2. The updated run is written to OUT/run (config, weights, the parent's history plus one "update" line) and
   exported to OUT/model.onnx at the parent's frame size, channel order and precision.
3. The threshold is recalibrated (`calibration.threshold`, the parent's rule and target FPR) on held-out good
   images: by default the run's own hold-out of train/good. A corrected frame is never among them: their pixel
   hashes are compared and an overlap is refused.
4. The manifest's `version` records the number, the parent's file name and sha256, what was added, and the
   provenance (feedback folder, each correction's frame sha256, who and when, the command); with --sign-key
   the version is signed (`runtime.swap.sign_version`) so a line that holds the key accepts it.

The parent (its artifact, manifest and run) is never written to; OUT must not hold a model yet.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from runtime.errors import cli_exit
from runtime.feedback import frame_sha256, read_feedback
from runtime.files import write_json
from runtime.manifest import ModelVersion, load_manifest, verify_artifact, write_manifest
from train.errors import ConfigError

DEFAULT_STEPS = 50
DEFAULT_TARGET_FPR = 0.01
MODEL_NAME = "model.onnx"


def _fit_state(run: Path) -> Optional[Dict[str, Any]]:
    """The run's fit facts as they stand after its updates (the fit line, then each update line's facts)."""
    from train.runs import HISTORY  # noqa: PLC0415

    path = run / HISTORY
    if not path.is_file():
        return None
    state: Optional[Dict[str, Any]] = None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("fit") is True and state is None:
            state = dict(rec)
        elif rec.get("update") is True and state is not None:
            state.update({k: v for k, v in rec.items() if k not in ("update", "step", "seconds")})
    return state


def _corrected_images(corrections, size_hw) -> np.ndarray:
    from imagesets.images import resize_image  # noqa: PLC0415

    frames = [resize_image(np.ascontiguousarray(c.load_frame()[:, :, ::-1]), tuple(size_hw)) for c in corrections]
    return np.stack(frames).astype(np.uint8)


def _refuse_corrected_in_calibration(chosen, corrections) -> None:
    """The threshold is never calibrated on a corrected frame (DESIGN "Verdicts")."""
    import cv2  # noqa: PLC0415

    corrected = {c.record.get("frame_sha256") for c in corrections}
    for sample in chosen:
        img = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if img is not None and frame_sha256(img) in corrected:
            raise ConfigError(f"calibration image {sample.path} is one of the corrected frames: the threshold must "
                              f"be set on held-out good images, not on the corrections; choose other --data")


def update_version(model: str, feedback: str, out: str, run: Optional[str] = None, data: Optional[str] = None,
                   category: Optional[str] = None, target_fpr: Optional[float] = None,
                   holdout: Optional[float] = None, steps: int = DEFAULT_STEPS, lr: Optional[float] = None,
                   sign_key: Optional[bytes] = None, device: str = "cpu", progress: bool = True,
                   log=lambda msg: None, command: str = "") -> Dict[str, Any]:
    """Write the new version (see the module doc); returns its report."""
    import torch  # noqa: PLC0415

    from calibration.threshold import calibrate_threshold  # noqa: PLC0415
    from calibration.threshold_images import good_images  # noqa: PLC0415
    from export.graph import graph_from_run  # noqa: PLC0415
    from export.onnx import export_onnx  # noqa: PLC0415
    from runtime.swap import sign_version  # noqa: PLC0415
    from train import runs  # noqa: PLC0415
    from train.methods import get_method  # noqa: PLC0415

    t0 = time.time()
    parent = load_manifest(model)
    verify_artifact(model, parent)
    if parent.artifact_kind != "onnx" or parent.precision not in ("fp32", "fp16"):
        raise ConfigError(f"--model {model} is a {parent.precision} {parent.artifact_kind}: give the FP32/FP16 ONNX "
                          f"version (INT8 and engines are built from the new ONNX with calibration.int8 / export.trt)")
    source = run or parent.source_run
    run_dir = Path(source) if source else None
    if run_dir is None or not run_dir.is_dir():
        raise ConfigError(f"the run of {model} ({source!r}) is not here: give --run RUN (the parent's run folder)")
    out_dir = Path(out)
    new_model = out_dir / MODEL_NAME
    if new_model.exists() or out_dir.resolve() == Path(model).resolve().parent:
        raise ConfigError(f"--out {out} already holds a model or is the parent's folder: a new version goes to a "
                          f"new folder (the running version is never overwritten)")
    corrections = read_feedback(feedback, "good")
    if not corrections:
        raise ConfigError(f"no frames marked good in {feedback}: nothing to learn (record corrections with the live "
                          f"view or `python -m runtime.feedback`)")
    confirmed = read_feedback(feedback, "defect")
    net, config = runs.load_model(run_dir, device)
    method = get_method(config.method)
    images = _corrected_images(corrections, config.image_size)
    log(f"{len(corrections)} corrected frames (marked good) from {feedback}; updating {method.label(config.c)}")

    # calibration images first: a clash with the corrections stops before anything is written
    data = data or config.data
    category = category if data != config.data or category else config.category
    if not data:
        raise ConfigError("give --data (and --category): held-out good images to recalibrate the threshold on")
    frac = holdout if holdout is not None else config.holdout
    chosen, _ = good_images(data, category, frac, None)
    _refuse_corrected_in_calibration(chosen, corrections)

    context = {"config": config, "fit": _fit_state(run_dir), "steps": int(steps),
               "lr": float(lr) if lr is not None else float(config.lr) * 0.1, "seed": int(config.seed)}
    t_learn = time.time()
    run = method.start_run(config.options, tuple(config.crop or config.image_size))  # the run's own hooks
    facts = run.update(net, images, torch.device(device), progress, context)
    learn_s = time.time() - t_learn
    new_run = out_dir / "run"
    new_run.mkdir(parents=True, exist_ok=True)
    runs.save_config(new_run, config)
    runs.save_weights(new_run, net)
    history = run_dir / runs.HISTORY
    if history.is_file():
        (new_run / runs.HISTORY).write_text(history.read_text())
    runs.append_history(new_run, {"step": 0, "update": True, "seconds": round(learn_s, 3), **facts})

    graph, _ = graph_from_run(new_run, parent.input.size, parent.input.channel_order)
    b = parent.batch
    export_onnx(graph, config, new_model, batch="dynamic" if b.dynamic else int(b.max), precision=parent.precision,
                source_run=str(new_run), profile=(b.min, b.opt, b.max) if b.dynamic else None,
                notes=[f"update of {parent.artifact} (sha256 {parent.sha256[:12]}) from {len(corrections)} "
                       f"operator corrections"])
    rule_fpr = target_fpr if target_fpr is not None else (
        parent.threshold.target_fpr if parent.threshold is not None and parent.threshold.target_fpr else
        DEFAULT_TARGET_FPR)
    cal = calibrate_threshold(new_model, data, category, target_fpr=float(rule_fpr), holdout=frac,
                              progress=progress, log=log)
    manifest = load_manifest(new_model)
    number = (parent.version.number if parent.version is not None else 1) + 1
    added = dict(facts, corrections_good=len(corrections), corrections_defect_confirmed=len(confirmed))
    manifest.version = ModelVersion(
        number=number, parent_artifact=parent.artifact, parent_sha256=parent.sha256,
        change="update from operator corrections", added=added,
        provenance={
            "feedback": os.path.abspath(feedback), "method_update": f"{method.name}.update",
            "corrections": [{"entry": os.path.basename(c.folder), "frame_sha256": c.record.get("frame_sha256"),
                             "who": c.record.get("who"), "when": c.record.get("when"),
                             "judged_by": c.record.get("model_sha256")} for c in corrections],
            "parent_run": str(run_dir), "parent_threshold": parent.threshold.value if parent.threshold else None,
            "threshold": manifest.threshold.value if manifest.threshold else None,
            "threshold_images": "held-out good images, none of them a corrected frame (pixel hashes compared)",
            "dropped": (["map_standardization: the parent's map statistics belong to its weights; refit them with "
                         "`python -m train.map_stats` on the new run"] if parent.map_standardization else []),
            "command": command, "seconds": round(time.time() - t0, 2)},
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_manifest(new_model, manifest)
    signature = sign_version(new_model, sign_key) if sign_key is not None else None
    return {"model": str(new_model), "sha256": manifest.sha256, "version": number, "parent_sha256": parent.sha256,
            "added": added, "threshold": manifest.threshold.value,
            "parent_threshold": parent.threshold.value if parent.threshold else None,
            "signature": signature, "seconds": round(time.time() - t0, 2), "warnings": cal["warnings"]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.update",
                                description="Write a new model version that learned from operator corrections.")
    p.add_argument("--model", required=True, metavar="PARENT.onnx", help="the running version (FP32/FP16 ONNX)")
    p.add_argument("--feedback", required=True, metavar="DIR", help="feedback folder (runtime.feedback)")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for the version (run/ and model.onnx)")
    p.add_argument("--run", default=None, help="the parent's run folder (default: the manifest's source_run)")
    p.add_argument("--data", default=None, metavar="ROOT",
                   help="good images to recalibrate the threshold on (default: the run's data set, its train/good "
                        "hold-out); never the corrected frames")
    p.add_argument("--category", default=None, metavar="CAT", help="category under --data")
    p.add_argument("--holdout", type=float, default=None, help="hold-out fraction of train/good (default: the run's)")
    p.add_argument("--target-fpr", type=float, default=None, metavar="F",
                   help="threshold rule (default: the parent's target FPR, else 0.01)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"fine-tune steps of a gradient-trained method (default {DEFAULT_STEPS})")
    p.add_argument("--lr", type=float, default=None, help="fine-tune learning rate (default: the run's / 10)")
    p.add_argument("--sign-key", default=None, metavar="FILE", help="sign the version with this key file")
    p.add_argument("--device", default="cpu", help="device for the update (default cpu)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from runtime.swap import read_key  # noqa: PLC0415

    key = read_key(args.sign_key) if args.sign_key else None
    report = update_version(args.model, args.feedback, args.out, run=args.run, data=args.data,
                            category=args.category, target_fpr=args.target_fpr, holdout=args.holdout,
                            steps=args.steps, lr=args.lr, sign_key=key, device=args.device,
                            progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
                            command="python -m train.update " + " ".join(argv))
    print(f"version {report['version']}: {report['model']} (sha256 {report['sha256'][:12]}, parent "
          f"{report['parent_sha256'][:12]}); threshold {report['threshold']:.6g} (parent "
          f"{report['parent_threshold']}); added {json.dumps(report['added'])}; {report['seconds']} s"
          + (f"; signed {report['signature']}" if report["signature"] else ""))
    if args.json:
        write_json(args.json, report, f"--json {args.json}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["update_version", "main", "build_parser"]
