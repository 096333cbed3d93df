"""Data-parallel training under `torchrun` (DDP), one process a GPU (NCCL) or a CPU process (gloo).

    torchrun --nproc_per_node N -m train --method fair --c 32 --data DIR --category CAT --out RUN --batch-size B

How the work is split, and why a run does not depend on N:
- Every rank draws the same global batch of B images (`train.loop.batch_indices`) and the same synthetic
  anomalies and noise from the same seeded generator: the generator is *not* seeded per rank, because the
  synthesis of image i draws after the draws of images 0..i-1, so a per-rank stream would make the result
  depend on N, and `--resume` across a change of N would not continue the same run.
- Only the network (the child the method declares with role "network", which is where the time goes) is
  split: rank r runs rows `rank_rows(B, N, r)` of its input through `DistributedDataParallel(net)`, and the
  outputs are all-gathered (autograd-aware) so the loss is the full-batch loss on every rank.
- BatchNorm layers in the network normalise with statistics summed over all ranks (`CrossRankBatchNorm2d`,
  written with autograd-aware all-reduce so it runs on gloo/CPU too), so the batch statistics are those of
  the global batch, as in a 1-process run.
Gradient bookkeeping: each rank computes the same loss L; the all-gather's backward sums the N identical
copies of dL/d(its rows), so rank r holds N x (its part of dL/dtheta); DDP averages over N ranks, which gives
exactly the 1-process gradient dL/dtheta. Model, optimiser and generator states are therefore identical on
every rank and equal to a 1-process run's (up to float summation order), so rank 0 alone writes the run
folder and a checkpoint resumes under any N. The price: every rank repeats the batch's synthesis and the loss
(cheap next to the network's forward and backward, which are split), and the global batch must divide by N.

Fit-only methods (PatchCore/PaDiM, `train.fit`): each rank runs the backbone on its `shard_indices` rows of
every batch of the one pass, and `gather_rows` collects each batch's features in rank order, i.e. the 1-process
batch; every rank fits the same constants and rank 0 writes the run folder.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from train.errors import ConfigError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def rank_rows(batch_size: int, world: int, rank: int) -> slice:
    """The rows of a global batch that `rank` runs through the network (equal contiguous shares)."""
    if batch_size % world:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over {world} processes; "
                          f"use a multiple of {world} (the global batch is shared by all ranks)")
    share = batch_size // world
    return slice(rank * share, (rank + 1) * share)


def shard_indices(n: int, world: int, rank: int) -> np.ndarray:
    """Image indices a rank handles in a one-pass fit: contiguous blocks (sizes differ by at most one), so
    concatenating the ranks' results in rank order gives the 1-process order."""
    bounds = np.linspace(0, n, world + 1).round().astype(np.int64)
    return np.arange(bounds[rank], bounds[rank + 1], dtype=np.int64)


@dataclass
class Context:
    """Where this process stands: `world` processes, this one is `rank` (`local_rank` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # from_env started the process group (and `close` ends it)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, dev: torch.device) -> torch.device:
        """The device of this rank: the local GPU under torchrun with CUDA, else `dev` unchanged."""
        if self.active and dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", self.local_rank)
        return dev

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shard_network(self, model: nn.Module, method, batch_size: int) -> "Optional[NetworkShard]":
        """Prepare the model's network for split training (call before building the optimiser); None alone.
        The global batch must split evenly over the ranks (checked here, before the first step)."""
        if not self.active:
            return None
        rank_rows(batch_size, self.world, self.rank)
        return NetworkShard(model, network_child(method, model), self)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def from_env(device: torch.device) -> Context:
    """The context torchrun describes in the environment; a plain `python -m train` is world 1 (no group).

    Initialises the default process group (NCCL for CUDA devices, gloo otherwise) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    missing = [k for k in ENV_VARS if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {missing} are not set; start multi-process training with "
                          f"`torchrun --nproc_per_node N -m train ...`")
    ctx = Context(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(ctx.device(device))
        dist.init_process_group(backend=backend)
        ctx.owns_group = True
    return ctx


def network_child(method, model: nn.Module) -> str:
    """Name of the model's first child the method declares as its network (`MethodSpec.parts`, role "network")."""
    names = [name for name, role in method.parts.items() if role == "network"]
    if not names:
        raise ConfigError(f"method {method.name!r} declares no network part (a child with role 'network') to "
                          f"split across processes; it cannot be trained with torchrun")
    if not isinstance(getattr(model, names[0], None), nn.Module):
        raise ConfigError(f"method {method.name!r} has no network child {names[0]!r} to split across processes; "
                          f"it cannot be trained with torchrun")
    return names[0]


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every rank's loss depends on the sum."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (equal row counts); the gradient of this rank's rows is the sum over ranks of
    the gradients they computed for those rows (gloo has no reduce-scatter: all-reduce, then slice)."""

    @staticmethod
    def forward(ctx, x):
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = slice(rank * x.shape[0], (rank + 1) * x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows]


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the rows of every rank (same keys and eval behaviour).

    torch's SyncBatchNorm runs on GPUs only; this one sums with `_SumOverRanks`, so gloo/CPU works too and its
    gradient flows through the shared statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        total = _SumOverRanks.apply(torch.cat([count, x.sum(dim=(0, 2, 3))]))
        n, mean = total[0], total[1:] / total[0]
        centred = x - mean.view(1, -1, 1, 1)
        var = _SumOverRanks.apply(centred.pow(2).sum(dim=(0, 2, 3))) / n  # two passes: no E[x^2]-E[x]^2 loss
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def cross_rank_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm2d replaced by a CrossRankBatchNorm2d holding the same tensors."""
    if type(module) is nn.BatchNorm2d:
        out = CrossRankBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        out.training = module.training
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            setattr(out, name, tensor)  # the same Parameter/buffer objects, not copies
        return out
    for name, child in module.named_children():
        setattr(module, name, cross_rank_batchnorm(child))
    return module


class _GatheredRows(nn.Module):
    """Runs this rank's rows of the input through the DDP network and returns the whole batch's output."""

    def __init__(self, ddp: nn.Module, ctx: Context):
        super().__init__()
        self.ddp = ddp
        self.ctx = ctx

    def forward(self, x: torch.Tensor, *rest):
        mine = self.ddp(x[rank_rows(x.shape[0], self.ctx.world, self.ctx.rank)], *rest)
        return _GatherRows.apply(mine)


class NetworkShard:
    """The model's network wrapped in DDP; `with shard.split(): loss = ...` runs the loss with the split
    network swapped in (the model keeps its own child, so state_dict keys and checkpoints do not change)."""

    def __init__(self, model: nn.Module, child: str, ctx: Context):
        self.model, self.child, self.ctx = model, child, ctx
        net = cross_rank_batchnorm(getattr(model, child))
        setattr(model, child, net)
        dev = next(net.parameters()).device
        # Buffers (BatchNorm running statistics) already agree on every rank: no per-step broadcast
        # (`forward_sync_buffers` in newer torch, `broadcast_buffers` before).
        ddp_args = inspect.signature(nn.parallel.DistributedDataParallel).parameters
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in ddp_args
                   else {"broadcast_buffers": False})
        self.ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None, **no_sync)
        self.gathered = _GatheredRows(self.ddp, ctx)

    @contextlib.contextmanager
    def split(self) -> Iterator[None]:
        own = getattr(self.model, self.child)
        self.model._modules[self.child] = self.gathered  # noqa: SLF001 - a swap, undone below
        try:
            yield
        finally:
            self.model._modules[self.child] = own  # noqa: SLF001

    def average_other_gradients(self) -> None:
        """Average the gradients of parameters outside the network (DDP covers the network's)."""
        inside = {id(p) for p in self.ddp.parameters()}
        for p in self.model.parameters():
            if id(p) not in inside and p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.ctx.world)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows of `t` along dim 0 in rank order (row counts may differ); identity alone.

    For fit methods: each rank extracts features of its `shard_indices`, then every rank holds all of them."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return t
    world = dist.get_world_size()
    counts = [torch.zeros(1, dtype=torch.int64, device=t.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device))
    sizes = [int(c.item()) for c in counts]
    padded = t.new_zeros((max(sizes),) + tuple(t.shape[1:]))  # all_gather needs equal shapes
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)


__all__ = ["Context", "from_env", "rank_rows", "shard_indices", "gather_rows", "CrossRankBatchNorm2d",
           "cross_rank_batchnorm", "NetworkShard", "network_child"]
