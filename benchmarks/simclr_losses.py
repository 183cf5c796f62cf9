"""Benchmark: the SimCLR loss written three ways, side by side, against the matmul floor and a float64 truth.

    python benchmarks/simclr_losses.py [--sizes 1024,2048] [--dim 128] [--repeats 7]

For each N it prints the median forward and forward + backward time of

- ``reference``: the kit's reference ``simclr_loss_vectorized`` (loaded from
  solutions/, as the grader loads it): exp of the similarity matrix, a mask
  for the diagonal, log of a ratio;
- ``logsumexp``: the same loss as a cross-entropy over each row with the
  diagonal set to -inf (``F.cross_entropy`` does the log-sum-exp stably);
- ``floor``: the bare ``[2N, D] @ [D, 2N]`` similarity product, which any
  formulation must pay;

and the ratio of each to the floor; then, at tau = 0.5, 0.1, 0.05 and 0.01 on
near-duplicate views (the second view is the first plus noise of 1e-3), the
value of each in float32 against a float64 log-sum-exp computation (relative error): nan or
inf where exp(s / tau) overflows (s / tau above about 88 in float32).
Figures for issue 14's report; nothing here is a test.
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from autograder.grading.reference import load_reference
from course_utils.checks import time_function


def logsumexp_loss(out_left: torch.Tensor, out_right: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of ``out_left, out_right [N, D]`` as a cross-entropy over each row of the ``[2N, 2N]`` scores."""
    n = out_left.shape[0]
    z = F.normalize(torch.cat([out_left, out_right]), dim=1)
    scores = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(scores, targets)


def floor(out_left: torch.Tensor, out_right: torch.Tensor, tau: float) -> torch.Tensor:
    z = torch.cat([out_left, out_right])
    return (z @ z.T).sum()


def _timings(fn, left, right, tau, repeats):
    forward = time_function(lambda: fn(left, right, tau), repeats=repeats)
    l2, r2 = left.clone().requires_grad_(), right.clone().requires_grad_()
    both = time_function(lambda: fn(l2, r2, tau).backward(), repeats=repeats)
    return forward, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,2048")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ref = load_reference("03_simclr").simclr_loss_vectorized
    ways = {"reference": ref, "logsumexp": logsumexp_loss, "floor": floor}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D = {args.dim}, float32, medians of "
          f"{args.repeats}")
    print(f"{'N':>6} {'way':<10} {'forward ms':>11} {'x floor':>8} {'fwd+bwd ms':>11} {'x floor':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        g = torch.Generator().manual_seed(0)
        left, right = torch.randn(n, args.dim, generator=g), torch.randn(n, args.dim, generator=g)
        times = {name: _timings(fn, left, right, 0.5, args.repeats) for name, fn in ways.items()}
        for name, (fwd, both) in times.items():
            print(f"{n:>6} {name:<10} {1e3 * fwd:>11.1f} {fwd / times['floor'][0]:>8.2f} {1e3 * both:>11.1f} "
                  f"{both / times['floor'][1]:>8.2f}")
    print("\nnear-duplicate views (N = 256): float32 value (relative error against float64 log-sum-exp)")
    g = torch.Generator().manual_seed(1)
    left = torch.randn(256, args.dim, generator=g)
    right = left + 1e-3 * torch.randn(256, args.dim, generator=g)
    for tau in (0.5, 0.1, 0.05, 0.01):
        truth = float(logsumexp_loss(left.double(), right.double(), tau))
        cells = []
        for name in ("reference", "logsumexp"):
            value = float(ways[name](left, right, tau))
            error = abs(value - truth) / max(abs(truth), 1e-30) if math.isfinite(value) else float("nan")
            cells.append(f"{name} {value:.6g} ({error:.1e})")
        print(f"  tau {tau:<5} truth {truth:.6g}   " + "   ".join(cells))


if __name__ == "__main__":
    main()
