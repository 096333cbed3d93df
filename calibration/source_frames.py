"""Good frames for threshold calibration read where the model will run: a video, a stream URL, a camera or a
folder, through the runtime's own frame path (`runtime.sources.open_source` decodes, `runtime.frames.
FramePreparer` resizes and orders the channels exactly as the Inspector does), so the camera's compression,
exposure and frame size are in the threshold.

A folder's files can be checked against the images the run learned from (`imagesets.fingerprints`); a video's or a
camera's frames cannot (their bytes are not files), and the provenance says so.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from calibration.errors import CalibrationError
from runtime.errors import SourceError
from runtime.frames import FramePreparer
from runtime.sources import FolderSource, open_source, redact


def read_source_frames(spec: str, frames: Optional[int], size_hw: Tuple[int, int], channel_order: str,
                       every: int = 1, progress: bool = True) -> Tuple[np.ndarray, List[str], Dict[str, Any]]:
    """(uint8 (N, H, W, 3) frames in the model's channel order, their names, a description) of the first
    `frames` good frames of `spec` (all of a file or folder when None; a live source needs `frames`), taking
    one frame in `every`. Corrupt frames are skipped and counted."""
    if frames is not None and frames < 1:
        raise CalibrationError(f"--frames must be >= 1, got {frames}")
    if every < 1:
        raise CalibrationError(f"--every must be >= 1, got {every}")
    try:
        source = open_source(spec, reconnect=False)
    except SourceError as e:
        raise CalibrationError(f"--source: {e}") from None
    if source.live and frames is None:
        source.close()
        raise CalibrationError(f"--source {source.description} is live: give --frames N, how many good frames "
                               f"to read from it")
    preparer = FramePreparer(size_hw, channel_order)
    kept: List[np.ndarray] = []
    names: List[str] = []
    read = skipped = 0
    with source, tqdm(total=frames, desc="read frames", unit="frame", disable=not progress, leave=False) as bar:
        for frame in source:
            if frame.image is None:
                skipped += 1
                continue
            read += 1
            if (read - 1) % every:
                continue
            out = np.empty((int(size_hw[0]), int(size_hw[1]), 3), np.uint8)
            preparer.prepare_into(frame.image, out, source.channel_order)
            kept.append(out)
            names.append(frame.name or f"frame {frame.index}")
            bar.update(1)
            if frames is not None and len(kept) >= frames:
                break
        description = source.description
        files = list(source.files) if isinstance(source, FolderSource) else None
    if not kept:
        raise CalibrationError(f"--source {description} gave no readable frames")
    desc: Dict[str, Any] = {
        "source": "frames", "spec": description, "argument": redact(str(spec)), "used": len(kept), "every": every,
        "skipped_corrupt": skipped,
        "selection": (f"the first {len(kept)} frames" + (f", one in {every}" if every > 1 else "") +
                      " through the runtime's frame path (decode, colour order, resize)"),
        "kind": "folder" if files is not None else ("live" if source.live else "video"),
    }
    if files is not None:
        desc["data"] = os.path.abspath(spec)
    return np.stack(kept), names, desc


__all__ = ["read_source_frames"]
