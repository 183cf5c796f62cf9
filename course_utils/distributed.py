"""Several processes, one batch: the process-group pieces of MoCo's shuffling BN and SimCLR's global negatives.

Contrastive methods care about what a batch contains: SimCLR's negatives are
the other samples of the batch, and MoCo's BatchNorm must not see a query's
own key among the samples it normalises with. With several GPUs the batch is
split across processes, so both methods talk between processes:

- `gather_shuffle` / `gather_unshuffle`: MoCo's *shuffling BN*. The keys'
  batch is gathered from every process, permuted with a permutation drawn on
  rank 0 and broadcast, and each process encodes its slice of the shuffled
  batch, so that its BatchNorm statistics mix samples of every process; the
  index that undoes the permutation brings each key back to the process (and
  row) of its query.
- `concat_all_gather`: the keys of every process, in rank order, the same on
  every rank (what enters each rank's queue), without gradient.
- `simclr_loss_across_processes`: SimCLR's loss with the projections of all
  processes as negatives, through a differentiable all_gather
  (`all_gather_with_grad`): each process scores its own anchors against
  every gathered sample.
- `spawn`: run a function in ``world_size`` processes joined in a process
  group (gloo on the CPU, nccl on GPUs), from a script or a notebook, and
  collect what each returned.

Shapes: a local batch is ``[N, ...]`` on every process (the same N
everywhere); gathered tensors are ``[world_size * N, ...]`` in rank order.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def _need_two_processes(name: str, yours: str) -> None:
    """These are the cross-process versions of the notebooks' graded functions: not a way round writing them."""
    if not dist.is_initialized() or dist.get_world_size() < 2:
        raise RuntimeError(f"{name} needs a process group of at least 2 processes (run it with spawn); on one "
                           f"process, use your own {yours}")


def _demo_device(rank: int) -> torch.device:
    """Where a demo's tensors live: this rank's GPU under nccl (it cannot gather CPU tensors), else the CPU."""
    return torch.device("cuda", rank) if dist.get_backend() == "nccl" else torch.device("cpu")


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """``[N, ...]`` on each rank -> ``[world_size * N, ...]``, rank 0's rows first, no gradient."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def gather_shuffle(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of the whole batch, shuffled across processes; and the index that undoes it.

    Shape: ``x [N, ...]`` -> ``(shuffled [N, ...], unshuffle_index [world_size * N])``. The permutation
    is drawn on rank 0 (with ``generator`` there, if given) and broadcast, so every rank agrees on it.
    """
    _need_two_processes("gather_shuffle", "batch_shuffle")
    gathered = concat_all_gather(x)
    total, rank = len(gathered), dist.get_rank()
    order = torch.randperm(total, generator=generator) if rank == 0 else torch.empty(total, dtype=torch.long)
    order = order.to(x.device)
    dist.broadcast(order, src=0)
    unshuffle = torch.argsort(order)
    n = len(x)
    return gathered[order[rank * n:(rank + 1) * n]], unshuffle


@torch.no_grad()
def gather_unshuffle(x: torch.Tensor, unshuffle_index: torch.Tensor) -> torch.Tensor:
    """Undo `gather_shuffle`: ``[N, ...]`` encoded in shuffled order -> this rank's rows in their own order."""
    gathered = concat_all_gather(x)
    n, rank = len(x), dist.get_rank()
    return gathered[unshuffle_index[rank * n:(rank + 1) * n]]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns to each rank the sum, over all ranks, of the gradients
    that reached its own rows (each rank's loss uses every rank's rows)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over the ranks
        n = len(grad) // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * n:(rank + 1) * n]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[N, ...]`` on each rank -> ``[world_size * N, ...]`` in rank order, differentiable (see `_GatherWithGrad`)."""
    return _GatherWithGrad.apply(x)


def simclr_loss_across_processes(z_left: torch.Tensor, z_right: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of this rank's ``2N`` anchors against the ``2 * world_size * N`` views of all processes.

    Shape: ``z_left, z_right [N, D]`` (this rank's two views) -> a 0-dim loss, the mean over this rank's
    anchors. The mean of this over the ranks is the single-process loss on the concatenated batch; the
    gather is differentiable (its backward sums the gradients of every rank's loss), so with
    DistributedDataParallel, which averages the parameters' gradients over ranks, training follows the
    gradient of that global loss.
    """
    _need_two_processes("simclr_loss_across_processes", "simclr_loss_vectorized")
    world, rank, n = dist.get_world_size(), dist.get_rank(), len(z_left)
    left = all_gather_with_grad(F.normalize(z_left, dim=1))             # [world * N, D], rank order
    right = all_gather_with_grad(F.normalize(z_right, dim=1))
    everyone = torch.cat([left, right])                                  # [2 * world * N, D]
    total = world * n
    mine = torch.cat([torch.arange(rank * n, (rank + 1) * n), total + torch.arange(rank * n, (rank + 1) * n)])
    mine = mine.to(z_left.device)
    logits = everyone[mine] @ everyone.T / tau                           # [2N, 2 * world * N]
    logits = logits.masked_fill(F.one_hot(mine, 2 * total).bool(), float("-inf"))  # an anchor is not its negative
    positives = (mine + total) % (2 * total)                             # left i <-> right i
    return F.cross_entropy(logits, positives)


def _worker(rank: int, world_size: int, backend: str, store: str, fn: Callable, args: tuple, results: str) -> None:
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ:
        # one machine: talk over loopback (the hostname may not resolve, e.g. inside a sandbox)
        os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        out = fn(rank, world_size, *args)
        torch.save(out, os.path.join(results, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., Any], world_size: int = 2, *args: Any, backend: str | None = None) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new processes joined in a process group.

    ``backend`` defaults to nccl with one GPU per process when there are enough GPUs, else gloo on the
    CPU. The group meets through a file in a temporary folder (no network). ``fn`` must be importable
    (defined in a module, not in a notebook cell: the processes are started fresh and import it) and
    return something ``torch.save`` can write. Returns what each rank returned, in rank order; an error
    in a process is raised here.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo"
    with tempfile.TemporaryDirectory(prefix="ssl-kit-group-") as tmp:
        store = os.path.join(tmp, "store")
        mp.spawn(_worker, args=(world_size, backend, store, fn, args, tmp), nprocs=world_size, join=True)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world_size)]


# --------------------------------------------------------------------------- what the notebooks launch

def shuffle_bn_demo(rank: int, world_size: int, n: int = 8, seed: int = 0) -> dict[str, Any]:
    """One MoCo key step across processes, instrumented: run it with ``spawn(shuffle_bn_demo, 2)``.

    Each rank holds ``n`` samples whose first feature is their id (``1000 * rank + i``). The batch is
    shuffled across processes, encoded by a BatchNorm layer (whose batch statistics are what shuffling
    BN is about), unshuffled, and the gathered keys are written into a queue. Returns, per rank: the ids
    its BN saw, the ids after unshuffling, the BN batch mean of the id feature, and its queue.
    """
    device = _demo_device(rank)
    ids = 1000.0 * rank + torch.arange(n, dtype=torch.float32)
    x = torch.stack([ids, torch.randn(n, generator=torch.Generator().manual_seed(seed + rank))], dim=1)  # [n, 2]
    generator = torch.Generator().manual_seed(seed)
    shuffled, unshuffle = gather_shuffle(x.to(device), generator=generator)
    bn = torch.nn.BatchNorm1d(2, affine=False).to(device)
    keys = torch.cat([shuffled[:, :1], bn(shuffled)[:, 1:]], dim=1)  # the id kept, the feature normalised
    restored = gather_unshuffle(keys, unshuffle)
    queue = torch.zeros(world_size * n * 2, 2)
    everyone = concat_all_gather(restored).cpu()
    queue[:len(everyone)] = everyone
    shuffled, restored = shuffled.cpu(), restored.cpu()
    return {"seen_ids": shuffled[:, 0].tolist(), "ids_after": restored[:, 0].tolist(), "ids_before": ids.tolist(),
            "bn_mean_of_ids": shuffled[:, 0].mean().item(), "queue": queue}


def simclr_across_processes_demo(rank: int, world_size: int, left: torch.Tensor, right: torch.Tensor,
                                 tau: float) -> dict[str, Any]:
    """This rank's share of a global batch ``left, right [world_size * N, D]``: its loss and the gradients
    that reach its own rows (run it with ``spawn(simclr_across_processes_demo, 2, left, right, tau)``)."""
    n, device = len(left) // world_size, _demo_device(rank)
    mine = slice(rank * n, (rank + 1) * n)
    z_left = left[mine].to(device).clone().requires_grad_()
    z_right = right[mine].to(device).clone().requires_grad_()
    loss = simclr_loss_across_processes(z_left, z_right, tau)
    loss.backward()
    return {"loss": loss.item(), "grad_left": z_left.grad.cpu(), "grad_right": z_right.grad.cpu()}
