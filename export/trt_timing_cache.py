"""TensorRT's timing cache: one file per TensorRT version and GPU architecture, read and written defensively.

A timing cache holds kernel timings of one GPU and TensorRT version; with `ignore_mismatch=False` TensorRT
refuses a cache from another one, and a cache shared between GPUs would mix their timings. So the file name
carries both (`timing.cache` -> `timing.trt10.3.0.sm87.cache`), and every step that can fail falls back to an
empty cache with a warning instead of stopping a build that works without one:
- `create_timing_cache(blob)` returns None for a corrupt or foreign blob: retry with an empty one;
- `set_timing_cache(cache, ignore_mismatch=False)` returns False on a mismatch: use an empty one;
- `get_timing_cache()` may return None after the build: nothing is written.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

from runtime.files import atomic_write

log = logging.getLogger("export.trt")


def keyed_path(path: os.PathLike, trt_version: str, compute_capability: str) -> Path:
    """`engines/timing.cache`, '10.3.0.26', '8.7' -> `engines/timing.trt10.3.0.sm87.cache`."""
    path = Path(path)
    version = ".".join(re.findall(r"\d+", str(trt_version))[:3]) or "unknown"
    sm = re.sub(r"\D", "", str(compute_capability)) or "unknown"
    suffix = path.suffix or ".cache"
    return path.with_name(f"{path.stem if path.suffix else path.name}.trt{version}.sm{sm}{suffix}")


def attach(config: Any, path: Optional[Path]) -> Optional[Any]:
    """Give `config` the cache stored at `path` (or an empty one); returns the cache set, None when none could
    be created (the build then runs without one)."""
    if path is None:
        return None
    blob = b""
    if path.is_file():
        try:
            blob = path.read_bytes()
        except OSError as e:
            log.warning("cannot read the timing cache %s (%s): starting from an empty one", path, e)
    cache = config.create_timing_cache(blob)
    if cache is None and blob:
        log.warning("TensorRT could not read the timing cache %s: starting from an empty one", path)
        blob = b""
        cache = config.create_timing_cache(b"")
    if cache is None:
        log.warning("TensorRT could not create an empty timing cache: building without one")
        return None
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        log.warning("the timing cache %s does not match this GPU / TensorRT: starting from an empty one", path)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    log.warning("TensorRT refused the timing cache: building without one")
    return None


def save(config: Any, path: Optional[Path]) -> Optional[Path]:
    """Write the config's timing cache (after a build) to `path` atomically; the path, or None when there was
    nothing to write."""
    if path is None:
        return None
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("TensorRT returned no timing cache after the build: %s not written", path)
        return None
    data = cache.serialize()
    if data is None:
        log.warning("TensorRT could not serialise the timing cache: %s not written", path)
        return None
    atomic_write(path, bytes(data))
    return path


__all__ = ["keyed_path", "attach", "save"]
