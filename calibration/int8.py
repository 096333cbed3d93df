"""INT8 post-training quantisation of an inspection graph into a Q/DQ ONNX (TensorRT 8.5 ... 11, OpenVINO, or
ONNX Runtime's CPU provider), with an accuracy guard and a report.

    python -m calibration.int8 --model MODEL.onnx --data DIR [--category CAT] [--images 64] \
        [--out MODEL-int8.onnx] [--method minmax|entropy|percentile] [--eval-data DIR --eval-category CAT] \
        [--keep NODE_PREFIX ...] [--placement tensorrt|onnxruntime] [--headroom K] \
        [--calib-cache PATH --trt-version 8.5]

What it does, in order (one module each):

1. Calibration frames (`calibration.data`): good *training* images only (a path inside a ``test/`` split is
   refused), evenly spaced over the sorted folder, decoded and resized on the host as the runtime does.
2. Ranges and Q/DQ placement (`calibration.quantizer`, graph plumbing in `calibration.qdq`): ranges once on the
   pre-processing + network sub-graph; Q/DQ only on the nodes under the prefixes the method declares
   (``MethodSpec.int8_parts``: the manifest's ``graph_parts["int8"]``; for older manifests, the method's declaration);
   pre-processing and scoring stay FP32. ``--placement tensorrt`` (default) is TensorRT's form;
   ``--placement onnxruntime`` is the fastest form for ONNX Runtime's CPU provider (UINT8 activations).
3. Accuracy-guarded search (`calibration.int8_search`): FP32 vs INT8 AUROC on the test split of the data (or
   ``--eval-data``) through the runtime's ONNX Runtime backend; when INT8 loses more than ``--max-loss``
   points, the blocks most sensitive on images with synthetic defects are kept FP32 (at most 3; ``--keep`` by
   hand, ``--no-auto-keep`` off). ``--headroom K`` widens every range by K.
4. Report and output (`calibration.int8_report`): ``MODEL-int8.onnx`` and its manifest (a copy of the FP32 one
   with precision "int8", its own sha256 and the ``quantization`` report; when the FP32 model has a threshold,
   the INT8 model gets its own, calibrated like it (same rule and good images, `calibration.recalibrate`) on
   the INT8 scores, so it can say pass/fail); for the tensorrt placement,
   where the TensorRT version still reads one (8.x), a calibration cache from the same scales
   (`calibration.trt_cache`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

import onnx

from calibration import qdq
from calibration.data import good_train_samples, load_frames, refuse_test_split, relative_paths, spread
from calibration.errors import CalibrationError
from calibration.int8_report import (build_report, finish_report, maybe_trt_cache, print_report, range_overshoot,
                                     write_int8_manifest)
from calibration.int8_search import GOAL_POINTS, SENSITIVITY_IMAGES, EvalSet, GuardedSearch, Probes, open_backend
from calibration.quantizer import METHODS, PLACEMENTS, Log, Quantizer, get_placement
from calibration.synthetic import with_defects
from runtime.backends.onnxruntime import import_onnxruntime
from runtime.errors import InspectError, cli_exit, writing
from runtime.files import write_json
from runtime.manifest import load_manifest, verify_artifact


def _check_paths(fp32_path: str, out_path: str) -> None:
    if not os.path.isfile(fp32_path):
        raise CalibrationError(f"model {fp32_path} does not exist; export one with `python -m export.onnx --run RUN "
                               f"--out MODEL.onnx`")
    if os.path.abspath(fp32_path) == os.path.abspath(out_path):
        raise CalibrationError(f"--out {out_path} is the FP32 model itself; give another file, e.g. MODEL-int8.onnx")
    if not out_path.lower().endswith(".onnx"):
        raise CalibrationError(f"--out {out_path} must end in .onnx")


def _eval_set(eval_data, eval_category, calib_data, category, size_hw, map_hw, channel_order, progress, say: Log):
    """The test split FP32 and INT8 are compared on; (None, why) when --data is a plain folder of good images."""
    e_data, e_cat = (eval_data, eval_category or category) if eval_data is not None else (calib_data, category)
    try:
        return EvalSet(os.fspath(e_data), e_cat, size_hw, map_hw, channel_order, progress), ""
    except InspectError as e:  # no test split is normal for a plain folder of good images
        if eval_data is not None:
            raise
        note = f"no evaluation set ({e}); accuracy not measured: pass --eval-data DIR --eval-category CAT"
        say(note)
        return None, note


def quantize_onnx(
    fp32_onnx: "str | os.PathLike",
    out_onnx: "str | os.PathLike",
    calib_data: "str | os.PathLike",
    category: Optional[str] = None,
    images: Optional[int] = 64,
    method: str = "minmax",
    *,
    placement: str = "tensorrt",
    headroom: float = 1.0,
    eval_data: "str | os.PathLike | None" = None,
    eval_category: Optional[str] = None,
    keep: Sequence[str] = (),
    prefixes: Sequence[str] = (),
    auto_keep: bool = True,
    max_loss_points: float = GOAL_POINTS,
    sensitivity: bool = False,
    calib_cache: "str | os.PathLike | None" = None,
    trt_version: Optional[str] = None,
    percentile: float = 99.999,
    batch_size: int = 4,
    threads: Optional[int] = None,
    progress: bool = True,
    log: Optional[Log] = None,
) -> Dict[str, Any]:
    """Quantise `fp32_onnx` to a Q/DQ INT8 graph at `out_onnx` (with its manifest); returns the report that is
    also stored in the INT8 manifest under ``quantization``. See the module docstring for the steps."""
    t0 = time.time()
    say: Log = log or (lambda msg: None)
    if method not in METHODS:
        raise CalibrationError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    style = get_placement(placement)
    if style.name != "tensorrt" and (calib_cache is not None or trt_version is not None):
        raise CalibrationError(f"--calib-cache/--trt-version need --placement tensorrt (the {style.name} placement "
                               f"is not TensorRT's form)")
    if images is not None and int(images) < 1:
        raise CalibrationError(f"--images must be >= 1, got {images}")
    if threads is not None and int(threads) < 1:
        raise CalibrationError(f"--threads must be >= 1, got {threads}")
    fp32_path, out_path = os.fspath(fp32_onnx), os.fspath(out_onnx)
    _check_paths(fp32_path, out_path)
    refuse_test_split(calib_data, category, "--data")
    manifest = load_manifest(fp32_path)
    verify_artifact(fp32_path, manifest)
    if manifest.precision != "fp32":
        raise CalibrationError(f"{fp32_path} has precision {manifest.precision!r}; INT8 calibration starts from the "
                               f"FP32 export (`python -m export.onnx`)")
    size_hw = manifest.input.size
    map_hw = tuple(int(v) for v in manifest.outputs.anomaly_map.shape[2:4])

    samples = good_train_samples(calib_data, category, "--data")
    chosen = spread(samples, images)
    say(f"calibration: {len(chosen)} of {len(samples)} good training images from {calib_data}"
        + (f" ({category})" if category else "") + f", {method}, at {size_hw[0]}x{size_hw[1]}, {placement} placement")
    frames = load_frames(chosen, size_hw, manifest.input.channel_order, progress)

    model = onnx.load(fp32_path)
    parts = manifest.graph_parts.to_dict() if manifest.graph_parts is not None else None
    net_prefixes = qdq.network_prefixes(model, parts, prefixes, manifest.method)
    prefix_source = ("--prefix" if prefixes else
                     "manifest graph_parts" if qdq.manifest_int8_prefixes(parts) else "method declaration")
    net_nodes = qdq.network_nodes(model, net_prefixes)
    keep = [qdq._norm_prefix(k) for k in keep]
    for k in keep:
        if not any(n.startswith(k) for n in net_nodes):
            raise CalibrationError(f"--keep {k} matches no node of the network ({', '.join(net_prefixes)}); give a "
                                   f"prefix such as {next(iter(qdq.blocks(model, net_prefixes)), net_prefixes[0])}")
    qdq.materialize_identity_initializers(model)
    eval_set, eval_note = _eval_set(eval_data, eval_category, calib_data, category, size_hw, map_hw,
                                    manifest.input.channel_order, progress, say)

    with tempfile.TemporaryDirectory(prefix="calibration-int8-") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        onnx.save(model, prepared)
        quantizer = Quantizer(prepared, net_prefixes, manifest.input.name, method, tmp, percentile, batch_size,
                              progress, placement)
        quantizer.calibrate(frames)
        quantizer.set_headroom(headroom)
        k = min(SENSITIVITY_IMAGES, frames.shape[0])
        good = frames[[frames.shape[0] * i // k for i in range(k)]]
        defects = with_defects(good, seed=0)  # the same images with synthetic defects (never test images)
        with open_backend(fp32_path, manifest, threads) as fp32:
            probes = Probes(good, defects, fp32.infer(good), fp32.infer(defects), eval_set,
                            eval_set.evaluate(fp32.infer, progress) if eval_set is not None else None)
        search = GuardedSearch(quantizer, manifest, net_nodes, qdq.blocks(model, net_prefixes), probes, tmp,
                               threads, progress, say)
        result = search.run(keep, auto_keep, max_loss_points, sensitivity)
        with writing(f"--out {out_path}"):
            os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            shutil.copyfile(result.best["path"], out_path)
        overshoot = range_overshoot(prepared, onnx.load(out_path), defects, threads)

    ort_version = import_onnxruntime().__version__
    calibration = {
        "data": os.path.abspath(os.fspath(calib_data)), "category": category,
        "split": "train (good images only)", "images": len(chosen), "available": len(samples),
        "selection": "evenly spaced over the good training images in sorted path order",
        "size": list(size_hw), "host_resize": manifest.input.host_resize,
        "files": relative_paths(chosen, calib_data),
    }
    report = build_report(fp32_path=fp32_path, out_path=out_path, manifest=manifest, method=method, placement=style,
                          headroom=headroom, calibration=calibration, net_prefixes=net_prefixes,
                          prefix_source=prefix_source, keep=keep, net_nodes=len(net_nodes), result=result,
                          overshoot=overshoot, eval_set=eval_set, fp32_eval=probes.fp32_eval, eval_note=eval_note,
                          max_loss_points=max_loss_points, ort_version=ort_version)
    report["trt_calibration_cache"] = maybe_trt_cache(out_path, style, calib_cache, trt_version, say)
    report["seconds"] = round(time.time() - t0, 1)
    report = finish_report(report)
    write_int8_manifest(manifest, out_path, report, ort_version)
    return report


# --------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m calibration.int8",
        description="Quantise an exported inspection graph to an INT8 Q/DQ ONNX, calibrated on good training "
                    "images, and report FP32 vs INT8 accuracy.")
    p.add_argument("--model", required=True, help="FP32 MODEL.onnx (with MODEL.json beside it)")
    p.add_argument("--data", required=True, help="data root (MVTec/MPDD/VisA layout) or a folder of good images; "
                                                 "never a test split")
    p.add_argument("--category", default=None, help="category under --data")
    p.add_argument("--images", type=int, default=64, help="calibration images, evenly spaced (default 64)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output Q/DQ model (default MODEL-int8.onnx beside --model)")
    p.add_argument("--method", choices=METHODS, default="minmax", help="range calibration (default minmax)")
    p.add_argument("--placement", choices=list(PLACEMENTS), default="tensorrt",
                   help="; ".join(pl.help for pl in PLACEMENTS.values()))
    p.add_argument("--headroom", type=float, default=1.0,
                   help="widen every calibrated activation range by this factor (>= 1; default 1): less clipping "
                        "of what defects drive through the network, coarser steps on good images")
    p.add_argument("--percentile", type=float, default=99.999, help="percentile for --method percentile")
    p.add_argument("--eval-data", default=None, help="data set whose test split measures FP32 vs INT8 "
                                                     "(default: --data, when it has a test split)")
    p.add_argument("--eval-category", default=None, help="category under --eval-data (default --category)")
    p.add_argument("--keep", action="append", default=[], metavar="NODE_PREFIX",
                   help="keep the nodes under this prefix in FP32 (repeatable), e.g. /model/net/head/")
    p.add_argument("--prefix", action="append", default=[], metavar="NODE_PREFIX",
                   help="node-name prefix of the part to quantise (default: the method's, the manifest's "
                        "graph_parts['int8']; for an older manifest, what its method declares)")
    p.add_argument("--max-loss", type=float, default=GOAL_POINTS, help="AUROC points INT8 may lose (default 0.5)")
    p.add_argument("--no-auto-keep", action="store_true", help="do not keep sensitive blocks in FP32 automatically")
    p.add_argument("--sensitivity", action="store_true", help="run the per-block sensitivity analysis even when "
                                                              "the goal is met")
    p.add_argument("--calib-cache", default=None, help="also write a TensorRT 8.x calibration cache to this path "
                                                       "(tensorrt placement)")
    p.add_argument("--trt-version", default=None, help="TensorRT version the cache is for, e.g. 8.5 or 8.6.1 "
                                                       "(default: the installed one)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime CPU threads for scoring candidates (default: the backend's, physical cores)")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(args: argparse.Namespace) -> int:
    out = args.out or os.path.splitext(args.model)[0] + "-int8.onnx"
    report = quantize_onnx(
        args.model, out, args.data, args.category, args.images, args.method, placement=args.placement,
        headroom=args.headroom, eval_data=args.eval_data, eval_category=args.eval_category, keep=args.keep,
        prefixes=args.prefix, auto_keep=not args.no_auto_keep, max_loss_points=args.max_loss,
        sensitivity=args.sensitivity, calib_cache=args.calib_cache, trt_version=args.trt_version,
        percentile=args.percentile, threads=args.threads, progress=not args.no_progress,
        log=lambda m: print(m, file=sys.stderr),
    )
    print_report(report, out)
    if args.json:
        write_json(args.json, report, f"--json {args.json}")
    _threshold_like_parent(args, out)
    return 0


def _threshold_like_parent(args: argparse.Namespace, out: str) -> None:
    """Give the INT8 model its own threshold, calibrated like the FP32 model (same rule, same good images) on
    the INT8 scores, so that it can say pass/fail; without an FP32 threshold, say how to calibrate it."""
    from calibration.recalibrate import like_parent
    from calibration.threshold import calibrate_threshold
    from runtime.manifest import load_manifest

    if load_manifest(args.model).threshold is None:
        print(f"threshold: none yet; calibrate what ships: python -m calibration.threshold --model {out} "
              f"--data DIR [--category CAT] --target-fpr 0.01 (or calibrate {args.model} first, and this model "
              f"with --like {args.model})")
        return
    res = calibrate_threshold(out, parent=args.model, **like_parent(args.model), threads=args.threads,
                              progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    print(f"threshold {res['threshold'].value:.6g}: calibrated like {args.model} on the INT8 model's own scores "
          f"(onnxruntime)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
