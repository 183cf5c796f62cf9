"""Hidden suite of 01_pretext_tasks: every graded function against the reference.

Run by the grader (`autograder.grading.grade`: the local ``grade`` command
and Gradescope) and inside nbgrader's kernel
(`autograder.frontends.nbgrader_hook`); to grade one notebook by hand::

    python -m autograder grade path/to/01_pretext_tasks.ipynb

The four tensor functions copy pixels: their outputs are compared exactly.
`hamming_permutations` is checked by its properties (greedy max-min selection
has ties, broken differently by correct implementations, and a random start):
rows that are distinct permutations, and the minimum pairwise Hamming
distance that the greedy selection reaches, computed with the reference.
"""
from __future__ import annotations

import itertools
import math
import time

import torch
from autograder.grading.checks import (Failure, Hint, describe, describe_call, expect_tensor, expect_tuple,
                                       expect_unchanged, expect_value_error, expect_vectorized, graded, shape_hint,
                                       speed_limit)
from autograder.isolation.specs import generator_spec
from autograder.isolation.student_process import StudentError
from autograder.suites.common import randn, want

NB = "01_pretext_tasks"
EXACT = dict(rtol=0.0, atol=0.0)  # the outputs are copies of input pixels


def _expect(got, expected, *, call, hints=(), inputs=(), shape_hints=()):
    """`expect_tensor`, exact; a wrong shape that a known mistake gives (``shape_hints``: variants returning a
    shape) is named too."""
    try:
        expect_tensor(got, expected, call=call, hints=hints, inputs=inputs, **EXACT)
    except Failure as e:
        message = shape_hint(got, expected, shape_hints, inputs)
        if message:
            raise Failure(f"{e}\nHint: {message}") from None
        raise


def _expect_labels(labels, expected, *, call, hints=(), inputs=(), shape_hints=()):
    """Class labels: a long tensor first, then exactly the expected values."""
    if type(labels) is torch.Tensor and labels.dtype != torch.long and labels.shape == expected.shape:
        raise Failure(f"the labels of {call} have dtype {labels.dtype}; expected torch.int64 (torch.long): they are "
                      "cross-entropy's targets, class indices (torch.arange(...) is long; do not make them float)")
    _expect(labels, expected, call=f"the labels of {call}", hints=hints, inputs=inputs, shape_hints=shape_hints)


# --------------------------------------------------------------------------- rotate_batch

def _rotations(images, *, turn=1, per_image=False, dims=(2, 3)):
    """What the reference computes, in float64, with switches for mistakes."""
    x = images.double()
    rotated = torch.stack([torch.rot90(x, turn * k, dims=dims) for k in range(4)])  # [4, N, C, H, W]
    return (rotated.transpose(0, 1) if per_image else rotated).flatten(0, 1)


ROTATE_DIMS = ("images is a batch [N, C, H, W]: rotate the last two dims, torch.rot90(images, k, dims=(2, 3)); "
               "dims=(1, 2) is for one image [C, H, W]")
ROTATE_HINTS = [
    Hint("torch.rot90(x, k, dims=(2, 3)) turns counter-clockwise (from the first of dims towards the second); you "
         "turned clockwise (k = -k, dims=(3, 2), or a flip and transpose the other way round)",
         lambda x: _rotations(x, turn=-1)),
    Hint("rotated[k*N + i] is image i turned k times: the whole batch turned by 0 degrees, then the whole batch by "
         "90, ... (torch.cat over k); you put the four rotations of each image next to each other (rotated[4i + k])",
         lambda x: _rotations(x, per_image=True)),
    Hint("two mistakes: the turns are counter-clockwise (torch.rot90(x, k, dims=(2, 3))), and rotated[k*N + i] "
         "holds the whole batch turned by 0 degrees first, then by 90, ... (not the four turns of each image together)",
         lambda x: _rotations(x, turn=-1, per_image=True)),
    Hint(ROTATE_DIMS, lambda x: _rotations(x, dims=(1, 2))),
]
LABEL_ORDER = Hint("labels[k*N + i] = k: N zeros, then N ones, N twos and N threes, in the order of rotated "
                   "(torch.arange(4).repeat_interleave(N)); you interleaved them (0, 1, 2, 3, 0, 1, ...: .repeat(N))",
                   lambda x: torch.arange(4).repeat(len(x)))


def _check_rotate(student, ref, cases):
    for n, c, h, dtype, seed, contiguous in cases:
        images = randn((n, c, h, h), seed, dtype)
        if not contiguous:  # the same shape, transposed in memory
            images = randn((n, c, h, h), seed, dtype).transpose(2, 3)
        call = describe_call("rotate_batch", [images], {})
        try:
            result = student.call("rotate_batch", images, return_args=True)
        except StudentError as e:  # rot90 over (C, H) gives [N, H, C, W] for odd k: torch.cat refuses
            if c != h and e.exc_type == "RuntimeError" and "size" in e.message.lower():
                raise Failure(f"{call} raised {e.message}\nHint: {ROTATE_DIMS}") from None
            raise
        rotated, labels = expect_tuple(result, call, ("rotated", "labels"))
        expected_rotated, expected_labels = want(ref.rotate_batch, images)
        _expect(rotated, expected_rotated, call=f"the rotated images of {call}", hints=ROTATE_HINTS, inputs=[images])
        _expect_labels(labels, expected_labels, call=call, hints=[LABEL_ORDER], inputs=[images])
        expect_unchanged([images], result.args_after, call=call)


@graded(NB, "rotate_batch", "values")
def test_rotate_batch_values(student, ref):
    # (N, C, H, dtype, seed, contiguous); C != H first (rotating dims (1, 2) then fails), then C == H
    _check_rotate(student, ref, [(3, 2, 5, torch.float32, 10, True), (4, 3, 3, torch.float64, 11, True),
                                 (2, 3, 6, torch.float32, 12, True), (5, 1, 7, torch.float64, 13, True),
                                 (4, 3, 8, torch.float32, 14, False), (2, 4, 4, torch.float64, 15, True)])


@graded(NB, "rotate_batch", "edge_cases")
def test_rotate_batch_edge_cases(student, ref):
    # one image; one channel; 1x1 images (every rotation the image itself); 2x2 images
    _check_rotate(student, ref, [(1, 3, 4, torch.float32, 20, True), (3, 1, 5, torch.float64, 21, True),
                                 (2, 2, 1, torch.float32, 22, True), (1, 1, 2, torch.float64, 23, True),
                                 (3, 2, 2, torch.float32, 24, True)])


@graded(NB, "rotate_batch", "errors")
def test_rotate_batch_errors(student, ref):
    for i, (n, c, h, w) in enumerate(((1, 3, 4, 5), (2, 1, 6, 3), (3, 2, 2, 1))):
        images = randn((n, c, h, w), 30 + i)
        expect_value_error(student, "rotate_batch", [images], {}, describe_call("rotate_batch", [images], {}),
                            f"the images are {h}x{w}, not square: rotating by 90 degrees would change their shape",
                            "check H == W before rotating")


# --------------------------------------------------------------------------- context_pairs

POSITIONS = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]


def _context(images, patch_size, gap, *, positions=POSITIONS, stride=None, origin=None, by_position=False,
             labels_of=None):
    """What the reference computes, in float64, with switches for mistakes: ``positions`` the grid positions
    of the neighbours, ``stride`` the step between patches, ``origin(H, W, S)`` the grid's top-left corner,
    ``by_position`` the outputs ordered j*N + i, ``labels_of(j, r, c)`` each neighbour's label."""
    x = images.double()
    N, C, H, W = x.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    top, left = origin(H, W, S) if origin else ((H - S) // 2, (W - S) // 2)
    step = P + gap if stride is None else stride
    if top < 0 or left < 0 or top + 2 * step + P > H or left + 2 * step + P > W:
        raise IndexError("outside the image")  # a variant that does not apply

    def patch(r, c):
        return x[:, :, top + r * step:top + r * step + P, left + c * step:left + c * step + P]

    neighbors = torch.stack([patch(r, c) for r, c in positions], dim=1)           # [N, 8, C, P, P]
    centers = patch(1, 1)[:, None].expand_as(neighbors)
    labels = torch.tensor([labels_of(j, r, c) if labels_of else j for j, (r, c) in enumerate(positions)])
    labels = labels.expand(N, -1)
    if by_position:
        centers, neighbors, labels = centers.transpose(0, 1), neighbors.transpose(0, 1), labels.transpose(0, 1)
    return centers.flatten(0, 1), neighbors.flatten(0, 1), labels.flatten()


GRID = "patch (r, c) starts at (top + r*(P+gap), left + c*(P+gap)), with S = 3P + 2*gap"
ORDER = ("centers[8i + j], neighbors[8i + j] and labels[8i + j]: the 8 pairs of image 0 first, then those of "
         "image 1, ... (image-major); you ordered them position by position (index j*N + i)")
PLACEMENT = [
    ("neighbour positions are row-major: labels 0, 1, 2 are the top row from left to right, (0,0) (0,1) (0,2), "
     f"then (1,0) (1,2), then the bottom row; {GRID}, r the row: you swapped rows and columns",
     dict(positions=[(c, r) for r, c in POSITIONS])),
    (ORDER, dict(by_position=True)),
    (f"leave gap pixels between neighbouring patches: {GRID} (you ignored the gap)", "no gap"),
    (f"leave gap pixels between neighbouring patches: {GRID} (you stepped by P, not P + gap)", "stride P"),
    ("centre the grid on the image: top = (H - S) // 2 and left = (W - S) // 2 (you started it at (0, 0))",
     dict(origin=lambda H, W, S: (0, 0))),
    ("round down: top = (H - S) // 2 and left = (W - S) // 2 (floor division; you rounded up)",
     dict(origin=lambda H, W, S: ((H - S + 1) // 2, (W - S + 1) // 2))),
    ("top comes from the height and left from the width: top = (H - S) // 2 with H = images.shape[2] (rows), "
     "left = (W - S) // 2 with W = images.shape[3] (columns); you swapped them",
     dict(origin=lambda H, W, S: ((W - S) // 2, (H - S) // 2))),
    ("the grid spans S = 3P + 2*gap pixels: top = (H - S) // 2 and left = (W - S) // 2 (you centred 3P pixels)",
     "extent 3P"),
]


def _placement_variant(form):
    def variant(images, P, gap):
        if form == "no gap":
            return _context(images, P, 0)
        if form == "stride P":
            return _context(images, P, gap, stride=P)
        if form == "extent 3P":
            return _context(images, P, gap, origin=lambda H, W, S: ((H - 3 * P) // 2, (W - 3 * P) // 2))
        return _context(images, P, gap, **form)
    return variant


def _context_hints(index, centre_message):
    """Hints for element ``index`` of the outputs (0 centers, 1 neighbors)."""
    hints = [Hint(centre_message if (index == 0 and message == ORDER) else message,
                  lambda x, P, g, v=_placement_variant(form): v(x, P, g)[index]) for message, form in PLACEMENT]
    return hints


CENTER_ORDER = ("centers[8i + j] is image i's centre patch for every j = 0..7: repeat each centre 8 times in a row "
                "(repeat_interleave(8, dim=0), or expand [N, 8, C, P, P] and flatten), not the whole batch 8 times "
                "(.repeat)")
NEIGHBOR_HINTS = _context_hints(1, ORDER)
CENTER_HINTS = _context_hints(0, CENTER_ORDER)
SKIP_CENTRE = ("there are 8 neighbours: skip the centre position (1, 1), whose patch is in centers; for N images the "
               "outputs have 8N rows and the labels are 0..7")
NEIGHBOR_SHAPES = [Hint(SKIP_CENTRE, lambda x, P, g: (9 * len(x), x.shape[1], P, P))]
CENTER_SHAPES = [Hint(SKIP_CENTRE, lambda x, P, g: (9 * len(x), x.shape[1], P, P)),
                 Hint("centers holds image i's centre patch in each of the rows 8i .. 8i + 7 (one per neighbour): "
                      "repeat it 8 times (repeat_interleave(8, dim=0)), shape [8N, C, P, P]",
                      lambda x, P, g: (len(x), x.shape[1], P, P))]
CONTEXT_LABEL_HINTS = [
    Hint("label j is the neighbour's index among the 8 positions, 0..7, not its index 3r + c in the 3x3 grid "
         "(which skips 4 and reaches 8)", lambda x, P, g: _context(x, P, g, labels_of=lambda j, r, c: 3 * r + c)[2]),
    Hint(ORDER, lambda x, P, g: _context(x, P, g, by_position=True)[2]),
]
CONTEXT_LABEL_SHAPES = [Hint(SKIP_CENTRE, lambda x, P, g: (9 * len(x),))]


def _check_context(student, ref, cases):
    for n, c, h, w, p, gap, dtype, seed in cases:
        images = randn((n, c, h, w), seed, dtype)
        args = [images, p, gap]
        call = describe_call("context_pairs", [images], {"patch_size": p, "gap": gap})
        result = student.call("context_pairs", images, p, gap, return_args=True)
        centers, neighbors, labels = expect_tuple(result, call, ("centers", "neighbors", "labels"))
        expected = want(ref.context_pairs, *args)
        _expect(neighbors, expected[1], call=f"the neighbours of {call}", hints=NEIGHBOR_HINTS, inputs=args,
                shape_hints=NEIGHBOR_SHAPES)
        _expect(centers, expected[0], call=f"the centre patches of {call}", hints=CENTER_HINTS, inputs=args,
                shape_hints=CENTER_SHAPES)
        _expect_labels(labels, expected[2], call=call, hints=CONTEXT_LABEL_HINTS, inputs=args,
                       shape_hints=CONTEXT_LABEL_SHAPES)
        expect_unchanged([images], result.args_after, call=call)


@graded(NB, "context_pairs", "values")
def test_context_pairs_values(student, ref):
    # (N, C, H, W, P, gap, dtype, seed): non-square images and odd leftovers H - S, W - S (floor division)
    _check_context(student, ref, [(2, 3, 12, 12, 3, 1, torch.float32, 40),   # S = 11: top = left = 0
                                  (3, 2, 20, 17, 4, 2, torch.float64, 41),   # S = 16: top 2, left 0
                                  (2, 1, 15, 22, 3, 1, torch.float32, 42),   # S = 11: top 2, left 5
                                  (4, 3, 32, 32, 8, 2, torch.float32, 43),   # the notebook's: top = left = 2
                                  (2, 2, 19, 14, 2, 3, torch.float64, 44),   # S = 12: top 3, left 1
                                  (3, 3, 27, 30, 5, 4, torch.float32, 45)])  # S = 23: top 2, left 3


@graded(NB, "context_pairs", "edge_cases")
def test_context_pairs_edge_cases(student, ref):
    # the grid exactly as large as the image; 1x1 patches; no gap; one image; one channel
    _check_context(student, ref, [(1, 3, 11, 11, 3, 1, torch.float32, 50), (2, 1, 3, 3, 1, 0, torch.float64, 51),
                                  (1, 2, 5, 9, 1, 1, torch.float32, 52), (1, 1, 10, 7, 2, 0, torch.float64, 53)])


@graded(NB, "context_pairs", "errors")
def test_context_pairs_errors(student, ref):
    # the grid taller than the image only, wider only, both
    for i, (h, w, p, gap) in enumerate(((10, 12, 3, 1), (12, 10, 3, 1), (8, 8, 3, 0), (6, 20, 2, 1))):
        images = randn((2, 1, h, w), 60 + i)
        s = 3 * p + 2 * gap
        call = describe_call("context_pairs", [images], {"patch_size": p, "gap": gap})
        too = " and ".join(what for what, size in (("H", h), ("W", w)) if s > size)
        expect_value_error(student, "context_pairs", [images, p, gap], {}, call,
                            f"the grid spans S = 3*{p} + 2*{gap} = {s} pixels, more than {too} of the {h}x{w} "
                            "images", "raise it when S > H or S > W, before cutting patches")


def _context_loop(images, patch_size, gap):
    """context_pairs with a Python loop over the images (whole-tensor inside)."""
    P, S = patch_size, 3 * patch_size + 2 * gap
    top, left = (images.shape[2] - S) // 2, (images.shape[3] - S) // 2
    centers, neighbors, labels = [], [], []
    for x in images:
        patches = [x[:, top + r * (P + gap):top + r * (P + gap) + P, left + c * (P + gap):left + c * (P + gap) + P]
                   for r, c in POSITIONS]
        centre = x[:, top + P + gap:top + 2 * P + gap, left + P + gap:left + 2 * P + gap]
        neighbors.append(torch.stack(patches))
        centers.append(centre.expand(8, -1, -1, -1))
        labels.append(torch.arange(8, device=images.device))
    return torch.cat(centers), torch.cat(neighbors), torch.cat(labels)


CONTEXT_ADVICE = ("cut each of the 9 grid positions from the whole batch at once (images[:, :, rows, columns]), "
                  "then stack, index and flatten: no Python loop over the images")


@graded(NB, "context_pairs", "vectorized")
def test_context_pairs_vectorized(student, ref):
    # CONTEXT_SIZE: see the figures in the report of the suite's kit test (tests/test_grading_pretext.py)
    n, c, h, p, gap = CONTEXT_SIZE
    images = randn((n, c, h, h), 70)
    return expect_vectorized(student, "context_pairs", [images, p, gap], reference=ref.context_pairs,
                             loop=_context_loop, closeness=CONTEXT_CLOSENESS, advice=CONTEXT_ADVICE)


CONTEXT_SIZE = (1024, 1, 16, 4, 1)  # N, C, H = W, P, gap
CONTEXT_CLOSENESS = 0.45
# The sizes and closeness of the three speed checks here are set by benchmarks/speed_ratios.py (results and the
# margins in benchmarks/README.md): each limit sits halfway (log scale) between the slowest whole-tensor way
# students write and the fastest Python loop over the rows, at least 2x from both, quiet and beside two busy
# processes. context_pairs: the slowest whole-tensor way (index tensors) ~1.2 ms, the fastest loop over the
# images (unfold inside) ~20 ms, the grader's loop ~45 ms, on one thread of a 2-core CPU.


# --------------------------------------------------------------------------- hamming_permutations

def _candidates(num_tiles):
    """All permutations of 0..T-1, int8 [T!, T]."""
    return torch.tensor(list(itertools.permutations(range(num_tiles))), dtype=torch.int8).view(-1, num_tiles)


def _closest_pair(perms):
    """``(distance, i, j)`` of the two rows of ``perms`` nearest in Hamming distance."""
    distances = (perms[:, None] != perms[None]).sum(-1)
    distances.fill_diagonal_(perms.shape[1] + 1)
    flat = int(distances.argmin())
    i, j = divmod(flat, len(perms))
    return int(distances[i, j]), i, j


_REACHED: dict[tuple[int, int], int] = {}


def _reached(ref, num_permutations, num_tiles):
    """The minimum pairwise Hamming distance that greedy max-min selection reaches (with the reference: the
    same whatever the start and the tie-breaks, on the sizes checked here)."""
    key = (num_permutations, num_tiles)
    if key not in _REACHED:
        perms = ref.hamming_permutations(num_permutations, num_tiles, torch.Generator().manual_seed(0))
        _REACHED[key] = _closest_pair(perms)[0]
    return _REACHED[key]


def _greedy_by(perms, score):
    """Whether each row of ``perms`` (after the first) maximises ``score`` (``"min"`` or ``"sum"``: the minimum
    or the total Hamming distance to the rows before it) over all permutations: the selection the rows follow."""
    candidates = _candidates(perms.shape[1])
    p = perms.to(torch.int8)
    acc = (candidates != p[0]).sum(1)
    taken = (candidates == p[0]).all(1)  # the rows chosen so far (a choice among the others)
    for k in range(1, len(p)):
        to_chosen = (p[k] != p[:k]).sum(1)
        value = to_chosen.min() if score == "min" else to_chosen.sum()
        if value < acc.masked_fill(taken, -1).max():
            return False
        new = (candidates != p[k]).sum(1)
        acc = torch.minimum(acc, new) if score == "min" else acc + new
        taken |= (candidates == p[k]).all(1)
    return True


MAX_MIN = ("at each step add the permutation whose minimum Hamming distance to the permutations chosen so far is "
           "the largest (the distance to its closest chosen one: greedy max-min)")


def _expect_hamming(perms, num_permutations, num_tiles, expected, call):
    """The properties of a set of permutations from greedy max-min selection."""
    P, T = num_permutations, num_tiles
    if type(perms) is not torch.Tensor:
        raise Failure(f"{call} returned {describe(perms)}; expected a LongTensor [{P}, {T}]")
    if tuple(perms.shape) != (P, T):
        raise Failure(f"{call} returned shape {list(perms.shape)}; expected [{P}, {T}] (num_permutations rows of "
                      "num_tiles positions)")
    if perms.dtype != torch.long:
        raise Failure(f"{call} returned dtype {perms.dtype}; expected torch.int64 (torch.long): the permutations "
                      "index tiles (convert with .long())")
    bad = (perms.sort(dim=1).values != torch.arange(T)).any(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise Failure(f"row {i} of {call} is {perms[i].tolist()}: not a permutation of 0..{T - 1}")
    if P < 2:
        return
    distance, i, j = _closest_pair(perms)
    if distance == 0:
        raise Failure(f"rows {i} and {j} of {call} are the same permutation {perms[i].tolist()}; the rows must be "
                      "distinct\nHint: a new permutation must be far from every permutation chosen so far (its "
                      "minimum distance to the whole chosen set, which is 0 for one already chosen), not only "
                      "from the last one")
    # a greedy max-min sequence from its own start passes whatever minimum it reaches: a few random tie-breaks
    # end a point below the reference's
    if distance < expected and not _greedy_by(perms, "min"):
        message = (f"the closest two of the {P} permutations of {call} (rows {i} and {j}) differ in only {distance} "
                   f"positions; greedy max-min selection keeps every pair at least {expected} apart")
        if _greedy_by(perms, "sum"):
            hint = ("you maximised the average (or total) distance to the chosen set, as in Algorithm 1 of the "
                    "paper: a candidate far from most chosen permutations can still be near one of them. "
                    f"Maximise the minimum distance instead: {MAX_MIN}")
        else:
            hint = f"{MAX_MIN}; yours look chosen another way (at random, or the first one far enough)"
        raise Failure(f"{message}\nHint: {hint}")


def _check_hamming(student, ref, cases):
    for P, T, seed in cases:
        call = describe_call("hamming_permutations", [P], {"num_tiles": T, "generator": generator_spec(seed)})
        result = student.call("hamming_permutations", P, T, generator_spec(seed))
        _expect_hamming(result.value, P, T, _reached(ref, P, T) if P > 1 else 0, call)


# (P, T): sizes where every start and tie-break of greedy max-min reaches the same minimum distance (checked with
# random starts and the first, the last and a random one of the ties; not so at e.g. (30, 8), (10, 7), (100, 6),
# where the first or the last of the ties can end one apart from the reference), which a random choice and the
# average distance (Algorithm 1) fall short of (the average reaches it at (5, 5); both at (10, 8) only in some
# draws). Nine tiles only at 10 permutations: a Python loop over the 9! candidates takes about 3 s there and
# would time out at 30 (the speed check is for it).
HAMMING_VALUES = [(10, 9), (10, 8), (40, 7), (20, 6), (5, 5)]  # 8, 7, 5, 4, 5
HAMMING_EDGES = [(6, 3), (24, 4), (4, 4), (1, 5), (1, 1), (2, 2), (2, 6)]  # 2, 2, 4, -, -, 2, 6


@graded(NB, "hamming_permutations", "values")
def test_hamming_permutations_values(student, ref):
    _check_hamming(student, ref, [(P, T, 80 + i) for i, (P, T) in enumerate(HAMMING_VALUES)])


@graded(NB, "hamming_permutations", "edge_cases")
def test_hamming_permutations_edge_cases(student, ref):
    # all 3! or 4! permutations; one permutation; one tile; two tiles (both orders); two permutations (a
    # derangement of the first)
    _check_hamming(student, ref, [(P, T, 90 + i) for i, (P, T) in enumerate(HAMMING_EDGES)])


@graded(NB, "hamming_permutations", "errors")
def test_hamming_permutations_errors(student, ref):
    # the last with the default num_tiles = 9 (9! = 362,880)
    for P, T in ((7, 3), (25, 4), (121, 5), (math.factorial(9) + 1, None)):
        kwargs = {} if T is None else {"num_tiles": T}
        tiles = 9 if T is None else T
        call = describe_call("hamming_permutations", [P], kwargs)
        expect_value_error(student, "hamming_permutations", [P], kwargs, call,
                            f"{tiles} tiles have only {tiles}! = {math.factorial(tiles)} permutations",
                            "check num_permutations <= math.factorial(num_tiles) first")


def _set_of(perms):
    return frozenset(tuple(row) for row in perms.tolist()) if type(perms) is torch.Tensor else None


@graded(NB, "hamming_permutations", "randomness")
def test_hamming_permutations_randomness(student, ref):
    P, T = 5, 7
    kwargs = {"num_tiles": T, "generator": "torch.Generator"}
    call = describe_call("hamming_permutations", [P], {"num_tiles": T})

    def draw(seed):  # the values are the values check's: here only whether they are random
        value = student.call("hamming_permutations", P, T, generator_spec(seed)).value
        if type(value) is not torch.Tensor:
            raise Failure(f"{describe_call('hamming_permutations', [P], kwargs)} returned {describe(value)}; "
                          f"expected a LongTensor [{P}, {T}]")
        return value

    first = draw(500)
    if not torch.equal(draw(500), first):
        raise Failure(f"{call} with two generators seeded alike gave different permutations: draw the random start "
                      "with the generator (torch.randint(..., generator=generator) or torch.randperm(num_tiles, "
                      "generator=generator)), and any other random choice with it too")
    seeded = {_set_of(first), *(_set_of(draw(501 + i)) for i in range(5))}
    if len(seeded) < 4:
        raise Failure(f"{call} with generators of 6 different seeds gave only {len(seeded)} different sets: start "
                      "from a random permutation drawn with the generator (not the identity, nor the first "
                      "candidate)")
    unseeded = {_set_of(student.call("hamming_permutations", P, T, seed=600 if i == 0 else None).value)
                for i in range(6)}
    if len(unseeded) < 4:
        raise Failure(f"6 calls of hamming_permutations({P}, num_tiles={T}) without a generator gave only "
                      f"{len(unseeded)} different sets: with generator=None, draw the start from torch's global "
                      "generator (torch.randint(..., generator=None)), not from a fixed seed")


def _candidate_pass(candidates, new, min_distance):
    """One step of the selection with a Python loop over the candidates: the cost the check is for."""
    for i, c in enumerate(candidates):
        d = sum(a != b for a, b in zip(c, new))
        if d < min_distance[i]:
            min_distance[i] = d
    return max(range(len(candidates)), key=min_distance.__getitem__)


def _median(values):
    return sorted(values)[len(values) // 2]


HAMMING_ADVICE = ("keep every candidate's minimum distance to the chosen set in one tensor [T!] and update it with "
                  "one whole-tensor comparison per chosen permutation, (candidates != new).sum(1), then argmax: no "
                  "Python loop over the T! candidates")


@graded(NB, "hamming_permutations", "vectorized")
def test_hamming_permutations_vectorized(student, ref):
    # As `expect_vectorized` (a ratio measured in one run), with the values checked by their properties (correct
    # implementations choose different sets). The loop's time is one pass over the T! candidates in Python, timed
    # here, times the P - 1 steps. Figures: see tests/test_grading_pretext.py.
    P, T = HAMMING_SIZE
    rounds, repeats = 2, 2
    expected = _reached(ref, P, T)
    call = describe_call("hamming_permutations", [P], {"num_tiles": T, "generator": "torch.Generator"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_s, t_r, t_l = [], [], []
        for r in range(rounds):
            seeds = [700 + 10 * r + k for k in range(repeats + 1)]  # the first: a warm-up
            with student.paused():
                own_ref = []
                for seed in seeds:  # the first a warm-up; then the floor, as for the student's calls
                    start = time.perf_counter()
                    ref.hamming_permutations(P, T, torch.Generator().manual_seed(seed))
                    own_ref.append(time.perf_counter() - start)
                t_r.append(min(own_ref[1:]))
                candidates = list(itertools.permutations(range(T)))
                min_distance = [T + 1] * len(candidates)
                start = time.perf_counter()
                _candidate_pass(candidates, candidates[0], min_distance)
                t_l.append((time.perf_counter() - start) * (P - 1))
            own = []
            for k, seed in enumerate(seeds):
                try:
                    result, seconds = student.timed("hamming_permutations", P, T, generator_spec(seed))
                except StudentError as e:
                    if e.kind == "timeout":
                        raise Failure(f"{call} did not finish in time ({e.message}): {HAMMING_ADVICE}") from None
                    raise
                _expect_hamming(result.value, P, T, expected, f"{call} (timed)")
                if k:
                    own.append(seconds)
            t_s.append(min(own))
    finally:
        torch.set_num_threads(threads)
    ts, tr, tl = (_median(t) for t in (t_s, t_r, t_l))
    limit = speed_limit(tr, tl, HAMMING_CLOSENESS)
    figures = (f"yours {ts * 1e3:.3g} ms, reference {tr * 1e3:.3g} ms, a loop over the {math.factorial(T)} "
               f"candidates {tl * 1e3:.3g} ms, limit {limit * 1e3:.3g} ms")
    if ts > limit:
        raise Failure(f"hamming_permutations is too slow ({figures}): {HAMMING_ADVICE}")
    return figures


HAMMING_SIZE = (50, 8)  # P, T
HAMMING_CLOSENESS = 0.6  # the slowest whole-tensor way ~105 ms (the last of the ties), a loop over the candidates
# ~1.8 s, the distances recomputed at every step (WRONG_10, meant to fail) ~2.1 s


# --------------------------------------------------------------------------- tile_images

def _tiles(images, grid, *, column_major=False, scrambled=None, transposed=False):
    """What the reference computes, in float64, with switches for mistakes."""
    x = images.double()
    N, C, H, W = x.shape
    h, w = H // grid, W // grid
    if scrambled == "reshape":
        return x.reshape(N, grid * grid, C, h, w)
    if scrambled == "per channel":
        return x.reshape(N, C, grid * grid, h, w).transpose(1, 2)
    t = x.reshape(N, C, grid, h, grid, w)
    t = t.permute(0, 4, 2, 1, 3, 5) if column_major else t.permute(0, 2, 4, 1, 3, 5)
    t = t.reshape(N, grid * grid, C, h, w)
    return t.transpose(-2, -1) if transposed else t


SCRAMBLED = ("a reshape alone does not cut tiles: a tile's rows are not next to each other in memory, so its pixels "
             "get scrambled. Reshape to [N, C, grid, h, grid, w], permute to [N, grid, grid, C, h, w], then reshape "
             "to [N, grid*grid, C, h, w] (or use unfold)")
TILE_HINTS = [
    Hint("tiles are in row-major order: tile r * grid + c is row r, column c (the top row first, from left to "
         "right); you numbered them column by column (c * grid + r)", lambda x, g: _tiles(x, g, column_major=True)),
    Hint(SCRAMBLED, lambda x, g: _tiles(x, g, scrambled="reshape")),
    Hint(SCRAMBLED, lambda x, g: _tiles(x, g, scrambled="per channel")),
    Hint("each tile is transposed: keep its rows before its columns, [C, h, w] (permute(0, 2, 4, 1, 3, 5) of "
         "[N, C, grid, h, grid, w])", lambda x, g: _tiles(x, g, transposed=True)),
]
TILE_SHAPES = [Hint("cut a grid x grid grid with the grid argument, not a fixed 3 x 3",
                    lambda x, g: (len(x), 9, x.shape[1], x.shape[2] // 3, x.shape[3] // 3))]


def _check_tiles(student, ref, cases):
    for n, c, h, w, grid, dtype, seed in cases:
        images = randn((n, c, h, w), seed, dtype)
        call = describe_call("tile_images", [images], {"grid": grid})
        result = student.call("tile_images", images, grid, return_args=True)
        _expect(result.value, want(ref.tile_images, images, grid), call=call, hints=TILE_HINTS, inputs=[images, grid],
                shape_hints=TILE_SHAPES if grid != 3 else ())
        expect_unchanged([images], result.args_after, call=call)


@graded(NB, "tile_images", "values")
def test_tile_images_values(student, ref):
    _check_tiles(student, ref, [(2, 3, 6, 6, 3, torch.float32, 100), (3, 2, 12, 6, 2, torch.float64, 101),
                                (2, 1, 12, 8, 4, torch.float32, 102), (4, 3, 9, 15, 3, torch.float64, 103),
                                (2, 3, 30, 30, 3, torch.float32, 104), (3, 2, 16, 8, 2, torch.float32, 105)])


@graded(NB, "tile_images", "edge_cases")
def test_tile_images_edge_cases(student, ref):
    # grid = 1 (one tile, the image); 1x1 tiles; tiles of one row; one image, one channel
    _check_tiles(student, ref, [(2, 3, 5, 7, 1, torch.float32, 110), (2, 2, 3, 3, 3, torch.float64, 111),
                                (1, 3, 4, 4, 4, torch.float32, 112), (1, 1, 2, 4, 2, torch.float64, 113)])


@graded(NB, "tile_images", "errors")
def test_tile_images_errors(student, ref):
    # H only, W only, both not divisible by grid
    for i, (h, w, grid) in enumerate(((7, 6, 3), (6, 8, 3), (5, 5, 2), (8, 10, 4))):
        images = randn((2, 3, h, w), 120 + i)
        call = describe_call("tile_images", [images], {"grid": grid})
        which = " and ".join(f"{name} = {size}" for name, size in (("H", h), ("W", w)) if size % grid)
        expect_value_error(student, "tile_images", [images, grid], {}, call,
                            f"{which} cannot be cut into {grid} equal parts", "check both H % grid and W % grid")


# --------------------------------------------------------------------------- shuffle_tiles

def _jigsaw_case(n, t, c, h, w, p, seed, dtype=torch.float32):
    """Seeded ``tiles [n, t, c, h, w]``, ``permutations [p, t]`` and ``perm_index [n]`` (not all alike)."""
    tiles = randn((n, t, c, h, w), seed, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    permutations = torch.stack([torch.randperm(t, generator=g) for _ in range(p)])
    index = torch.randint(p, (n,), generator=g)
    if p > 1 and n > 1 and bool((index == index[0]).all()):
        index[-1] = (index[0] + 1) % p
    return tiles, permutations, index


def _shuffled(tiles, permutations, index, *, inverse=False, order_of=None):
    x = tiles.double()
    order = permutations[index] if order_of is None else order_of(permutations, index, len(x))
    rows = torch.arange(len(x))[:, None]
    if inverse:
        out = torch.empty_like(x)
        out[rows, order] = x
        return out
    return x[rows, order]


ONE_FOR_ALL = ("each image has its own permutation, permutations[perm_index[n]]; you used one permutation for the "
               "whole batch")
SHUFFLE_HINTS = [
    Hint("out[n, j] = tiles[n, p[j]] with p = permutations[perm_index[n]]: position j shows tile p[j] (a gather: "
         "tiles[n, p]); you put tile j at position p[j] (out[n, p] = tiles[n]: the inverse permutation)",
         lambda x, p, i: _shuffled(x, p, i, inverse=True)),
    Hint(ONE_FOR_ALL, lambda x, p, i: _shuffled(x, p, i, order_of=lambda p, i, n: p[i[0]].expand(n, -1))),
    Hint(ONE_FOR_ALL, lambda x, p, i: _shuffled(x, p, i, order_of=lambda p, i, n: p[0].expand(n, -1))),
    Hint("perm_index[n] says which row of permutations image n uses: permutations[perm_index[n]], not "
         "permutations[n]", lambda x, p, i: _shuffled(x, p, i, order_of=lambda p, i, n: p[:n])),
]


@graded(NB, "shuffle_tiles", "values")
def test_shuffle_tiles_values(student, ref):
    # (N, T, C, h, w, P, dtype)
    cases = [(4, 9, 3, 2, 2, 5, torch.float32), (6, 4, 1, 3, 3, 8, torch.float64), (3, 16, 2, 2, 1, 10, torch.float32),
             (5, 9, 3, 4, 4, 30, torch.float64), (8, 9, 1, 1, 1, 6, torch.float32)]
    for i, (n, t, c, h, w, p, dtype) in enumerate(cases):
        args = list(_jigsaw_case(n, t, c, h, w, p, 130 + 10 * i, dtype))
        call = describe_call("shuffle_tiles", args, {})
        result = student.call("shuffle_tiles", *args, return_args=True)
        _expect(result.value, want(ref.shuffle_tiles, *args), call=call, hints=SHUFFLE_HINTS, inputs=args)
        expect_unchanged(args, result.args_after, call=call)


def _shuffle_loop(tiles, permutations, perm_index):
    """shuffle_tiles with a Python loop over the images."""
    return torch.stack([tiles[n, permutations[perm_index[n]]] for n in range(len(tiles))])


SHUFFLE_ADVICE = ("index all images at once: order = permutations[perm_index] ([N, T]), then "
                  "tiles[torch.arange(N)[:, None], order] or torch.gather: no Python loop over the images")


@graded(NB, "shuffle_tiles", "vectorized")
def test_shuffle_tiles_vectorized(student, ref):
    n, t, c, h, w, p = SHUFFLE_SIZE
    args = list(_jigsaw_case(n, t, c, h, w, p, 200))
    return expect_vectorized(student, "shuffle_tiles", args, reference=ref.shuffle_tiles, loop=_shuffle_loop,
                             closeness=SHUFFLE_CLOSENESS, advice=SHUFFLE_ADVICE)


SHUFFLE_SIZE = (2048, 9, 1, 2, 2, 30)  # N, T, C, h, w, P
SHUFFLE_CLOSENESS = 0.5  # the slowest whole-tensor way ~0.5 ms (take_along_dim, a loop over the 9 positions), the
# fastest loop over the images (index_select) ~10 ms
