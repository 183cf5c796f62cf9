"""Benchmark: every reference loss of the kit beside other ways to write it, the matmul floor and a float64 truth.

    python benchmarks/losses.py [--quick] [--repeats 7] [--only simclr,moco,...]

For each loss (SimCLR's ``simclr_loss_vectorized``, MoCo's ``moco_loss`` with
a queue of 65,536 keys, CPC's ``cpc_scores`` + ``cpc_infonce``, the
colorization loss, ``propagate_colors`` at 32 x 32 positions) and each size it
prints, for every way of writing it:

- the median forward time and forward + backward time (the ways interleaved
  repeat by repeat, `measure.time_side_by_side`), and each as a multiple of
  the *floor*: the one product (matmul or bmm) of the same shape that any way
  must pay; the colorization loss has no product, so its floor is one
  ``logsumexp`` over the bins, the least a softmax cross-entropy reads;
- the peak memory of forward + backward (`measure.peak_memory`);
- whether its value agrees with the reference (a way that does not is a bug
  in this script, and is flagged).

Then, for each loss and each temperature 0.5, 0.1, 0.05, 0.01 (for CPC and
colorization, whose inputs are logits, the logits divided by it), on hard
inputs (near-duplicate views, confident logits), each way's float32 value
against the reference computed in float64: ``nan`` or ``inf`` where an
``exp`` overflows (above about 88.7 in float32).

The ways: ``reference`` (loaded from solutions/, as the grader loads it), the
notebook's ``step-by-step`` version (exp, a mask, a sum, the log of a ratio),
other stable forms (cross-entropy, log-sum-exp, fused attention), and
lightly's ``NTXentLoss`` (in-batch for SimCLR, with its memory bank for MoCo)
when lightly is installed (``pip install -r benchmarks/requirements.txt``).
Figures for benchmarks/README.md; nothing here is a test.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from measure import machine_line, peak_memory, time_side_by_side  # noqa: E402 (benchmarks/ is on the path)

from autograder.grading.reference import load_reference

try:
    from lightly.loss import NTXentLoss
except ImportError:  # an optional extra, for the benchmark only
    NTXentLoss = None

TAUS = (0.5, 0.1, 0.05, 0.01)


@dataclass
class Case:
    """One loss: its ways, its floor, how to make inputs, which inputs take a gradient.

    ``make(size, dtype, hard, seed)`` returns the positional inputs; every way is
    ``fn(*inputs, tau)`` and returns a 0-dim tensor, or (propagate_colors) a
    tensor whose sum is taken.
    """
    name: str
    sizes: list
    quick_sizes: list
    make: Callable
    ways: dict
    floor: Callable
    grad: tuple            # indices of the inputs that take a gradient
    describe: Callable     # size -> the shape in words
    tau: float = 0.5       # the temperature of the timing runs
    extra: dict = field(default_factory=dict)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)


# ----------------------------------------------------------------------------- SimCLR

def simclr_step_by_step(left, right, tau):
    """The notebook's four steps: exp of S / tau, the diagonal masked out, row sums, -log of the ratio."""
    n = left.shape[0]
    out = _unit(torch.cat([left, right]))
    exponential = torch.exp(out @ out.T / tau)
    denominator = (exponential * ~torch.eye(2 * n, dtype=torch.bool)).sum(dim=1, keepdim=True)
    positive = (out[:n] * out[n:]).sum(dim=1, keepdim=True)
    return -torch.log(torch.exp(torch.cat([positive, positive]) / tau) / denominator).mean()


def simclr_masked_cross_entropy(left, right, tau):
    """S / tau with the diagonal masked to -inf (a new matrix), then F.cross_entropy."""
    n = left.shape[0]
    out = _unit(torch.cat([left, right]))
    logits = (out @ out.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * n).roll(n))


def simclr_logsumexp_lowmem(left, right, tau):
    """Log-sum-exp by hand with the row max detached and exp in place: one [2N, 2N] matrix fewer."""
    n = left.shape[0]
    out = _unit(torch.cat([left, right]))
    logits = (out / tau) @ out.T
    logits.fill_diagonal_(float("-inf"))
    m = logits.amax(dim=1, keepdim=True).detach()
    lse = (logits - m).exp_().sum(dim=1).log() + m.squeeze(1)
    positive = (out[:n] * out[n:]).sum(dim=1) / tau
    return lse.mean() - positive.mean()


def _lightly_simclr():
    if NTXentLoss is None:
        return {}
    losses = {}

    def lightly(left, right, tau):
        if tau not in losses:
            losses[tau] = NTXentLoss(temperature=tau)
        return losses[tau](left, right)
    return {"lightly NTXentLoss": lightly}


def simclr_floor(left, right, tau):
    z = torch.cat([left, right])
    return (z @ z.T).sum()


def simclr_inputs(n, dtype, hard, seed, d=128):
    g = torch.Generator().manual_seed(seed)
    if not hard:
        return [torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)]
    groups = max(n // 8, 1)   # groups of similar samples (hard negatives), each right view almost its left view
    left = torch.randn(groups, d, generator=g, dtype=dtype).repeat_interleave(n // groups, 0)
    left = left + 0.3 * torch.randn(n, d, generator=g, dtype=dtype)
    return [left, left + 0.05 * torch.randn(n, d, generator=g, dtype=dtype)]


# ----------------------------------------------------------------------------- MoCo

def moco_step_by_step(q, k, queue, tau):
    """exp of the positive over exp of the positive plus the queue's sum, -log of the ratio."""
    positive = torch.exp((q * k).sum(dim=1) / tau)
    negatives = torch.exp(q @ queue.T / tau).sum(dim=1)
    return -torch.log(positive / (positive + negatives)).mean()


def moco_logaddexp(q, k, queue, tau):
    """No [N, 1 + K] concatenation: logaddexp(positive, logsumexp(negatives)) - positive, 1/tau on q."""
    q = q / tau
    positive = (q * k).sum(dim=1)
    return (torch.logaddexp(positive, torch.logsumexp(q @ queue.T, dim=1)) - positive).mean()


def _lightly_moco():
    if NTXentLoss is None:
        return {}
    losses = {}

    def lightly(q, k, queue, tau):
        # lightly keeps its bank as a [K, D] buffer and clones it on every call; ours is loaded in
        # and its enqueue switched off, so that it stays our queue (moco_loss does not enqueue either)
        key = (tau, len(queue), queue.shape[1])
        if key not in losses:
            losses[key] = NTXentLoss(temperature=tau, memory_bank_size=(len(queue), queue.shape[1]))
            losses[key].memory_bank._dequeue_and_enqueue = lambda batch: None
        loss = losses[key]
        loss.memory_bank.bank = queue
        return loss(q, k)
    return {"lightly NTXent + bank": lightly}


def moco_floor(q, k, queue, tau):
    return (q @ queue.T).sum()


def moco_inputs(n, dtype, hard, seed, d=128, queue_size=65536):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=dtype)
    k = q + (0.05 if hard else 1.0) * torch.randn(n, d, generator=g, dtype=dtype)
    queue = torch.randn(queue_size, d, generator=g, dtype=dtype)
    if hard:  # a queue holding near-copies of the queries, as after a few steps of training
        queue[:n] = q + 0.2 * torch.randn(n, d, generator=g, dtype=dtype)
    return [_unit(q), _unit(k), _unit(queue)]


# ----------------------------------------------------------------------------- CPC

def _cpc(infonce):
    return lambda z, c, W, tau: infonce(REF["05_cpc"].cpc_scores(z, c, W) / tau)


def cpc_step_by_step(scores):
    """-log(exp(diagonal) / row sums of exp)."""
    e = torch.exp(scores)
    return -torch.log(e.diagonal() / e.sum(dim=1)).mean()


def cpc_log_softmax(scores):
    return -torch.log_softmax(scores, dim=1).diagonal().mean()


def cpc_floor(z, c, W, tau):
    return ((c @ W.T) @ z.T).sum()


def cpc_inputs(b, dtype, hard, seed, d=128):
    if hard:  # unit futures in groups, each context almost its future, W = I: scores are cosines, up to 1 / tau
        z, c = simclr_inputs(b, dtype, True, seed, d)
        return [_unit(z), _unit(c), torch.eye(d, dtype=dtype)]
    g = torch.Generator().manual_seed(seed)
    z, c = torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)
    return [z, c, torch.randn(d, d, generator=g, dtype=dtype) / d]


# ----------------------------------------------------------------------------- colorization

def colorization_step_by_step(logits, targets, weights, tau):
    """softmax by exp and a sum, the probability of each pixel's target, -log, weighted."""
    e = torch.exp(logits / tau)
    p = e.gather(1, targets.unsqueeze(1)).squeeze(1) / e.sum(dim=1)
    return (weights[targets] * -torch.log(p)).mean()


def colorization_weighted_sum(logits, targets, weights, tau):
    """F.cross_entropy with weight= and reduction='sum', divided by the number of pixels (not by the weights)."""
    return F.cross_entropy(logits / tau, targets, weight=weights, reduction="sum") / targets.numel()


def colorization_floor(logits, targets, weights, tau):
    return torch.logsumexp(logits, dim=1).sum()


def colorization_inputs(n, dtype, hard, seed, q=257, side=32, close=8):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(q, (n, side, side), generator=g)
    if hard:  # logits in [-1, 1], as from a normalised head; the target and `close` - 1 other bins near the top
        logits = torch.rand(n, q, side, side, generator=g, dtype=dtype) * 1.5 - 1
        near = torch.randint(q, (n, close, side, side), generator=g)
        near[:, 0] = targets
        logits.scatter_(1, near, 0.98 + 0.02 * torch.rand(near.shape, generator=g, dtype=dtype))
    else:
        logits = torch.randn(n, q, side, side, generator=g, dtype=dtype)
    weights = torch.rand(q, generator=g, dtype=dtype) + 0.5
    return [logits, targets, weights]


# ----------------------------------------------------------------------------- propagate_colors

def propagate_step_by_step(ref_feats, tgt_feats, ref_colors, tau):
    """exp of the scores, divided by their sum over the reference positions, then the product."""
    n, d, h, w = tgt_feats.shape
    scores = torch.einsum("ndi,ndj->nij", tgt_feats.flatten(2), ref_feats.flatten(2)) / tau
    attention = torch.exp(scores) / torch.exp(scores).sum(dim=-1, keepdim=True)
    return torch.einsum("nij,ncj->nci", attention, ref_colors.flatten(2)).reshape(n, -1, h, w)


def propagate_attention(ref_feats, tgt_feats, ref_colors, tau):
    """torch's fused scaled_dot_product_attention: the [N, HW, HW] matrix is never stored whole."""
    n, d, h, w = tgt_feats.shape
    out = F.scaled_dot_product_attention(tgt_feats.flatten(2).transpose(1, 2), ref_feats.flatten(2).transpose(1, 2),
                                         ref_colors.flatten(2).transpose(1, 2), scale=1 / tau)
    return out.transpose(1, 2).reshape(n, -1, h, w)


def propagate_floor(ref_feats, tgt_feats, ref_colors, tau):
    return (tgt_feats.flatten(2).transpose(1, 2) @ ref_feats.flatten(2)).sum()


def propagate_inputs(n, dtype, hard, seed, d=64, c=2, side=32):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(n, d, side, side, generator=g, dtype=dtype)
    tgt = ref + (0.1 if hard else 1.0) * torch.randn(n, d, side, side, generator=g, dtype=dtype)
    if hard:  # unit feature vectors, as after a normalising layer: scores are cosines, up to 1 / tau
        ref, tgt = F.normalize(ref, dim=1), F.normalize(tgt, dim=1)
    return [ref, tgt, torch.randn(n, c, side, side, generator=g, dtype=dtype)]


# ----------------------------------------------------------------------------- the table

REF: dict = {}


def cases() -> list[Case]:
    for notebook in ("02_generative_pretext", "03_simclr", "04_moco", "05_cpc"):
        REF[notebook] = load_reference(notebook)
    simclr, moco, cpc, gen = REF["03_simclr"], REF["04_moco"], REF["05_cpc"], REF["02_generative_pretext"]
    return [
        Case("simclr_loss_vectorized", [1024, 2048, 4096], [512], simclr_inputs,
             {"reference": simclr.simclr_loss_vectorized, "step-by-step": simclr_step_by_step,
              "masked cross-entropy": simclr_masked_cross_entropy, "logsumexp, low memory": simclr_logsumexp_lowmem,
              **_lightly_simclr()},
             simclr_floor, (0, 1), lambda n: f"N = {n} pairs, D = 128"),
        Case("moco_loss", [256, 1024], [64], moco_inputs,
             {"reference": moco.moco_loss, "step-by-step": moco_step_by_step, "logaddexp": moco_logaddexp,
              **_lightly_moco()},
             moco_floor, (0,), lambda n: f"N = {n} queries, K = 65536 keys, D = 128", tau=0.07),
        Case("cpc_scores + cpc_infonce", [1024, 2048, 4096], [512], cpc_inputs,
             {"reference": _cpc(cpc.cpc_infonce), "step-by-step": _cpc(cpc_step_by_step),
              "log_softmax diagonal": _cpc(cpc_log_softmax)},
             cpc_floor, (0, 1, 2), lambda n: f"B = {n}, D = 128"),
        Case("colorization_loss", [8, 32], [2], colorization_inputs,
             {"reference": lambda x, t, w, tau: gen.colorization_loss(x / tau, t, w),
              "step-by-step": colorization_step_by_step, "weighted sum": colorization_weighted_sum},
             colorization_floor, (0,), lambda n: f"N = {n} images, Q = 257 bins, 32 x 32 pixels"),
        Case("propagate_colors", [8, 32], [2], propagate_inputs,
             {"reference": lambda r, t, c, tau: gen.propagate_colors(r, t, c, temperature=tau),
              "step-by-step": propagate_step_by_step, "fused attention": propagate_attention},
             propagate_floor, (0, 1), lambda n: f"N = {n} frames, 32 x 32 positions, D = 64, C = 2", tau=0.07),
    ]


def _total(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 0 else x.sum()


def _with_grad(inputs, grad):
    return [x.clone().requires_grad_() if i in grad else x for i, x in enumerate(inputs)]


def time_case(case: Case, size: int, repeats: int) -> list[str]:
    inputs = case.make(size, torch.float32, False, 0)
    ways = dict(case.ways, floor=case.floor)
    want = float(_total(case.ways["reference"](*inputs, case.tau)))
    forward = time_side_by_side({k: (lambda f=f: f(*inputs, case.tau)) for k, f in ways.items()}, repeats)
    trainable = _with_grad(inputs, case.grad)
    both = time_side_by_side({k: (lambda f=f: _total(f(*trainable, case.tau)).backward())
                              for k, f in ways.items()}, max(3, repeats // 2))
    rows = [f"\n{case.name}: {case.describe(size)}, float32, tau = {case.tau}",
            f"  {'way':<24}{'forward ms':>11}{'x floor':>9}{'fwd+bwd ms':>12}{'x floor':>9}{'peak MiB':>10}  value"]
    for name, fn in ways.items():
        peak = peak_memory(lambda: _total(fn(*trainable, case.tau)).backward()) / 2 ** 20
        if name == "floor":
            check = ""
        else:
            got = float(_total(fn(*inputs, case.tau)))
            if not math.isfinite(got):
                check = f"OVERFLOW ({got})"
            else:
                check = "agrees" if abs(got - want) <= 1e-4 * max(abs(want), 1.0) else f"DIFFERS: {got:.6g} vs {want:.6g}"
        rows.append(f"  {name:<24}{1e3 * forward[name]:>11.1f}{forward[name] / forward['floor']:>9.2f}"
                    f"{1e3 * both[name]:>12.1f}{both[name] / both['floor']:>9.2f}{peak:>10.1f}  {check}")
    return rows


def stability_case(case: Case, size: int) -> list[str]:
    rows = [f"\n{case.name}: hard inputs ({case.describe(size)}), float32 against the reference in float64"]
    inputs32 = case.make(size, torch.float32, True, 1)
    inputs64 = [x.double() if x.is_floating_point() else x for x in inputs32]
    for tau in TAUS:
        truth = float(_total(case.ways["reference"](*inputs64, tau)))
        cells = []
        for name, fn in case.ways.items():
            value = float(_total(fn(*inputs32, tau)))
            error = abs(value - truth) / max(abs(truth), 1e-12)
            cells.append(f"{name} {'OVERFLOW (' + str(value) + ')' if not math.isfinite(value) else f'{error:.0e}'}")
        rows.append(f"  tau {tau:<5} truth {truth:<11.5g} " + ", ".join(cells))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats: a smoke run, not figures")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated prefixes of the losses to run")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    print(machine_line(), f"- medians of {repeats} (forward), {max(3, repeats // 2)} (forward + backward)")
    if NTXentLoss is None:
        print("lightly is not installed: its ways are left out (pip install -r benchmarks/requirements.txt)")
    wanted = [p for p in args.only.split(",") if p]
    for case in cases():
        if wanted and not any(case.name.startswith(p) for p in wanted):
            continue
        for size in case.quick_sizes if args.quick else case.sizes:
            print("\n".join(time_case(case, size, repeats)), flush=True)
        print("\n".join(stability_case(case, case.quick_sizes[0])), flush=True)


if __name__ == "__main__":
    main()
