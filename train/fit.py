"""The fit path of `train.loop`: methods with `training == "fit"` (memory banks, Gaussians) learn from one pass
over the good images instead of gradient steps.

The run folder gets what a trained run has: `config.json` (steps 0), `model.safetensors` (the fitted buffers)
and one `history.jsonl` line with the wall time, the process's peak resident memory and the facts the method's
`fit` returned. A fitted run is complete: `--resume` on it says so and changes nothing.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from train import runs
from train.config import RunConfig
from train.distributed import Context, shard_indices
from train.errors import RunError


class ImageBatches:
    """Re-iterable batches of float RGB (N, 3, H, W) in [0, 1] on `device`, cut in order from uint8 (N, H, W, 3)
    images; each image is converted when its batch is made, so the float copy never holds all images.
    With `desc`, each pass shows a progress bar.

    With `ranks=(world, rank)` and world > 1 (torchrun), each global batch is still cut as above, but only this
    rank's rows of it (`distributed.shard_indices`, possibly none) are yielded, and `split_over_ranks` is True:
    every rank runs the same number of steps, and gathering step k's rows in rank order (`gather_rows`, done
    by `feature_batches`) gives exactly the 1-process batch k."""

    def __init__(self, images: np.ndarray, batch_size: int, device: torch.device, desc: str = "",
                 progress: bool = False, ranks: Tuple[int, int] = (1, 0)):
        if batch_size < 1:
            raise RunError(f"--batch-size {batch_size} must be at least 1")
        self.data = torch.from_numpy(np.ascontiguousarray(images))
        self.batch_size = int(batch_size)
        self.device = device
        self.desc, self.progress = desc, progress
        self.world, self.rank = int(ranks[0]), int(ranks[1])
        self.split_over_ranks = self.world > 1

    def __len__(self) -> int:
        return (len(self.data) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        bar = tqdm(total=len(self.data), desc=self.desc, disable=not self.progress, unit="img", dynamic_ncols=True)
        try:
            for start in range(0, len(self.data), self.batch_size):
                batch = self.data[start:start + self.batch_size]
                mine = batch[torch.from_numpy(shard_indices(len(batch), self.world, self.rank))] \
                    if self.split_over_ranks else batch
                yield mine.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).to(self.device)
                bar.update(len(batch))
        finally:
            bar.close()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (0.0 where the platform cannot tell)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def fit_record(out: Path):
    """The history line of a finished fit in run folder `out` (written after its weights), or None."""
    history = Path(out) / runs.HISTORY
    if not (Path(out) / runs.WEIGHTS).is_file() or not history.is_file():
        return None
    for line in history.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("fit") is True:
                return record
    return None


def fit(fitter, model: torch.nn.Module, config: RunConfig, out: Path, images: np.ndarray, dev: torch.device,
        progress: bool, ctx: Optional[Context] = None) -> Path:
    """Fit `model` (built at the run's image size, on `dev`) with the run's `fitter` (`train.methods.run.Fitter`:
    `fit`, then the `after_training` hook) and write the run folder.

    Under torchrun (`ctx` active) every rank runs the backbone on its rows of each batch and `fitter.fit` sees
    the gathered features, i.e. what a 1-process fit sees; every rank fits the same constants and rank 0 alone
    writes the run folder."""
    ctx = ctx or Context()
    progress = progress and ctx.is_main
    method = fitter.spec
    batches = ImageBatches(images, config.batch_size, dev, desc=f"fit {method.label(config.c)}", progress=progress,
                           ranks=(ctx.world, ctx.rank))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.eval()  # a fit reads features; batch norm etc. must use their stored statistics
    t0 = time.time()
    with torch.no_grad():
        facts = fitter.fit(model, batches, dev, progress)
    seconds = time.time() - t0
    if batches.split_over_ranks and not getattr(batches, "features_gathered", False):
        # this rank saw only its rows: a fit that reads the batches without feature_batches is not 1-process
        raise RunError(f"method {method.name!r} cannot fit under torchrun (its fit does not gather features "
                       f"with train.methods._features.feature_batches); run it as one process")
    with torch.no_grad():
        after = fitter.after_training(model, batches, dev, progress)
    if after:
        facts = dict(facts or {}, after_training=after)
    if not ctx.is_main:
        return out
    runs.save_weights(out, model)
    record = {"step": 0, "fit": True, "images": int(len(images)), "seconds": round(seconds, 3),
              "peak_rss_mib": peak_rss_mib()}
    if ctx.active:
        record["processes"] = ctx.world  # peak memory above is rank 0's
    if dev.type == "cuda":
        record["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    clash = sorted(set(record) & set(facts or {}))
    if clash:
        raise RunError(f"method {method.name!r}: fit returned keys {clash} that the history line already has")
    record.update(facts or {})
    runs.append_history(out, record)
    return out
