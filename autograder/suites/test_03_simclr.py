"""Hidden suite of 03_simclr: every graded function against the reference.

Run by the grader (`autograder.grading.grade`: the local ``grade`` command
and Gradescope) and inside nbgrader's kernel
(`autograder.frontends.nbgrader_hook`); to grade one notebook by hand::

    python -m autograder grade path/to/03_simclr.ipynb
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from autograder.grading.checks import (Failure, Hint, describe, describe_call, expect_tensor, expect_unchanged,
                                       expect_vectorized, graded)
from autograder.isolation.specs import pil_image_spec
from autograder.isolation.student_process import StudentError
from autograder.suites.common import randn, tol, unit, want

NB = "03_simclr"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)




def _rescaled(args, low, high, seed=0):
    """``args`` with every floating tensor's rows (last dim) rescaled to norms drawn in [low, high]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            a64 = a.double()
            norms = a64.norm(dim=-1, keepdim=True)
            target = low + (high - low) * torch.rand(norms.shape, generator=g, dtype=torch.float64)
            a = (a64 / norms * target).to(a.dtype)
        out.append(a)
    return tuple(out)


def _ordinary(args, seed=0):
    """Inputs of ordinary scale: row norms in [3, 10], where an eps of up to 1e-6 added to or clamping a
    norm moves a cosine by at most about 1e-7 of its value (within `_tol`). Tiny norms are not used: the
    stabilisers that torch itself applies (F.cosine_similarity, F.normalize) legitimately change them."""
    return _rescaled(args, 3.0, 10.0, seed)


FLOAT32_ON_FLOAT64 = ("compute in the inputs' dtype: float64 inputs need float64 arithmetic (no .float(), "
                      "no float32 tensors created inside)")


def _check_float64_precision(student, name, reference, args, call_name):
    """Float64 inputs with row norms of 1e5, where an eps of 1e-6 on a norm changes a value by about 1e-11 but
    float32 arithmetic (then cast back to float64) is off by about 1e-7: compared at 1e-10."""
    args = _rescaled([a.double() if isinstance(a, torch.Tensor) else a for a in args], 1e5, 1e5)
    result = student.call(name, *args)
    expect_tensor(result.value, want(reference, *args), call=call_name(*args), hints=_float32_hints(reference, args),
                  inputs=args, rtol=1e-10, atol=1e-12)


def _float32_hints(reference, args):
    """For float64 inputs: the hint that recognises float32 arithmetic (the reference run in float32)."""
    if not any(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args):
        return []
    return [Hint(FLOAT32_ON_FLOAT64, lambda *a: reference(*[x.float() if isinstance(x, torch.Tensor) else x
                                                            for x in a]))]








# --------------------------------------------------------------------------- known mistakes
# Each computes what a common mistake gives, in float64; see grading.checks.Hint.

def _loss_from_logits(s, n, *, keep_self=False, drop_positive=False, one_direction=False):
    """NT-Xent from a [2N, 2N] logit matrix with switches for mistakes."""
    n2 = 2 * n
    pos_idx = (torch.arange(n2) + n) % n2
    mask = torch.ones(n2, n2, dtype=torch.bool)
    if not keep_self:
        mask &= ~torch.eye(n2, dtype=torch.bool)
    if drop_positive:
        mask[torch.arange(n2), pos_idx] = False
    denom = torch.logsumexp(s.masked_fill(~mask, -math.inf), dim=1)
    losses = denom - s[torch.arange(n2), pos_idx]
    return losses[:n].mean() if one_direction else losses.mean()


def _cos_logits(l, r, tau):
    z = unit(torch.cat([l, r]).double())
    return z @ z.T / tau


LOSS_HINTS = [
    Hint("your loss is twice the reference: divide by 2N, the number of anchors (each pair counts in both "
         "directions), not by N", lambda l, r, t: 2 * _loss_from_logits(_cos_logits(l, r, t), len(l))),
    Hint("your loss is 2N times the reference: take the mean over the 2N anchors, not the sum",
         lambda l, r, t: 2 * len(l) * _loss_from_logits(_cos_logits(l, r, t), len(l))),
    Hint("the denominator includes k = i: an anchor is not its own negative, leave the diagonal of the "
         "similarity matrix out", lambda l, r, t: _loss_from_logits(_cos_logits(l, r, t), len(l), keep_self=True)),
    Hint("the denominator must include the positive: sum over every k != i",
         lambda l, r, t: _loss_from_logits(_cos_logits(l, r, t), len(l), drop_positive=True)),
    Hint("use cosine similarity: normalise each vector to unit length before the dot products",
         lambda l, r, t: _loss_from_logits(torch.cat([l, r]).double() @ torch.cat([l, r]).double().T / t, len(l))),
    Hint("the temperature is misplaced: divide the similarities by tau inside the exp",
         lambda l, r, t: _loss_from_logits(_cos_logits(l, r, 1 / t), len(l))),
    Hint("count each pair in both directions: l(k, k+N) and l(k+N, k)",
         lambda l, r, t: _loss_from_logits(_cos_logits(l, r, t), len(l), one_direction=True)),
    Hint("row i's positive is row (i + N) mod 2N of cat([out_left, out_right]); check your pairing",
         lambda l, r, t: _loss_from_logits(_cos_logits(torch.stack([l, r], 1).reshape(-1, l.shape[1])[:len(l)],
                                                       torch.stack([l, r], 1).reshape(-1, l.shape[1])[len(l):], t),
                                           len(l))),
]

SIM_HINTS = [
    Hint("that is the plain dot product: divide by the product of the two norms",
         lambda a, b: (a.double() @ b.double())),
    Hint("divide by the product of the norms, not their sum",
         lambda a, b: a.double() @ b.double() / (a.double().norm() + b.double().norm())),
]

MATRIX_HINTS = [
    Hint("normalise each row (dim=1) to unit length before the product; you have raw dot products",
         lambda x: x.double() @ x.double().T),
    Hint("normalise the rows (dim=1), not the columns (dim=0)",
         lambda x: (x.double() / x.double().norm(dim=0, keepdim=True)) @ (x.double() / x.double().norm(dim=0, keepdim=True)).T),
]

PAIR_HINTS = [
    Hint("normalise each row to unit length before multiplying", lambda l, r: (l.double() * r.double()).sum(1, keepdim=True)),
]


def _call_name(name, *args, **kwargs):
    return describe_call(name, args, kwargs)


def _check_values(student, name, cases, reference, hints=(), call_name=None, scalar=False, precision=True):
    """Call ``name`` on each case (at ordinary scale), compare with the reference, check inputs are
    untouched; then (``precision``) the float64 precision case. ``call_name(*args)`` names a call in the
    feedback; ``scalar``: the result must be a 0-dim tensor (the losses)."""
    call_name = call_name or (lambda *a: _call_name(name, *a))
    for i, args in enumerate(cases):
        args = _ordinary(args, seed=i)
        result = student.call(name, *args, return_args=True)
        call = call_name(*args)
        if scalar and type(result.value) is torch.Tensor and result.value.dim() != 0:
            raise Failure(f"{call} returned shape {list(result.value.shape)}; expected a 0-dim tensor "
                          "(a single number: use .mean() or .sum(), not a per-row result)")
        expect_tensor(result.value, want(reference, *args), call=call,
                      hints=[*hints, *_float32_hints(reference, args)], inputs=args, **tol(args[0].dtype))
        expect_unchanged([a for a in args if isinstance(a, torch.Tensor)], result.args_after, call=call)
    if precision:
        _check_float64_precision(student, name, reference, cases[-1], call_name)


# --------------------------------------------------------------------------- sim

@graded(NB, "sim", "values")
def test_sim_values(student, ref):
    cases = [(randn(d, 10 + d, dtype, scale=3), randn(d, 20 + d, dtype, shift=0.5))
             for dtype in (torch.float32, torch.float64) for d in (5, 128)]
    cases.append((torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 4.0, 4.0])))  # parallel: exactly 1
    _check_values(student, "sim", cases, ref.sim, SIM_HINTS)


@graded(NB, "sim", "edge_cases")
def test_sim_edge_cases(student, ref):
    cases = [(randn(1, 11, dtype, scale=3), randn(1, 21, dtype, shift=0.5)) for dtype in (torch.float32, torch.float64)]
    _check_values(student, "sim", cases, ref.sim, SIM_HINTS, precision=False)


# --------------------------------------------------------------------------- compute_sim_matrix

@graded(NB, "compute_sim_matrix", "values")
def test_compute_sim_matrix_values(student, ref):
    cases = [(randn((m, d), 100 + m, dtype, scale=5),)
             for dtype in (torch.float32, torch.float64) for m, d in ((6, 4), (40, 64))]
    _check_values(student, "compute_sim_matrix", cases, ref.compute_sim_matrix, MATRIX_HINTS)


@graded(NB, "compute_sim_matrix", "edge_cases")
def test_compute_sim_matrix_edge_cases(student, ref):
    cases = [(randn((m, d), 100 + m + d, dtype, scale=5),)
             for dtype in (torch.float32, torch.float64) for m, d in ((1, 3), (5, 1))]
    _check_values(student, "compute_sim_matrix", cases, ref.compute_sim_matrix, MATRIX_HINTS, precision=False)


def _sim_matrix_loop(x):
    return torch.stack([F.cosine_similarity(x[i:i + 1], x, dim=1) for i in range(len(x))])


@graded(NB, "compute_sim_matrix", "vectorized")
def test_compute_sim_matrix_vectorized(student, ref):
    return expect_vectorized(student, "compute_sim_matrix", [randn(SIM_MATRIX_SIZE, 7)],
                             reference=ref.compute_sim_matrix, loop=_sim_matrix_loop, closeness=SIM_MATRIX_CLOSENESS)


SIM_MATRIX_SIZE = (128, 4)  # M, D (M >= 100: tests/test_timing_attacks.py's detector tells the timed calls by it)
SIM_MATRIX_CLOSENESS = 0.8
# The one speed check without a 2x margin both ways (benchmarks/speed_ratios.py, benchmarks/README.md). A correct
# F.cosine_similarity(out[:, None], out[None], dim=-1) builds [M, M, D] (several passes over it: 0.5 to 0.9 ms on
# inputs in new memory, as the channel delivers them) and costs as much as a loop over the rows that normalises
# once and then takes one product a row (u @ u[i]: ~4 us a row), at any M: both grow as M^2 at small D, and a
# smaller M leaves a limit under the channel's jitter. So that loop passes, and a loop of 4 operations a row (by
# hand: ~1 ms) sits at the limit; the limit is put halfway (log scale) between the broadcast and the loop students
# write most (F.cosine_similarity per row, the grader's: 2.5 to 4.6 ms), about 2x from each.


# --------------------------------------------------------------------------- sim_positive_pairs

@graded(NB, "sim_positive_pairs", "values")
def test_sim_positive_pairs_values(student, ref):
    cases = [(randn((n, d), 200 + n, dtype), randn((n, d), 300 + n, dtype, scale=0.01))
             for dtype in (torch.float32, torch.float64) for n, d in ((9, 5), (64, 32))]
    _check_values(student, "sim_positive_pairs", cases, ref.sim_positive_pairs, PAIR_HINTS)


@graded(NB, "sim_positive_pairs", "edge_cases")
def test_sim_positive_pairs_edge_cases(student, ref):
    cases = [(randn((n, d), 200 + n + d, dtype), randn((n, d), 300 + n + d, dtype, scale=0.01))
             for dtype in (torch.float32, torch.float64) for n, d in ((1, 2), (4, 1))]
    _check_values(student, "sim_positive_pairs", cases, ref.sim_positive_pairs, PAIR_HINTS, precision=False)


def _pairs_loop(sim, l, r):
    return torch.stack([sim(l[k], r[k]) for k in range(len(l))]).view(-1, 1)


@graded(NB, "sim_positive_pairs", "vectorized")
def test_sim_positive_pairs_vectorized(student, ref):
    return expect_vectorized(student, "sim_positive_pairs", [randn(PAIRS_SIZE, 8), randn(PAIRS_SIZE, 9)],
                             reference=ref.sim_positive_pairs, loop=lambda l, r: _pairs_loop(ref.sim, l, r),
                             closeness=PAIRS_CLOSENESS)


PAIRS_SIZE = (512, 16)  # N, D
PAIRS_CLOSENESS = 0.55  # halfway (log scale) between the slowest whole-tensor way, the diagonal of the [N, N]
# product (~0.3 ms), and the fastest loop (unit rows, one dot product a row: ~2.4 ms); the grader's loop ~6 ms


# --------------------------------------------------------------------------- the losses

def _loss_cases(dtypes=(torch.float32, torch.float64), sizes=((3, 5, 0.1), (8, 16, 1.0))):
    return [(randn((n, d), 400 + n, dtype, scale=2), randn((n, d), 500 + n, dtype, shift=0.3), tau)
            for dtype in dtypes for n, d, tau in sizes]


def _check_loss(student, name, ref_loss, cases, precision=True):
    _check_values(student, name, cases, ref_loss, LOSS_HINTS, call_name=lambda *a: _call_name(name, *a[:2], tau=a[2]),
                  scalar=True, precision=precision)


EDGE_LOSS_SIZES = ((1, 4, 0.5), (3, 1, 0.5))
"""N = 1 (each anchor's only other sample is its positive, so the loss is 0) and D = 1 (every embedding is
+1 or -1 after normalisation)."""


@graded(NB, "simclr_loss_naive", "values")
def test_simclr_loss_naive_values(student, ref):
    cases = _loss_cases(dtypes=(torch.float32,)) + _loss_cases(dtypes=(torch.float64,), sizes=((2, 3, 0.2),))
    same = torch.ones(4, 3)
    cases.append((same, same, 0.5))  # closed form: log(2N - 1)
    _check_loss(student, "simclr_loss_naive", ref.simclr_loss_naive, cases)


@graded(NB, "simclr_loss_naive", "edge_cases")
def test_simclr_loss_naive_edge_cases(student, ref):
    _check_loss(student, "simclr_loss_naive", ref.simclr_loss_naive,
                _loss_cases(dtypes=(torch.float32,), sizes=EDGE_LOSS_SIZES), precision=False)


@graded(NB, "simclr_loss_vectorized", "values")
def test_simclr_loss_vectorized_values(student, ref):
    cases = _loss_cases(sizes=((3, 5, 0.1), (8, 16, 1.0), (64, 32, 0.5)))
    _check_loss(student, "simclr_loss_vectorized", ref.simclr_loss_vectorized, cases)


@graded(NB, "simclr_loss_vectorized", "edge_cases")
def test_simclr_loss_vectorized_edge_cases(student, ref):
    _check_loss(student, "simclr_loss_vectorized", ref.simclr_loss_vectorized, _loss_cases(sizes=EDGE_LOSS_SIZES),
                precision=False)


@graded(NB, "simclr_loss_vectorized", "gradients")
def test_simclr_loss_vectorized_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for n, d, tau in ((2, 3, 0.5), (5, 8, 0.2), (16, 4, 1.0)):  # N = 1 is an edge case (its values)
            left, right = randn((n, d), 600 + n, dtype, scale=2), randn((n, d), 700 + n, dtype)
            result = student.call("simclr_loss_vectorized", left, right, tau, grad_of=[0, 1])
            l64, r64 = left.double().requires_grad_(), right.double().requires_grad_()
            want = torch.autograd.grad(ref.simclr_loss_vectorized(l64, r64, tau), (l64, r64))
            call = _call_name("simclr_loss_vectorized", left, right, tau=tau)
            for key, name in ((0, "out_left"), (1, "out_right")):
                got = result.grads[key]
                if got is None:
                    raise Failure(f"no gradient reaches {name} in {call}: is the loss computed from a detached "
                                  "copy (.detach(), .item(), .numpy(), torch.tensor(...))?")
                expect_tensor(got, want[key].to(dtype), call=f"the gradient w.r.t. {name} of {call}",
                              **tol(dtype))


def _loss_loop(left, right, tau):
    """NT-Xent with a loop over the 2N anchors (vectorized inside)."""
    n = len(left)
    z = unit(torch.cat([left, right]))
    total = 0
    for i in range(2 * n):
        logits = z[i] @ z.T / tau
        others = torch.cat([logits[:i], logits[i + 1:]])
        j = (i + n) % (2 * n)
        total = total + torch.logsumexp(others, 0) - logits[j]
    return total / (2 * n)


@graded(NB, "simclr_loss_vectorized", "vectorized")
def test_simclr_loss_vectorized_vectorized(student, ref):
    n, d, tau = LOSS_SIZE
    left, right = randn((n, d), 11), randn((n, d), 12)
    return expect_vectorized(student, "simclr_loss_vectorized", [left, right, tau],
                             reference=ref.simclr_loss_vectorized, loop=_loss_loop, closeness=LOSS_CLOSENESS)


LOSS_SIZE = (128, 4, 0.5)  # N, D, tau (N = 64 gave a limit of ~0.7 ms, of the order of the channel's jitter)
LOSS_CLOSENESS = 0.55  # halfway between the slowest whole-tensor way (~0.3 ms) and the fastest loop over the anchors
# or the pairs (~6.5 ms)


# --------------------------------------------------------------------------- compute_train_transform

VIEWS_PER_CALL = 200  # about 1 s of torchvision on a 2-core machine: each call far inside its time limit,
# even where the student's own processes load the machine (a call of 1,000 views took 4 s here, and more
# than 10 s beside eight busy processes)


def _views(student, size, mean, std, image, count, seed):
    """``count`` views of ``image`` through the student's transform, as one tensor (in calls of at most
    VIEWS_PER_CALL views, the first seeded with ``seed``, the next ones with seeds derived from it)."""
    what = "PIL image" if isinstance(image, dict) else f"uint8 image {list(image.shape)}"
    call = f"compute_train_transform({size}, mean, std)({what})"
    views = []
    for k, start in enumerate(range(0, count, VIEWS_PER_CALL)):
        n = min(VIEWS_PER_CALL, count - start)
        result = student.call("compute_train_transform", size, mean, std, then_call=[[image]] * n,
                              seed=seed if k == 0 else 1000 * seed + k)
        if not isinstance(result.value, list) or len(result.value) != n:
            raise Failure(f"{call} could not be applied to an image")
        views += result.value
    for v in views:
        if type(v) is not torch.Tensor:
            raise Failure(f"{call} returned {describe(v)}; expected a float32 tensor [3, {size}, {size}] "
                          "(end with ToImage/ToDtype or ToTensor, and Normalize)")
        if v.shape != (3, size, size) or v.dtype != torch.float32:
            raise Failure(f"{call} returned {describe(v)}; expected float32 [3, {size}, {size}]")
    return torch.stack(views)


def _image(seed, h=40, w=48):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 1, 1, generator=g) * 200
    ramp = torch.linspace(0, 55, w).view(1, 1, w) + torch.linspace(0, 30, h).view(1, h, 1) * torch.rand(3, 1, 1, generator=g)
    return (base + ramp).round().clamp(0, 255).to(torch.uint8)


@graded(NB, "compute_train_transform", "values")
def test_compute_train_transform_values(student, ref):
    img = _image(1)
    plain = _views(student, 24, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), img, 8, seed=0)
    if plain.min() < -1e-5 or plain.max() > 1 + 1e-5:
        raise Failure("with mean 0 and std 1 the views should hold values in [0, 1]: convert the uint8 image "
                      "to floats scaled to [0, 1] (ToDtype(torch.float32, scale=True)) before Normalize")
    try:
        _views(student, 20, MEAN, STD, pil_image_spec(img.permute(1, 2, 0).contiguous()), 4, seed=0)
    except StudentError as e:
        raise Failure(f"the transform should accept a PIL image as well as a uint8 tensor; on a PIL image it "
                      f"raised {e.message}") from None
    normed = _views(student, 16, MEAN, STD, img, 8, seed=0)
    raw = normed * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    if raw.min() < -1e-4 or raw.max() > 1 + 1e-4:
        raise Failure("the views are not normalised with the given mean and std: end with Normalize(mean, std)")


@graded(NB, "compute_train_transform", "randomness")
def test_compute_train_transform_randomness(student, ref):
    calibration = _calibration(student)
    views = _unit_views(student, 16, _image(2), 200, 1, calibration)
    distinct = len({tuple(v.flatten()[:64].tolist()) for v in views})
    if distinct < 190:
        raise Failure(f"only {distinct} of 200 views differ: each call of the transform should draw a new random "
                      "crop, flip and colour distortion")
    gray = ((views[:, 0] - views[:, 1]).abs().amax(dim=(1, 2)) < 1e-6) & ((views[:, 1] - views[:, 2]).abs().amax(dim=(1, 2)) < 1e-6)
    frac = gray.float().mean().item()
    if not 0.08 <= frac <= 0.34:
        raise Failure(f"{frac:.0%} of the views are grayscale; expected about 20% (RandomGrayscale(p=0.2))")
    crops_vary = views.std(dim=(1, 2, 3)).std().item()
    if crops_vary < 1e-3:
        raise Failure("the views all look alike in contrast: is RandomResizedCrop or ColorJitter missing?")
    _check_jitter(student, calibration)
    _check_crop_and_flip(student, calibration)


# The SPEC's augmentation, component by component, judged by its distribution on probe images that
# isolate each component (seeded: grading repeats itself). The bands hold a correct transform with
# overwhelming probability (binomial bands of more than 4 standard deviations) and reject a component that
# is missing, always or never applied, or applied at another strength.
UNIT = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # mean 0, std 1: the views hold the [0, 1] values themselves


def _constant(rgb, h=40, w=48):
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).contiguous()


def _share(mask):
    return mask.float().mean().item()


def _hue(rgb):
    """Hue in degrees of colours ``[..., 3]`` in [0, 1]."""
    r, g, b = rgb.unbind(-1)
    return torch.rad2deg(torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b))


def _calibration(student):
    """How the student's views map [0, 1] pixel values, per channel: ``(offset, gain)`` with
    ``view = offset + gain * value``. A black image stays black under every component, and a white one
    stays white in the views that colour jitter did not touch, so black's median and white's brightest
    view give the map; the component checks below then hold
    whatever the scaling or normalisation (those are the values check's business, not theirs)."""
    black = _views(student, 8, *UNIT, _constant((0, 0, 0)), 20, seed=9).median(dim=0).values.mean(dim=(1, 2))
    # the brightest view of white: one that jitter did not touch (jitter may only darken white, and rounds)
    white = _views(student, 8, *UNIT, _constant((255, 255, 255)), 100, seed=10).mean(dim=(2, 3)).amax(dim=0)
    gain = white - black
    if (gain.abs() < 1e-6).any():
        raise Failure("the views of a black and of a white image look the same: the transform loses the image")
    return black.view(1, 3, 1, 1), gain.view(1, 3, 1, 1)


def _unit_views(student, size, image, count, seed, calibration):
    """Views with pixel values brought back to [0, 1] through the student's own `_calibration` map."""
    offset, gain = calibration
    return (_views(student, size, *UNIT, image, count, seed=seed) - offset) / gain


def _halves(left, right, h=40, w=48):
    """A gray image whose left half has one value and right half another."""
    img = torch.full((3, h, w), left, dtype=torch.uint8)
    img[:, :, w // 2:] = right
    return img


def _factor_range(name, factors, spec):
    """Fail unless the factors drawn for one jitter component span [0.6, 1.4] (strength 0.4)."""
    low, high = factors.min().item(), factors.max().item()
    if not (0.55 <= low <= 0.66 and 1.34 <= high <= 1.45):
        raise Failure(f"the {name} factors of colour jitter ran from {low:.2f} to {high:.2f}; expected 0.6 to 1.4 "
                      f"({spec})")


JITTER_SEED, JITTER_VIEWS = 11, 600


def _check_jitter(student, calibration):
    """Colour jitter: applied with p=0.8; brightness, contrast and saturation 0.4 (factors in [0.6, 1.4]);
    hue 0.1 (+-36 degrees).

    Three probe images go through the transform with the same seed, so that view ``i`` of each gets the
    same draws (the draws of torchvision's transforms do not depend on the pixels): on a gray image of one
    value a view is brightness ``b`` times the image; on a gray image of two halves the gap between the
    halves is ``b c`` (contrast scales the deviations from the mean); on a colour image of one value the
    chroma (max - min channel) is ``b c s`` (saturation and contrast both blend with the gray level; hue
    keeps the chroma). So ``c`` and ``s`` are read per view."""
    level = 128 / 255
    views = _unit_views(student, 16, _constant((128, 128, 128)), JITTER_VIEWS, JITTER_SEED, calibration)
    b = views.mean(dim=(1, 2, 3)) / level
    kept = (b - 1).abs() < 1e-4
    if not 0.12 <= _share(kept) <= 0.28:
        raise Failure(f"colour jitter changed {1 - _share(kept):.0%} of the views of a gray image; expected about "
                      "80% (RandomApply([ColorJitter(...)], p=0.8))")
    _factor_range("brightness", b[~kept], "ColorJitter(brightness=0.4, ...)")
    # A colour image of one value: brightness, contrast and saturation keep its hue; only hue jitter turns it.
    colour = _constant((90, 60, 40))
    views = _unit_views(student, 16, colour, JITTER_VIEWS, JITTER_SEED, calibration)
    rgb = views.mean(dim=(2, 3))
    chroma = rgb.amax(dim=1) - rgb.amin(dim=1)
    gray = chroma < 1e-4
    turn = (_hue(rgb[~gray]) - _hue(colour[:, 0, 0].float() / 255)).remainder(360)
    turn = torch.where(turn > 180, turn - 360, turn).abs()
    widest = turn.max().item()
    if not 25 <= widest <= 45:
        raise Failure(f"colour jitter turned the hue by up to {widest:.0f} degrees; expected up to 36 "
                      "(ColorJitter(..., hue=0.1))")
    bcs = chroma / (50 / 255)
    # Two gray halves: the views that show both (a crop across the middle) give b c.
    views = _unit_views(student, 16, _halves(100, 150), JITTER_VIEWS, JITTER_SEED, calibration).mean(dim=1)
    high, low = views.amax(dim=(1, 2)), views.amin(dim=(1, 2))
    both = (high - low > 0.04) & ((views - high.view(-1, 1, 1)).abs() < 2e-3).float().mean(dim=(1, 2)).ge(0.2) & \
        ((views - low.view(-1, 1, 1)).abs() < 2e-3).float().mean(dim=(1, 2)).ge(0.2)
    bc = (high - low) / (50 / 255)
    usable = both & ~gray
    # the same draws in the three probes: the views jitter left alone must be the same ones
    agree = (kept[usable] == ((bc[usable] - 1).abs() < 1e-4)) & (kept[usable] == ((bcs[usable] - 1).abs() < 1e-4))
    if usable.sum() < 100 or _share(agree) < 0.98:
        return  # draws that depend on the image: contrast and saturation cannot be read per view (not held against it)
    jittered = usable & ~kept
    _factor_range("contrast", bc[jittered] / b[jittered], "ColorJitter(..., contrast=0.4, ...)")
    _factor_range("saturation", bcs[jittered] / bc[jittered], "ColorJitter(..., saturation=0.4, ...)")


def _coordinates(h=40, w=48):
    """Red encodes the column, green the row, blue is constant: a view shows what it was cropped from."""
    x = torch.linspace(0, 255, w).view(1, w).expand(h, w)
    y = torch.linspace(0, 255, h).view(h, 1).expand(h, w)
    return torch.stack([x, y, torch.full((h, w), 128.0)]).round().to(torch.uint8)


def _check_crop_and_flip(student, calibration, size=32, h=40, w=48):
    """Random resized crop with scale (0.08, 1) and ratio (3/4, 4/3); horizontal flip with p=0.5."""
    views = _unit_views(student, size, _coordinates(h, w), 1000, 13, calibration)
    # the views that no colour change touched (about 16%): their red and green values are coordinates
    plain = ((views[:, 2] - 128 / 255).abs().amax(dim=(1, 2)) < 1e-4) & \
        ((views[:, 0] - views[:, 1]).abs().amax(dim=(1, 2)) > 1e-3)
    if plain.sum() < 40:
        raise Failure(f"only {int(plain.sum())} of 1000 views kept the image's colours; expected about 16% (colour "
                      "jitter with p=0.8, then grayscale with p=0.2)")
    red, green = views[plain, 0], views[plain, 1]
    width = (red.amax(dim=(1, 2)) - red.amin(dim=(1, 2))) * size / (size - 1)
    height = (green.amax(dim=(1, 2)) - green.amin(dim=(1, 2))) * size / (size - 1)
    area, ratio = width * height, (width * w) / (height * h).clamp_min(1e-6)
    if not (area.min() <= 0.2 and area.max() >= 0.7):
        raise Failure(f"the crops covered {area.min():.0%} to {area.max():.0%} of the image; expected 8% to 100% "
                      "(RandomResizedCrop(size, scale=(0.08, 1.0)))")
    if not (ratio.min() >= 0.65 and ratio.max() <= 1.55 and ratio.max() / ratio.min() >= 1.4):
        raise Failure(f"the crops' aspect ratios ran from {ratio.min():.2f} to {ratio.max():.2f}; expected 3/4 to "
                      "4/3 (RandomResizedCrop(size, ratio=(3/4, 4/3)), torchvision's default)")
    flipped = red[:, :, -1].mean(dim=1) < red[:, :, 0].mean(dim=1)
    if not 0.3 <= _share(flipped) <= 0.7:
        raise Failure(f"{_share(flipped):.0%} of the views were flipped left to right; expected about half "
                      "(RandomHorizontalFlip(p=0.5))")
