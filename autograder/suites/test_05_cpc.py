"""Hidden suite of 05_cpc: every graded function against the reference.

Run by the grader (`autograder.grading.grade`: the local ``grade`` command
and Gradescope) and inside nbgrader's kernel
(`autograder.frontends.nbgrader_hook`); to grade one notebook by hand::

    python -m autograder grade path/to/05_cpc.ipynb
"""
from __future__ import annotations

import re

import torch
from autograder.grading.checks import (DETACHED, Failure, Hint, describe_call, expect_tensor, expect_unchanged,
                                       expect_vectorized, grad_call, graded)
from autograder.isolation.student_process import StudentError
from autograder.suites.common import randn, tol, want

NB = "05_cpc"


def _double(*tensors):
    return [t.double() for t in tensors]


def _expect_grad(grad, expected, name, call, dtype):
    """A gradient that must reach ``name`` and match the reference's."""
    if grad is None:
        raise Failure(f"no gradient reaches {name} in {call}: {DETACHED}")
    expect_tensor(grad, expected.to(dtype), call=f"the gradient w.r.t. {name} of {call}", **tol(dtype))


# --------------------------------------------------------------------------- cpc_scores

def _scores_case(b, dz, dc, seed, dtype=torch.float32):
    """``z [b, dz]`` futures, ``c [b, dc]`` contexts, ``W [dz, dc]`` (scaled so that the scores stay of order 1)."""
    return randn((b, dz), seed, dtype), randn((b, dc), seed + 1, dtype), randn((dz, dc), seed + 2, dtype, 1 / dc ** 0.5)


def _bilinear(z, c, W):
    """``scores[i, j] = z[j]^T W c[i]``, in float64."""
    z, c, W = _double(z, c, W)
    return (c @ W.T) @ z.T


W_SHAPE = ("W is [Dz, Dc]: W @ c[i] is the predicted future in z's space (Dz), compared with every candidate z[j]: "
           "scores[i, j] = z[j] . (W @ c[i]); W multiplies the contexts, not the futures")
SCORE_HINTS = [
    Hint("row i is context i and column j candidate future j: scores[i, j] = z[j]^T W c[i]; you computed the "
         "transpose, z[i]^T W c[j] (InfoNCE would then take its softmax over the contexts, not the candidates)",
         lambda z, c, W: _bilinear(z, c, W).T),
    Hint(f"you computed c[i]^T W z[j] (with Dz == Dc the shapes do not stop it): {W_SHAPE}",
         lambda z, c, W: c.double() @ W.double() @ z.double().T),
    Hint(f"you computed c[j]^T W z[i], W on the wrong side and the result transposed: {W_SHAPE}",
         lambda z, c, W: z.double() @ W.double().T @ c.double().T),
    Hint("the scores are bilinear, z[j]^T W c[i]: W sits between the future and the context",
         lambda z, c, W: c.double() @ z.double().T),
]


def _call_scores(student, z, c, W, **options):
    """cpc_scores on ``z, c, W``; a shape error, where Dz != Dc, is W applied on the wrong side."""
    call = describe_call("cpc_scores", [z, c, W], {})
    try:
        return grad_call(student, "cpc_scores", [z, c, W], call, **options)
    except StudentError as e:
        if z.shape[1] != c.shape[1] and e.exc_type == "RuntimeError" and re.search(r"shape|size|dimension", e.message):
            raise Failure(f"{call} raised {e.message}\nHint: {W_SHAPE}") from None
        raise


def _check_scores(student, ref, cases):
    for b, dz, dc, dtype, seed in cases:
        z, c, W = _scores_case(b, dz, dc, seed, dtype)
        call = describe_call("cpc_scores", [z, c, W], {})
        result = _call_scores(student, z, c, W, return_args=True)
        expect_tensor(result.value, want(ref.cpc_scores, z, c, W), call=call, hints=SCORE_HINTS, inputs=[z, c, W],
                      **tol(dtype))
        expect_unchanged([z, c, W], result.args_after, call=call)


@graded(NB, "cpc_scores", "values")
def test_cpc_scores_values(student, ref):
    # Dz == Dc first: there W applied to the futures gives wrong values (with Dz != Dc, a shape error)
    _check_scores(student, ref, [(b, dz, dc, dtype, 10 + i)
                                 for i, (b, dz, dc) in enumerate(((6, 8, 8), (4, 3, 5), (8, 16, 8), (5, 7, 7)))
                                 for dtype in (torch.float32, torch.float64)])


@graded(NB, "cpc_scores", "edge_cases")
def test_cpc_scores_edge_cases(student, ref):
    _check_scores(student, ref, [(1, 3, 4, torch.float32, 20), (5, 1, 4, torch.float32, 21),
                                 (5, 4, 1, torch.float64, 22), (1, 1, 1, torch.float64, 23)])


@graded(NB, "cpc_scores", "gradients")
def test_cpc_scores_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for b, dz, dc in ((6, 4, 5), (5, 6, 6)):
            z, c, W = _scores_case(b, dz, dc, 30 + b, dtype)
            # along a random direction: a plain sum would not see scores in another order (the transpose)
            direction = randn((b, b), 40 + b, dtype)
            call = describe_call("cpc_scores", [z, c, W], {})
            result = _call_scores(student, z, c, W, grad_of=[0, 1, 2], grad_output=direction)
            inputs = [x.requires_grad_() for x in _double(z, c, W)]
            expected = torch.autograd.grad(ref.cpc_scores(*inputs), inputs, direction.double())
            for i, name in enumerate(("z", "c", "W")):
                _expect_grad(result.grads[i], expected[i], name, call, dtype)


def _scores_context_loop(z, c, W):
    """cpc_scores with a Python loop over the contexts (one matrix-vector product each)."""
    return torch.stack([z @ (W @ c[i]) for i in range(len(c))])


def _scores_pair_loop(z, c, W):
    """cpc_scores with a Python loop over the pairs (one bilinear form each)."""
    return torch.stack([torch.stack([z[j] @ (W @ c[i]) for j in range(len(z))]) for i in range(len(c))])


def _fresh_scores(args, seed):
    """New inputs of the shapes of ``args``, W scaled as in `_scores_case` (scores of order 1 to 10, where
    matrix products in any order agree to about 1e-5)."""
    z, c, _ = args
    return list(_scores_case(len(z), z.shape[1], c.shape[1], seed))


VECTORIZED_ADVICE = ("compute all B x B scores with matrix products, e.g. the predictions c @ W.T (one per context) "
                     "against every candidate, @ z.T: no Python loop over the contexts, the candidates or the pairs")


@graded(NB, "cpc_scores", "vectorized")
def test_cpc_scores_vectorized(student, ref):
    # Two shapes, one per loop to catch (one thread, a 2-core CPU; benchmarks/speed_ratios.py, and through the
    # grader's channel). First B = 64 against a loop over the B^2 pairs: reference ~0.01 ms, the fastest pair
    # loop ~17 ms, whole-tensor code 0.02 to 0.15 ms: the limit (closeness 0.6, ~1.6 ms) is 10x from both; a loop
    # over the contexts (~0.3 ms) passes here: the second shape is for it, and a pair loop is stopped after 18
    # calls of ~25 ms instead of taking seconds a call there. Then B = 512 against a loop over the contexts: the
    # fastest loop (the predictions c @ W.T first, then one product per context) ~2.7 ms in this process, 4 to
    # 5.8 ms through the channel; whole-tensor code with a contiguous result 0.1 to 0.5 ms, with a transposed one
    # (einsum's 'jd,de,ie->ij', (...).T) 0.3 to 0.7 ms, the channel copying it into order. This shape has the
    # thinnest margins of the suites: the loop's cost grows as B (~5 us a context), the result's as B^2, so no B
    # separates them by more than ~6x in this process (4.5x at B = 256 through the channel, where its 0.3 to
    # 1.5 ms of channel jitter weighs more); the limit (closeness 0.7, 1.2 to 1.7 ms through the channel) sits
    # 2 to 3x from both. More rounds and repeats than the default steady those floors; a larger D makes the
    # reference slower and the ratio smaller (10x at D = 64, 4x at D = 256).
    figures = []
    for (b, d), loop, (rounds, repeats), closeness in zip(SCORES_SIZES, (_scores_pair_loop, _scores_context_loop),
                                                          SCORES_ROUNDS, SCORES_CLOSENESS):
        z, c, W = _scores_case(b, d, d, 50)
        figures.append(expect_vectorized(student, "cpc_scores", [z, c, W], reference=ref.cpc_scores, loop=loop,
                                         closeness=closeness, rounds=rounds, repeats=repeats, fresh=_fresh_scores,
                                         atol=1e-4, advice=VECTORIZED_ADVICE))
    return "; ".join(figures)


SCORES_SIZES = ((64, 16), (512, 16))  # B, Dz = Dc: against a loop over the pairs, over the contexts
SCORES_ROUNDS = ((3, 5), (5, 10))  # rounds, repeats
SCORES_CLOSENESS = (0.6, 0.7)


# --------------------------------------------------------------------------- cpc_infonce

def _logits_case(b, seed, dtype=torch.float32, scale=2.0, positive=3.0, shift=0.0):
    """``scores [b, b]`` of that scale, the positives (diagonal) ``positive`` higher on average, all ``shift``ed."""
    s = randn((b, b), seed, torch.float64, scale, shift) + positive * torch.eye(b, dtype=torch.float64)
    return s.to(dtype)


def _infonce(s, *, axis=1, reduce=torch.mean, labels=None):
    s = s.double()
    log_p = torch.log_softmax(s, dim=axis)
    picked = log_p.diagonal() if labels is None else log_p[torch.arange(len(s)), labels]
    return reduce(-picked)


def _without_positive(s):
    s = s.double()
    off = s.masked_fill(torch.eye(len(s), dtype=torch.bool), float("-inf"))
    return (torch.logsumexp(off, dim=1) - s.diagonal()).mean()


INFONCE_HINTS = [
    Hint("take the softmax over each row (dim=1: context i's B candidate futures), not over the contexts (dim=0; "
         "F.cross_entropy(scores.T, ...) does that too)", lambda s: _infonce(s, axis=0)),
    Hint("take the mean over the B rows, not the sum", lambda s: _infonce(s, reduce=torch.sum)),
    Hint("the positive of row i is its own future, column i (labels torch.arange(B)), not column 0",
         lambda s: _infonce(s, labels=torch.zeros(len(s), dtype=torch.long))),
    Hint("the loss is minus the mean log-probability of the positives: check the sign", lambda s: -_infonce(s)),
    Hint("the denominator includes the positive: the softmax is over all B candidates of the row",
         _without_positive),
]

STABLE = ("use torch.log_softmax, torch.logsumexp or F.cross_entropy: with large scores exp overflows (inf / inf "
          "= nan) and a softmax underflows to 0 (log(0) = -inf); those subtract each row's max first")


def _call_infonce(student, s, **options):
    call = describe_call("cpc_infonce", [s], {})
    result = grad_call(student, "cpc_infonce", [s], call, **options)
    if type(result.value) is torch.Tensor and result.value.dim() != 0:
        raise Failure(f"{call} returned shape {list(result.value.shape)}; expected a 0-dim tensor (the mean over "
                      "the rows)")
    return result


def _check_infonce(student, ref, cases):
    for b, dtype, seed in cases:
        s = _logits_case(b, seed, dtype)
        call = describe_call("cpc_infonce", [s], {})
        result = _call_infonce(student, s, return_args=True)
        expect_tensor(result.value, want(ref.cpc_infonce, s), call=call, hints=INFONCE_HINTS, inputs=[s], **tol(dtype))
        expect_unchanged([s], result.args_after, call=call)


@graded(NB, "cpc_infonce", "values")
def test_cpc_infonce_values(student, ref):
    _check_infonce(student, ref, [(b, dtype, 60 + i) for i, b in enumerate((4, 8, 16))
                                  for dtype in (torch.float32, torch.float64)])


@graded(NB, "cpc_infonce", "edge_cases")
def test_cpc_infonce_edge_cases(student, ref):
    # B = 1: one candidate, the positive itself: the loss is 0. B = 2: one negative per row.
    _check_infonce(student, ref, [(1, torch.float32, 70), (1, torch.float64, 71), (2, torch.float32, 72),
                                  (2, torch.float64, 73)])


@graded(NB, "cpc_infonce", "stability")
def test_cpc_infonce_stability(student, ref):
    # scores of hundreds to thousands with the positive far below its row's max in most rows (log(softmax)
    # underflows to log(0)), or all shifted by 1,000 (exp overflows); the value is finite: compared with the
    # float64 computation
    cases = [(8, torch.float32, dict(scale=1000.0, positive=0.0)), (16, torch.float32, dict(scale=300.0, positive=0.0)),
             (6, torch.float32, dict(scale=3.0, shift=1000.0)), (5, torch.float64, dict(scale=3000.0, positive=0.0))]
    for i, (b, dtype, form) in enumerate(cases):
        s = _logits_case(b, 80 + i, dtype, **form)
        call = f"{describe_call('cpc_infonce', [s], {})} on scores of up to {s.abs().max().item():.0f}"
        result = _call_infonce(student, s)
        expected = want(ref.cpc_infonce, s)
        if type(result.value) is torch.Tensor and result.value.dim() == 0 and not torch.isfinite(result.value):
            raise Failure(f"{call} returned {result.value.item()}; expected {expected.item():.6g}, finite\n"
                          f"Hint: {STABLE}")
        try:  # a mistake of the formula is named as in the values check; otherwise the hint is about stability
            expect_tensor(result.value, expected, call=call, hints=INFONCE_HINTS, inputs=[s], **tol(dtype))
        except Failure as e:
            stable = " is wrong: " in str(e) and "\nHint: " not in str(e)  # a wrong value, no other mistake named
            raise (Failure(f"{e}\nHint: {STABLE}") if stable else e) from None


@graded(NB, "cpc_infonce", "gradients")
def test_cpc_infonce_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for b in (5, 8):
            s = _logits_case(b, 90 + b, dtype)
            call = describe_call("cpc_infonce", [s], {})
            result = _call_infonce(student, s, grad_of=[0])
            s64 = s.double().requires_grad_()
            expected = torch.autograd.grad(ref.cpc_infonce(s64), s64)[0]
            _expect_grad(result.grads[0], expected, "scores", call, dtype)


# --------------------------------------------------------------------------- cpc_loss

def _sequence_case(b, T, dz, dc, K, seed, dtype=torch.float32):
    """``z_seq [b, T, dz]``, ``c_seq [b, T, dc]``, ``W [K, dz, dc]``."""
    return (randn((b, T, dz), seed, dtype), randn((b, T, dc), seed + 1, dtype),
            randn((K, dz, dc), seed + 2, dtype, 1 / dc ** 0.5))


def _loss(z, c, W, t, *, future=lambda t, k: t + k, context=lambda t, k: t, matrix=lambda k: k - 1,
          reduce=torch.mean, transpose=False):
    """What the reference computes, in float64, with switches for mistakes (a variant that indexes past the
    sequence raises, and so does not apply)."""
    z, c, W = _double(z, c, W)
    if t < 0 or max(future(t, k) for k in range(1, len(W) + 1)) >= z.shape[1]:
        raise IndexError("outside the sequence")
    losses = []
    for k in range(1, len(W) + 1):
        s = _bilinear(z[:, future(t, k)], c[:, context(t, k)], W[matrix(k)])
        losses.append(_infonce(s.T if transpose else s))
    return reduce(torch.stack(losses))


LOSS_HINTS = [
    Hint("take the mean over the K steps, not the sum", lambda z, c, W, t: _loss(z, c, W, t, reduce=torch.sum)),
    Hint("the future of step k is z[:, t + k] for k = 1..K (with W[k - 1]): the first prediction is of "
         "z[:, t + 1], the step after the context; you started at z[:, t] (k from 0)",
         lambda z, c, W, t: _loss(z, c, W, t, future=lambda t, k: t + k - 1)),
    Hint("the future of step k is z[:, t + k] for k = 1..K, not z[:, t + k + 1]",
         lambda z, c, W, t: _loss(z, c, W, t, future=lambda t, k: t + k + 1)),
    Hint("every step's prediction is made from the same context c[:, t] (c_t sums up the sequence up to t), "
         "not c[:, t + k]", lambda z, c, W, t: _loss(z, c, W, t, context=lambda t, k: t + k)),
    Hint("each step k has its own matrix W_k = W[k - 1]; you used W[0] for every step",
         lambda z, c, W, t: _loss(z, c, W, t, matrix=lambda k: 0)),
    Hint("cpc_scores(z, c, W) has the contexts as rows and InfoNCE takes its softmax over each row: do not "
         "transpose the scores", lambda z, c, W, t: _loss(z, c, W, t, transpose=True)),
]

W_INDEX = "W [K, Dz, Dc] holds W_1 .. W_K as W[0] .. W[K - 1]: step k = 1..K uses W[k - 1]"
FUTURE_INDEX = ("the futures of steps k = 1..K are z_seq[:, t + 1] .. z_seq[:, t + K], all inside the sequence "
                "(t + K < T)")


def _call_loss(student, z, c, W, t, **options):
    """cpc_loss on valid inputs: an IndexError is an index past W or past the sequence."""
    call = describe_call("cpc_loss", [z, c, W], {"t": t})
    try:
        result = grad_call(student, "cpc_loss", [z, c, W, t], call, **options)
    except StudentError as e:
        if e.exc_type == "IndexError":
            hint = W_INDEX if "dimension 0" in e.message else FUTURE_INDEX
            raise Failure(f"{call} raised {e.message}\nHint: {hint}") from None
        raise
    if type(result.value) is torch.Tensor and result.value.dim() != 0:
        raise Failure(f"{call} returned shape {list(result.value.shape)}; expected a 0-dim tensor (the mean over "
                      "the K steps)")
    return result, call


def _check_loss(student, ref, cases):
    for b, T, dz, dc, K, t, dtype, seed in cases:
        z, c, W = _sequence_case(b, T, dz, dc, K, seed, dtype)
        result, call = _call_loss(student, z, c, W, t, return_args=True)
        expect_tensor(result.value, want(ref.cpc_loss, z, c, W, t), call=call, hints=LOSS_HINTS,
                      inputs=[z, c, W, t], **tol(dtype))
        expect_unchanged([z, c, W], result.args_after, call=call)


@graded(NB, "cpc_loss", "values")
def test_cpc_loss_values(student, ref):
    # the last case has t + K = T - 1: the last future is the sequence's last step
    _check_loss(student, ref, [(b, T, dz, dc, K, t, dtype, 100 + 10 * i)
                               for i, (b, T, dz, dc, K, t) in enumerate(((4, 6, 3, 5, 2, 1), (8, 10, 8, 8, 3, 2),
                                                                         (6, 12, 4, 6, 4, 0), (5, 8, 6, 6, 3, 4)))
                               for dtype in (torch.float32, torch.float64)])


@graded(NB, "cpc_loss", "edge_cases")
def test_cpc_loss_edge_cases(student, ref):
    # K = 1 on the shortest sequence (T = 2, t = 0) and at the last t; B = 1 (the loss is 0); Dz = 1, Dc = 1
    _check_loss(student, ref, [(5, 2, 3, 4, 1, 0, torch.float32, 150), (4, 5, 1, 3, 1, 3, torch.float64, 160),
                               (1, 4, 3, 2, 2, 1, torch.float32, 170), (3, 6, 4, 1, 3, 2, torch.float32, 180)])


@graded(NB, "cpc_loss", "errors")
def test_cpc_loss_errors(student, ref):
    # t + K == T (the last future would be z[:, T]), beyond it, and a negative t, which Python would silently
    # take from the end of the sequence
    for T, K, t in ((6, 2, 4), (3, 1, 2), (6, 2, 7), (6, 2, -1), (8, 3, -2)):
        z, c, W = _sequence_case(3, T, 4, 5, K, 200 + T + t)
        call = describe_call("cpc_loss", [z, c, W], {"t": t})
        why = (f"t = {t} < 0: z_seq[:, t + k] and c_seq[:, t] would count from the end of the sequence" if t < 0 else
               f"t + K = {t + K} >= T = {T}: the future z[:, t + K] lies past the sequence")
        try:
            student.call("cpc_loss", z, c, W, t)
        except StudentError as e:
            if e.exc_type == "ValueError":
                continue
            if e.exc_type == "NotImplementedError":
                raise  # the runner says it is not implemented yet
            raise Failure(f"{call} raised {e.message}; expected a ValueError ({why}): check 0 <= t and t + K < T "
                          "before indexing") from None
        raise Failure(f"{call} did not raise; expected a ValueError: {why}")


@graded(NB, "cpc_loss", "gradients")
def test_cpc_loss_gradients(student, ref):
    for dtype in (torch.float32, torch.float64):
        for b, T, dz, dc, K, t in ((4, 7, 3, 5, 2, 1), (6, 6, 4, 4, 3, 2)):
            z, c, W = _sequence_case(b, T, dz, dc, K, 300 + b, dtype)
            result, call = _call_loss(student, z, c, W, t, grad_of=[0, 1, 2])
            inputs = [x.requires_grad_() for x in _double(z, c, W)]
            expected = torch.autograd.grad(ref.cpc_loss(*inputs, t), inputs)
            for i, name in enumerate(("z_seq", "c_seq", "W")):
                _expect_grad(result.grads[i], expected[i], name, call, dtype)

