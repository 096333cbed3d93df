"""The timing loop every latency figure of the toolkit comes from (`benchmarks.latency`'s rows, the doctor's
short runs): deterministic test frames, warm-up then synchronised timed calls within a time budget, and the
statistics of the latencies. numpy and the stdlib only, so a benchmark row's child process and a bare runtime
install import nothing else before their backend.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def make_frames(batch: int, image_size: Sequence[int], seed: int = 0) -> np.ndarray:
    """Deterministic uint8 frames (N, H, W, 3): a smooth pattern plus noise. The graph's cost does not depend
    on the content; this only keeps the input away from degenerate all-black frames."""
    rng = np.random.default_rng(seed)
    h, w = int(image_size[0]), int(image_size[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 127 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None]
    frames = base[None] + rng.normal(0, 20, size=(batch, h, w, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def time_infer(infer: Callable[[Any], Any], frames: Any, warmup: int, iters: int,
               max_seconds: float = float("inf"), synchronize: Optional[Callable[[], None]] = None,
               cpu_ms: Optional[List[float]] = None) -> Tuple[List[float], List[str]]:
    """Latencies in ms of `iters` calls after `warmup` untimed ones (at least 1 timed). Stops early, after at
    least 3 timed calls, once the timed calls have taken `max_seconds`; the notes say so. `cpu_ms`, when given,
    receives the process CPU time (all threads) of each timed call."""
    notes: List[str] = []
    for _ in range(max(0, warmup)):
        infer(frames)
    if synchronize is not None:
        synchronize()
    lat: List[float] = []
    spent = 0.0
    for i in range(max(1, iters)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        infer(frames)
        if synchronize is not None:
            synchronize()
        dt = time.perf_counter() - t0
        if cpu_ms is not None:
            cpu_ms.append((time.process_time() - c0) * 1e3)
        lat.append(dt * 1e3)
        spent += dt
        if spent > max_seconds and i + 1 >= 3 and i + 1 < iters:
            notes.append(f"stopped after {i + 1} of {iters} timed runs (time budget {max_seconds:g} s)")
            break
    return lat, notes


def latency_stats(lat_ms: Sequence[float], batch: int, cpu_ms: Optional[Sequence[float]] = None
                  ) -> Dict[str, Any]:
    a = np.asarray(lat_ms, dtype=np.float64)
    mean = float(a.mean())
    out = {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": mean,
        "min_ms": float(a.min()),
        "std_ms": float(a.std()),
        "fps": batch / (mean / 1e3),
        "iters": int(a.size),
    }
    if cpu_ms:
        # CPU time of the whole process per call: on a busy machine a steadier figure than wall time for
        # single-threaded runs (with more threads it includes the threads' spin-waiting)
        out["cpu_p50_ms"] = float(np.percentile(np.asarray(cpu_ms, dtype=np.float64), 50))
    return out

__all__ = ["make_frames", "time_infer", "latency_stats"]
