"""Hidden suite of 02_generative_pretext: every graded function against the reference.

Run by the grader (`autograder.grading.grade`: the local ``grade`` command
and Gradescope) and inside nbgrader's kernel
(`autograder.frontends.nbgrader_hook`); to grade one notebook by hand::

    python -m autograder grade path/to/02_generative_pretext.ipynb

`center_mask` copies pixels and `encode_ab` returns indices: both are
compared exactly (for `encode_ab`, a pixel whose two nearest centres are
closer than float rounding can tell apart may take either; an exact tie must
take the lowest index). The losses and decoders are compared with the float64
reference at float tolerance.
"""
from __future__ import annotations

import math

import torch
from autograder.grading.checks import (DETACHED, Failure, Hint, describe, describe_call, expect_tensor, expect_tuple,
                                       expect_unchanged, expect_value_error, expect_vectorized, grad_call, graded,
                                       shape_hint)
from autograder.suites.common import randn, tol, want

NB = "02_generative_pretext"
EXACT = dict(rtol=0.0, atol=0.0)  # copies of input pixels, masks, indices


def _expect_grad(grad, expected, name, call, dtype):
    """A gradient that must reach ``name`` and match the reference's."""
    if grad is None:
        raise Failure(f"no gradient reaches {name} in {call}: {DETACHED}")
    expect_tensor(grad, expected.to(dtype), call=f"the gradient w.r.t. {name} of {call}", **tol(dtype))


def _expect_scalar(value, call, what):
    """A loss is a 0-dim tensor."""
    if type(value) is torch.Tensor and value.dim() != 0:
        raise Failure(f"{call} returned shape {list(value.shape)}; expected a 0-dim tensor ({what})")


def _expect_shape(got, expected, call, shape_hints, inputs):
    """A wrong shape that a known mistake gives (``shape_hints``: variants returning a shape) is named."""
    message = shape_hint(got, expected, shape_hints, inputs)
    if message:
        raise Failure(f"{call} returned shape {list(got.shape)}; expected {list(expected.shape)}\nHint: {message}")


# --------------------------------------------------------------------------- center_mask

def _centred(images, m, fill=0.0, *, start=None, channels=None):
    """What the reference computes, in float64, with switches for mistakes: ``start(H, W, m)`` the square's
    top-left corner, ``channels`` how many channels are filled (None: all)."""
    x = images.double().clone()
    N, C, H, W = x.shape
    top, left = start(H, W, m) if start else ((H - m) // 2, (W - m) // 2)
    if top < 0 or left < 0 or top + m > H or left + m > W:
        raise IndexError("outside the image")  # a variant that does not apply
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool)
    mask[:, :, top:top + m, left:left + m] = True
    x[:, :channels, top:top + m, left:left + m] = fill
    return x, mask


START = "the square starts at row (H - m) // 2 and column (W - m) // 2"
ROUNDED_UP = (f"{START} (floor division); you rounded up, (H - m + 1) // 2 (or H // 2 - m // 2, which rounds up "
              "when H is even and m odd)", lambda H, W, m: ((H - m + 1) // 2, (W - m + 1) // 2))
SWAPPED = ("the row comes from the height and the column from the width: top = (H - m) // 2 with H = "
           "images.shape[2], left = (W - m) // 2 with W = images.shape[3]; you swapped them",
           lambda H, W, m: ((W - m) // 2, (H - m) // 2))
CORNER = (f"centre the square: {START}; you started it at (0, 0)", lambda H, W, m: (0, 0))
PLACES = [ROUNDED_UP, SWAPPED, CORNER]

MASKED_HINTS = [Hint(message, lambda x, m, f, s=start: _centred(x, m, f, start=s)[0]) for message, start in PLACES] + [
    Hint("set every channel of the masked pixels to fill (images[:, :, rows, cols], or masked_fill with the "
         "[N, 1, H, W] mask, which broadcasts over the channels); you filled channel 0 only",
         lambda x, m, f: _centred(x, m, f, channels=1)[0]),
    Hint("the masked pixels are set to the fill argument, not always to 0", lambda x, m, f: _centred(x, m, 0.0)[0]),
]
MASK_HINTS = [Hint(message, lambda x, m, f, s=start: _centred(x, m, f, start=s)[1]) for message, start in PLACES]
MASK_SHAPES = [
    Hint("the mask is one channel, [N, 1, H, W]: the same square for every channel (it broadcasts over them)",
         lambda x, m, f: tuple(x.shape)),
    Hint("the mask is [N, 1, H, W]: one per image, with a channel dim of 1 (torch.zeros(N, 1, H, W, ...))",
         lambda x, m, f: tuple(x.shape[2:])),
    Hint("the mask is [N, 1, H, W]: one per image, with a channel dim of 1 (torch.zeros(N, 1, H, W, ...))",
         lambda x, m, f: (1, 1, *x.shape[2:])),
    Hint("the mask is [N, 1, H, W]: keep the channel dim of 1 (torch.zeros(N, 1, H, W, ...))",
         lambda x, m, f: (x.shape[0], *x.shape[2:])),
]
IN_PLACE = ("you filled images itself (in place): the caller's images must stay as they were, they are the "
            "target of the reconstruction. Fill a copy: images.masked_fill(mask, fill) (not masked_fill_), "
            "torch.where, or images.clone() first")


def _check_center(student, ref, cases):
    for n, c, h, w, m, fill, dtype, seed in cases:
        images = randn((n, c, h, w), seed, dtype)
        kwargs = {} if fill is None else {"fill": fill}
        fill = 0.0 if fill is None else fill
        inputs = [images, m, fill]
        call = describe_call("center_mask", [images, m], kwargs)
        result = student.call("center_mask", images, m, **kwargs, return_args=True)
        masked, mask = expect_tuple(result, call, ("masked", "mask"))
        expected_masked, expected_mask = want(ref.center_mask, images, m, fill)
        if type(mask) is torch.Tensor and mask.dtype != torch.bool and mask.shape == expected_mask.shape:
            raise Failure(f"the mask of {call} has dtype {mask.dtype}; expected torch.bool (True on the square): "
                          "create it with torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device), or "
                          "compare (== 1) a float one")
        _expect_shape(mask, expected_mask, f"the mask of {call}", MASK_SHAPES, inputs)
        expect_tensor(mask, expected_mask, call=f"the mask of {call}", hints=MASK_HINTS, inputs=inputs, **EXACT)
        expect_tensor(masked, expected_masked, call=f"the masked images of {call}", hints=MASKED_HINTS,
                      inputs=inputs, **EXACT)
        after = (result.args_after or {}).get(0)
        if type(after) is torch.Tensor and not torch.equal(after, images) and after.shape == images.shape \
                and torch.equal(after, expected_masked):
            raise Failure(f"{call} changed its argument images: {IN_PLACE}")
        expect_unchanged([images], result.args_after, call=call)


@graded(NB, "center_mask", "values")
def test_center_mask_values(student, ref):
    # (N, C, H, W, m, fill, dtype, seed): odd and even leftovers H - m, W - m (floor division), non-square images,
    # fill left to its default (None) or given
    _check_center(student, ref, [(2, 3, 8, 8, 4, None, torch.float32, 10),     # top = left = 2
                                 (3, 3, 9, 9, 4, -1.0, torch.float64, 11),     # 5 // 2 = 2 (rounded up: 3)
                                 (2, 2, 10, 7, 3, 0.5, torch.float32, 12),     # top 3, left 2
                                 (4, 3, 7, 12, 2, 1.0, torch.float64, 13),     # top 2, left 5
                                 (2, 4, 6, 9, 3, -0.5, torch.float32, 14),     # top 1, left 3
                                 (3, 3, 32, 32, 16, None, torch.float32, 15),  # the notebook's: top = left = 8
                                 (2, 3, 11, 8, 5, 2.0, torch.float64, 16)])    # top 3, left 1


@graded(NB, "center_mask", "edge_cases")
def test_center_mask_edge_cases(student, ref):
    # one image; the whole image masked (m = H = W); one pixel (m = 1); one channel; a 1x1 image
    _check_center(student, ref, [(1, 3, 6, 6, 2, -1.0, torch.float32, 20), (2, 3, 5, 5, 5, 0.5, torch.float64, 21),
                                 (2, 2, 7, 6, 1, -2.0, torch.float32, 22), (3, 1, 8, 5, 3, None, torch.float64, 23),
                                 (1, 1, 1, 1, 1, 3.0, torch.float32, 24)])


# --------------------------------------------------------------------------- masked_mse

def _mse(pred, target, mask, *, over="mask", per_value=True):
    """What the reference computes, in float64, with switches for mistakes."""
    errors = (pred.double() - target.double()) ** 2
    m = mask.double()
    if over == "image":
        return (errors * m).mean()
    if over == "sum":
        return (errors * m).sum()
    if over == "inverse":
        m = 1 - m
    count = m.sum() * (pred.shape[1] if per_value else 1)
    return (errors * m).sum() / count


MSE_HINTS = [
    Hint("average over the masked values only: sum(mask * (pred - target)**2) / (C * mask.sum()); "
         "(mask * (pred - target)**2).mean() divides by every value of the image, the unmasked zeros included",
         lambda p, t, m: _mse(p, t, m, over="image")),
    Hint("divide by the number of masked values, C * mask.sum(): mask is [N, 1, H, W], so mask.sum() counts the "
         "masked pixels, and each has C channels (or expand the mask to pred's shape first)",
         lambda p, t, m: _mse(p, t, m, per_value=False)),
    Hint("the loss is on the masked pixels (mask True: the hole the network fills in), not on the visible ones",
         lambda p, t, m: _mse(p, t, m, over="inverse")),
    Hint("take the mean over the masked values, not their sum", lambda p, t, m: _mse(p, t, m, over="sum")),
]


def _mask_case(n, h, w, kind, seed, dtype):
    """A mask [n, 1, h, w]: the centred square (``kind`` "centre") or random pixels ("random"), never empty;
    bool, or 0/1 floats of ``dtype`` (``kind`` ending in "float")."""
    if kind.startswith("centre"):
        mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
        mask[:, :, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = True
    else:
        g = torch.Generator().manual_seed(seed)
        mask = torch.rand((n, 1, h, w), generator=g) < 0.3
        mask[0, 0, 0, 0] = True
    return mask.to(dtype) if kind.endswith("float") else mask


def _mse_case(n, c, h, w, kind, seed, dtype=torch.float32):
    return randn((n, c, h, w), seed, dtype), randn((n, c, h, w), seed + 1, dtype), _mask_case(n, h, w, kind, seed,
                                                                                                dtype)


@graded(NB, "masked_mse", "values")
def test_masked_mse_values(student, ref):
    cases = [(2, 3, 8, 8, "centre", torch.float32), (3, 3, 6, 5, "random", torch.float64),
             (2, 2, 7, 9, "random float", torch.float32), (4, 3, 8, 6, "centre float", torch.float64),
             (2, 5, 4, 4, "random", torch.float32), (1, 3, 5, 7, "random float", torch.float64)]
    for i, (n, c, h, w, kind, dtype) in enumerate(cases):
        args = list(_mse_case(n, c, h, w, kind, 30 + 10 * i, dtype))
        call = describe_call("masked_mse", args, {})
        result = student.call("masked_mse", *args, return_args=True)
        _expect_scalar(result.value, call, "the mean over the masked values")
        expect_tensor(result.value, want(ref.masked_mse, *args), call=call, hints=MSE_HINTS, inputs=args, **tol(dtype))
        expect_unchanged(args, result.args_after, call=call)


@graded(NB, "masked_mse", "errors")
def test_masked_mse_errors(student, ref):
    # an all-False bool mask and a float mask of zeros
    for i, (n, c, h, w, dtype) in enumerate(((2, 3, 5, 5, torch.bool), (1, 2, 4, 6, torch.float32))):
        pred, target = randn((n, c, h, w), 90 + i), randn((n, c, h, w), 95 + i)
        mask = torch.zeros(n, 1, h, w, dtype=dtype)
        call = describe_call("masked_mse", [pred, target, mask], {}) + " with an empty mask"
        expect_value_error(student, "masked_mse", [pred, target, mask], {}, call,
                            "the mask is empty: there is no masked value to average over, and 0 / 0 gives nan",
                            "check mask.sum() == 0 (or not mask.any()) first and raise it")


@graded(NB, "masked_mse", "gradients")
def test_masked_mse_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for j, (n, c, h, w, kind) in enumerate(((2, 3, 6, 6, "random"), (3, 2, 5, 4, "centre float"))):
            args = list(_mse_case(n, c, h, w, kind, 100 + j, dtype))
            call = describe_call("masked_mse", args, {})
            result = grad_call(student, "masked_mse", args, call, grad_of=[0])
            pred = args[0].double().requires_grad_()
            mask = args[2].double() if args[2].is_floating_point() else args[2]
            expected = torch.autograd.grad(ref.masked_mse(pred, args[1].double(), mask), pred)[0]
            _expect_grad(result.grads[0], expected, "pred", call, dtype)


# --------------------------------------------------------------------------- encode_ab

def _grid(side, spacing=10.0):
    """``side**2`` centres on a square grid of ``spacing``, centred on (0, 0), row-major (as Zhang et al.'s bins)."""
    r = (torch.arange(side, dtype=torch.float64) - (side - 1) // 2) * spacing
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)


def _distances(ab, centers, *, p=2):
    """Squared Euclidean (or L1, ``p`` 1) distances of every pixel to every centre, float64 [N, H, W, Q]."""
    diff = ab.double().permute(0, 2, 3, 1).unsqueeze(-2) - centers.double()
    return diff.abs().sum(-1) if p == 1 else (diff ** 2).sum(-1)


def _codes(ab, centers, *, p=2, last=False, scrambled=False, farthest=False):
    """What the reference computes, with switches for mistakes."""
    if scrambled:  # a reshape to [N, H, W, 2] instead of a permute
        N, _, H, W = ab.shape
        ab = ab.reshape(N, H, W, 2).permute(0, 3, 1, 2)
    d = _distances(ab, centers, p=p)
    if farthest:
        return d.argmax(-1)
    return d.shape[-1] - 1 - d.flip(-1).argmin(-1) if last else d.argmin(-1)


CODE_HINTS = [
    Hint("ties go to the lowest index (argmin returns the first of equal minima); you returned the last of the "
         "tied centres: in a loop over the centres, take a centre only when it is strictly closer (<, not <=), or "
         "do not flip the distances", lambda ab, c: _codes(ab, c, last=True)),
    Hint("the distance is Euclidean, sqrt((a - a_q)**2 + (b - b_q)**2) (or its square: the same nearest "
         "centre), not the sum of absolute differences (L1)", lambda ab, c: _codes(ab, c, p=1)),
    Hint("ab is [N, 2, H, W], channels first: move them last with ab.permute(0, 2, 3, 1) before comparing with "
         "centers [Q, 2]; a reshape or view to [N, H, W, 2] mixes the a and b values of different pixels",
         lambda ab, c: _codes(ab, c, scrambled=True)),
    Hint("the nearest centre is the argmin of the distances, not the argmax", lambda ab, c: _codes(ab, c,
                                                                                              farthest=True)),
]
CODE_SHAPES = [
    Hint("one index per pixel: [N, H, W] (argmin over the centres' dim), not the centre's coordinates",
         lambda ab, c: tuple(ab.shape)),
    Hint("one index per pixel: [N, H, W] (argmin over the centres' dim), not the centre's coordinates",
         lambda ab, c: (ab.shape[0], *ab.shape[2:], 2)),
    Hint("one index per pixel, shaped as the image: [N, H, W] (view the flat indices as (N, H, W))",
         lambda ab, c: (ab.shape[0], ab.shape[2] * ab.shape[3])),
    Hint("one index per pixel, shaped as the image: [N, H, W] (view the flat indices as (N, H, W))",
         lambda ab, c: (ab.shape[0] * ab.shape[2] * ab.shape[3],)),
]


def _expect_codes(got, ab, centers, expected, call):
    """Exactly the reference's indices; at a pixel whose nearest centres are farther apart than a tie but
    closer than rounding can tell (float64 distances within 1e-5 of the scale), either of them."""
    if type(got) is not torch.Tensor:
        raise Failure(f"{call} returned {describe(got)}; expected a LongTensor of shape {list(expected.shape)}")
    _expect_shape(got, expected, call, CODE_SHAPES, [ab, centers])
    if got.shape != expected.shape:
        raise Failure(f"{call} returned shape {list(got.shape)}; expected {list(expected.shape)}")
    if got.dtype != torch.long:
        raise Failure(f"{call} returned dtype {got.dtype}; expected torch.int64 (torch.long): bin indices, as "
                      "argmin gives them (do not convert them to float)")
    d = _distances(ab, centers)
    q = d.shape[-1]
    valid = (got >= 0) & (got < q)
    if not valid.all():
        bad = got[~valid][0].item()
        raise Failure(f"{call} returned the index {bad}; the indices of {q} centres are 0..{q - 1}")
    d_got, d_want = d.gather(-1, got[..., None])[..., 0], d.gather(-1, expected[..., None])[..., 0]
    scale = ab.double().pow(2).sum(1).amax() + centers.double().pow(2).sum(1).amax()
    rounding = (d_got > d_want) & (d_got - d_want <= 1e-5 * scale)
    wrong = (got != expected) & ~rounding
    if not wrong.any():
        return
    n, h, w = (int(i) for i in wrong.nonzero()[0])
    g, e = int(got[n, h, w]), int(expected[n, h, w])
    a, b = (ab[n, k, h, w].item() for k in range(2))
    tie = " (the same distance: a tie, which goes to the lowest index)" if d_got[n, h, w] == d_want[n, h, w] else ""
    message = (f"{call} is wrong at {int(wrong.sum())} of {wrong.numel()} pixels, e.g. pixel [{n}, {h}, {w}] with "
               f"ab = ({a:.6g}, {b:.6g}): got centre {g} at distance {d_got[n, h, w].sqrt().item():.6g}, expected "
               f"centre {e} at distance {d_want[n, h, w].sqrt().item():.6g}{tie}")
    for hint in CODE_HINTS:
        if torch.equal(hint.variant(ab, centers), got):
            message += f"\nHint: {hint.message}"
            break
    raise Failure(message)


def _codes_case(n, h, w, q, seed, dtype=torch.float32, offset=4.0):
    """``ab [n, 2, h, w]`` and ``centers [q, 2]``: q points of a grid of 10 in a random order, each pixel within
    ``offset`` of a random centre on both axes. With ``offset`` < 5 that centre is the nearest by a margin no
    rounding can flip (squared distances at most 2 * offset**2 to it, at least (10 - offset)**2 to any other);
    ``offset`` None puts every pixel on an integer point (0.5 steps would do too) within 10 of its centre, where
    ties between 2 or 4 centres are frequent and exact in any dtype."""
    g = torch.Generator().manual_seed(seed)
    grid = _grid(math.ceil(math.sqrt(q)))
    centers = grid[torch.randperm(len(grid), generator=g)[:q]]
    own = centers[torch.randint(q, (n, h, w), generator=g)]                     # [n, h, w, 2]
    if offset is None:
        ab = own + torch.randint(-10, 11, (n, h, w, 2), generator=g).double()
    else:
        ab = own + (torch.rand((n, h, w, 2), generator=g, dtype=torch.float64) * 2 - 1) * offset
    return ab.permute(0, 3, 1, 2).contiguous().to(dtype), centers.to(dtype)


def _check_codes(student, ref, ab, centers):
    call = describe_call("encode_ab", [ab, centers], {})
    result = student.call("encode_ab", ab, centers, return_args=True)
    _expect_codes(result.value, ab, centers, want(ref.encode_ab, ab, centers), call)
    expect_unchanged([ab, centers], result.args_after, call=call)


@graded(NB, "encode_ab", "values")
def test_encode_ab_values(student, ref):
    # random colours and random centres (the L1 and the reshape mistakes show there)
    for i, (n, h, w, q, dtype) in enumerate(((2, 5, 7, 16, torch.float32), (3, 4, 4, 25, torch.float64),
                                             (1, 6, 3, 9, torch.float32))):
        _check_codes(student, ref, randn((n, 2, h, w), 200 + i, dtype, 40.0), randn((q, 2), 210 + i, dtype, 30.0))
    # Zhang et al.'s bins: a grid of 10 in row-major order, random colours over it
    for i, dtype in enumerate((torch.float32, torch.float64)):
        _check_codes(student, ref, randn((2, 2, 6, 5), 220 + i, dtype, 25.0), _grid(11).to(dtype))
    # exact ties: integer colours between grid centres in a random order (so that the lowest index is not the
    # first centre along an axis), midway between 2 or 4 of them; and on the ordered grid
    for i, dtype in enumerate((torch.float32, torch.float64)):
        _check_codes(student, ref, *_codes_case(2, 6, 6, 36, 230 + i, dtype, offset=None))
        ab = torch.tensor([[[5.0, -5.0, 5.0, 0.0, 15.0], [0.0, 5.0, -5.0, 5.0, 25.0]]], dtype=dtype)[..., None]
        _check_codes(student, ref, ab.transpose(2, 3).contiguous(), _grid(5).to(dtype))  # [1, 2, 1, 5]
    # colours near their centres (the margins of the speed check)
    _check_codes(student, ref, *_codes_case(3, 4, 5, 20, 240, torch.float64))


def _codes_image_loop(ab, centers):
    """encode_ab with a Python loop over the images (whole-tensor inside)."""
    return torch.stack([((x.permute(1, 2, 0).unsqueeze(-2) - centers) ** 2).sum(-1).argmin(-1) for x in ab])


def _codes_pixel_loop(ab, centers):
    """encode_ab with a Python loop over the pixel positions (the whole batch at once inside)."""
    N, _, H, W = ab.shape
    out = torch.empty(N, H, W, dtype=torch.long, device=ab.device)
    for i in range(H):
        for j in range(W):
            out[:, i, j] = ((ab[:, :, i, j].unsqueeze(1) - centers) ** 2).sum(-1).argmin(-1)
    return out


def _fresh_codes(args, seed):
    """New inputs of the shapes of ``args``, each pixel near its centre (`_codes_case`): whole-tensor formulas
    that round differently (torch.cdist, |x|^2 - 2 x.c + |c|^2) give the same indices."""
    ab, centers = args
    n, _, h, w = ab.shape
    return list(_codes_case(n, h, w, len(centers), seed))


CODES_ADVICE = ("compute the distances of all pixels to all centres at once: ab.permute(0, 2, 3, 1) is "
                "[N, H, W, 2], broadcast against centers [Q, 2] to [N, H, W, Q] (or torch.cdist), then argmin over "
                "the last dim: no Python loop over the images or the pixels")


@graded(NB, "encode_ab", "vectorized")
def test_encode_ab_vectorized(student, ref):
    # Two shapes, one per loop to catch (one thread, a 2-core CPU; benchmarks/speed_ratios.py): 2048 one-pixel
    # images against a loop over the images, one 32x32 image against a loop over its pixel positions; a loop over
    # every pixel of the batch (autograder/frontends/examples.py LOOPS) is caught at both. Q = 4 centres, so that
    # whole-tensor code with a slow reduction passes: .norm(dim=-1) over the size-2 last dim of [N, H, W, Q, 2]
    # costs ~0.2 us per (pixel, centre) on inputs as the channel delivers them (standard strides), 1.2 to 1.6 ms
    # here (at Q = 16 it was 6.6 ms, within 3x of the loops), while the fastest loops take ~20 ms and torch.cdist
    # and the reference's sum of squares 0.1 to 0.6 ms. Each limit sits halfway (log scale) between the slowest
    # whole-tensor way and the fastest loop, 3x or more from both.
    figures = []
    for (n, h, w, q), loop, closeness in zip(CODES_SIZES, (_codes_image_loop, _codes_pixel_loop), CODES_CLOSENESS):
        ab, centers = _codes_case(n, h, w, q, 250)
        figures.append(expect_vectorized(student, "encode_ab", [ab, centers], reference=ref.encode_ab, loop=loop,
                                         closeness=closeness, fresh=_fresh_codes, advice=CODES_ADVICE))
    return "; ".join(figures)


CODES_SIZES = ((2048, 1, 1, 4), (1, 32, 32, 4))  # N, H, W, Q
CODES_CLOSENESS = (0.65, 0.65)


# --------------------------------------------------------------------------- rebalance_weights

def _weights(counts, lam=0.5, *, rescale="p", swapped=False, normalised=True, unseen=None):
    """What the reference computes, in float64, with switches for mistakes: ``rescale`` how the weights are
    scaled at the end ("p": sum(p * w) == 1; "mean", "sum", "counts", None), ``swapped`` lam on the other side,
    ``normalised`` p = counts / counts.sum() (False: p = counts), ``unseen`` the weight of the bins never seen
    before the rescale (None: the formula's)."""
    counts = counts.double()
    Q = counts.numel()
    p = counts / counts.sum() if normalised else counts
    w = 1.0 / (lam * p + (1 - lam) / Q) if swapped else 1.0 / ((1 - lam) * p + lam / Q)
    if unseen is not None:
        w = torch.where(counts > 0, w, torch.full_like(w, unseen))
    if rescale == "p":
        return w / (counts / counts.sum() * w).sum()
    if rescale == "mean":
        return w / w.mean()
    if rescale == "sum":
        return w / w.sum()
    if rescale == "counts":
        return w / (counts * w).sum()
    return w


WEIGHT_HINTS = [
    Hint("rescale the weights at the end, w / (p * w).sum(), so that sum(p * w) == 1: the average weight of a "
         "pixel is 1 and the loss keeps its scale", lambda c, lam: _weights(c, lam, rescale=None)),
    Hint("rescale so that sum(p * w) == 1 (w / (p * w).sum()): the average over the pixels, weighted by how "
         "often each bin occurs, not the plain mean of the Q weights", lambda c, lam: _weights(c, lam, rescale="mean")),
    Hint("rescale so that sum(p * w) == 1 (w / (p * w).sum()), not so that the weights sum to 1",
         lambda c, lam: _weights(c, lam, rescale="sum")),
    Hint("rescale with the probabilities p = counts / counts.sum(), not the counts: w / (p * w).sum()",
         lambda c, lam: _weights(c, lam, rescale="counts")),
    Hint("lam is the weight of the uniform distribution: w = 1 / ((1 - lam) * p + lam / Q); you mixed them the "
         "other way round (lam * p + (1 - lam) / Q)", lambda c, lam: _weights(c, lam, swapped=True)),
    Hint("mix the probabilities p = counts / counts.sum() with the uniform, not the raw counts",
         lambda c, lam: _weights(c, lam, normalised=False)),
    Hint("a bin never seen (count 0, p = 0) keeps the formula's weight, 1 / (lam / Q) before the rescale (the "
         "largest: the rarest colours weigh most); you set it to 0", lambda c, lam: _weights(c, lam, unseen=0.0)),
]


def _counts(q, seed, dtype, *, zeros=0, integers=False, total=None):
    """Long-tailed counts [q] (as the ab bins of natural images), ``zeros`` of them 0, rounded to integers if
    asked, scaled to ``total`` if given."""
    g = torch.Generator().manual_seed(seed)
    c = torch.exp(torch.randn(q, generator=g, dtype=torch.float64) * 1.5) * 50
    if total is not None:
        c = c / c.sum() * total
    if integers:
        c = c.round().clamp_min(1)
    if zeros:
        c[torch.randperm(q, generator=g)[:zeros]] = 0
    return c.to(dtype)


def _check_weights(student, ref, cases):
    for counts, lam in cases:
        kwargs = {} if lam is None else {"lam": lam}
        lam = 0.5 if lam is None else lam
        call = describe_call("rebalance_weights", [counts], kwargs)
        result = student.call("rebalance_weights", counts, **kwargs, return_args=True)
        try:
            expect_tensor(result.value, want(ref.rebalance_weights, counts, lam), call=call, hints=WEIGHT_HINTS,
                          inputs=[counts, lam], **tol(counts.dtype))
        except Failure as e:
            got = result.value
            if "\nHint: " not in str(e) and type(got) is torch.Tensor and got.shape == counts.shape:
                total = (counts.double() / counts.double().sum() * got.double()).sum().item()
                if abs(total - 1) > 1e-4:
                    raise Failure(f"{e}\n(your weights give sum(p * w) = {total:.6g}; the rescaled ones give "
                                  "1)") from None
            raise
        expect_unchanged([counts], result.args_after, call=call)


@graded(NB, "rebalance_weights", "values")
def test_rebalance_weights_values(student, ref):
    # lam 0.5 (the paper's, also by default), 0 (1/p: every bin counts as much), 1 (all weights 1), and
    # others, where mixing the other way round differs (at 0.5 it is the same); no zero counts here
    _check_weights(student, ref, [(_counts(10, 300, torch.float32), 0.5), (_counts(20, 301, torch.float64), None),
                                  (_counts(16, 302, torch.float32), 0.0), (_counts(12, 303, torch.float64), 1.0),
                                  (_counts(25, 304, torch.float32), 0.3), (_counts(8, 305, torch.float64), 0.8),
                                  (_counts(313, 306, torch.float32), 0.5), (_counts(6, 307, torch.float64), 0.0)])


@graded(NB, "rebalance_weights", "edge_cases")
def test_rebalance_weights_edge_cases(student, ref):
    # bins never seen (count 0: the largest weight, lam / Q in the denominator), integer counts as floats (a
    # total of millions in float32), all pixels in one bin, one bin (Q = 1: the weight is 1)
    one_bin = torch.zeros(5, dtype=torch.float64)
    one_bin[2] = 40
    _check_weights(student, ref, [(_counts(10, 310, torch.float32, zeros=3), 0.5),
                                  (_counts(12, 311, torch.float64, zeros=4), 0.2),
                                  (_counts(9, 312, torch.float32, integers=True), None),
                                  (_counts(30, 313, torch.float32, integers=True, zeros=5, total=5e6), 0.5),
                                  (one_bin, 0.5), (torch.tensor([42.0]), 0.5),
                                  (torch.tensor([7.0], dtype=torch.float64), 0.0)])


# --------------------------------------------------------------------------- colorization_loss

def _nll(logits, targets, *, dim=1):
    """-log_softmax over ``dim`` at each pixel's target, float64 [N, H, W]."""
    log_p = torch.log_softmax(logits.double(), dim=dim)
    return -log_p.gather(1, targets.unsqueeze(1))[:, 0]


def _loss(logits, targets, weights, *, by="target", reduce="pixels", dim=1):
    """What the reference computes, in float64, with switches for mistakes."""
    nll = _nll(logits, targets, dim=dim)
    w = weights.double()
    if by == "none":
        return nll.mean()
    pixel_w = w[targets] if by == "target" else w[logits.argmax(1)]
    if reduce == "weights":  # F.cross_entropy(..., weight=weights)
        return (pixel_w * nll).sum() / pixel_w.sum()
    return (pixel_w * nll).mean() if reduce == "pixels" else (pixel_w * nll).sum()


LOSS_HINTS = [
    Hint("F.cross_entropy(logits, targets, weight=weights) divides the weighted sum by the sum of the targets' "
         "weights, not by the number of pixels: take F.cross_entropy(logits, targets, reduction='none') ([N, H, "
         "W]), multiply by weights[targets] and take the .mean() over all N*H*W pixels",
         lambda x, t, w: _loss(x, t, w, reduce="weights")),
    Hint("weight each pixel's cross-entropy by weights[t], t its target bin: you left the weights out",
         lambda x, t, w: _loss(x, t, w, by="none")),
    Hint("each pixel is weighted by the weight of its target bin, weights[targets], not of the bin the logits "
         "predict (argmax)", lambda x, t, w: _loss(x, t, w, by="predicted")),
    Hint("take the mean over the N*H*W pixels, not the sum", lambda x, t, w: _loss(x, t, w, reduce="sum")),
    Hint("the bins are dim 1 of logits [N, Q, H, W]: log_softmax(logits, dim=1) (F.cross_entropy takes the "
         "class dim second)", lambda x, t, w: _loss(x, t, w, dim=-1)),
]


def _loss_case(n, q, h, w, seed, dtype=torch.float32):
    """``logits [n, q, h, w]``, ``targets [n, h, w]`` long, positive ``weights [q]`` (not averaging to 1)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(q, (n, h, w), generator=g)
    weights = torch.exp(torch.randn(q, generator=g, dtype=torch.float64) * 0.7) * 1.5
    return randn((n, q, h, w), seed, dtype, 2.0), targets, weights.to(dtype)


@graded(NB, "colorization_loss", "values")
def test_colorization_loss_values(student, ref):
    cases = [(2, 10, 4, 5, torch.float32), (3, 16, 3, 3, torch.float64), (2, 313, 2, 3, torch.float32),
             (4, 6, 5, 2, torch.float64), (1, 8, 6, 7, torch.float32), (2, 4, 3, 3, torch.float64)]
    for i, (n, q, h, w, dtype) in enumerate(cases):
        args = list(_loss_case(n, q, h, w, 400 + i, dtype))
        call = describe_call("colorization_loss", args, {})
        result = student.call("colorization_loss", *args, return_args=True)
        _expect_scalar(result.value, call, "the mean over the N*H*W pixels")
        expect_tensor(result.value, want(ref.colorization_loss, *args), call=call, hints=LOSS_HINTS, inputs=args,
                      **tol(dtype))
        expect_unchanged(args, result.args_after, call=call)


@graded(NB, "colorization_loss", "gradients")
def test_colorization_loss_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for j, (n, q, h, w) in enumerate(((2, 10, 3, 4), (3, 5, 2, 2))):
            args = list(_loss_case(n, q, h, w, 420 + j, dtype))
            call = describe_call("colorization_loss", args, {})
            result = grad_call(student, "colorization_loss", args, call, grad_of=[0])
            logits = args[0].double().requires_grad_()
            expected = torch.autograd.grad(ref.colorization_loss(logits, args[1], args[2].double()), logits)[0]
            _expect_grad(result.grads[0], expected, "logits", call, dtype)


# --------------------------------------------------------------------------- annealed_mean

def _annealed(logits, centers, temperature=0.38, *, dim=1, scale=None, mode=False):
    """What the reference computes, in float64, with switches for mistakes: ``dim`` of the softmax, ``scale``
    what the logits are multiplied by (default 1 / temperature), ``mode`` the centre of the argmax bin."""
    x, c = logits.double(), centers.double()
    if mode:
        return c[x.argmax(1)].permute(0, 3, 1, 2)
    probs = torch.softmax(x * (1 / temperature if scale is None else scale), dim=dim)
    return torch.einsum("nqhw,qc->nchw", probs, c)


MEAN_HINTS = [
    Hint("take the softmax over the Q bins, dim 1 of logits [N, Q, H, W]; you took it over the batch (dim 0)",
         lambda x, c, T: _annealed(x, c, T, dim=0)),
    Hint("take the softmax over the Q bins, dim 1 of logits [N, Q, H, W]; you took it over a spatial dim",
         lambda x, c, T: _annealed(x, c, T, dim=2)),
    Hint("take the softmax over the Q bins, dim 1 of logits [N, Q, H, W]; you took it over the last dim (the "
         "width)", lambda x, c, T: _annealed(x, c, T, dim=3)),
    Hint("divide the logits by the temperature, softmax(logits / T): a small T sharpens the distribution "
         "towards the mode; you multiplied", lambda x, c, T: _annealed(x, c, T, scale=T)),
    Hint("divide the logits by the temperature, softmax(logits / T): you left the temperature out",
         lambda x, c, T: _annealed(x, c, T, scale=1.0)),
    Hint("the annealed mean is the mean of the centres under softmax(logits / T), not the centre of the most "
         "likely bin (that is its limit as T goes to 0)", lambda x, c, T: _annealed(x, c, T, mode=True)),
]
MEAN_SHAPES = [Hint("the result is [N, 2, H, W], a and b in dim 1: einsum('nqhw,qc->nchw', probs, centers), or "
                    "permute the [N, H, W, 2] result", lambda x, c, T: (x.shape[0], *x.shape[2:], 2))]


def _mean_case(n, q, h, w, seed, dtype, *, scale=1.5, gap=None):
    """``logits [n, q, h, w]`` and ``centers [q, 2]`` (ab values); with ``gap``, each pixel's highest logit
    ``gap`` above the others."""
    logits = randn((n, q, h, w), seed, torch.float64, scale)
    if gap is not None:
        g = torch.Generator().manual_seed(seed + 1)
        top = torch.randint(q, (n, 1, h, w), generator=g)
        logits = logits.clamp(-2, 2).scatter(1, top, 2 + gap)
    return logits.to(dtype), randn((q, 2), seed + 2, dtype, 40.0)


def _check_annealed(student, ref, cases):
    for n, q, h, w, T, dtype, seed, form in cases:
        logits, centers = _mean_case(n, q, h, w, seed, dtype, **form)
        kwargs = {} if T is None else {"temperature": T}
        T = 0.38 if T is None else T
        inputs = [logits, centers, T]
        call = describe_call("annealed_mean", [logits, centers], kwargs)
        result = student.call("annealed_mean", logits, centers, **kwargs, return_args=True)
        expected = want(ref.annealed_mean, *inputs)
        _expect_shape(result.value, expected, call, MEAN_SHAPES, inputs)
        expect_tensor(result.value, expected, call=call, hints=MEAN_HINTS, inputs=inputs, **tol(dtype))
        expect_unchanged([logits, centers], result.args_after, call=call)


@graded(NB, "annealed_mean", "values")
def test_annealed_mean_values(student, ref):
    # (N, Q, H, W, T, dtype, seed, form): the paper's T = 0.38 (also by default), sharper and flatter ones
    _check_annealed(student, ref, [(2, 10, 4, 5, None, torch.float32, 500, {}),
                                   (3, 16, 3, 3, 0.38, torch.float64, 501, {}),
                                   (2, 8, 5, 4, 1.0, torch.float32, 502, {}),
                                   (2, 12, 3, 6, 0.1, torch.float64, 503, {}),
                                   (3, 6, 4, 4, 2.5, torch.float32, 504, {}),
                                   (2, 313, 2, 2, 0.38, torch.float32, 505, {}),
                                   (4, 5, 2, 3, 0.7, torch.float64, 506, {})])


@graded(NB, "annealed_mean", "edge_cases")
def test_annealed_mean_edge_cases(student, ref):
    # the temperature's limits: T = 1e-3 with the top logit 4 above the rest (the centre of the argmax bin, the
    # mode; logits / T reach thousands: exp overflows, softmax does not), T = 1 (the plain mean); one bin (Q = 1:
    # its centre everywhere); one image of one pixel
    _check_annealed(student, ref, [(2, 10, 3, 4, 1e-3, torch.float32, 510, {"gap": 4.0}),
                                   (2, 7, 2, 3, 1e-3, torch.float64, 511, {"gap": 4.0}),
                                   (2, 9, 3, 3, 1.0, torch.float64, 512, {}),
                                   (3, 1, 2, 4, 0.38, torch.float32, 513, {}),
                                   (1, 6, 1, 1, None, torch.float64, 514, {})])


# --------------------------------------------------------------------------- propagate_colors

def _propagated(ref_feats, tgt_feats, ref_colors, temperature=1.0, *, axis=-1, scale=None, swapped=False,
                unflatten="transpose", flatten="transpose"):
    """What the reference computes, in float64, with switches for mistakes: ``axis`` of the softmax of the
    [N, HW_tgt, HW_ref] scores, ``scale`` what the scores are multiplied by (default 1 / temperature),
    ``swapped`` the two frames' features exchanged, ``unflatten``/``flatten`` how the colours are reshaped
    ("transpose", or "reshape" without the transpose)."""
    r, t, c = ref_feats.double(), tgt_feats.double(), ref_colors.double()
    if swapped:
        r, t = t, r
    N, D, H, W = t.shape
    C = c.shape[1]
    scores = t.flatten(2).transpose(1, 2) @ r.flatten(2)                       # [N, HW_tgt, HW_ref]
    A = torch.softmax(scores * (1 / temperature if scale is None else scale), dim=axis)
    colors = c.flatten(2).transpose(1, 2) if flatten == "transpose" else c.reshape(N, H * W, C)
    out = A @ colors                                                           # [N, HW_tgt, C]
    return out.transpose(1, 2).reshape(N, C, H, W) if unflatten == "transpose" else out.reshape(N, C, H, W)


PROPAGATE_HINTS = [
    Hint("take the softmax over the reference positions j (the last dim of the [N, HW_tgt, HW_ref] scores): "
         "each target position's weights over the reference sum to 1; you took it over the target positions "
         "(dim=1)", lambda r, t, c, T: _propagated(r, t, c, T, axis=1)),
    Hint("divide the scores by the temperature, softmax(scores / T); you multiplied",
         lambda r, t, c, T: _propagated(r, t, c, T, scale=T)),
    Hint("divide the scores by the temperature, softmax(scores / T); you left the temperature out",
         lambda r, t, c, T: _propagated(r, t, c, T, scale=1.0)),
    Hint("A[n, i, j] compares target position i with reference position j: scores = tgt^T @ ref, [N, HW_tgt, "
         "HW_ref], the softmax over j, then A @ the reference's colours; you exchanged ref_feats and tgt_feats",
         lambda r, t, c, T: _propagated(r, t, c, T, swapped=True)),
    Hint("A @ colours is [N, HW, C]: transpose it to [N, C, HW] before reshaping to [N, C, H, W] (a reshape "
         "alone mixes the channels of different positions)", lambda r, t, c, T: _propagated(r, t, c, T,
                                                                                         unflatten="reshape")),
    Hint("flatten ref_colors [N, C, H, W] to [N, C, HW] and transpose it to [N, HW, C]: a reshape straight to "
         "[N, HW, C] mixes the channels of different positions", lambda r, t, c, T: _propagated(r, t, c, T,
                                                                                              flatten="reshape")),
]


def _propagate_case(n, d, c, h, w, seed, dtype=torch.float32):
    """``ref_feats, tgt_feats [n, d, h, w]`` scaled so that their dot products are of order 2 (attention
    neither uniform nor one-hot), ``ref_colors [n, c, h, w]``."""
    s = (4 / d) ** 0.25
    return randn((n, d, h, w), seed, dtype, s), randn((n, d, h, w), seed + 1, dtype, s), randn((n, c, h, w),
                                                                                               seed + 2, dtype)


def _check_propagate(student, ref, cases):
    for n, d, c, h, w, T, dtype, seed in cases:
        args = list(_propagate_case(n, d, c, h, w, seed, dtype))
        kwargs = {} if T is None else {"temperature": T}
        T = 1.0 if T is None else T
        call = describe_call("propagate_colors", args, kwargs)
        result = student.call("propagate_colors", *args, **kwargs, return_args=True)
        expect_tensor(result.value, want(ref.propagate_colors, *args, T), call=call, hints=PROPAGATE_HINTS,
                      inputs=[*args, T], **tol(dtype))
        expect_unchanged(args, result.args_after, call=call)


@graded(NB, "propagate_colors", "values")
def test_propagate_colors_values(student, ref):
    # (N, D, C, H, W, T, dtype, seed): any number of colour channels (1, 2, 3, 10) besides D, non-square frames,
    # the default T = 1 and others
    _check_propagate(student, ref, [(2, 8, 3, 4, 5, None, torch.float32, 600),
                                    (3, 4, 2, 3, 3, 0.5, torch.float64, 610),
                                    (2, 16, 10, 5, 3, 2.0, torch.float32, 620),
                                    (2, 6, 1, 4, 6, 0.7, torch.float64, 630),
                                    (4, 3, 3, 2, 5, 1.0, torch.float64, 640),
                                    (2, 5, 2, 6, 4, 0.3, torch.float32, 650)])


@graded(NB, "propagate_colors", "edge_cases")
def test_propagate_colors_edge_cases(student, ref):
    # one position (H = W = 1: its colour, whatever the features), one image, one colour channel, D = 1
    _check_propagate(student, ref, [(2, 4, 3, 1, 1, None, torch.float32, 660),
                                    (1, 5, 2, 3, 4, 0.5, torch.float64, 670),
                                    (3, 4, 1, 2, 3, None, torch.float32, 680),
                                    (2, 1, 2, 3, 3, 1.0, torch.float64, 690)])


@graded(NB, "propagate_colors", "gradients")
def test_propagate_colors_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for j, (n, d, c, h, w, T) in enumerate(((2, 6, 3, 3, 4, 1.0), (3, 4, 2, 2, 2, 0.5))):
            args = list(_propagate_case(n, d, c, h, w, 700 + 10 * j, dtype))
            # along a random direction: a plain sum would not see colours sent to the wrong positions
            direction = randn((n, c, h, w), 705 + 10 * j, dtype)
            kwargs = {"temperature": T}
            call = describe_call("propagate_colors", args, kwargs)
            result = grad_call(student, "propagate_colors", args, call, **kwargs, grad_of=[0, 1, 2],
                               grad_output=direction)
            inputs = [x.double().requires_grad_() for x in args]
            expected = torch.autograd.grad(ref.propagate_colors(*inputs, T), inputs, direction.double())
            for i, name in enumerate(("ref_feats", "tgt_feats", "ref_colors")):
                _expect_grad(result.grads[i], expected[i], name, call, dtype)


def _propagate_position_loop(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """propagate_colors with a Python loop over the target positions (the whole batch at once inside)."""
    N, D, H, W = tgt_feats.shape
    tgt, ref, colors = tgt_feats.flatten(2), ref_feats.flatten(2), ref_colors.flatten(2)
    out = []
    for i in range(H * W):
        a = torch.softmax((tgt[:, :, i:i + 1] * ref).sum(1) / temperature, dim=-1)  # [N, HW_ref]
        out.append((colors * a[:, None]).sum(-1))                                 # [N, C]
    return torch.stack(out, dim=-1).reshape(N, -1, H, W)


def _propagate_image_loop(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    """propagate_colors with a Python loop over the images (whole-tensor inside)."""
    out = []
    for r, t, c in zip(ref_feats, tgt_feats, ref_colors):
        a = torch.softmax(t.flatten(1).T @ r.flatten(1) / temperature, dim=-1)    # [HW_tgt, HW_ref]
        out.append((c.flatten(1) @ a.T).view_as(c))
    return torch.stack(out)


PROPAGATE_ADVICE = ("compute all the scores at once with one batched matrix product, tgt [N, HW, D] @ ref [N, D, "
                    "HW] -> [N, HW, HW] (or torch.einsum), softmax over the last dim, then @ the colours [N, HW, "
                    "C]: no Python loop over the images or the positions")


@graded(NB, "propagate_colors", "vectorized")
def test_propagate_colors_vectorized(student, ref):
    # Two shapes, one per loop to catch (one thread, a 2-core CPU; benchmarks/speed_ratios.py): one 16x16 frame
    # against a loop over its target positions (reference ~0.2 ms, the fastest loop ~5 ms), 512 2x2 frames against
    # a loop over the images (reference ~0.4 ms, the fastest loop ~10 ms). D = 4 and C = 3 keep a broadcast
    # [N, D, HW, HW] product (the slowest whole-tensor way, 0.3 to 0.6 ms) 15x or more under the fastest loop;
    # each limit sits halfway between them (log scale): 3x or more from both.
    figures = []
    for (n, d, c, h, w), loop, closeness in zip(PROPAGATE_SIZES, (_propagate_position_loop, _propagate_image_loop),
                                                PROPAGATE_CLOSENESS):
        args = list(_propagate_case(n, d, c, h, w, 750))
        figures.append(expect_vectorized(student, "propagate_colors", args, reference=ref.propagate_colors,
                                         loop=loop, closeness=closeness, advice=PROPAGATE_ADVICE))
    return "; ".join(figures)


PROPAGATE_SIZES = ((1, 4, 3, 16, 16), (512, 4, 3, 2, 2))  # N, D, C, H, W
PROPAGATE_CLOSENESS = (0.6, 0.55)
