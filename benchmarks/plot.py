"""Plots of a latency benchmark result: FPS vs parameters (and FPS vs image AUROC when rows have it), one
series per backend/precision/batch, each point labelled with its model (fair_c32, patchcore). matplotlib with the
Agg backend (no display).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from benchmarks.table import backend_label
from runtime.manifest import model_label


def _series(rows: List[Dict[str, Any]], xkey: str) -> Dict[Tuple[str, str, int], List[Dict[str, Any]]]:
    out: Dict[Tuple[str, str, int], List[Dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("fps") and r.get(xkey) is not None:
            out.setdefault((backend_label(r), r["precision"], r["batch"]), []).append(r)
    for pts in out.values():
        pts.sort(key=lambda r: r[xkey])
    return out


def plot_result(result: Dict[str, Any], out_path) -> List[str]:
    """Write the scatter plot(s) to `out_path` (one figure, one or two panels); returns the panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    panels = [("params", "parameters (millions)", 1e-6)]
    if any(r.get("status") == "ok" and r.get("image_auroc") is not None for r in rows):
        panels.append(("image_auroc", "image AUROC (%)", 100.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    titles = []
    for ax, (key, label, scale) in zip(axes[0], panels):
        for (backend, precision, batch), pts in sorted(_series(rows, key).items()):
            xs = [r[key] * scale for r in pts]
            ys = [r["fps"] for r in pts]
            ax.plot(xs, ys, marker="o", linestyle="-" if key == "params" else "none",
                    label=f"{backend} {precision} b{batch}")
            for r, x, y in zip(pts, xs, ys):
                ax.annotate(model_label(r["method"], r.get("c")), (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("FPS (images/s)")
        from matplotlib.ticker import FuncFormatter, NullFormatter

        plain = FuncFormatter(lambda v, _pos: f"{v:g}")
        if key == "params":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.grid(True, which="both", alpha=0.3)
        title = f"FPS vs {label.split(' (')[0]}"
        ax.set_title(title)
        titles.append(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    m = result.get("machine", {})
    fig.suptitle(f"{m.get('cpu', '')} ({m.get('physical_cores', '?')} cores), GPU: {m.get('gpu', 'none')}",
                 fontsize=9)
    fig.tight_layout()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(out_path), dpi=120)
    plt.close(fig)
    return titles
