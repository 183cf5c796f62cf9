"""Benchmark: how the SimCLR loss grows with the batch, in one process, in chunks, and across processes.

    python benchmarks/scale.py [--quick] [--repeats 3] [--plot benchmarks/figures/simclr_scale.png]

For N = 256 to 8192 pairs (D = 128, float32, tau = 0.5) it prints the
forward and forward + backward time and the peak memory of forward +
backward of:

- ``reference``: the kit's ``simclr_loss_vectorized`` (one [2N, 2N] logits
  matrix, a cross-entropy over its rows);
- ``chunked``: the same loss over blocks of 1,024 anchor rows, each block's
  logits recomputed in the backward pass (`torch.utils.checkpoint`), so
  that only one [1024, 2N] block is alive at a time: memory grows as N, not
  N squared, for about one more forward in time;
- ``floor``: the one [2N, D] x [D, 2N] product any form must pay.

Time grows as N squared once the matrix dominates (a slope of 2 on the
log-log plot), like the floor's. Then, at the largest N, the loss
gathered across two processes (`course_utils.distributed.
simclr_loss_across_processes`, gloo on the CPU, one thread each): each
process holds half the batch and scores its 2N / 2 anchors against all 2N
views, so each process's matrix is half the whole.

The plot (time and memory against N, log-log, with the floor) is written
to ``--plot``. Figures for benchmarks/README.md; nothing here is a test.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from losses import simclr_floor, simclr_inputs  # noqa: E402 (benchmarks/ is on the path)
from measure import machine_line, peak_memory, time_side_by_side

from autograder.grading.reference import load_reference
from course_utils.distributed import simclr_loss_across_processes, spawn

TAU, CHUNK = 0.5, 1024


def _block_loss(z: torch.Tensor, start: int, tau: float) -> torch.Tensor:
    """The summed cross-entropy of anchors ``z[start:start + CHUNK]`` against all of ``z [2N, D]``."""
    n2 = len(z)
    rows = torch.arange(start, min(start + CHUNK, n2), device=z.device)
    logits = (z[rows] / tau) @ z.T                                     # [chunk, 2N]
    logits = logits.index_put((torch.arange(len(rows), device=z.device), rows),
                              torch.tensor(float("-inf"), device=z.device))  # an anchor is not its own negative
    return F.cross_entropy(logits, (rows + n2 // 2) % n2, reduction="sum")


def simclr_chunked(left: torch.Tensor, right: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss, ``left, right [N, D]`` -> 0-dim, in blocks of CHUNK anchors recomputed in backward."""
    z = F.normalize(torch.cat([left, right]), dim=1)
    total = sum(checkpoint(_block_loss, z, start, tau, use_reentrant=False) for start in range(0, len(z), CHUNK))
    return total / len(z)


def _step(fn, left, right):
    fn(left, right, TAU).backward()


def one_process(sizes, repeats, reference):
    ways = {"reference": reference, "chunked": simclr_chunked, "floor": simclr_floor}
    rows = {}
    print(f"\n{'N':>6} {'way':<10}{'forward ms':>12}{'fwd+bwd ms':>12}{'peak MiB':>10}  value")
    for n in sizes:
        left, right = simclr_inputs(n, torch.float32, False, 0)
        want = float(reference(left.double(), right.double(), TAU)) if n <= 4096 else None
        reps = repeats if n < 4096 else max(2, repeats // 2)
        forward = time_side_by_side({k: (lambda f=f: f(left, right, TAU)) for k, f in ways.items()}, reps)
        trainable = [x.clone().requires_grad_() for x in (left, right)]
        both = time_side_by_side({k: (lambda f=f: _step(f, *trainable)) for k, f in ways.items()}, reps)
        for name, fn in ways.items():
            peak = peak_memory(lambda: _step(fn, *trainable)) / 2 ** 20
            value, got = "", None
            if name != "floor":
                got = float(fn(left, right, TAU))
                value = f"{got:.6f}" + ("" if want is None else f" ({abs(got - want) / want:.0e} from float64)")
            rows[(n, name)] = (forward[name], both[name], peak, got)
            print(f"{n:>6} {name:<10}{1e3 * forward[name]:>12.1f}{1e3 * both[name]:>12.1f}{peak:>10.0f}  {value}",
                  flush=True)
    return rows


def _rank_step(rank: int, world: int, n: int, repeats: int) -> dict:
    """One rank's share of a global batch of ``n`` pairs: its loss, fwd+bwd time and peak memory."""
    torch.set_num_threads(1)
    left, right = simclr_inputs(n, torch.float32, False, 0)
    mine = slice(rank * n // world, (rank + 1) * n // world)
    z_left, z_right = (x[mine].clone().requires_grad_() for x in (left, right))

    def step():
        loss = simclr_loss_across_processes(z_left, z_right, TAU)
        loss.backward()
        return loss

    step()
    times = []
    for _ in range(repeats):
        torch.distributed.barrier()
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    peak = peak_memory(step)
    return {"loss": float(loss.detach()), "seconds": sorted(times)[len(times) // 2], "peak": peak}


def across_processes(n, repeats, single):
    print(f"\nN = {n} pairs across 2 processes (gloo, 1 thread each), forward + backward:")
    ranks = spawn(_rank_step, 2, n, repeats, backend="gloo")
    loss = sum(r["loss"] for r in ranks) / len(ranks)  # the global loss is the mean of the ranks' losses
    seconds, peak = max(r["seconds"] for r in ranks), max(r["peak"] for r in ranks) / 2 ** 20
    print(f"  loss {loss:.6f} (one process: {single['value']:.6f}); step {1e3 * seconds:.0f} ms (one process, "
          f"2 threads: {1e3 * single['both']:.0f} ms); peak per process {peak:.0f} MiB (one process: "
          f"{single['peak']:.0f} MiB)")
    return seconds, peak


def plot(rows, sizes, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"reference": "o-", "chunked": "s--", "floor": "k:"}
    for name, style in styles.items():
        ax_t.loglog(sizes, [1e3 * rows[(n, name)][1] for n in sizes], style, label=f"{name}, forward + backward")
        ax_m.loglog(sizes, [rows[(n, name)][2] for n in sizes], style, label=name)
    ax_t.loglog(sizes, [1e3 * rows[(n, "reference")][0] for n in sizes], "o:", color="C0", alpha=0.6,
                label="reference, forward")
    ax_t.set(xlabel="N (pairs; the logits are 2N x 2N)", ylabel="ms (median)", title="SimCLR loss: time")
    ax_m.set(xlabel="N (pairs)", ylabel="peak MiB, forward + backward", title="SimCLR loss: peak memory")
    for ax in (ax_t, ax_m):
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{machine_line()}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N up to 1024, 2 repeats: a smoke run, not figures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=Path(__file__).parent / "figures" / "simclr_scale.png")
    args = parser.parse_args()
    sizes = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048, 4096, 8192]
    repeats = 2 if args.quick else args.repeats
    print(machine_line(), f"- SimCLR loss, D = 128, tau = {TAU}, float32, medians of {repeats} (2 at N >= 4096)")
    reference = load_reference("03_simclr").simclr_loss_vectorized
    rows = one_process(sizes, repeats, reference)
    n = sizes[-1]
    _, both, peak, value = rows[(n, "reference")]
    single = {"value": value, "both": both, "peak": peak}
    across_processes(n, repeats, single)
    plot(rows, sizes, args.plot)


if __name__ == "__main__":
    main()
