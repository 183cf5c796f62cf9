"""Where the ways students write each timed function fall against its vectorization check's limit.

    python benchmarks/speed_ratios.py [--quick]
    python benchmarks/busy.py -- python benchmarks/speed_ratios.py     # beside one busy process per core

For every function the hidden suites time (`expect_vectorized` in
autograder/grading/checks.py, and the hamming_permutations check of its
suite), at each of the check's shapes (the sizes, the grader's loop and the
``closeness`` imported from the suites, never copied), this script times in
one run, interleaved call by call (`measure.time_samples`), on one thread as
the check does (``torch.set_num_threads(1)``):

- the reference and the grader's own loop, which set the limit:
  ``limit = tr * (tl / tr) ** closeness``, the point at ``closeness`` on a
  log scale from the reference (0) to the grader's loop (1);
- the correct whole-tensor ways students write (broadcasting, einsum,
  ``torch.cdist``, ``F.linear``, ``bmm``, ``F.normalize`` then a matrix
  product, gather and index variants, ...), which must be at least 2x under
  the limit: margin ``limit / time``;
- the Python loops students write (over the rows with a whole-tensor step
  inside, the fastest first; double loops where plausible, timed on fewer
  repeats), and the wasteful whole-tensor ways the suites mean to fail
  (``slow``: MoCo's ``[N, K, D]`` broadcast), which must be at least 2x over
  it: margin ``time / limit``.

Each time is the floor (the fastest call) over the repeats, as the check
takes for all three (the reference's, the loop's and the student's calls).
Unlike the check, which times the student's calls through the channel to the
student's process and subtracts the channel's own round trip (the twin's,
running the reference), this script times each way directly in this
process, on new inputs for every call, made (untimed) right before it: the
ways' as the channel delivers them (``torch.frombuffer`` on a new buffer,
standard strides), the reference's and the loop's from torch's allocator,
as the check's fresh inputs;
the one cost of the channel it adds is the copy of a non-contiguous result
into order (``.contiguous()``), which the channel makes for the student's
result and not for the reference's, so that the subtraction leaves it in.
The channel's own jitter (0.1 to 1 ms, growing with the size of the inputs
and the result) is not in these figures: the suites' comments give what the
check measured through it. Each way's values are
compared with the reference's once, so that a wrong variant cannot pass for a
fast one. It prints a table per shape and one summary line per function
(the worst vectorized and the worst loop margin over its shapes, against 2x).
About 3 minutes on 2 cores (``--quick``: fewer repeats, about 1 minute).
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from measure import machine_line, time_samples  # noqa: E402 (benchmarks/ is on the path)

from autograder.grading.checks import speed_limit  # noqa: E402
from autograder.grading.reference import load_reference  # noqa: E402
from autograder.suites import test_01_pretext_tasks as s01  # noqa: E402
from autograder.suites import test_02_generative_pretext as s02  # noqa: E402
from autograder.suites import test_03_simclr as s03  # noqa: E402
from autograder.suites import test_04_moco as s04  # noqa: E402
from autograder.suites import test_05_cpc as s05  # noqa: E402
from autograder.suites.common import randn  # noqa: E402
import test_grading_pretext as t01  # noqa: E402 (tests/ is on the path: the kit's grading cases)

TARGET = 2.0  # every vectorized way at least this many times under the limit, every loop this many times over it
VECTORIZED, LOOP, SLOW = "vectorized", "loop", "slow"  # slow: whole-tensor code the suite means to fail


@dataclass
class Way:
    name: str
    kind: str          # VECTORIZED, LOOP or SLOW
    fn: Callable
    repeats: int | None = None  # fewer than the shape's, for the slowest loops


@dataclass
class Shape:
    function: str
    label: str
    args: list[Any]
    reference: Callable
    loop: Callable      # the grader's loop, as the check times it
    closeness: float
    ways: list[Way]
    loop_scale: float = 1.0  # the check multiplies the loop's time by this (hamming: one pass times P - 1)
    loop_args: list[Any] | None = None
    compare: Callable[[Any, Any], bool] | None = None
    results: dict[str, float] = field(default_factory=dict)


def _contiguous(value: Any) -> Any:
    """What the channel makes of a result before sending it: each tensor in order in memory."""
    if isinstance(value, (tuple, list)):
        return tuple(_contiguous(v) for v in value)
    return value.contiguous() if isinstance(value, torch.Tensor) else value


def _as_received(value: Any) -> Any:
    """An input as the student's process receives it from the channel: a fresh tensor with the standard
    strides of its shape (a suite's own tensors may carry odd strides on size-1 dims, which change the memory
    layout torch picks for the results of some operations, e.g. 6.6 ms instead of 0.5 ms for a .norm(dim=-1)
    in encode_ab)."""
    if isinstance(value, torch.Tensor):  # as the channel decodes it: torch.frombuffer on a new buffer
        return torch.frombuffer(bytearray(value.contiguous().numpy().tobytes()), dtype=value.dtype).reshape(value.shape)
    return value


def _fresh(value: Any) -> Any:
    """An input as the check makes it for the reference and its loop: a new tensor from torch's allocator."""
    return torch.empty(value.shape, dtype=value.dtype).copy_(value) if isinstance(value, torch.Tensor) else value


def _close(got: Any, want: Any) -> bool:
    if isinstance(want, tuple):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(map(_close, got, want))
    return (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype
            and torch.allclose(got.double(), want.double(), rtol=1e-4, atol=1e-4))


# --------------------------------------------------------------------------- 01_pretext_tasks

KEEP = [0, 1, 2, 3, 5, 6, 7, 8]


def _grid_of(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    return N, C, P, S, (H - S) // 2, (W - S) // 2


def context_unfold(images, patch_size, gap):
    N, C, P, S, top, left = _grid_of(images, patch_size, gap)
    crop = images[:, :, top:top + S, left:left + S]
    patches = crop.unfold(2, P, P + gap).unfold(3, P, P + gap).permute(0, 2, 3, 1, 4, 5).reshape(N, 9, C, P, P)
    keep = torch.tensor(KEEP)
    return (patches[:, 4].repeat_interleave(8, dim=0), patches[:, keep].reshape(N * 8, C, P, P),
            torch.arange(8).repeat(N))


def context_repeat(images, patch_size, gap):
    N, C, P, S, top, left = _grid_of(images, patch_size, gap)
    step = P + gap
    patch = lambda r, c: images[:, :, top + r * step:top + r * step + P, left + c * step:left + c * step + P]  # noqa
    neighbors = torch.stack([patch(r, c) for r, c in s01.POSITIONS], dim=1)
    centers = patch(1, 1).unsqueeze(1).repeat(1, 8, 1, 1, 1)
    return centers.reshape(-1, C, P, P), neighbors.reshape(-1, C, P, P), torch.arange(8).expand(N, 8).reshape(-1)


def context_index(images, patch_size, gap):
    N, C, P, S, top, left = _grid_of(images, patch_size, gap)
    step = P + gap
    r0 = top + step * torch.tensor([r for r, _ in s01.POSITIONS])
    c0 = left + step * torch.tensor([c for _, c in s01.POSITIONS])
    ar = torch.arange(P)
    neighbors = images[:, :, (r0[:, None] + ar)[:, :, None], (c0[:, None] + ar)[:, None, :]]
    neighbors = neighbors.permute(0, 2, 1, 3, 4).reshape(N * 8, C, P, P)
    centre = images[:, :, top + step:top + step + P, left + step:left + step + P]
    return centre[:, None].expand(N, 8, C, P, P).reshape(N * 8, C, P, P), neighbors, torch.arange(8).repeat(N)


def context_loop_unfold(images, patch_size, gap):
    """A loop over the images, unfold inside (the fewest operations per image)."""
    N, C, P, S, top, left = _grid_of(images, patch_size, gap)
    keep = torch.tensor(KEEP)
    centers, neighbors = [], []
    for x in images:
        p = x[:, top:top + S, left:left + S].unfold(1, P, P + gap).unfold(2, P, P + gap)
        p = p.permute(1, 2, 0, 3, 4).reshape(9, C, P, P)
        neighbors.append(p[keep])
        centers.append(p[4].expand(8, C, P, P))
    return torch.cat(centers), torch.cat(neighbors), torch.arange(8).repeat(N)


def _students_function(source: str, name: str) -> Callable[..., Any]:
    """The function ``name`` defined by a student's source (as the kit's grading tests write them)."""
    namespace: dict[str, Any] = {"torch": torch, "F": F, "itertools": itertools, "math": math}
    exec(source, namespace)  # noqa: S102 (the kit's own test cases)
    return namespace[name]


# NumPy's argmax over the candidates: the kit's grading tests' right_1 way (tests/test_grading_pretext.py)
hamming_numpy = _students_function(t01.RIGHT_1["hamming_permutations"], "hamming_permutations")
# The images and the 8 positions in two loops; a Python loop over the T! candidates at every step (WRONG_3)
context_double_loop = _students_function(t01.WRONG_3["context_pairs"], "context_pairs")
hamming_python_loop = _students_function(t01.WRONG_3["hamming_permutations"], "hamming_permutations")
# Whole-tensor, but every distance to the chosen set recomputed at each step (WRONG_10): meant to fail
hamming_recomputed = _students_function(t01.WRONG_10["hamming_permutations"], "hamming_permutations")


def hamming_random_ties(num_permutations, num_tiles=9, generator=None):
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))), dtype=torch.long)
    start = torch.randperm(num_tiles, generator=generator)
    chosen = [start]
    min_d = (candidates != start).sum(1)
    for _ in range(num_permutations - 1):
        ties = torch.nonzero(min_d == min_d.max()).flatten()
        pick = candidates[ties[torch.randint(len(ties), (1,), generator=generator)]][0]
        chosen.append(pick)
        min_d = torch.minimum(min_d, (candidates != pick).sum(1))
    return torch.stack(chosen)


def hamming_last_tie(num_permutations, num_tiles=9, generator=None):
    n_all = math.factorial(num_tiles)
    c = torch.tensor(list(itertools.permutations(range(num_tiles))))
    picked = [int(torch.randint(n_all, (1,), generator=generator))]
    md = num_tiles - (c == c[picked[0]]).sum(1)
    for _ in range(num_permutations - 1):
        b = n_all - 1 - int(md.flip(0).argmax())
        picked.append(b)
        md = torch.min(md, num_tiles - (c == c[b]).sum(1))
    return c[picked]





def shuffle_gather(tiles, permutations, perm_index):
    N, T = tiles.shape[:2]
    index = permutations[perm_index].view(N, T, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    return torch.gather(tiles, 1, index)


def shuffle_index_select(tiles, permutations, perm_index):
    N, T = tiles.shape[:2]
    order = permutations[perm_index] + T * torch.arange(N)[:, None]
    return tiles.flatten(0, 1).index_select(0, order.flatten()).view_as(tiles)


def shuffle_take_along(tiles, permutations, perm_index):
    N, T = tiles.shape[:2]
    return torch.take_along_dim(tiles, permutations[perm_index].view(N, T, *([1] * (tiles.dim() - 2))), dim=1)


def shuffle_position_loop(tiles, permutations, perm_index):
    """A loop over the T tile positions (not the images): whole-batch inside (RIGHT_3)."""
    order = permutations[perm_index]
    rows = torch.arange(tiles.shape[0])
    return torch.stack([tiles[rows, order[:, j]] for j in range(tiles.shape[1])], dim=1)


def shuffle_loop_index_select(tiles, permutations, perm_index):
    order = permutations[perm_index]
    return torch.stack([tiles[n].index_select(0, order[n]) for n in range(len(tiles))])


def shuffle_loop_append(tiles, permutations, perm_index):
    out = []
    for n in range(tiles.shape[0]):
        out.append(tiles[n, permutations[perm_index[n]]])
    return torch.stack(out)


def shuffle_double_loop(tiles, permutations, perm_index):
    return torch.stack([torch.stack([tiles[n, permutations[perm_index[n], j]] for j in range(tiles.shape[1])])
                        for n in range(tiles.shape[0])])


def shapes_01(ref) -> list[Shape]:
    n, c, h, p, gap = s01.CONTEXT_SIZE
    context = Shape("context_pairs", f"N={n} C={c} {h}x{h} P={p} gap={gap}", [randn((n, c, h, h), 70), p, gap],
                    ref.context_pairs, s01._context_loop, s01.CONTEXT_CLOSENESS, [
                        Way("reference", VECTORIZED, ref.context_pairs),
                        Way("unfold", VECTORIZED, context_unfold),
                        Way("stack + repeat", VECTORIZED, context_repeat),
                        Way("index tensors", VECTORIZED, context_index),
                        Way("loop over images, unfold inside", LOOP, context_loop_unfold),
                        Way("loop over images, 9 slices (grader's)", LOOP, s01._context_loop),
                        Way("loop over images x positions", LOOP, context_double_loop, 3)])
    P, T = s01.HAMMING_SIZE
    seeds = itertools.count(700)
    gen = lambda: torch.Generator().manual_seed(next(seeds))  # noqa: E731 (a new seed per call, as the check)
    candidates = list(itertools.permutations(range(T)))

    def one_pass():
        s01._candidate_pass(candidates, candidates[0], [T + 1] * len(candidates))

    hamming = Shape("hamming_permutations", f"P={P} T={T}", [P, T], lambda *a: ref.hamming_permutations(*a, gen()),
                    one_pass, s01.HAMMING_CLOSENESS, [
                        Way("reference", VECTORIZED, lambda *a: ref.hamming_permutations(*a, gen())),
                        Way("numpy", VECTORIZED, lambda *a: hamming_numpy(*a, gen())),
                        Way("randperm start, random ties", VECTORIZED, lambda *a: hamming_random_ties(*a, gen())),
                        Way("the last of the ties", VECTORIZED, lambda *a: hamming_last_tie(*a, gen())),
                        Way("distances recomputed each step", SLOW, lambda *a: hamming_recomputed(*a, gen()), 3),
                        Way("Python loop over the T! candidates", LOOP, lambda *a: hamming_python_loop(*a, gen()),
                            1)],
                    loop_scale=P - 1, loop_args=[], compare=lambda got, want: got.shape == want.shape)
    n, t, c, h, w, p = s01.SHUFFLE_SIZE
    shuffle = Shape("shuffle_tiles", f"N={n} T={t} C={c} {h}x{w} P={p}", list(s01._jigsaw_case(n, t, c, h, w, p, 200)),
                    ref.shuffle_tiles, s01._shuffle_loop, s01.SHUFFLE_CLOSENESS, [
                        Way("reference (advanced indexing)", VECTORIZED, ref.shuffle_tiles),
                        Way("gather", VECTORIZED, shuffle_gather),
                        Way("index_select on the flattened tiles", VECTORIZED, shuffle_index_select),
                        Way("take_along_dim", VECTORIZED, shuffle_take_along),
                        Way("loop over the T positions", VECTORIZED, shuffle_position_loop),
                        Way("loop over images, index_select", LOOP, shuffle_loop_index_select),
                        Way("loop over images (grader's)", LOOP, s01._shuffle_loop),
                        Way("loop over images, append", LOOP, shuffle_loop_append),
                        Way("loop over images x tiles", LOOP, shuffle_double_loop, 3)])
    return [context, hamming, shuffle]


# --------------------------------------------------------------------------- 02_generative_pretext

def codes_cdist(ab, centers):
    N, _, H, W = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(N, H * W, 2)
    return torch.cdist(pixels, centers.unsqueeze(0).expand(N, -1, -1)).argmin(dim=-1).view(N, H, W)


def codes_cdist_flat(ab, centers):
    N, _, H, W = ab.shape
    return torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), centers).argmin(1).view(N, H, W)


def codes_expanded(ab, centers):
    x = ab.permute(0, 2, 3, 1)
    d = (x * x).sum(-1, keepdim=True) - 2 * x @ centers.T + (centers * centers).sum(-1)
    return torch.min(d, dim=-1).indices


def codes_norm(ab, centers):
    return (ab.permute(0, 2, 3, 1).unsqueeze(-2) - centers).norm(dim=-1).argmin(dim=-1)


def codes_loop_pixels_flat(ab, centers):
    """A loop over every pixel of the batch (autograder/frontends/examples.py LOOPS)."""
    N, _, H, W = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    return torch.stack([((centers - p) ** 2).sum(dim=1).argmin() for p in pixels]).reshape(N, H, W)


def codes_loop_images_cdist(ab, centers):
    return torch.stack([torch.cdist(x.flatten(1).T, centers).argmin(1).view(x.shape[1:]) for x in ab])


def codes_loop_images_reshape(ab, centers):
    """tests/test_grading_generative.py WRONG_3."""
    codes = []
    for image in ab:
        pixels = image.permute(1, 2, 0).reshape(-1, 1, 2)
        codes.append(((pixels - centers) ** 2).sum(-1).argmin(-1).view(ab.shape[2], ab.shape[3]))
    return torch.stack(codes)


def codes_loop_positions_cdist(ab, centers):
    N, _, H, W = ab.shape
    out = torch.empty(N, H, W, dtype=torch.long)
    for i in range(H):
        for j in range(W):
            out[:, i, j] = torch.cdist(ab[:, :, i, j], centers).argmin(1)
    return out


def propagate_einsum(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, _, H, W = tgt_feats.shape
    scores = torch.einsum('ndi,ndj->nij', tgt_feats.flatten(2), ref_feats.flatten(2)) / temperature
    return torch.einsum('nij,ncj->nci', scores.softmax(-1), ref_colors.flatten(2)).reshape(N, -1, H, W)


def propagate_bmm(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = ref_feats.shape
    C = ref_colors.shape[1]
    attn = F.softmax(torch.bmm(tgt_feats.reshape(N, D, H * W).permute(0, 2, 1), ref_feats.reshape(N, D, H * W))
                     / temperature, dim=2)
    return torch.bmm(attn, ref_colors.reshape(N, C, H * W).permute(0, 2, 1)).permute(0, 2, 1).reshape(N, C, H, W)


def propagate_sdpa(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    q, k, v = (x.flatten(2).transpose(1, 2) for x in (tgt_feats, ref_feats, ref_colors))
    out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / temperature)
    return out.transpose(1, 2).reshape(N, -1, H, W)


def propagate_broadcast(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """Broadcasts instead of matrix products: [N, D, HW, HW] and [N, C, HW, HW] intermediates."""
    N, D, H, W = tgt_feats.shape
    tgt, ref, colors = tgt_feats.flatten(2), ref_feats.flatten(2), ref_colors.flatten(2)
    a = torch.softmax((tgt[:, :, :, None] * ref[:, :, None, :]).sum(1) / temperature, dim=-1)  # [N, HW, HW]
    return (a[:, None] * colors[:, :, None, :]).sum(-1).reshape(N, -1, H, W)


def propagate_position_loop_einsum(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """tests/test_grading_generative.py WRONG_3."""
    N, D, H, W = tgt_feats.shape
    tgt, ref, colors = tgt_feats.flatten(2), ref_feats.flatten(2), ref_colors.flatten(2)
    out = torch.zeros(N, colors.shape[1], H * W, dtype=colors.dtype)
    for i in range(H * W):
        a = torch.softmax(torch.einsum('nd,ndj->nj', tgt[:, :, i], ref) / temperature, dim=-1)
        out[:, :, i] = torch.einsum('nj,ncj->nc', a, colors)
    return out.view(N, -1, H, W)


def propagate_position_loop_matmul(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """A loop over the target positions with the fewest operations: one batched product each way."""
    N, D, H, W = tgt_feats.shape
    tgt, ref, colors = tgt_feats.flatten(2), ref_feats.flatten(2), ref_colors.flatten(2)
    out = [colors @ torch.softmax(tgt[:, None, :, i] @ ref / temperature, dim=-1).transpose(1, 2)
           for i in range(H * W)]                                                         # each [N, C, 1]
    return torch.cat(out, dim=-1).view(N, -1, H, W)


def propagate_image_loop_reshape(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """tests/test_grading_generative.py WRONG_5."""
    outs = []
    for n in range(ref_feats.shape[0]):
        D, H, W = ref_feats.shape[1:]
        A = torch.softmax(tgt_feats[n].reshape(D, -1).T @ ref_feats[n].reshape(D, -1) / temperature, dim=1)
        outs.append((ref_colors[n].reshape(ref_colors.shape[1], -1) @ A.T).reshape(-1, H, W))
    return torch.stack(outs)


def propagate_image_loop_sdpa(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    out = [F.scaled_dot_product_attention(t.flatten(1).T, r.flatten(1).T, c.flatten(1).T, scale=1 / temperature)
           for r, t, c in zip(ref_feats, tgt_feats, ref_colors)]
    return torch.stack(out).transpose(1, 2).reshape(N, -1, H, W)


def shapes_02(ref) -> list[Shape]:
    codes_vectorized = [Way("reference (broadcast, sum of squares)", VECTORIZED, ref.encode_ab),
                        Way("cdist, batched", VECTORIZED, codes_cdist),
                        Way("cdist, flattened", VECTORIZED, codes_cdist_flat),
                        Way("|x|^2 - 2 x.c + |c|^2", VECTORIZED, codes_expanded),
                        Way("broadcast, .norm(dim=-1)", VECTORIZED, codes_norm)]
    codes_loops = ([Way("loop over images, cdist", LOOP, codes_loop_images_cdist),
                    Way("loop over images (grader's)", LOOP, s02._codes_image_loop),
                    Way("loop over images, reshape", LOOP, codes_loop_images_reshape),
                    Way("loop over every pixel", LOOP, codes_loop_pixels_flat, 5)],
                   [Way("loop over positions, cdist", LOOP, codes_loop_positions_cdist),
                    Way("loop over positions (grader's)", LOOP, s02._codes_pixel_loop),
                    Way("loop over every pixel", LOOP, codes_loop_pixels_flat, 5)])
    shapes = []
    for (n, h, w, q), loop, closeness, loops in zip(s02.CODES_SIZES, (s02._codes_image_loop, s02._codes_pixel_loop),
                                                    s02.CODES_CLOSENESS, codes_loops):
        shapes.append(Shape("encode_ab", f"N={n} {h}x{w} Q={q}", list(s02._codes_case(n, h, w, q, 250)), ref.encode_ab,
                            loop, closeness, codes_vectorized + loops))
    propagate_vectorized = [Way("reference (bmm)", VECTORIZED, ref.propagate_colors),
                            Way("einsum", VECTORIZED, propagate_einsum),
                            Way("bmm, reshape/permute", VECTORIZED, propagate_bmm),
                            Way("scaled_dot_product_attention", VECTORIZED, propagate_sdpa),
                            Way("broadcast [N, D, HW, HW]", VECTORIZED, propagate_broadcast)]
    propagate_loops = ([Way("loop over positions, batched products", LOOP, propagate_position_loop_matmul),
                        Way("loop over positions (grader's)", LOOP, s02._propagate_position_loop),
                        Way("loop over positions, einsum", LOOP, propagate_position_loop_einsum)],
                       [Way("loop over images, SDPA", LOOP, propagate_image_loop_sdpa),
                        Way("loop over images (grader's)", LOOP, s02._propagate_image_loop),
                        Way("loop over images, reshape", LOOP, propagate_image_loop_reshape)])
    for (n, d, c, h, w), loop, closeness, loops in zip(
            s02.PROPAGATE_SIZES, (s02._propagate_position_loop, s02._propagate_image_loop), s02.PROPAGATE_CLOSENESS,
            propagate_loops):
        shapes.append(Shape("propagate_colors", f"N={n} D={d} C={c} {h}x{w}", list(s02._propagate_case(n, d, c, h, w, 750)),
                            ref.propagate_colors, loop, closeness, propagate_vectorized + loops))
    return shapes


# --------------------------------------------------------------------------- 03_simclr

def matrix_normalize(out):
    u = F.normalize(out, dim=1)
    return u @ u.T


def matrix_einsum(out):
    u = F.normalize(out, dim=1)
    return torch.einsum('id,jd->ij', u, u)


def matrix_linear(out):
    u = F.normalize(out, dim=1)
    return F.linear(u, u)


def matrix_broadcast(out):
    return F.cosine_similarity(out[:, None, :], out[None, :, :], dim=-1)


def matrix_divide_after(out):
    norms = out.norm(dim=1)
    return out @ out.T / (norms[:, None] * norms[None, :])


def matrix_eps(out):
    unit = out / (out.norm(dim=1, keepdim=True) + 1e-6)
    return unit @ unit.T


def matrix_loop_unit_rows(out):
    """Normalised once, then one matrix-vector product per row: the fastest loop over the rows."""
    u = F.normalize(out, dim=1)
    return torch.stack([u @ u[i] for i in range(len(u))])


def matrix_loop_by_hand(out):
    norms = out.norm(dim=1)
    return torch.stack([(out @ out[i]) / (norms[i] * norms) for i in range(len(out))])


def matrix_double_loop(sim):
    def compute_sim_matrix(out):  # autograder/frontends/examples.py LOOPS
        return torch.stack([torch.stack([sim(a, b) for b in out]) for a in out])
    return compute_sim_matrix


def pairs_cosine(l, r):
    return F.cosine_similarity(l, r, dim=1).unsqueeze(1)


def pairs_diagonal(l, r):
    """The diagonal of the whole [N, N] product: wasteful (N times the work), but whole-tensor."""
    return torch.diagonal(F.normalize(l, dim=1) @ F.normalize(r, dim=1).T).view(-1, 1)


def pairs_by_hand(l, r):
    return ((l * r).sum(1) / (l.norm(dim=1) * r.norm(dim=1) + 1e-6)).view(-1, 1)


def pairs_einsum(l, r):
    return (torch.einsum('nd,nd->n', l, r) / (l.norm(dim=1) * r.norm(dim=1))).unsqueeze(1)


def pairs_bmm(l, r):
    l, r = F.normalize(l, dim=1), F.normalize(r, dim=1)
    return torch.bmm(l.unsqueeze(1), r.unsqueeze(2)).view(-1, 1)


def pairs_loop_unit_rows(l, r):
    """Normalised once, then one dot product per row: the fastest loop over the rows."""
    l, r = F.normalize(l, dim=1), F.normalize(r, dim=1)
    return torch.stack([torch.dot(l[k], r[k]) for k in range(len(l))]).view(-1, 1)


def pairs_loop_cosine(l, r):
    """tests/test_grading.py WRONG_2."""
    return torch.stack([F.cosine_similarity(l[k], r[k], dim=0) for k in range(len(l))]).view(-1, 1)


def loss_ways(ref):
    matrix, pairs = ref.compute_sim_matrix, ref.sim_positive_pairs  # what the timing substitutes for the student's

    def masked_cross_entropy(l, r, tau):  # tests/test_grading.py RIGHT_1
        N = l.shape[0]
        s = matrix(torch.cat([l, r])) / tau
        s = s.masked_fill(torch.eye(2 * N, dtype=torch.bool), float('-inf'))
        return F.cross_entropy(s, (torch.arange(2 * N) + N) % (2 * N))

    def logsumexp_roll(l, r, tau):  # RIGHT_2
        N = l.shape[0]
        z = torch.cat([l, r])
        z = z / z.norm(dim=1, keepdim=True)
        logits = z @ z.T / tau
        log_denominator = torch.logsumexp(logits.masked_fill(torch.eye(2 * N, dtype=torch.bool), -1e9), dim=1)
        return (log_denominator - logits.roll(shifts=N, dims=1).diagonal()).mean()

    def four_steps(l, r, tau):  # the notebook's steps (tests/test_grading.py WRONG_2's, correct)
        N = l.shape[0]
        exp_sim = torch.exp(matrix(torch.cat([l, r])) / tau)
        denom = (exp_sim * (1 - torch.eye(2 * N, dtype=exp_sim.dtype))).sum(dim=1, keepdim=True)
        numerator = torch.exp(pairs(l, r).repeat(2, 1) / tau)
        return -torch.log(numerator / denom).mean()

    def loop_over_pairs(l, r, tau):
        """One loop iteration per positive pair, both of its anchors at once."""
        N = l.shape[0]
        z = F.normalize(torch.cat([l, r]), dim=1)
        s = z @ z.T / tau
        total = 0
        for k in range(N):
            rows = s[[k, k + N]]
            rows = rows.masked_fill(F.one_hot(torch.tensor([k, k + N]), 2 * N).bool(), float('-inf'))
            total = total + torch.logsumexp(rows, 1).sum() - 2 * s[k, k + N]
        return total / (2 * N)

    def loop_over_anchors_cross_entropy(l, r, tau):
        N = l.shape[0]
        z = F.normalize(torch.cat([l, r]), dim=1)
        losses = []
        for i in range(2 * N):
            logits = (z @ z[i]) / tau
            logits = torch.cat([logits[:i], logits[i + 1:]])
            j = (i + N) % (2 * N)
            losses.append(F.cross_entropy(logits[None], torch.tensor([j if j < i else j - 1])))
        return torch.stack(losses).mean()

    return [Way("reference (fill_diagonal_, cross_entropy)", VECTORIZED, ref.simclr_loss_vectorized),
            Way("masked_fill, cross_entropy", VECTORIZED, masked_cross_entropy),
            Way("logsumexp, roll", VECTORIZED, logsumexp_roll),
            Way("the notebook's four steps (exp, sums)", VECTORIZED, four_steps),
            Way("loop over the pairs", LOOP, loop_over_pairs),
            Way("loop over the anchors (grader's)", LOOP, s03._loss_loop),
            Way("loop over the anchors, cross_entropy", LOOP, loop_over_anchors_cross_entropy),
            Way("double loop with sim (simclr_loss_naive)", LOOP, ref.simclr_loss_naive, 1)]


def shapes_03(ref) -> list[Shape]:
    m, d = s03.SIM_MATRIX_SIZE
    matrix = Shape("compute_sim_matrix", f"M={m} D={d}", [randn((m, d), 7)], ref.compute_sim_matrix,
                   s03._sim_matrix_loop, s03.SIM_MATRIX_CLOSENESS, [
                       Way("reference (divide, @)", VECTORIZED, ref.compute_sim_matrix),
                       Way("F.normalize, @", VECTORIZED, matrix_normalize),
                       Way("F.normalize, einsum", VECTORIZED, matrix_einsum),
                       Way("F.normalize, F.linear", VECTORIZED, matrix_linear),
                       Way("divide after the product", VECTORIZED, matrix_divide_after),
                       Way("+ 1e-6 on the norms", VECTORIZED, matrix_eps),
                       Way("cosine_similarity, broadcast [M, M, D]", VECTORIZED, matrix_broadcast),
                       Way("loop over rows, unit rows @", LOOP, matrix_loop_unit_rows),
                       Way("loop over rows, by hand", LOOP, matrix_loop_by_hand),
                       Way("loop over rows, cosine_similarity (grader's)", LOOP, s03._sim_matrix_loop),
                       Way("double loop with sim", LOOP, matrix_double_loop(ref.sim), 1)])
    n, d = s03.PAIRS_SIZE
    pairs = Shape("sim_positive_pairs", f"N={n} D={d}", [randn((n, d), 8), randn((n, d), 9)], ref.sim_positive_pairs,
                  lambda l, r: s03._pairs_loop(ref.sim, l, r), s03.PAIRS_CLOSENESS, [
                      Way("reference (divide, *, sum)", VECTORIZED, ref.sim_positive_pairs),
                      Way("cosine_similarity", VECTORIZED, pairs_cosine),
                      Way("by hand, + 1e-6", VECTORIZED, pairs_by_hand),
                      Way("einsum", VECTORIZED, pairs_einsum),
                      Way("bmm of unit rows", VECTORIZED, pairs_bmm),
                      Way("diagonal of the [N, N] product", VECTORIZED, pairs_diagonal),
                      Way("loop over rows, unit rows, dot", LOOP, pairs_loop_unit_rows),
                      Way("loop over rows, cosine_similarity", LOOP, pairs_loop_cosine),
                      Way("loop over rows, sim (grader's)", LOOP, lambda l, r: s03._pairs_loop(ref.sim, l, r))])
    n, d, tau = s03.LOSS_SIZE
    loss = Shape("simclr_loss_vectorized", f"N={n} D={d} tau={tau}", [randn((n, d), 11), randn((n, d), 12), tau],
                 ref.simclr_loss_vectorized, s03._loss_loop, s03.LOSS_CLOSENESS, loss_ways(ref))
    return [matrix, pairs, loss]


# --------------------------------------------------------------------------- 04_moco

def logits_einsum(q, k, queue, tau):
    l_pos = torch.einsum('nc,nc->n', q, k).unsqueeze(-1)
    return torch.cat([l_pos, torch.einsum('nc,kc->nk', q, queue)], dim=1) / tau, torch.zeros(len(q), dtype=torch.long)


def logits_bmm(q, k, queue, tau):
    positive = torch.bmm(q.unsqueeze(1), k.unsqueeze(2)).view(-1, 1)
    return torch.cat((positive, torch.mm(q, queue.t())), dim=1) / tau, torch.zeros(q.size(0), dtype=torch.int64)


def logits_linear(q, k, queue, tau):
    return torch.cat([(q * k).sum(1, keepdim=True), F.linear(q, queue)], 1) / tau, torch.zeros(len(q), dtype=torch.long)


def logits_normalize(q, k, queue, tau):
    pos = F.cosine_similarity(q, k, dim=1).unsqueeze(1)
    neg = F.normalize(q, dim=1) @ F.normalize(queue, dim=1).T
    return torch.cat([pos, neg], dim=1) / tau, torch.zeros(q.shape[0], dtype=torch.long)


def logits_broadcast(q, k, queue, tau):
    """[N, 1, D] * [1, K, D]: the suite means it to fail (an 8 GB intermediate at MoCo's size)."""
    neg = (q[:, None, :] * queue[None, :, :]).sum(dim=-1)
    return torch.cat([(q * k).sum(dim=-1, keepdim=True), neg], dim=-1) / tau, torch.zeros(q.shape[0], dtype=torch.long)


def logits_cosine_broadcast(q, k, queue, tau):
    pos = F.cosine_similarity(q, k, dim=1).unsqueeze(1)
    neg = F.cosine_similarity(q.unsqueeze(1), queue.unsqueeze(0), dim=2)
    return torch.cat([pos, neg], dim=1) / tau, torch.zeros(q.shape[0], dtype=torch.long)


def logits_loop_queries_dot(q, k, queue, tau):
    """tests/test_grading_moco.py WRONG_LOOP."""
    rows = []
    for i in range(q.shape[0]):
        rows.append(torch.cat([torch.dot(q[i], k[i]).view(1), queue @ q[i]]) / tau)
    return torch.stack(rows), torch.zeros(q.shape[0], dtype=torch.long)


def logits_loop_queries_negatives(q, k, queue, tau):
    """The positives whole-tensor, only the negatives in a loop over the queries: one product a query."""
    neg = torch.stack([queue @ q[i] for i in range(len(q))])
    return torch.cat([(q * k).sum(1, keepdim=True), neg], 1) / tau, torch.zeros(len(q), dtype=torch.long)


def logits_loop_queue_stack(q, k, queue, tau):
    """tests/test_grading_moco.py WRONG_QUEUE_LOOP."""
    negatives = torch.stack([q @ queue[j] for j in range(queue.shape[0])], dim=1)
    return torch.cat([(q * k).sum(dim=1, keepdim=True), negatives], dim=1) / tau, torch.zeros(q.shape[0],
                                                                                               dtype=torch.long)


def logits_loop_queue_fill(q, k, queue, tau):
    logits = torch.empty(len(q), 1 + len(queue))
    logits[:, 0] = (q * k).sum(1)
    for j in range(len(queue)):
        logits[:, 1 + j] = q @ queue[j]
    return logits / tau, torch.zeros(len(q), dtype=torch.long)


def shapes_04(ref) -> list[Shape]:
    vectorized = [Way("reference (q / tau, @)", VECTORIZED, ref.moco_logits),
                  Way("einsum", VECTORIZED, logits_einsum),
                  Way("bmm, mm", VECTORIZED, logits_bmm),
                  Way("F.linear", VECTORIZED, logits_linear),
                  Way("F.normalize again, @", VECTORIZED, logits_normalize)]
    loops = ([Way("broadcast [N, K, D] (meant to fail)", SLOW, logits_broadcast),
              Way("cosine_similarity broadcast [N, K, D] (meant to fail)", SLOW, logits_cosine_broadcast),
              Way("loop over queries, negatives only", LOOP, logits_loop_queries_negatives),
              Way("loop over queries (grader's)", LOOP, s04._logits_loop),
              Way("loop over queries, dot and cat", LOOP, logits_loop_queries_dot)],
             [Way("loop over the queue, into a tensor", LOOP, logits_loop_queue_fill),
              Way("loop over the queue (grader's)", LOOP, s04._logits_queue_loop),
              Way("loop over the queue, stack", LOOP, logits_loop_queue_stack)])
    shapes = []
    for (n, k, d), loop, closeness, more in zip(s04.LOGITS_SIZES, (s04._logits_loop, s04._logits_queue_loop),
                                                s04.LOGITS_CLOSENESS, loops):
        q, key, queue = s04._logit_case(n, k, d, 90)
        shapes.append(Shape("moco_logits", f"N={n} K={k} D={d}", [q, key, queue, 0.2], ref.moco_logits, loop,
                            closeness, vectorized + more))
    return shapes


# --------------------------------------------------------------------------- 05_cpc

def scores_einsum(z, c, W):
    return torch.einsum('jd,de,ie->ij', z, W, c)


def scores_transposed(z, c, W):
    return (z @ W @ c.T).T


def scores_matmul(z, c, W):
    return torch.matmul(torch.matmul(W, c.unsqueeze(-1)).squeeze(-1), z.transpose(0, 1))


def scores_mm(z, c, W):
    return torch.mm(torch.mm(c, W.t()), z.t())


def scores_linear(z, c, W):
    return F.linear(F.linear(c, W), z)


def scores_loop_contexts_predicted(z, c, W):
    """The predictions whole-tensor, then one matrix-vector product per context: the fastest loop."""
    predictions = c @ W.T
    return torch.stack([z @ predictions[i] for i in range(len(c))])


def scores_loop_candidates(z, c, W):
    """A loop over the candidates (columns), stacked along dim 1."""
    predictions = c @ W.T
    return torch.stack([predictions @ z[j] for j in range(len(z))], dim=1)


def scores_pair_loop_matmul(z, c, W):
    """tests/test_grading_cpc.py WRONG_4 (and autograder/frontends/examples.py LOOPS)."""
    B = z.shape[0]
    return torch.stack([torch.stack([z[j] @ W @ c[i] for j in range(B)]) for i in range(B)])


def scores_pair_loop_predicted(z, c, W):
    """The predictions whole-tensor, then one dot product per pair."""
    predictions = c @ W.T
    return torch.stack([torch.stack([torch.dot(z[j], predictions[i]) for j in range(len(z))]) for i in range(len(c))])


def shapes_05(ref) -> list[Shape]:
    vectorized = [Way("reference ((c @ W.T) @ z.T)", VECTORIZED, ref.cpc_scores),
                  Way("einsum (a transposed result)", VECTORIZED, scores_einsum),
                  Way("(z @ W @ c.T).T (transposed)", VECTORIZED, scores_transposed),
                  Way("matmul, unsqueeze", VECTORIZED, scores_matmul),
                  Way("mm", VECTORIZED, scores_mm),
                  Way("F.linear twice", VECTORIZED, scores_linear)]
    loops = ([Way("loop over pairs, predictions first", LOOP, scores_pair_loop_predicted, 3),
              Way("loop over pairs (grader's)", LOOP, s05._scores_pair_loop, 3),
              Way("loop over pairs, z[j] @ W @ c[i]", LOOP, scores_pair_loop_matmul, 3)],
             [Way("loop over contexts, predictions first", LOOP, scores_loop_contexts_predicted),
              Way("loop over candidates, predictions first", LOOP, scores_loop_candidates),
              Way("loop over contexts (grader's)", LOOP, s05._scores_context_loop)])
    shapes = []
    for (b, d), loop, closeness, more in zip(s05.SCORES_SIZES, (s05._scores_pair_loop, s05._scores_context_loop),
                                             s05.SCORES_CLOSENESS, loops):
        shapes.append(Shape("cpc_scores", f"B={b} Dz=Dc={d}", list(s05._scores_case(b, d, d, 50)), ref.cpc_scores,
                            loop, closeness, vectorized + more))
    return shapes


# --------------------------------------------------------------------------- measuring

NOTEBOOKS = {"01_pretext_tasks": shapes_01, "02_generative_pretext": shapes_02, "03_simclr": shapes_03,
             "04_moco": shapes_04, "05_cpc": shapes_05}


def measure(shape: Shape, repeats: int) -> dict[str, float]:
    """The floors, in seconds, of the reference ("reference"), the grader's loop ("loop") and every way."""
    args = [_as_received(a) for a in shape.args]
    want = shape.reference(*args)
    compare = shape.compare or _close
    for way in shape.ways:
        if not compare(way.fn(*args), want):
            raise SystemExit(f"{shape.function}: the way '{way.name}' gives other values than the reference")

    def fresh(received=True):  # new inputs for every call, made right before it (untimed, so in the cache, as the
        copy = _as_received if received else _fresh  # channel's or the check's are): the student's / the grader's
        return lambda: [copy(a) for a in shape.args]

    def timed(fn, ordered=True):
        return lambda inputs: (_contiguous if ordered else (lambda v: v))(fn(*inputs))

    loop_args = shape.loop_args
    fns = {"reference": timed(shape.reference), "loop": timed(shape.loop, ordered=False)}
    fns.update({f"way {i}": timed(way.fn) for i, way in enumerate(shape.ways)})
    setups = {name: fresh(received=name.startswith("way")) for name in fns}
    if loop_args is not None:
        setups["loop"] = lambda: loop_args
    repeats_of = {f"way {i}": min(repeats, way.repeats) for i, way in enumerate(shape.ways) if way.repeats}
    samples = time_samples(fns, repeats, warmup=1, repeats_of=repeats_of, setups=setups)
    floors = {name: min(t) for name, t in samples.items()}
    floors["loop"] *= shape.loop_scale
    return floors


def report(shape: Shape, floors: dict[str, float]) -> tuple[float, float]:
    """Print the shape's table; the worst margin of its vectorized ways and of its loops (and slow ways)."""
    tr, tl = floors["reference"], floors["loop"]
    span = math.log(tl / tr) if tl > tr else float("nan")
    limit = speed_limit(tr, tl, shape.closeness)
    print(f"\n{shape.function}  [{shape.label}]  reference {tr * 1e3:.3g} ms, grader's loop {tl * 1e3:.3g} ms "
          f"({tl / tr:.0f}x), closeness {shape.closeness} -> limit {limit * 1e3:.3g} ms")
    print(f"  {'way':<52} {'kind':<10} {'ms':>9} {'position':>9} {'margin':>8}")
    worst = {VECTORIZED: math.inf, LOOP: math.inf}
    for i, way in enumerate(shape.ways):
        t = floors[f"way {i}"]
        position = math.log(t / tr) / span if t > 0 else -math.inf
        margin = limit / t if way.kind == VECTORIZED else t / limit
        side = VECTORIZED if way.kind == VECTORIZED else LOOP
        worst[side] = min(worst[side], margin)
        flag = "" if margin >= TARGET else ("  < 2x" if margin >= 1 else "  WRONG SIDE")
        print(f"  {way.name:<52} {way.kind:<10} {t * 1e3:>9.3g} {position:>9.2f} {margin:>7.1f}x{flag}")
    slowest = max(floors[f"way {i}"] for i, w in enumerate(shape.ways) if w.kind == VECTORIZED)
    fastest = min(floors[f"way {i}"] for i, w in enumerate(shape.ways) if w.kind != VECTORIZED)
    centre = math.log(math.sqrt(slowest * fastest) / tr) / span
    print(f"  slowest vectorized to fastest loop: {fastest / slowest:.1f}x; the closeness halfway between them "
          f"(log scale): {centre:.2f}")
    return worst[VECTORIZED], worst[LOOP]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/speed_ratios.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument("--only", nargs="*", default=None, help="only these functions")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 15
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(machine_line())
        print(f"one thread, floors of {repeats} interleaved calls (double loops fewer); limit = reference * "
              f"(loop / reference) ** closeness; margin: limit / time (vectorized), time / limit (loops)")
        summary: dict[str, list[tuple[float, float]]] = {}
        for notebook, make in NOTEBOOKS.items():
            ref = load_reference(notebook)
            for shape in make(ref):
                if args.only and shape.function not in args.only:
                    continue
                summary.setdefault(shape.function, []).append(report(shape, measure(shape, repeats)))
    finally:
        torch.set_num_threads(threads)
    print(f"\n{'function':<24} {'worst vectorized':>17} {'worst loop':>11}  target {TARGET:g}x both ways")
    for function, worst in summary.items():
        vec, loop = min(w[0] for w in worst), min(w[1] for w in worst)
        ok = vec >= TARGET and loop >= TARGET
        print(f"{function:<24} {vec:>16.1f}x {loop:>10.1f}x  {'pass' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
