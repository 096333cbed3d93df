"""Learning on the line, measured: false alarms and recall before and after operator corrections, and the time
from the last correction to the new version serving.

    python -m benchmarks.line_learning --model v1/model.onnx --data ROOT --category CAT --out DIR \
        [--corrections N] [--json REPORT]

The good test images (sorted by path) are split in two: the even positions are the *feedback* half (an operator
looks at its false alarms and marks up to N of them good, `runtime.feedback`), the odd positions the
*held-out* half that no step ever learns from. The defect test images measure recall. Then, while an Inspector
on the parent keeps inspecting frames in a thread (the line), `train.update` writes the new version (threshold
recalibrated on the run's held-out *training* good images, never the corrected frames) and the Inspector swaps
to it (`Inspector.swap`); the time from the last correction to the first Result judged by the new version is
reported, with the frames the line inspected meanwhile and whether any result was lost or mixed versions.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from runtime.errors import cli_exit
from runtime.files import write_json


def _images(root: str, category: str) -> Dict[str, List[str]]:
    from train.data import find_samples  # noqa: PLC0415

    samples = find_samples(root, category, "test")
    good = sorted(str(s.path) for s in samples if s.label == 0)
    defect = sorted(str(s.path) for s in samples if s.label != 0)
    return {"feedback": good[0::2], "held_out": good[1::2], "defect": defect}


def _judge(insp, paths: Sequence[str]) -> List[Any]:
    import cv2  # noqa: PLC0415

    return [insp.inspect(cv2.imread(p, cv2.IMREAD_COLOR)) for p in paths]


def _rates(results) -> float:
    return float(np.mean([bool(r.is_anomalous) for r in results])) if results else 0.0


class _Line:
    """A thread that inspects frames in a loop (the running line) and records which version judged each."""

    def __init__(self, insp, frames):
        self.insp, self.frames = insp, frames
        self.seen: List[Any] = []  # (time, index, sha256)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="line", daemon=True)

    def _loop(self) -> None:
        k = 0
        while not self._stop.is_set():
            r = self.insp.inspect(self.frames[k % len(self.frames)])
            self.seen.append((time.time(), r.frame_index, r.model_sha256))
            k += 1

    def start(self) -> "_Line":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60.0)


def measure(model: str, data: str, category: str, out: str, corrections: Optional[int], progress: bool,
            log=lambda m: None) -> Dict[str, Any]:
    import cv2  # noqa: PLC0415

    from runtime.feedback import record_result  # noqa: PLC0415
    from runtime.inspector import Inspector  # noqa: PLC0415
    from train.update import update_version  # noqa: PLC0415

    sets = _images(data, category)
    insp = Inspector(model, backend="onnxruntime", device="cpu")
    before = {k: _judge(insp, v) for k, v in sets.items()}
    alarms = [r for r in before["feedback"] if r.is_anomalous]
    chosen = alarms[:corrections] if corrections is not None else alarms
    feedback = os.path.join(out, "feedback")
    for r in chosen:
        record_result(feedback, r, "good", "benchmark operator", source="benchmark")
    log(f"{len(alarms)} false alarms in the feedback half; {len(chosen)} marked good")
    t_corrected = time.time()
    line = _Line(insp, [cv2.imread(p, cv2.IMREAD_COLOR) for p in sets["held_out"][:8]]).start()
    try:
        report = update_version(model, feedback, os.path.join(out, "v2"), progress=progress, log=log,
                                command="benchmarks.line_learning")
        t_written = time.time()
        swap = insp.swap(report["model"])
        deadline = time.time() + 120.0
        while time.time() < deadline and not any(s[2] == report["sha256"] for s in line.seen):
            time.sleep(0.01)
    finally:
        line.stop()
    first_new = next((s[0] for s in line.seen if s[2] == report["sha256"]), None)
    indices = [s[1] for s in line.seen]
    shas = [s[2] for s in line.seen]
    switched = [i for i in range(1, len(shas)) if shas[i] != shas[i - 1]]
    after = {k: _judge(insp, v) for k, v in sets.items()}
    insp.close()
    held_before = before["held_out"]
    return {
        "model": model, "new_model": report["model"], "threshold_before": held_before[0].threshold,
        "threshold_after": report["threshold"], "sizes": {k: len(v) for k, v in sets.items()},
        "false_alarms_feedback_half_before": len(alarms), "corrections": len(chosen),
        "held_out_false_alarm_rate": {"before": _rates(before["held_out"]), "after": _rates(after["held_out"])},
        "feedback_half_false_alarm_rate": {"before": _rates(before["feedback"]), "after": _rates(after["feedback"])},
        "defect_recall": {"before": _rates(before["defect"]), "after": _rates(after["defect"])},
        "added": report["added"],
        "seconds": {"correction_to_version_written": round(t_written - t_corrected, 2),
                    "swap_load_and_switch": swap["seconds"],
                    "correction_to_serving": round(first_new - t_corrected, 2) if first_new else None},
        "line": {"frames_during_update": len(indices), "indices_consecutive": indices == list(
            range(indices[0], indices[0] + len(indices))) if indices else True,
                 "version_changes": len(switched)},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.line_learning",
                                description="False alarms, recall and time to serving before/after operator "
                                            "corrections.")
    p.add_argument("--model", required=True, metavar="MODEL.onnx", help="the running version (calibrated)")
    p.add_argument("--data", required=True, metavar="ROOT", help="data root in the MVTec layout")
    p.add_argument("--category", required=True, metavar="CAT", help="category under --data")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the feedback and the new version")
    p.add_argument("--corrections", type=int, default=None, metavar="N",
                   help="mark at most N false alarms of the feedback half good (default: all of them)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    report = measure(args.model, args.data, args.category, args.out, args.corrections, not args.no_progress,
                     log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report, indent=2))
    if args.json:
        write_json(args.json, report, f"--json {args.json}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
