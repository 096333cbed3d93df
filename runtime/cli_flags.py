"""The flags every command line of the toolkit spells the same way: one place for their names, choices and help.

Conventions (CONTRIBUTING.md, "Command lines"): an exported artifact is `--model`, backend names are the runtime
registry's (`runtime.backends.REGISTRY`, never a hand-written list or an alias), `--device auto|cpu|cuda`,
progress off is `--no-progress`; one batch size is `--batch-size N`, a list of them `--batch-sizes N ...`, a
TensorRT optimisation profile `--profile MIN:OPT:MAX`; `--out FILE` where a command writes one artifact (its
manifest beside it) and `--out DIR` where it writes several files. No hidden aliases.
Stdlib and `runtime.backends` only: any package may import this (the runtime without torch, Python 3.8).
"""
from __future__ import annotations

import argparse
import re
from typing import List

from runtime.backends import DEVICES, REGISTRY  # cheap: the registry imports no backend library

_TORCH_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def positive_int(text: str) -> int:
    """argparse `type` for a count (images, iterations, batch sizes, seconds): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def backend_choices(auto: bool = True) -> List[str]:
    """The runtime's backend names (`runtime.backends.REGISTRY`), "auto" first when the command can pick."""
    return (["auto"] if auto else []) + list(REGISTRY)


def add_backend(p: argparse.ArgumentParser, default: str = "auto", auto: bool = True,
                help: str = "runtime backend") -> argparse.Action:  # noqa: A002 - argparse's own word
    """`--backend NAME`, choices from the runtime registry."""
    choices = backend_choices(auto)
    extra = "; auto picks a local backend for the artifact and the device" if auto else ""
    return p.add_argument("--backend", default=default, choices=choices, metavar="|".join(choices),
                          help=f"{help}{extra}; default {default}")


def torch_device(text: str) -> str:
    """argparse `type=` of a torch device: auto, cpu, cuda or cuda:N (torchrun gives each rank its GPU)."""
    if not _TORCH_DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def add_device(p: argparse.ArgumentParser, default: str = "auto", torch: bool = False,
               help: str = "where to compute") -> argparse.Action:  # noqa: A002
    """`--device auto|cpu|cuda` (with `torch=True` also cuda:N): auto takes a GPU when there is one."""
    if torch:
        return p.add_argument("--device", default=default, type=torch_device, metavar="auto|cpu|cuda[:N]",
                              help=f"{help}: auto (a CUDA GPU when torch sees one), cpu, cuda or cuda:N; "
                                   f"default {default}")
    return p.add_argument("--device", default=default, choices=DEVICES, metavar="|".join(DEVICES),
                          help=f"{help}: auto (a GPU when the backend has one), cpu or cuda; default {default}")


def add_no_progress(p: argparse.ArgumentParser, what: str = "no progress bars") -> argparse.Action:
    """`--no-progress` (args.no_progress); `what` says what it turns off for this command."""
    return p.add_argument("--no-progress", action="store_true", help=what)


__all__ = ["DEVICES", "add_backend", "add_device", "add_no_progress", "backend_choices", "torch_device"]
