"""The soak's goals, its printed report and its plot (`benchmarks.soak` computes the figures)."""
from __future__ import annotations

from typing import Any, Dict, List

MEMORY_GROWTH_GOAL_PCT = 5.0
RECONNECT_GOAL_S = 2.0


def evaluate_goals(result: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The soak's four goals (and the swap check), each {"met": bool, "value": ..., "detail": ...}."""
    phases = result["phases"]
    crashes = [f"{p['phase']} round {p['round']}: {p['crash']}" for p in phases if p.get("crash")]
    lost = sum(int(p["lost_unreported"]) for p in phases)
    where = [f"{p['phase']} round {p['round']}: {w}" for p in phases for w in p["lost_where"]]
    mem = result["memory_mib"]
    growth = None
    if mem.get("middle") and mem.get("end") is not None:
        growth = round(100.0 * (mem["end"] - mem["middle"]) / mem["middle"], 2)
    drops = result["camera_drops"]
    gaps = [d.get("reconnect_after_return_s") for d in drops]
    reconnect_ok = bool(drops) and all(d.get("reconnected") and g is not None and g <= RECONNECT_GOAL_S
                                       for d, g in zip(drops, gaps))
    swaps = result["swaps"]
    return {
        "no_crash": {"met": not crashes, "value": len(crashes), "detail": crashes},
        "no_unreported_loss": {"met": lost == 0, "value": lost, "detail": where[:20]},
        "memory_growth_middle_to_end_under_5pct": {"met": growth is not None and growth < MEMORY_GROWTH_GOAL_PCT,
                                                   "value": growth, "detail": mem},
        "reconnect_within_2s": {"met": reconnect_ok, "value": gaps, "detail": drops},
        "model_swap_safe": {"met": bool(swaps) and all(s.get("ok") and s.get("running_inspector_unchanged")
                                                       for s in swaps),
                            "value": len(swaps), "detail": swaps},
    }


def _faults(phases: List[Dict[str, Any]]) -> Dict[str, Dict[str, int]]:
    total: Dict[str, Dict[str, int]] = {}
    for p in phases:
        for kind, c in (p.get("faults") or {}).items():
            t = total.setdefault(kind, {"injected": 0, "result": 0, "skip": 0, "lost": 0})
            for k, v in c.items():
                t[k] += v
    return total


def print_report(result: Dict[str, Any]) -> None:
    print(f"soak: backend {result['backend']} ({result['backend_description']}), camera {result['camera']}")
    print(f"{'phase':16s} {'rnd':>3s} {'in':>6s} {'results':>7s} {'skipped':>7s} {'dropped':>7s} "
          f"{'lost':>5s} {'p50 ms':>7s} {'p99 ms':>7s}  events / crash")
    for p in result["phases"]:
        ev = ", ".join(f"{k} {v}" for k, v in sorted(p["events"].items()))
        lat = p.get("latency_ms") or {}
        print(f"{p['phase']:16s} {p['round']:3d} {p['frames_in']:6d} {p['results']:7d} {p['skipped']:7d} "
              f"{p['dropped']:7d} {p['lost_unreported']:5d} {lat.get('p50', 0):7.2f} {lat.get('p99', 0):7.2f}  "
              f"{ev}{'  CRASH ' + p['crash'] if p.get('crash') else ''}")
    print("faults (kind: injected -> result / reported skip / lost):")
    for kind, c in _faults(result["phases"]).items():
        print(f"  {kind:18s} {c['injected']:4d} -> {c['result']:4d} / {c['skip']:4d} / {c['lost']:4d}")
    for d in result["camera_drops"]:
        print(f"camera drop {d.get('drop_s')} s: detected after {d.get('detected_after_s')} s, reconnected "
              f"{d.get('reconnect_after_return_s')} s after its return, longest gap between results {d.get('longest_result_gap_s')} s")
    for s in result["swaps"]:
        print(f"model swap to {s.get('to')}: torn pair -> {s.get('torn')}; complete pair -> {s.get('complete')}; "
              f"running inspector unchanged: {s.get('running_inspector_unchanged')}")
    for p in result["phases"]:
        for name, s in (p.get("sinks") or {}).items():
            print(f"sink {name}: " + (s if isinstance(s, str) else
                  f"{s['received']}/{s['offered']} received, {s['dropped']} dropped and {s['failed']} failed "
                  f"(counted), {s['late']} late, {s['lost_unreported']} lost without a count, read-to-delivered "
                  f"p50 {s['latency_p50_ms']} ms p99 {s['latency_p99_ms']} ms"))
    m = result["memory_mib"]
    print(f"memory (RSS MiB): start {m.get('start')}, middle {m.get('middle')}, end {m.get('end')}")
    probe = result.get("reopen_probe") or {}
    if probe:
        print(f"diagnostic, a second Inspector opened and closed in this process: RSS "
              f"{' -> '.join(str(x) for x in probe['rss_after_each_open_close'])} MiB, after malloc_trim "
              f"{probe.get('rss_after_malloc_trim')} MiB")
    for name, g in result["goals"].items():
        print(f"goal {name}: {'met' if g['met'] else 'NOT met'} ({g['value']})")


def plot_soak(result: Dict[str, Any], path: str) -> None:
    """Two panels over the results: resident memory, and latency per frame, with the fault markers."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_m, ax_l) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    mem = result["memory_samples"]
    ax_m.plot([m[0] for m in mem], [m[1] for m in mem], color="tab:blue", lw=1.2)
    ax_m.set_ylabel("RSS (MiB)")
    lat = result.get("latency_samples") or []
    ax_l.plot([x[0] for x in lat], [x[1] for x in lat], ".", ms=2, color="tab:gray")
    ax_l.set_yscale("log")
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_xlabel("results")
    for at, label in result["markers"]:
        color = "tab:red" if "drop" in label else ("tab:green" if "swap" in label else "0.7")
        for ax in (ax_m, ax_l):
            ax.axvline(at, color=color, lw=0.8, ls="--")
        if "drop" in label or "swap" in label:
            ax_m.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                          va="top", ha="right", color=color)
    g = result["goals"]
    ax_m.set_title(f"soak, {result['backend']}: memory growth middle->end "
                   f"{g['memory_growth_middle_to_end_under_5pct']['value']} %, lost "
                   f"{g['no_unreported_loss']['value']}, crashes {g['no_crash']['value']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["evaluate_goals", "print_report", "plot_soak"]
