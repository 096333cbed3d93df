"""Make a video (MJPG .avi) from the images of a folder tree, sorted by path: a stand-in for a camera over a
line in the demo. Usage: python scripts/frames_to_video.py DIR OUT.avi [--fps 10]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder")
    p.add_argument("out")
    p.add_argument("--fps", type=float, default=10.0)
    args = p.parse_args(argv)
    paths = sorted(q for q in Path(args.folder).rglob("*") if q.suffix.lower() in EXTENSIONS)
    if not paths:
        print(f"error: no images under {args.folder}", file=sys.stderr)
        return 2
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
    h, w = first.shape[:2]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"MJPG"), args.fps, (w, h))
    if not writer.isOpened():
        print(f"error: OpenCV cannot write {args.out} (MJPG/.avi)", file=sys.stderr)
        return 2
    for q in paths:
        img = cv2.imread(str(q), cv2.IMREAD_COLOR)
        if img is None:
            print(f"skipping unreadable image {q}", file=sys.stderr)
            continue
        writer.write(cv2.resize(img, (w, h)) if img.shape[:2] != (h, w) else img)
    writer.release()
    print(f"wrote {args.out}: {len(paths)} frames {w}x{h} at {args.fps:g} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
