"""Make a video (MJPG .avi) from the images of a folder tree, sorted by path: a stand-in for a camera over a
line in the demo. Usage: python scripts/frames_to_video.py DIR OUT.avi [--fps 10] [--holdout 0.2]

`--holdout F` keeps only the last F of the images in sorted path order: the good images `python -m train` held
out, as a video of good parts the model never saw for `calibration.threshold --source`."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2

from runtime.errors import OutputError, cli_exit, writing
from runtime.sources import list_images
from train.errors import DataError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/frames_to_video.py", description=__doc__.split("\n")[0])
    p.add_argument("folder", help="folder whose images (any depth, sorted by path) become the frames")
    p.add_argument("out", metavar="FILE", help="the video to write (MJPG .avi)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the video (default 10)")
    p.add_argument("--holdout", type=float, default=None, metavar="F",
                   help="only the last fraction F of the images in sorted path order (the hold-out rule of "
                        "python -m train), e.g. 0.2")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cli_exit(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    paths = list_images(args.folder) if Path(args.folder).is_dir() else []
    if args.holdout is not None:
        if not 0.0 < args.holdout <= 1.0:
            raise DataError(f"--holdout must be in (0, 1], got {args.holdout}")
        paths = paths[-max(1, int(math.ceil(args.holdout * len(paths)))):] if paths else paths
    writer, size, written = None, (0, 0), 0
    for q in paths:
        img = cv2.imread(str(q), cv2.IMREAD_COLOR)
        if img is None:
            print(f"skipping unreadable image {q}", file=sys.stderr)
            continue
        if writer is None:  # the first readable image sets the video's size
            size = (img.shape[1], img.shape[0])
            writer = _open_writer(args.out, args.fps, size)
        writer.write(cv2.resize(img, size) if (img.shape[1], img.shape[0]) != size else img)
        written += 1
    if writer is None:
        raise DataError(f"no readable images under {args.folder}")
    writer.release()
    print(f"wrote {args.out}: {written} frames {size[0]}x{size[1]} at {args.fps:g} fps")
    return 0


def _open_writer(out: str, fps: float, size) -> "cv2.VideoWriter":
    with writing(out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise OutputError(f"OpenCV cannot write {out} (MJPG/.avi): check the path and its extension")
    return writer


if __name__ == "__main__":
    raise SystemExit(main())
