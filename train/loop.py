"""The training loop: normal images only, a fixed number of steps, a resumable run folder.

Determinism: the batch at step s is a pure function of (seed, s) (an epoch-wise permutation from a generator
seeded by seed and epoch), and all synthesis randomness comes from one CPU generator whose state is saved in
the checkpoint, so a seeded CPU run is deterministic and `--resume` continues the same stream.
"""
from __future__ import annotations

import contextlib
import math
import platform
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from train import distributed, runs
from train.config import RunConfig
from train.errors import ConfigError, RunError
from train.methods import get_method


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the batch at `step`: position p of the infinite stream is perm_{p // n}[p % n]."""
    out = np.empty(batch_size, dtype=np.int64)
    cache = {}
    for i in range(batch_size):
        p = step * batch_size + i
        epoch = p // n_images
        if epoch not in cache:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[epoch] = torch.randperm(n_images, generator=g).numpy()
        out[i] = cache[epoch][p % n_images]
    return out


def random_crop(batch: torch.Tensor, crop, generator: torch.Generator) -> torch.Tensor:
    """One random (h, w) window per image of a (N, H, W, C) batch, positions drawn from `generator`."""
    n, height, width = batch.shape[:3]
    ch, cw = crop
    ys = torch.randint(0, height - ch + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, width - cw + 1, (n,), generator=generator).tolist()
    return torch.stack([batch[i, y:y + ch, x:x + cw] for i, (y, x) in enumerate(zip(ys, xs))])


def versions() -> dict:
    import safetensors

    return {"torch": torch.__version__, "python": platform.python_version(), "safetensors": safetensors.__version__}


def steps_for_epochs(epochs: float, n_images: int, batch_size: int) -> int:
    return max(1, math.ceil(epochs * n_images / batch_size))


def _fit_run(method, config: RunConfig, out: Path, images: np.ndarray, dev: torch.device, options: dict,
             resume: bool, progress: bool, ddp: distributed.Context) -> Path:
    """training == "fit": one pass over `images` (train.fit); a finished fit is not redone by --resume.
    Under torchrun every rank fits (on its rows of each batch, features gathered) and rank 0 alone writes."""
    from train import fit

    if resume:
        done = fit.fit_record(out)
        if done is not None:
            if ddp.is_main:
                print(f"run {out} is already fitted ({done.get('images')} images); nothing to resume")
            return out
    ddp.barrier()  # every rank has read the folder before rank 0 writes to it
    config.steps = 0
    config.versions = versions()
    if ddp.is_main:
        if resume:
            runs.truncate_history(out, -1)  # an interrupted fit left no finished line: fit again from the start
        out.mkdir(parents=True, exist_ok=True)
        runs.save_config(out, config)
    torch.manual_seed(config.seed)  # subsampling (coresets, channel subsets) is seeded by the run
    model = method.build_model(config.c, tuple(config.image_size), options).to(dev)
    fitter = method.start_run(options, tuple(config.image_size))  # the run's own state
    return fit.fit(fitter, model, config, out, images, dev, progress, ddp)


def _after_training(trainer, model, config: RunConfig, out: Path, images: np.ndarray, dev: torch.device,
                    progress: bool, ddp: distributed.Context) -> None:
    """The method's hook after the last step (`Trainer.after_training`); facts it returns go to history.jsonl
    and the weights it changed are written again."""
    from train.fit import ImageBatches

    model.eval()
    batches = ImageBatches(images, config.batch_size, dev, desc="after training", progress=progress and ddp.is_main)
    facts = trainer.after_training(model, batches, dev, progress and ddp.is_main)
    if facts and ddp.is_main:
        runs.save_weights(out, model)
        runs.append_history(out, {"step": config.steps, "after_training": facts})


def train(
    config: RunConfig,
    out: Path,
    images: np.ndarray,
    device: str = "auto",
    resume: bool = False,
    checkpoint_every: int = 500,
    log_every: int = 10,
    progress: bool = True,
    stop_at: Optional[int] = None,
) -> Path:
    """Train `config.method` on `images` (N, h, w, 3) uint8 RGB at the config's size; returns the run folder.
    A method with training == "fit" is fitted in one pass instead (`train.fit`; steps, lr, crop do not apply).

    `stop_at` ends the loop after that step as an interruption would (checkpoint written), for `--resume`.
    """
    out = Path(out)
    if len(images) == 0:
        raise ConfigError("no training images")
    dev = resolve_device(device)
    ddp = distributed.from_env(dev)  # torchrun: this rank's place; world 1 otherwise (train.distributed)
    dev = ddp.device(dev)
    method = get_method(config.method)
    options = method.options(config.options)
    config.options = {k: v for k, v in options.items()}

    if resume:
        saved = runs.load_config(out)
        # A fit's batch size only splits its one pass over the images: it does not change a fitted run.
        keys = ("method", "c", "image_size", "seed") + (("batch_size", "crop") if method.training != "fit" else ())
        for key in keys:
            if getattr(saved, key) != getattr(config, key):
                raise RunError(
                    f"--resume: {out} was trained with {key}={getattr(saved, key)!r}, not {getattr(config, key)!r}"
                )
    elif (out / runs.CONFIG).exists() and (out / runs.WEIGHTS).exists():
        raise RunError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    if method.training == "fit":
        # A fit is one pass with no gradients to share: under torchrun each rank runs the backbone on its rows of
        # every batch and the features are gathered (train.fit), so every rank fits what 1 process would fit.
        if config.crop:  # checked on every rank, so that no rank waits for one that failed
            raise ConfigError(f"method {config.method!r} is fitted on whole images: drop --crop")
        _fit_run(method, config, out, images, dev, options, resume, progress, ddp)
        ddp.barrier()  # no rank leaves before rank 0 has written the run
        ddp.close()
        return out

    train_size = tuple(config.crop or config.image_size)
    if config.crop and (config.crop[0] > config.image_size[0] or config.crop[1] > config.image_size[1]):
        raise ConfigError(f"--crop {config.crop} is larger than --image-size {config.image_size}")
    torch.manual_seed(config.seed)
    # With --crop the model is built at the crop size; its weights (the network) do not depend on the size.
    model = method.build_model(config.c, train_size, options).to(dev)
    trainer = method.start_run(options, train_size)  # the run's own state (textures, reference, ...)
    trainer.prepare(model, images)
    shard = ddp.shard_network(model, method, config.batch_size)  # DDP: split the network's rows over ranks; None alone
    optimizer = trainer.optimizer(model, config.lr)
    scheduler = trainer.scheduler(optimizer, config.steps)
    generator = torch.Generator().manual_seed(config.seed)

    start = 0
    if resume:
        start = runs.load_checkpoint(out, model, optimizer, scheduler, generator)
        if ddp.is_main:
            runs.truncate_history(out, start)
        if start >= config.steps:
            print(f"run {out} already finished {start} steps")
    else:
        config.versions = versions()
    if resume:
        config.versions = saved.versions  # the versions that started the run
    ddp.barrier()  # every rank has checked the folder and read the checkpoint before rank 0 writes
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            runs.start_fresh(out)  # what an interrupted earlier run left: no repeated steps in the history
        runs.save_config(out, config)  # a resumed run may extend --steps

    data = torch.from_numpy(images)  # uint8 (N, h, w, 3); converted per batch to keep memory low
    model.train()
    bar = tqdm(total=config.steps, initial=start, desc=f"train {method.label(config.c)}",
               disable=not (progress and ddp.is_main), unit="step", dynamic_ncols=True)
    t0 = time.time()
    running, count = 0.0, 0
    for step in range(start, config.steps):
        idx = batch_indices(len(data), config.batch_size, config.seed, step)
        batch = data[idx] if not config.crop else random_crop(data[idx], config.crop, generator)
        clean = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).to(dev)
        with shard.split() if shard else contextlib.nullcontext():
            loss = trainer.loss(model, clean, generator, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if shard:
            shard.average_other_gradients()
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RunError(f"loss became {value} at step {step}; lower --lr or check the data")
        running += value
        count += 1
        bar.update(1)
        done = step + 1
        if ddp.is_main and (done % log_every == 0 or done == config.steps):
            runs.append_history(out, {"step": done, "loss": running / count, "lr": optimizer.param_groups[0]["lr"],
                                      "elapsed_s": round(time.time() - t0, 3)})
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
        if ddp.is_main and (done % checkpoint_every == 0 or done == config.steps or done == stop_at):
            runs.save_checkpoint(out, model, optimizer, scheduler, generator, done)
            runs.save_weights(out, model)
        if done == stop_at:
            break
    bar.close()
    if ddp.is_main and start >= config.steps and not (out / runs.WEIGHTS).exists():
        runs.save_weights(out, model)
    if start < config.steps and (stop_at is None or stop_at >= config.steps):  # the run's last step was taken now
        _after_training(trainer, model, config, out, images, dev, progress, ddp)
    ddp.barrier()  # no rank leaves before rank 0 has written the run
    ddp.close()
    return out
