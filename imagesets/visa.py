"""VisA layout: ``DATA/split_csv/1cls.csv`` with columns ``object,split,label,image,mask``; ``label`` is
'normal' or 'anomaly', ``image`` and ``mask`` are paths relative to DATA (mask empty for normal images).

The 1-class split has no per-image defect type, so defective samples get ``defect_type='anomaly'``.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List

from imagesets.samples import DEFECT, GOOD, Sample
from imagesets.errors import DataError

CSV_PATH = Path("split_csv") / "1cls.csv"
_COLUMNS = ("object", "split", "label", "image", "mask")


def is_visa(data: "str | os.PathLike") -> bool:
    return (Path(data) / CSV_PATH).is_file()


def _rows(data: Path) -> List[dict]:
    path = data / CSV_PATH
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in _COLUMNS if c not in fields]
            if missing:
                raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; expected the VisA header "
                                f"{','.join(_COLUMNS)}")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} could not be read as a CSV file ({e}); restore VisA's split_csv/1cls.csv") from None


def visa_categories(data: "str | os.PathLike") -> List[str]:
    return sorted({r["object"] for r in _rows(Path(data))})


def read_visa(data: "str | os.PathLike", category: str, split: str) -> List[Sample]:
    """Samples of ``category`` (the csv's ``object``) for ``split`` 'train' or 'test', in the csv's order."""
    data = Path(data)
    rows = _rows(data)
    known = sorted({r["object"] for r in rows})
    if category not in known:
        raise DataError(f"category {category!r} is not in {data / CSV_PATH}; categories there: {', '.join(known)}")
    samples: List[Sample] = []
    for r in rows:
        if r["object"] != category or r["split"] != split:
            continue
        label = r["label"].lower()
        if label not in ("normal", "anomaly"):
            raise DataError(f"{data / CSV_PATH}: label {r['label']!r} for {r['image']} is not 'normal' or 'anomaly'")
        image = data / r["image"]
        if not image.is_file():
            raise DataError(f"image {image} listed in {data / CSV_PATH} does not exist; restore it or the csv")
        if label == "normal":
            samples.append(Sample(str(image), GOOD, "good", None))
            continue
        mask = data / r["mask"] if r["mask"] else None
        if mask is None or not mask.is_file():
            shown = mask if mask is not None else "(empty mask column)"
            raise DataError(f"defect image {image} has no mask: expected {shown} from {data / CSV_PATH}; "
                            f"restore the mask")
        samples.append(Sample(str(image), DEFECT, "anomaly", str(mask)))
    if not samples:
        raise DataError(f"no {split} images for category {category!r} in {data / CSV_PATH}; "
                        f"expected rows with split={split}")
    return samples
