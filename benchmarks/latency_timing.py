"""Timing and memory of one row of `benchmarks/latency.py`: deterministic test frames, the timing loop
(warm-up, synchronised timed calls, a time budget) and latency statistics (`runtime.timing`, shared with the
doctor), and the peak growth of the resident set. numpy and the stdlib only: a row's child process imports
nothing else before its backend."""
from __future__ import annotations

import gc
from typing import Optional

from runtime.timing import latency_stats, make_frames, time_infer  # noqa: F401  (the rows' names for them)


# ---------------------------------------------------------------------------------------------------------
# process memory


def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def malloc_trim() -> None:
    """Give memory that is free inside the C heap back to the system (glibc), so that the resident set at a
    row's start is what is live."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak growth of the resident set during a block: resets the kernel's high-water mark (VmHWM) through
    /proc/self/clear_refs where that works, else falls back to getrusage's ru_maxrss (which never resets)."""

    def __init__(self) -> None:
        self.method = "vmhwm"
        self.start_kib = 0

    def start(self) -> "PeakRSS":
        gc.collect()
        malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5 = reset the peak resident set size (Linux >= 4.0)
            rss = _proc_status_kib("VmRSS")
            if rss is None:
                raise OSError("no VmRSS")
            self.start_kib = rss
            self.method = "vmhwm"
        except OSError:
            import resource

            self.method = "ru_maxrss"
            self.start_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def peak_bytes(self) -> int:
        if self.method == "vmhwm":
            hwm = _proc_status_kib("VmHWM") or self.start_kib
        else:
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, hwm - self.start_kib) * 1024
