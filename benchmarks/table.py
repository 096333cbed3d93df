"""Benchmark results as tables: terminal text, Markdown (for docs/results.md) and JSON.

A result is plain data: ``{"machine": {...}, "settings": {...}, "notes": [...], "rows": [row, ...]}``. A row
that could not run keeps its place with ``status`` "skipped" (or "error") and a ``reason``; its numbers are
None and print as "—".
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from runtime.manifest import model_label

DASH = "—"

#: (header, row key or a function of the row, formatter) of the table's columns, in order
Column = Tuple[str, Any, Callable[[Any], str]]


def _num(fmt: str) -> Callable[[Any], str]:
    def f(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return DASH
        return format(v, fmt)

    return f


def _millions(v: Any) -> str:
    return DASH if v is None else f"{v / 1e6:.2f}M"


def _mib(v: Any) -> str:
    return DASH if v is None else f"{v / 2**20:.1f}"


def _pct(v: Any) -> str:
    return DASH if v is None else f"{100 * v:.1f}"


def _text(v: Any) -> str:
    return DASH if v is None or v == "" else str(v)


def backend_label(row: Dict[str, Any]) -> str:
    """The backend, with its device when that is not the CPU ("torch (cuda)")."""
    device = row.get("device")
    return f"{row.get('backend')}" + ("" if device in (None, "cpu") else f" ({device})")


COLUMNS: List[Column] = [
    ("method", "method", _text),
    ("c", "c", _text),
    ("backend", backend_label, _text),
    ("precision", "precision", _text),
    ("batch", "batch", _text),
    ("params", "params", _millions),
    ("GMACs/img", "gmacs", _num(".2f")),
    ("size MiB", "size_bytes", _mib),
    ("p50 ms", "p50_ms", _num(".1f")),
    ("p90 ms", "p90_ms", _num(".1f")),
    ("p99 ms", "p99_ms", _num(".1f")),
    ("FPS", "fps", _num(".1f")),
    ("CPU ms", "cpu_p50_ms", _num(".0f")),
    ("peak MiB", "peak_rss_bytes", _mib),
    ("img AUROC", "image_auroc", _pct),
    ("AUPRO", "aupro", _pct),
    ("recall@1%FA", "recall_at_fpr_0.01", _pct),
    ("FA@thr", "threshold_fpr", _pct),
    ("recall@thr", "threshold_recall", _pct),
]


def _cells(rows: Sequence[Dict[str, Any]], with_note: bool = True) -> Tuple[List[str], List[List[str]]]:
    headers = [h for h, _, _ in COLUMNS] + (["note"] if with_note else [])
    body = []
    for r in rows:
        cells = [fmt(key(r) if callable(key) else r.get(key)) for _, key, fmt in COLUMNS]
        if with_note:
            cells.append(row_note(r))
        body.append(cells)
    return headers, body


def row_note(row: Dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status', 'skipped')}: {row.get('reason') or 'unknown reason'}"
    return "; ".join(row.get("notes") or [])


def notes_for(result: Dict[str, Any]) -> List[str]:
    return list(result.get("notes") or [])


def render_text(result: Dict[str, Any]) -> str:
    from runtime.machine import format_machine

    headers, body = _cells(result["rows"])
    numeric = {h for h, key, _ in COLUMNS if key not in ("method", "backend", "precision")}
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    widths[-1] = len(headers[-1])  # the note column is last and never padded

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (h, cell) in enumerate(zip(headers, cells)):
            if i == len(headers) - 1:
                out.append(cell)
            elif h in numeric:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    parts = [format_machine(result["machine"]), ""]
    parts.append(line(headers))
    parts.append("  ".join("-" * w for w in widths))
    parts.extend(line(r) for r in body)
    parts.append("")
    parts.extend(f"* {n}" for n in notes_for(result))
    return "\n".join(parts)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(result: Dict[str, Any]) -> str:
    m = result["machine"]
    v = m.get("versions", {}) or {}
    libs = ", ".join(f"{k} {val}" for k, val in v.items())
    headers, body = _cells(result["rows"])
    out = [
        f"**Machine:** {m['cpu']}, {m['physical_cores']} physical / {m['logical_cores']} logical cores, "
        f"{m.get('memory_gib')} GiB; GPU: {m['gpu']}  ",
        f"**Libraries:** {libs}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if h not in ("method", "backend", "precision", "note") else "---" for h in headers)
        + "|",
    ]
    out.extend("| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body)
    out.append("")
    out.extend(f"- {_md_escape(n)}" for n in notes_for(result))
    return "\n".join(out)


def plain(result: Dict[str, Any]) -> Any:
    """`result` with numpy numbers, arrays, sets and tuples made plain JSON values, for
    `runtime.files.write_json`."""
    return json.loads(json.dumps(result, default=_json_default))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def speedups(rows: Sequence[Dict[str, Any]], base: Tuple[str, str] = ("torch", "fp32")) -> List[str]:
    """Lines like "fair_c32 batch 1: ort/fp32 1.42x torch/fp32" for every ok row against the base row of the same
    method, c, batch and image size (the base on the CPU)."""
    key = lambda r: (r.get("method"), r.get("c"), r.get("batch"), tuple(r.get("image_size") or ()))  # noqa: E731
    bases = {key(r): r for r in rows if (r.get("backend"), r.get("precision")) == base and r.get("status") == "ok"
             and r.get("device", "cpu") == "cpu"}
    out = []
    for r in rows:
        b = bases.get(key(r))
        if b is None or r is b or r.get("status") != "ok" or not b.get("fps"):
            continue
        out.append(f"{model_label(r['method'], r.get('c'))} batch {r['batch']}: {backend_label(r)}/{r['precision']} "
                   f"{r['fps'] / b['fps']:.2f}x {base[0]}/{base[1]}")
    return out
