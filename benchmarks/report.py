"""Readable reports of an evaluation: a text table of the metrics and overlay PNGs of telling images."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from runtime.overlay import overlay


def _fmt(value: Any, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a".rjust(width)
    if isinstance(value, float):
        return f"{value:.4f}".rjust(width)
    return str(value).rjust(width)


def metrics_table(result: Dict[str, Any], title: Optional[str] = None) -> str:
    """Overall and per-defect-type metrics as a fixed-width text table (values in [0, 1]; n/a = undefined)."""
    per_type = result.get("per_defect_type", {})
    name_w = max([len("all"), len("(good)")] + [len(t) for t in per_type]) + 2
    cols = ("n", "image AUROC", "pixel AUROC", "AUPRO", "F1-max")
    widths = (6, 12, 12, 8, 8)
    lines: List[str] = []
    if title:
        lines.append(title)
    header = "".ljust(name_w) + "".join(c.rjust(w + 2) for c, w in zip(cols, widths))
    lines += [header, "-" * len(header)]

    def row(name, values):
        return name.ljust(name_w) + "".join(_fmt(v, w + 2) for v, w in zip(values, widths))

    lines.append(
        row("all", (result.get("n_images"), result.get("image_auroc"), result.get("pixel_auroc"),
                    result.get("aupro"), result.get("f1_max")))
    )
    lines.append(row("(good)", (result.get("n_good"), None, None, None, None)))
    for name, m in per_type.items():
        lines.append(row(name, (m.get("n"), m.get("image_auroc"), m.get("pixel_auroc"), m.get("aupro"), None)))
    lines += verdict_lines(result.get("verdicts"))
    reasons = result.get("undefined") or {}
    if reasons:
        lines.append("n/a: " + "; ".join(sorted(set(reasons.values()))))
    return "\n".join(lines)


def _rate(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f} %"


def verdict_lines(v: Optional[Dict[str, Any]]) -> List[str]:
    """Recall at fixed false-alarm rates and what the threshold realises, overall and per defect type."""
    if not v:
        return []
    keys = list(v["recall_at_fpr"])
    at = v.get("at_threshold")
    lines = ["", f"verdicts (recall of defects; {v['n_good']} good images set the false-alarm rates)"]
    head = "".ljust(16) + "".join(f"@{float(k) * 100:g}% FA".rjust(11) for k in keys)
    if at:
        head += f"  at threshold {v['threshold']:.6g}"
    lines.append(head)
    row = "all".ljust(16) + "".join(_rate(v["recall_at_fpr"][k]).rjust(11) for k in keys)
    if at:
        row += (f"  recall {_rate(at['recall'])}, false alarms {_rate(at['fpr'])} "
                f"({at['false_alarms']} of {at['n_good']})")
    lines.append(row)
    for name, m in v.get("per_defect_type", {}).items():
        row = name[:15].ljust(16) + "".join(_rate(m["recall_at_fpr"][k]).rjust(11) for k in keys)
        if "recall_at_threshold" in m:
            row += f"  recall {_rate(m['recall_at_threshold'])}"
        lines.append(row)
    if not at:
        lines.append("no threshold: calibrate the model (python -m calibration.threshold) or give --threshold")
    return lines


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


#: Panels smaller than this (height, pixels) are enlarged by an integer factor so that overlays stay legible.
MIN_PANEL_HEIGHT = 192
_HEADER = 24


def _header(width: int, text: str) -> np.ndarray:
    bar = np.full((_HEADER, width, 3), 32, np.uint8)
    cv2.putText(bar, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def overlay_panel(
    frame: np.ndarray, amap: np.ndarray, mask: Optional[np.ndarray], text: str, vmin: float, vmax: float
) -> np.ndarray:
    """A header line with `text` above: image | heat-map overlay | image with the ground-truth outline
    (RGB uint8). Small images are enlarged (nearest) to at least MIN_PANEL_HEIGHT rows."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w = frame.shape[:2]
    f = int(np.ceil(MIN_PANEL_HEIGHT / h)) if h < MIN_PANEL_HEIGHT else 1
    if f > 1:
        frame = cv2.resize(frame, (w * f, h * f), interpolation=cv2.INTER_NEAREST)
        h, w = frame.shape[:2]
    heat = overlay(frame, amap, vmin=vmin, vmax=vmax)
    outlined = frame.copy()
    if mask is not None and np.any(mask):
        m = np.asarray(mask).astype(np.uint8)
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outlined, contours, -1, (0, 255, 0), max(1, w // 192))
    gap = np.full((h, 4, 3), 255, np.uint8)
    row = np.concatenate([frame, gap, heat, gap, outlined], axis=1)
    return np.concatenate([_header(row.shape[1], text), row], axis=0)


def select_overlays(scores: Sequence[float], labels: Sequence[int], k: int = 4) -> Dict[str, List[int]]:
    """Indices of the k highest-scored good images (false alarms), the k highest-scored defective images and
    the k lowest-scored defective images (misses; not repeated from the highest)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    good = np.flatnonzero(labels == 0)
    bad = np.flatnonzero(labels == 1)
    good_desc = good[np.argsort(-scores[good], kind="stable")]
    bad_desc = bad[np.argsort(-scores[bad], kind="stable")]
    top_bad = bad_desc[:k].tolist()
    chosen = set(top_bad)
    rest = [i for i in bad_desc[::-1].tolist() if i not in chosen]
    return {"good_highest": good_desc[:k].tolist(), "defect_highest": top_bad, "defect_lowest": rest[:k]}


def write_overlays(
    out_dir,
    frames: np.ndarray,
    maps: np.ndarray,
    masks: Optional[np.ndarray],
    scores: Sequence[float],
    labels: Sequence[int],
    names: Sequence[str],
    k: int = 4,
) -> List[Path]:
    """Write overlay PNGs (see `select_overlays`) to `out_dir`; the heat-map colour scale is common to all of
    them: the minimum and maximum over every evaluated map. `frames` are RGB. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vmin, vmax = float(np.min(maps)), float(np.max(maps))
    written: List[Path] = []
    for kind, indices in select_overlays(scores, labels, k).items():
        for rank, i in enumerate(indices, 1):
            tag = "good" if int(labels[i]) == 0 else "defect"
            text = f"{tag} {names[i]}  score {float(scores[i]):.4g}"
            panel = overlay_panel(frames[i], maps[i], None if masks is None else masks[i], text, vmin, vmax)
            path = out_dir / f"{kind}_{rank:02d}_{_safe(names[i])}.png"
            if not cv2.imwrite(str(path), panel[:, :, ::-1]):
                raise OSError(f"could not write {path}")
            written.append(path)
    return written
