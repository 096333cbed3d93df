"""Run folders: config.json, model.safetensors, history.jsonl and a resumable checkpoint, all written
atomically (`runtime.files`) so an interrupted run never leaves a half-written file.

The checkpoint is one file, checkpoint.safetensors: the tensors, and the step, optimiser scalars and schedule
as JSON in its metadata, so no interruption can pair tensors of one step with the state of another (runs of
earlier versions kept that state in checkpoint.json; they still resume, after a step cross-check). A damaged
or truncated run file is one RunError naming it, never a traceback.

Nothing here uses pickle: weights and optimiser tensors go to safetensors, the rest to JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from runtime.errors import one_line
from runtime.files import atomic_path, atomic_write
from train.config import RunConfig
from train.errors import ConfigError, RunError
from train.graph import InspectionGraph
from train.methods import get_method
from train.ops.standardize import MapStandardizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.jsonl"
CKPT_TENSORS = "checkpoint.safetensors"
CKPT_META = "checkpoint.json"  # the state of checkpoints written by earlier versions (now inside CKPT_TENSORS)
CKPT_KEY = "checkpoint"  # the metadata key of checkpoint.safetensors that holds the state as JSON
MAP_STATS = "map_stats.safetensors"


def atomic_save_tensors(path: Path, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None):
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def read_tensors(path: Path, what: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """The tensors and metadata of a safetensors run file; RunError when it is damaged or truncated (`what`:
    what to do then)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path} is damaged or truncated ({one_line(e)}): {what}") from None


def _parse_json(text: str, path: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # truncated, or nested too deeply to be ours
        raise RunError(f"{path} is damaged or truncated (not the JSON this toolkit writes): {what}") from None


def save_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write(Path(run_dir) / CONFIG, config.to_json() + "\n")


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(f"no {CONFIG} in run folder {run_dir}; train one with `python -m train ... --out {run_dir}`")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except RecursionError:
        raise RunError(f"{path} is nested too deeply to be a run config; retrain or fix the file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RunError(f"{path} is not a valid run config ({e}); retrain or fix the file") from None


def save_weights(run_dir: Path, model: torch.nn.Module) -> None:
    atomic_save_tensors(Path(run_dir) / WEIGHTS, dict(model.state_dict()))


def build_model(config: RunConfig) -> torch.nn.Module:
    method = get_method(config.method)
    return method.build_model(config.c, tuple(config.image_size), method.options(config.options))


def with_scoring_options(config: RunConfig, overrides: Optional[Dict[str, Any]]) -> RunConfig:
    """`config` with some of its method's scoring options (e.g. FAIR's mean_filter) replaced; options that
    change what the network learned are refused (they need a new training run)."""
    if not overrides:
        return config
    allowed = get_method(config.method).scoring_options
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        raise ConfigError(f"option(s) {refused} of method {config.method!r} cannot change after training; "
                          f"the scoring options that can: {list(allowed) or 'none'}")
    return dataclasses.replace(config, options={**config.options, **overrides})


def load_model(run_dir, device: str = "cpu",
               scoring: Optional[Dict[str, Any]] = None) -> Tuple[torch.nn.Module, RunConfig]:
    """The trained anomaly model of a run (eval mode) and its config; `scoring` overrides scoring options."""
    run_dir = Path(run_dir)
    config = with_scoring_options(load_config(run_dir), scoring)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise RunError(f"run {run_dir} has no {WEIGHTS} yet (training not finished?); resume it with --resume")
    model = build_model(config)
    label = get_method(config.method).label(config.c)
    # Buffers whose size depends on the data (a memory bank's rows) are resized by the model's own
    # `_load_from_state_dict`; any other shape mismatch is a real one.
    state, _ = read_tensors(weights, f"retrain the run, or resume it with --resume to write {WEIGHTS} again")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise RunError(f"{weights} does not fit {label}: {str(e).splitlines()[-1].strip()[:200]}; "
                       f"was the run made by another version?") from None
    if missing or unexpected:
        raise RunError(
            f"{weights} does not fit {label}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; was the run made by another version?"
        )
    return model.to(device).eval(), config


def _weights_digest(run_dir: Path) -> str:
    h = hashlib.sha256()
    with open(Path(run_dir) / WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _scoring_of(config: RunConfig) -> Dict[str, Any]:
    method = get_method(config.method)
    options = method.options(config.options)
    return {k: options[k] for k in method.scoring_options}


def save_map_statistics(run_dir, config: RunConfig, mean: torch.Tensor, std: torch.Tensor, images: int,
                        split: str = "fit") -> Path:
    """Write the run's per-pixel map statistics (`train.map_stats`), tied to its weights and scoring options;
    `split` says which good images they came from (fit: the fitted ones; holdout: the held-out ones)."""
    path = Path(run_dir) / MAP_STATS
    meta = {"images": str(int(images)), "split": str(split), "weights_sha256": _weights_digest(run_dir),
            "scoring": json.dumps(_scoring_of(config), sort_keys=True)}
    atomic_save_tensors(path, {"mean": mean, "std": std}, metadata=meta)
    return path


def load_standardizer(run_dir, config: RunConfig) -> Optional[MapStandardizer]:
    """The run's fitted map standardisation, or None when it has none. Statistics fitted for other weights or
    other scoring options are refused: they would standardise the wrong maps."""
    path = Path(run_dir) / MAP_STATS
    if not path.is_file():
        return None
    refit = f"refit them with `python -m train.map_stats --run {run_dir}`"
    stats, meta = read_tensors(path, refit)
    if "mean" not in stats or "std" not in stats:
        raise RunError(f"{path} lacks the mean or std map: {refit}")
    mean, std = stats["mean"], stats["std"]
    if meta.get("weights_sha256") != _weights_digest(run_dir):
        raise RunError(f"{path} was fitted for other weights than {WEIGHTS} (training went on?): {refit}")
    fitted, now = _parse_json(meta.get("scoring", "{}"), path, refit), _scoring_of(config)
    if isinstance(fitted, dict):  # a scoring option added since the fit counts at its default (what it used)
        defaults = get_method(config.method).defaults
        fitted = {**{k: defaults[k] for k in now if k not in fitted}, **fitted}
    if fitted != now:
        raise RunError(f"{path} was fitted with scoring options {fitted}, not {now}: {refit}, or leave the map "
                       f"statistics out (benchmarks.accuracy --no-map-stats)")
    return MapStandardizer(mean, std)


def load_graph(run_dir, device: str = "cpu", frame_size=None, channel_order: str = "RGB",
               scoring: Optional[Dict[str, Any]] = None, map_stats: bool = True):
    """The inspection graph (uint8 NHWC frames -> map, score) of a trained run, and its config. With
    `map_stats` (default) the run's fitted per-pixel standardisation (`python -m train.map_stats`) is part of it."""
    model, config = load_model(run_dir, device, scoring)
    standardizer = load_standardizer(run_dir, config) if map_stats else None
    graph = InspectionGraph(model, tuple(config.image_size), frame_size, channel_order, standardizer)
    return graph.to(device).eval(), config


def append_history(run_dir: Path, record: Dict[str, Any]) -> None:
    # Appending a line is atomic enough for a log: a crash loses at most the last line.
    with open(Path(run_dir) / HISTORY, "a") as f:
        f.write(json.dumps(record) + "\n")


def start_fresh(run_dir: Path) -> None:
    """A new run (not --resume) in a folder an interrupted one left: its history and checkpoint go, so the new
    run's history does not repeat steps and a later --resume cannot pick up the old run's state."""
    for name in (HISTORY, CKPT_TENSORS, CKPT_META):
        path = Path(run_dir) / name
        if path.exists():
            path.unlink()


def truncate_history(run_dir: Path, last_step: int) -> None:
    """On resume, drop log lines written after the checkpoint so the history has no duplicates."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if _history_step(ln) <= last_step]
    atomic_write(path, "".join(ln + "\n" for ln in keep))


def _history_step(line: str) -> float:
    """The step of a history line; +inf (dropped) for a line a kill cut short or that is not a record."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return float("inf")
    return record.get("step", 0) if isinstance(record, dict) else float("inf")


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, generator: torch.Generator, step: int) -> None:
    """Everything needed to continue bit-for-bit: weights, optimiser state, schedule, RNG, step."""
    tensors: Dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    scalars: Dict[str, Dict[str, Any]] = {}
    for pid, st in opt_state["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{pid}.{name}"] = val
            else:
                scalars.setdefault(str(pid), {})[name] = val
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "step": step,
        "param_groups": opt_state["param_groups"],
        "optim_scalars": scalars,
        # Milestones are rebuilt from the run's current --steps, so a resumed run that extends --steps
        # moves its learning-rate drops with it; only the schedule's position is restored.
        "scheduler": {k: v for k, v in scheduler.state_dict().items()
                      if not callable(v) and k not in ("lr_lambdas", "milestones")},
    }
    # One file, replaced atomically: the tensors and the state of the same step, whatever interrupts the run.
    atomic_save_tensors(Path(run_dir) / CKPT_TENSORS, tensors,
                        metadata={CKPT_KEY: json.dumps(meta, default=_json_default)})
    legacy = Path(run_dir) / CKPT_META
    if legacy.exists():  # an earlier version's state file: stale now
        legacy.unlink()


def _json_default(obj):
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _checkpoint_state(run_dir: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The checkpoint's tensors and state; RunError when a file is damaged or (earlier versions' two files)
    the state is of another step than the tensors."""
    fresh = f"start a new run without --resume (or in another --out); the last {WEIGHTS} is still there"
    path = run_dir / CKPT_TENSORS
    tensors, file_meta = read_tensors(path, fresh)
    if CKPT_KEY in file_meta:
        meta = _parse_json(file_meta[CKPT_KEY], path, fresh)
    else:  # an earlier version's checkpoint: the state in checkpoint.json, written after the tensors
        legacy = run_dir / CKPT_META
        if not legacy.is_file():
            raise RunError(f"--resume: {path} has no state and there is no {CKPT_META} beside it: {fresh}")
        meta = _parse_json(legacy.read_text(), legacy, fresh)
        steps = {int(v.reshape(-1)[0]) for k, v in tensors.items() if k.startswith("optim.") and k.endswith(".step")
                 and v.numel() == 1}
        if isinstance(meta, dict) and steps and steps != {meta.get("step")}:
            raise RunError(f"--resume: {path} is of step {sorted(steps)[0]} but {CKPT_META} of step "
                           f"{meta.get('step')} (the run was interrupted between the two): {fresh}")
    if not isinstance(meta, dict) or not {"step", "optim_scalars", "param_groups", "scheduler"} <= set(meta):
        raise RunError(f"--resume: the checkpoint state in {run_dir} is incomplete: {fresh}")
    return tensors, meta


def load_checkpoint(run_dir: Path, model, optimizer, scheduler, generator: torch.Generator) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the step to continue from."""
    run_dir = Path(run_dir)
    if not (run_dir / CKPT_TENSORS).is_file():
        raise RunError(f"--resume: no checkpoint in {run_dir}; start a new run without --resume")
    tensors, meta = _checkpoint_state(run_dir)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    state: Dict[int, Dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["optim_scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    sched = dict(scheduler.state_dict())
    sched.update(meta["scheduler"])
    scheduler.load_state_dict(sched)
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"])
