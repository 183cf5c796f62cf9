"""MoCo v2 on several GPUs: a torchrun-launchable training script that trains with the student's functions.

The notebook's graded functions are not in this module: the script loads them from a Python file that
defines the six of them (`export_functions` writes one from a notebook's namespace)::

    from course_utils.moco_ddp import export_functions
    export_functions(globals(), "my_moco.py")

then, once CIFAR-10 is on disk (``python -m course_utils.data download cifar10``)::

    torchrun --nproc_per_node=4 -m course_utils.moco_ddp --functions my_moco.py --dataset cifar10 --epochs 200
    python -m course_utils.moco_ddp --functions my_moco.py --dataset cifar10     # one process, one GPU
    python -m course_utils.moco_ddp --functions my_moco.py --smoke               # seconds on a CPU

What runs where, per step (``P`` processes, ``n = batch_size // P`` images each):

- the query encoder is wrapped in DistributedDataParallel (its gradients are averaged over the processes);
  the key encoder is a plain copy, updated by the student's ``momentum_update`` from the unwrapped query
  encoder, and identical on every process because the query encoders are;
- shuffling BN: with ``P > 1`` the keys' images are shuffled across processes (`gather_shuffle` /
  `gather_unshuffle` of `course_utils.distributed`); with one process by the student's ``batch_shuffle``
  / ``batch_unshuffle``. Inside a process the BatchNorm layers normalise groups of ``n // bn_splits``
  images (`models.SplitBatchNorm`, as in MoCo's CIFAR-10 demo), so that one GPU behaves like several;
- the loss is the student's ``moco_loss`` on this process's queries and keys;
- the keys of all processes, in rank order (``concat_all_gather``, the same on every process), are written
  into every process's queue by the student's ``enqueue``, so the queues stay identical.

`train` is also what `course_utils.distributed.spawn` runs (the group then already exists), e.g.
``spawn(train, 2, MoCoDDPConfig(...), "my_moco.py")``.

Shapes: images ``[n, 3, 32, 32]`` uint8 per process; features ``h [n, feature_dim]``; projections and keys
``[n, out_dim]``, L2-normalised; the queue ``[queue_size, out_dim]``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import inspect
import math
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .augment import BatchAugment
from .data import load_images, load_synthetic, to_float
from .distributed import concat_all_gather, gather_shuffle, gather_unshuffle
from .evaluation import knn_accuracy
from .models import ResNetEncoder, split_batchnorms
from .moco import MoCoFunctions

GRADED = tuple(f.name for f in dataclasses.fields(MoCoFunctions))  # the six functions a --functions file defines
LR_REFERENCE_BATCH = 512  # `lr` is the learning rate for this global batch, scaled linearly for others


@dataclass
class MoCoDDPConfig:
    """One run. The defaults are MoCo v2 on CIFAR-10 with a ResNet-18 on GPUs.

    They follow MoCo's official CIFAR-10 demo (ResNet-18 with a CIFAR stem, K = 4096, m = 0.99, tau = 0.1,
    SGD lr 0.06 for a batch of 512, weight decay 5e-4, cosine schedule, 200 epochs, BatchNorm over groups
    of 64 images), with MoCo v2's MLP projection head. ``batch_size`` is the global batch, split over the
    processes (each takes ``batch_size // world_size``). K = 4096 rather than ImageNet's 65,536: CIFAR-10
    has 50,000 images, so a queue of 65,536 would hold keys over an epoch old (some images twice), and the
    demo found the gain saturated at K = 4096.
    """

    dataset: str = "cifar10"             # a name of `course_utils.data.load_images`
    data_root: str | None = None         # default: course_utils.data.data_root()
    max_images: int | None = None        # use only this many train (and test) images: smoke tests
    arch: str = "resnet18"               # "resnet18" (torchvision's, CIFAR stem) or "small" (models.ResNetEncoder)
    width: int = 16                      # "small" only: channels of its first stage
    out_dim: int = 128                   # projection (key, queue) dimension
    queue_size: int = 4096               # K
    m: float = 0.99                      # key encoder momentum
    tau: float = 0.1                     # softmax temperature
    batch_size: int = 512                # global, over all processes
    lr: float = 0.06                     # for a global batch of LR_REFERENCE_BATCH, scaled linearly
    momentum: float = 0.9                # SGD's
    weight_decay: float = 5e-4
    epochs: int = 200
    max_steps: int | None = None         # stop after this many steps (the cosine schedule spans them)
    bn_splits: int | None = None         # BatchNorm groups per process; None: groups of about 64
    amp: bool = True                     # bfloat16 autocast on CUDA (ignored on the CPU)
    knn: bool = True                     # kNN monitor on the test set at the end (rank 0)
    knn_every: int = 0                   # ... and every this many epochs (0: only at the end)
    knn_k: int = 200
    knn_t: float = 0.1
    seed: int = 0
    device: str | None = None            # default: the process's GPU under nccl or without a group, else cpu
    out: str | None = None               # checkpoint path (rank 0 writes it after every epoch)
    log: bool = True                     # rank 0 prints a line per epoch


SMOKE = dict(dataset="synthetic", max_images=256, arch="small", width=8, batch_size=32, queue_size=256,
             epochs=1, max_steps=4, knn_k=20)  # --smoke: a few seconds on a CPU


# --------------------------------------------------------------------------- the student's functions

def load_functions(path: str | os.PathLike) -> MoCoFunctions:
    """The six graded functions defined in the Python file ``path`` (imported with importlib).

    Raises ``FileNotFoundError`` if there is no such file, ``ValueError`` naming the functions it lacks.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--functions: no file {path} (write one with export_functions(globals(), '{path}'))")
    spec = importlib.util.spec_from_file_location(f"moco_functions_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in GRADED if not callable(getattr(module, name, None))]
    if missing:
        raise ValueError(f"{path} does not define {', '.join(missing)}: a --functions file must define all of "
                         f"{', '.join(GRADED)}")
    return MoCoFunctions(**{name: getattr(module, name) for name in GRADED})


def export_functions(namespace: dict[str, Any], path: str | os.PathLike, names: tuple[str, ...] = GRADED) -> Path:
    """Write the source of the functions ``names`` of ``namespace`` (e.g. a notebook's ``globals()``) to ``path``.

    The file starts with ``import math``, ``import torch``, ``import torch.nn.functional as F`` and
    ``from torch import nn``; add to ``names`` any helper of your own that the functions call. Returns the path.
    """
    missing = [name for name in names if not callable(namespace.get(name))]
    if missing:
        raise ValueError(f"export_functions: no function {', '.join(missing)} defined (run its cell first)")
    header = ('"""MoCo functions written by course_utils.moco_ddp.export_functions."""\n'
              "import math\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n")
    sources = [textwrap.dedent(inspect.getsource(namespace[name])).rstrip() + "\n" for name in names]
    text = "\n\n".join([header] + sources)
    compile(text, str(path), "exec")  # a syntax error here, not in every process of the run
    path = Path(path)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the networks

def build_backbone(config: MoCoDDPConfig, bn_splits: int = 1) -> nn.Module:
    """The encoder ``f``: ``[B, 3, 32, 32] -> [B, feature_dim]`` (``feature_dim`` is an attribute).

    ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3 convolution, stride 1, no max-pool)
    and no classifier, 512 features. ``small``: `course_utils.models.ResNetEncoder(width, stem_stride=2)`.
    """
    if config.arch == "resnet18":
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        net.feature_dim = 512
    elif config.arch == "small":
        net = ResNetEncoder(width=config.width, stem_stride=2)
    else:
        raise ValueError(f"arch must be 'resnet18' or 'small', got {config.arch!r}")
    return split_batchnorms(net, bn_splits) if bn_splits > 1 else net


class MoCoV2Encoder(nn.Module):
    """Backbone and MoCo v2's projection head (Linear -> ReLU -> Linear, hidden = feature_dim).

    ``forward``: ``x [B, 3, H, W] -> (h [B, feature_dim], z [B, out_dim])`` (``z`` not normalised).
    """

    def __init__(self, backbone: nn.Module, out_dim: int = 128):
        super().__init__()
        d = backbone.feature_dim
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, out_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return h, self.head(h)


# --------------------------------------------------------------------------- one step

def moco_ddp_step(query: nn.Module, key: nn.Module, queue: torch.Tensor, ptr: int, images: torch.Tensor, *,
                  fns: MoCoFunctions, augment: Callable, m: float, tau: float, world_size: int,
                  shuffle_generator: torch.Generator | None = None,
                  autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One MoCo step's forward with the student's functions, up to the loss and the enqueue.

    ``query`` is the (DDP-wrapped when ``world_size > 1``) query encoder, ``key`` the key encoder;
    ``images [n, 3, H, W]`` this process's batch; ``queue [K, D]`` is written in place with the keys of
    all processes, in rank order. Returns ``(loss, k [n, D], next ptr)``; the caller backpropagates the loss.
    """
    unwrapped = query.module if isinstance(query, DistributedDataParallel) else query
    device_type = images.device.type
    x_q = augment(images)
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        _, q = query(x_q)
    q = F.normalize(q.float(), dim=1)
    with torch.no_grad():
        fns.momentum_update(unwrapped, key, m)
        x_k = augment(images)
        if world_size > 1:
            x_k, unshuffle = gather_shuffle(x_k, generator=shuffle_generator)
        else:
            x_k, unshuffle = fns.batch_shuffle(x_k)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            _, k = key(x_k)
        k = F.normalize(k.float(), dim=1)
        k = gather_unshuffle(k, unshuffle) if world_size > 1 else fns.batch_unshuffle(k, unshuffle)
    loss = fns.moco_loss(q, k, queue.clone(), tau)  # a copy: enqueue writes the queue before backward
    everyone = concat_all_gather(k) if world_size > 1 else k   # [world_size * n, D], rank order
    ptr = int(fns.enqueue(queue, ptr, everyone))
    return loss, k, ptr


# --------------------------------------------------------------------------- training

def initial_queue(config: MoCoDDPConfig) -> torch.Tensor:
    """``[queue_size, out_dim]`` random unit rows, the same on every process (drawn from ``config.seed``)."""
    g = torch.Generator().manual_seed(config.seed)
    return F.normalize(torch.randn(config.queue_size, config.out_dim, generator=g), dim=1)


def _device(config: MoCoDDPConfig) -> torch.device:
    if config.device is not None:
        device = torch.device(config.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device
    grouped = dist.is_available() and dist.is_initialized()
    if torch.cuda.is_available() and (not grouped or dist.get_backend() == "nccl"):
        local = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local) if local is not None else torch.cuda.current_device())
    return torch.device("cpu")


def _load(config: MoCoDDPConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 3, 32, 32]`` and labels ``[N]`` of the configured dataset (``max_images`` of them)."""
    if config.dataset == "synthetic" and config.max_images is not None:
        return load_synthetic(split, root=config.data_root, num_images=config.max_images)  # draws only these
    images, labels = load_images(config.dataset, split, root=config.data_root)
    if config.max_images is not None:
        images, labels = images[:config.max_images], labels[:config.max_images]
    return images, labels


def _bn_splits(config: MoCoDDPConfig, n: int) -> int:
    if config.bn_splits is None:  # groups of about 64 images, as in MoCo's CIFAR-10 demo
        return max(s for s in range(1, max(1, n // 64) + 1) if n % s == 0)
    splits = config.bn_splits
    if splits < 1 or n % splits:
        raise ValueError(f"bn_splits={splits} must divide the per-process batch of {n}")
    return splits


@torch.no_grad()
def _features(backbone: nn.Module, images: torch.Tensor, device: torch.device, autocast: bool,
              chunk: int = 1024) -> torch.Tensor:
    """Eval-mode features of uint8 ``images [N, 3, H, W]`` (normalised, not augmented) -> ``[N, D]`` on the CPU."""
    was_training = backbone.training
    backbone.eval()
    out = []
    for i in range(0, len(images), chunk):
        x = to_float(images[i:i + chunk].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(backbone(x).float().cpu())
    backbone.train(was_training)
    return torch.cat(out)


def knn_monitor(backbone: nn.Module, train_set: tuple[torch.Tensor, torch.Tensor],
                test_set: tuple[torch.Tensor, torch.Tensor], *, k: int = 200, t: float = 0.1,
                device: torch.device | str = "cpu", autocast: bool = False) -> float:
    """Weighted kNN accuracy (0..1) of the test images among the training images, on ``backbone``'s features."""
    device = torch.device(device)
    train_feats = _features(backbone, train_set[0], device, autocast)
    test_feats = _features(backbone, test_set[0], device, autocast)
    return knn_accuracy(train_feats, train_set[1], test_feats, test_set[1], k=min(k, len(train_feats)),
                        temperature=t)


def _save(path: str, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a reader never sees half a checkpoint


def train(rank: int, world_size: int, config: MoCoDDPConfig, functions: MoCoFunctions | str | os.PathLike,
          on_step: Callable[[int, float, torch.Tensor], None] | None = None) -> dict[str, Any]:
    """Pre-train with MoCo v2 in this process, one of ``world_size`` (rank ``rank``).

    With ``world_size > 1`` the process group must exist (torchrun through `main`, or
    `course_utils.distributed.spawn`). ``functions`` is the student's `MoCoFunctions`, or the path of a
    file defining them (`load_functions`). ``on_step(step, loss, k)`` is called after each step with this
    process's keys ``k [n, out_dim]``.

    Returns (what ``spawn`` collects): ``losses`` (this process's, per step), ``epoch_losses`` (mean over
    all processes, per epoch), ``query`` and ``key`` (state dicts on the CPU), ``queue [K, D]``, ``ptr``,
    ``knn`` (accuracy of the final kNN monitor on rank 0, else None), ``steps``, ``seconds``.
    """
    fns = functions if isinstance(functions, MoCoFunctions) else load_functions(functions)
    grouped = dist.is_available() and dist.is_initialized()
    if world_size > 1 and not grouped:
        raise RuntimeError("world_size > 1 needs a process group: launch with torchrun, or run train through "
                           "course_utils.distributed.spawn")
    n = config.batch_size // world_size
    if n < 2:
        raise ValueError(f"batch_size={config.batch_size} leaves fewer than 2 images per process")
    if config.queue_size < n * world_size:
        raise ValueError(f"queue_size={config.queue_size} is smaller than the global batch of {n * world_size}")
    device = _device(config)
    autocast = config.amp and device.type == "cuda"
    log = config.log and rank == 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    images, labels = _load(config, "train")
    test_set = _load(config, "test") if config.knn and rank == 0 else None
    images = images.to(device)
    sampler = DistributedSampler(range(len(images)), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    steps_per_epoch = len(sampler) // n
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images are fewer than one global batch of {n * world_size}")
    planned = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        planned = min(planned, config.max_steps)

    torch.manual_seed(config.seed)
    splits = _bn_splits(config, n)
    query = MoCoV2Encoder(build_backbone(config, splits), config.out_dim).to(device)
    key = copy.deepcopy(query)
    for p in key.parameters():
        p.requires_grad_(False)
    if world_size > 1:
        for t in key.state_dict().values():
            dist.broadcast(t, src=0)  # DDP makes the query encoders equal; the key encoders start equal too
        model = DistributedDataParallel(query, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model = query
    queue = initial_queue(config).to(device)
    ptr = 0
    global_batch = n * world_size
    lr = config.lr * global_batch / LR_REFERENCE_BATCH
    optimizer = torch.optim.SGD(query.parameters(), lr=lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    augment = BatchAugment(32, generator=torch.Generator().manual_seed(config.seed + 1000 + rank))
    shuffle_generator = torch.Generator().manual_seed(config.seed + 1) if rank == 0 else None
    if log:
        print(f"MoCo v2: {config.arch} on {config.dataset} ({len(images)} images), {world_size} process(es) on "
              f"{device.type}, batch {global_batch} = {world_size} x {n}, BN groups of {n // splits}, "
              f"lr {lr:.4g}, K={config.queue_size}, m={config.m}, tau={config.tau}, "
              f"{planned} steps ({steps_per_epoch} an epoch)", flush=True)

    losses: list[float] = []
    epoch_losses: list[float] = []
    knn = None
    step, start = 0, time.perf_counter()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        epoch_sum, epoch_steps = 0.0, 0
        for b in range(steps_per_epoch):
            if step >= planned:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / planned))
            batch = images[order[b * n:(b + 1) * n].to(device)]
            loss, k, ptr = moco_ddp_step(model, key, queue, ptr, batch, fns=fns, augment=augment, m=config.m,
                                         tau=config.tau, world_size=world_size,
                                         shuffle_generator=shuffle_generator, autocast=autocast)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"rank {rank}: loss is {value} at step {step}: check moco_loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(value)
            epoch_sum, epoch_steps = epoch_sum + value, epoch_steps + 1
            if on_step is not None:
                on_step(step, value, k)
            step += 1
        if epoch_steps == 0:
            break
        total = torch.tensor([epoch_sum, epoch_steps], dtype=torch.float64, device=device)
        if world_size > 1:
            dist.all_reduce(total)  # the mean over every process's steps
        epoch_losses.append(float(total[0] / total[1]))
        last = step >= planned or epoch == config.epochs - 1
        line = f"epoch {epoch + 1:>3}/{config.epochs}  loss {epoch_losses[-1]:.4f}  {time.perf_counter() - start:.0f} s"
        if rank == 0 and config.knn and (last or (config.knn_every and (epoch + 1) % config.knn_every == 0)):
            knn = knn_monitor(query.backbone, (images, labels), test_set, k=config.knn_k, t=config.knn_t,
                              device=device, autocast=autocast)
            line += f"  kNN {100 * knn:.1f}%"
        if log:
            print(line, flush=True)
        if rank == 0 and config.out:
            _save(config.out, {"query": query.state_dict(), "key": key.state_dict(), "queue": queue.cpu(),
                               "config": dataclasses.asdict(config), "epoch_losses": epoch_losses, "knn": knn,
                               "epoch": epoch + 1})
        if last:
            break

    def cpu(state: dict) -> dict:
        return {name: t.detach().cpu().clone() for name, t in state.items()}

    return {"losses": losses, "epoch_losses": epoch_losses, "query": cpu(query.state_dict()),
            "key": cpu(key.state_dict()), "queue": queue.cpu(), "ptr": ptr, "knn": knn, "steps": step,
            "seconds": time.perf_counter() - start}


def load_backbone(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The query encoder's backbone from a checkpoint written by `train` (``--out``), in eval mode.

    Loads with ``weights_only=True``: a checkpoint is data, never code.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    backbone = build_backbone(MoCoDDPConfig(**payload["config"]))
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in payload["query"].items() if k.startswith(prefix)})
    return backbone.eval()


# --------------------------------------------------------------------------- the command line

def parse_args(argv: list[str] | None = None) -> tuple[MoCoDDPConfig, str]:
    """``(config, functions path)`` from the command line (defaults: `MoCoDDPConfig`, or `SMOKE` with --smoke)."""
    d = MoCoDDPConfig()
    p = argparse.ArgumentParser(prog="python -m course_utils.moco_ddp",
                                description="MoCo v2 pre-training with your functions, on one or several GPUs "
                                            "(launch with torchrun --nproc_per_node=N -m course_utils.moco_ddp ...).")
    p.add_argument("--functions", required=True, help="a Python file defining " + ", ".join(GRADED))
    p.add_argument("--smoke", action="store_true", help=f"a tiny CPU run: {SMOKE} (other flags still apply)")
    p.add_argument("--dataset", help=f"synthetic, cifar10 or stl10 (default {d.dataset})")
    p.add_argument("--data-root", dest="data_root", help="the data folder (default: the kit's data/)")
    p.add_argument("--max-images", dest="max_images", type=int, help="use only this many images of each split")
    p.add_argument("--arch", choices=("resnet18", "small"), help=f"encoder (default {d.arch})")
    p.add_argument("--width", type=int, help=f"'small' encoder width (default {d.width})")
    p.add_argument("--out-dim", dest="out_dim", type=int, help=f"projection dimension (default {d.out_dim})")
    p.add_argument("--queue-size", "-K", dest="queue_size", type=int, help=f"K (default {d.queue_size})")
    p.add_argument("--m", type=float, help=f"key encoder momentum (default {d.m})")
    p.add_argument("--tau", type=float, help=f"temperature (default {d.tau})")
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"global batch, split over the processes (default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"SGD learning rate for a batch of {LR_REFERENCE_BATCH}, scaled "
                                            f"linearly with the batch (default {d.lr})")
    p.add_argument("--weight-decay", dest="weight_decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many steps")
    p.add_argument("--bn-splits", dest="bn_splits", type=int,
                   help="BatchNorm groups per process (default: per-process batch // 64)")
    p.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no bfloat16 autocast")
    p.add_argument("--no-knn", dest="knn", action="store_const", const=False, help="no kNN monitor")
    p.add_argument("--knn-every", dest="knn_every", type=int, help="kNN monitor every N epochs (default: at the end)")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: this process's GPU if any)")
    p.add_argument("--out", help="checkpoint file (rank 0, after every epoch)")
    args = vars(p.parse_args(argv))
    functions, smoke = args.pop("functions"), args.pop("smoke")
    config = MoCoDDPConfig(**SMOKE) if smoke else d
    return dataclasses.replace(config, **{k: v for k, v in args.items() if v is not None}), functions


def main(argv: list[str] | None = None) -> int:
    """Run `train` in this process: one of torchrun's (RANK, WORLD_SIZE, LOCAL_RANK set), or alone."""
    config, functions = parse_args(argv)
    try:
        fns = load_functions(functions)  # a missing function fails here, before any process group
    except (OSError, ValueError) as e:
        print(f"moco_ddp: error: {e}", file=sys.stderr)
        return 2
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if launched:
        cuda = torch.cuda.is_available() if config.device is None else config.device.startswith("cuda")
        backend = "nccl" if cuda else "gloo"
        if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and \
                os.environ.get("LOCAL_WORLD_SIZE", str(world_size)) == str(world_size):
            os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"  # one machine
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    try:
        train(rank, world_size, config, fns)
    finally:
        if launched:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
