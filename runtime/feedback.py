"""Operator corrections: a person marks a flagged frame as good (a false alarm) or confirms a defect, and the
frame, its map and the verdict are kept in a feedback folder with who and when. `python -m train.update` learns
from the frames marked good and writes a new model version.

    python -m runtime.feedback --results OUT --frame 12 --frame 40 --label good --who anna --feedback FEEDBACK

(from a folder of saved results: `python -m runtime --source DIR --out OUT` wrote OUT/inspect.jsonl, whose
result records name each frame's image file), or from the live view when it is started with
``--feedback-dir DIR`` (`runtime.serve_feedback`).

One entry is a sub-folder ``FEEDBACK/<UTC time>_f<frame>_<label>/``: ``frame.png`` (the frame as inspected,
lossless), ``map.npy`` (the model's float32 anomaly map; absent when only the saved results were at hand) and
``record.json``: label, who, when (ISO UTC), the frame's index and name, the model's score, threshold, verdict
and alert, the sha256 of the version that judged it (`model_sha256`), the sha256 of the frame's pixels
(`frame_sha256`: BGR bytes as OpenCV decodes them, so `train.update` can prove that no corrected frame is used
to recalibrate the threshold), the source ("live view" / "results folder") and a note. numpy + OpenCV only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from runtime.errors import RuntimeInspectError, cli_exit, writing
from runtime.files import atomic_write, write_json

LABELS = ("good", "defect")
RECORD = "record.json"
FRAME = "frame.png"
MAP = "map.npy"


class FeedbackError(RuntimeInspectError):
    """A correction cannot be recorded or read: unknown label, missing frame, unreadable entry."""


def frame_sha256(frame_bgr: np.ndarray) -> str:
    """The content hash of a frame: its shape and its uint8 BGR bytes (what cv2.imread decodes)."""
    a = np.ascontiguousarray(frame_bgr, dtype=np.uint8)
    return hashlib.sha256(str(a.shape).encode("ascii") + a.tobytes()).hexdigest()


def _check(label: str, who: str) -> None:
    if label not in LABELS:
        raise FeedbackError(f"label {label!r}: use 'good' (a false alarm) or 'defect' (a confirmed defect)")
    if not who or not str(who).strip() or len(str(who)) > 100:
        raise FeedbackError("say who made the correction (a name or badge of up to 100 characters)")


def record_correction(folder: str, frame: np.ndarray, label: str, who: str, verdict: Dict[str, Any],
                      frame_order: str = "BGR", anomaly_map: Optional[np.ndarray] = None, source: str = "live view",
                      note: str = "") -> str:
    """Write one entry (see the module doc) and return its folder. `verdict`: the Result's `to_dict()` (or a
    saved result record)."""
    import cv2  # noqa: PLC0415

    _check(label, who)
    bgr = np.ascontiguousarray(frame[:, :, ::-1] if frame_order == "RGB" and frame.ndim == 3 else frame)
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc)
    index = int(verdict.get("frame", -1))
    entry = os.path.join(folder, f"{stamp.strftime('%Y%m%dT%H%M%S.%fZ')}_f{index}_{label}")
    with writing(f"feedback folder {folder}"):
        os.makedirs(entry, exist_ok=False)
        ok, png = cv2.imencode(".png", bgr)
        if not ok:
            raise FeedbackError(f"cannot encode frame {index} as PNG")
        atomic_write(os.path.join(entry, FRAME), png.tobytes())
        if anomaly_map is not None:
            with open(os.path.join(entry, MAP), "wb") as f:
                np.save(f, np.asarray(anomaly_map, dtype=np.float32), allow_pickle=False)
    record = {"label": label, "who": str(who).strip(), "when": stamp.isoformat(timespec="seconds"),
              "time": now, "frame": index, "name": verdict.get("name", ""), "score": verdict.get("score"),
              "threshold": verdict.get("threshold"), "is_anomalous": verdict.get("is_anomalous"),
              "alert": verdict.get("alert"), "model_sha256": verdict.get("model_sha256"),
              "frame_sha256": frame_sha256(bgr), "source": source, "note": str(note)[:500]}
    write_json(os.path.join(entry, RECORD), record)
    return entry


def record_result(folder: str, result: Any, label: str, who: str, source: str = "live view", note: str = "") -> str:
    """`record_correction` for a `runtime.result.Result`."""
    return record_correction(folder, result.frame, label, who, result.to_dict(), result.frame_order,
                             result.raw_map, source, note)


@dataclass
class Correction:
    """One entry of a feedback folder as `read_feedback` returns it."""

    folder: str
    record: Dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.record["label"])

    @property
    def frame_path(self) -> str:
        return os.path.join(self.folder, FRAME)

    def load_frame(self) -> np.ndarray:
        """The frame, uint8 BGR; FeedbackError when it is missing or changed since it was recorded."""
        import cv2  # noqa: PLC0415

        img = cv2.imread(self.frame_path, cv2.IMREAD_COLOR)
        if img is None:
            raise FeedbackError(f"feedback entry {self.folder} has no readable {FRAME}")
        if self.record.get("frame_sha256") and frame_sha256(img) != self.record["frame_sha256"]:
            raise FeedbackError(f"{self.frame_path} was changed after it was recorded (frame_sha256 differs)")
        return img


def read_feedback(folder: str, label: Optional[str] = None) -> List[Correction]:
    """The entries of a feedback folder (sorted by time), optionally only those with `label`."""
    if not os.path.isdir(folder):
        raise FeedbackError(f"feedback folder {folder} does not exist")
    out = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, RECORD)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "r", encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise FeedbackError(f"feedback record {path} is unreadable ({type(e).__name__}): remove or fix "
                                f"it") from None
        if not isinstance(record, dict) or record.get("label") not in LABELS:
            raise FeedbackError(f"feedback record {path} has no valid label")
        if label is None or record["label"] == label:
            out.append(Correction(os.path.join(folder, name), record))
    return out


# ------------------------------------------------------------------------------------------------ command line
def from_results(results: str, frames: Sequence[int], label: str, who: str, feedback: str, note: str = "") -> List[str]:
    """Corrections for frames of a saved run of `python -m runtime --out RESULTS`: the frame is read again from the
    image file its result record names (folder and image sources)."""
    import cv2  # noqa: PLC0415

    log = os.path.join(results, "inspect.jsonl")
    try:
        with open(log, "r", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise FeedbackError(f"cannot read {log} ({type(e).__name__}): give the --out folder of `python -m "
                            f"runtime`") from None
    by_frame = {int(r["frame"]): r for r in records if r.get("type") == "result"}
    written = []
    for index in frames:
        rec = by_frame.get(int(index))
        if rec is None:
            raise FeedbackError(f"frame {index} is not in {log}")
        image = cv2.imread(str(rec.get("name") or ""), cv2.IMREAD_COLOR) if rec.get("name") else None
        if image is None:
            raise FeedbackError(f"frame {index}: its image {rec.get('name')!r} cannot be read (only frames from an "
                                f"image folder or file can be corrected from saved results; use the live view)")
        written.append(record_correction(feedback, image, label, who, rec, "BGR", None, "results folder", note))
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.feedback",
                                description="Record operator corrections of saved results in a feedback folder.")
    p.add_argument("--results", required=True, metavar="OUT", help="the --out folder of `python -m runtime`")
    p.add_argument("--frame", type=int, action="append", required=True, metavar="N",
                   help="frame index to correct (repeatable)")
    p.add_argument("--label", required=True, choices=LABELS,
                   help="good: the frame is a false alarm; defect: the defect is confirmed")
    p.add_argument("--who", required=True, help="who makes the correction (name or badge)")
    p.add_argument("--feedback", required=True, metavar="DIR", help="feedback folder to add the corrections to")
    p.add_argument("--note", default="", help="a free-text note kept with each correction")
    return p


def _run(args: argparse.Namespace) -> int:
    for entry in from_results(args.results, args.frame, args.label, args.who, args.feedback, args.note):
        print(f"recorded {entry}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["record_correction", "record_result", "read_feedback", "from_results", "frame_sha256", "Correction",
           "FeedbackError", "LABELS"]
