"""Hidden suite of 04_moco: every graded function against the reference.

Run by the grader (`autograder.grading.grade`: the local ``grade`` command
and Gradescope) and inside nbgrader's kernel
(`autograder.frontends.nbgrader_hook`); to grade one notebook by hand::

    python -m autograder grade path/to/04_moco.ipynb
"""
from __future__ import annotations

import torch
from autograder.grading.checks import Failure, Hint, describe, describe_call, expect_tensor, expect_vectorized, graded
from autograder.isolation.specs import generator_spec, mlp_spec
from autograder.isolation.student_process import StudentError
from autograder.suites.common import randn, tol, unit, want

NB = "04_moco"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------- momentum_update

def _state(sizes, seed, batchnorm):
    """A model's state_dict with distinct parameters and buffers (running statistics far from their defaults)."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers += ([torch.nn.BatchNorm1d(a)] if batchnorm else []) + [torch.nn.ReLU()]
        layers.append(torch.nn.Linear(a, b))
    state = torch.nn.Sequential(*layers).state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    for name, value in state.items():
        if name.endswith(("running_mean", "running_var")):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        elif name.endswith("num_batches_tracked"):
            value.fill_(7)
        else:
            value.normal_(generator=g)  # parameters of another scale than the default init's
    return state


NO_GRAD = ("wrap the update in torch.no_grad() (or update p.data): the key encoder is not trained by "
           "backpropagation")


def _momentum_case(student, sizes, m, batchnorm, seed, graph=False):
    """momentum_update on a query MLP (parameters requiring grad) and a key MLP (frozen, as in MoCo); with
    ``graph``, only whether it built an autograd graph into the key encoder (its values are the other checks')."""
    q_state, k_state = _state(sizes, seed, batchnorm), _state(sizes, seed + 100, batchnorm)
    query = mlp_spec(sizes, q_state, batchnorm=batchnorm)
    key = mlp_spec(sizes, k_state, batchnorm=batchnorm, requires_grad=False)
    call = f"momentum_update(query_encoder, key_encoder, m={m}) on an MLP {sizes}" + (" with BatchNorm" if batchnorm else "")
    try:
        result = student.call("momentum_update", query, key, m, return_args=True, report_graph=True)
    except StudentError as e:
        if "leaf Variable" in e.message or "requires grad" in e.message:
            raise Failure(f"{call} raised {e.message}\nHint: {NO_GRAD}") from None
        raise
    if graph:
        if result.graph[1]:
            raise Failure(f"{call} built an autograd graph into the key encoder's parameters\nHint: {NO_GRAD}")
        return
    if result.value is not None:
        raise Failure(f"{call} returned {describe(result.value)}; it should update key_encoder in place and return None")
    q_after, k_after = result.args_after[0], result.args_after[1]
    for name, value in q_state.items():
        if not torch.equal(q_after[name], value):
            raise Failure(f"{call} changed the query encoder's {name}: only the key encoder is updated")
    for name, value in k_state.items():
        if name.endswith(BUFFERS):
            if not torch.equal(k_after[name], value):
                raise Failure(f"{call} changed the key encoder's buffer {name}: the momentum update is for the "
                              "parameters only (parameters(), not state_dict())")
            continue
        moved = m * value.double() + (1 - m) * q_state[name].double()
        reversed_ = (1 - m) * value.double() + m * q_state[name].double()
        got = k_after[name]
        if not torch.allclose(got.double(), moved, rtol=1e-5, atol=1e-6):
            message = f"{call}: the key encoder's {name} is wrong"
            if torch.allclose(got.double(), reversed_, rtol=1e-5, atol=1e-6):
                raise Failure(f"{message}\nHint: the formula is reversed: theta_k <- m * theta_k + (1 - m) * theta_q "
                              "keeps most of the key encoder")
            expect_tensor(got, moved.to(got.dtype), call=f"{call}: the key encoder's {name}", rtol=1e-5, atol=1e-6)


@graded(NB, "momentum_update", "values")
def test_momentum_update_values(student, ref):
    for i, (sizes, m, bn) in enumerate((([3, 5, 2], 0.9, False), ([4, 8, 3], 0.999, True), ([2, 6, 6, 1], 0.5, True))):
        _momentum_case(student, sizes, m, bn, seed=10 + i)


@graded(NB, "momentum_update", "edge_cases")
def test_momentum_update_edge_cases(student, ref):
    for i, m in enumerate((0.0, 1.0)):  # m = 0 copies the query encoder, m = 1 freezes the key encoder
        _momentum_case(student, [3, 4, 2], m, True, seed=30 + i)


@graded(NB, "momentum_update", "gradients")
def test_momentum_update_gradients(student, ref):
    """No autograd graph: the key encoder is not trained by backpropagation, and a graph kept in its
    parameters would grow with every step."""
    _momentum_case(student, [4, 8, 3], 0.99, True, seed=40, graph=True)


# --------------------------------------------------------------------------- enqueue

WRAP = "each key goes to row (ptr + i) % K: wrap around the end of the queue"


def _enqueue_case(student, size, dim, ptr, n, seed, dtype=torch.float32, graph=False):
    """enqueue on a seeded queue and keys (the keys requiring grad, as the key encoder's output may); with
    ``graph``, only whether the queue took the keys' graph."""
    queue, keys = randn((size, dim), seed, dtype), randn((n, dim), seed + 1, dtype)
    call = describe_call("enqueue", [queue, ptr, keys], {})
    try:
        result = student.call("enqueue", queue, ptr, keys, return_args=True, requires_grad=[2], report_graph=True)
    except StudentError as e:  # a slice queue[ptr:ptr + N] past the end is shorter than the keys
        if ptr + n > size and e.exc_type == "RuntimeError" and "size" in e.message:
            raise Failure(f"{call} raised {e.message}\nHint: {WRAP}") from None
        raise
    if graph:
        if result.graph[0]:
            raise Failure(f"after {call} the queue requires grad: store keys.detach(), so that no graph is kept "
                          "from one step to the next")
        return
    expected = queue.clone()
    expected[[(ptr + i) % size for i in range(n)]] = keys
    after = result.args_after[0]
    if type(result.value) is not int or result.value != (ptr + n) % size:
        raise Failure(f"{call} returned {result.value!r}; expected the next pointer {(ptr + n) % size} "
                      "((ptr + N) % K, as an int)")
    if type(after) is torch.Tensor and after.shape == queue.shape and torch.equal(after, queue):
        raise Failure(f"{call} left the queue unchanged: write the keys into it in place (queue[rows] = keys)")
    expect_tensor(after, expected, call=f"the queue after {call}", rtol=0, atol=0,
                  hints=[Hint(WRAP, lambda q, p, k: _no_wrap(q, p, k))], inputs=[queue, ptr, keys])


def _no_wrap(queue, ptr, keys):
    """Keys written from ptr on, those past the end dropped (a slice queue[ptr:ptr + N] that does not wrap)."""
    out = queue.clone()
    fit = min(len(keys), len(queue) - ptr)
    out[ptr:ptr + fit] = keys[:fit]
    return out


@graded(NB, "enqueue", "values")
def test_enqueue_values(student, ref):
    _enqueue_case(student, 10, 4, 0, 3, 1)
    _enqueue_case(student, 10, 4, 8, 5, 2)    # wraps around
    _enqueue_case(student, 16, 3, 15, 1, 3, torch.float64)


@graded(NB, "enqueue", "edge_cases")
def test_enqueue_edge_cases(student, ref):
    _enqueue_case(student, 6, 2, 4, 6, 4)     # N == K: every row, starting at ptr
    _enqueue_case(student, 5, 3, 0, 5, 5)     # N == K from 0: the pointer comes back to 0


@graded(NB, "enqueue", "gradients")
def test_enqueue_gradients(student, ref):
    _enqueue_case(student, 12, 4, 2, 5, 7, graph=True)


@graded(NB, "enqueue", "errors")
def test_enqueue_errors(student, ref):
    queue, keys = randn((4, 2), 5), randn((5, 2), 6)
    call = "enqueue(float32 [4, 2], 0, float32 [5, 2])"
    try:
        result = student.call("enqueue", queue, 0, keys, return_args=True)
    except StudentError as e:
        if e.exc_type == "ValueError":
            return
        if e.exc_type == "NotImplementedError":
            raise  # the runner says it is not implemented yet
        raise Failure(f"{call} raised {e.message}; expected a ValueError: 5 keys do not fit a queue of 4") from None
    changed = "" if torch.equal(result.args_after[0], queue) else " and overwrote keys written in the same call"
    raise Failure(f"{call} did not raise{changed}; expected a ValueError (N > K: raise it before writing)")


# --------------------------------------------------------------------------- moco_logits

def _logit_case(n, k, d, seed, dtype=torch.float32):
    """L2-normalised ``q, k [n, d]`` and ``queue [k, d]``, with positives more similar than negatives."""
    q = unit(randn((n, d), seed, dtype))
    key = unit(q + 0.5 * unit(randn((n, d), seed + 1, dtype)))
    return q, key, unit(randn((k, d), seed + 2, dtype))


def _logits(q, k, queue, tau, *, positive_last=False, negatives_of=None, scale=None):
    """What the reference computes, in float64, with switches for mistakes."""
    q, k, queue = q.double(), k.double(), queue.double()
    pos = (q * k).sum(1, keepdim=True)
    neg = (q if negatives_of is None else negatives_of(q, k)) @ queue.T
    parts = [neg, pos] if positive_last else [pos, neg]
    return torch.cat(parts, 1) * (1 / tau if scale is None else scale(tau))


def _enqueued_first(q, k, queue, tau):
    queue = queue.double().clone()
    queue[:len(k)] = k.double()
    return _logits(q, k, queue, tau)


LOGIT_HINTS = [
    Hint("the positive q_i . k_i goes at index 0, before the K negatives", lambda q, k, u, t: _logits(q, k, u, t, positive_last=True)),
    Hint("divide the similarities by the temperature tau (you multiplied)", lambda q, k, u, t: _logits(q, k, u, t, scale=lambda t: t)),
    Hint("divide the similarities by the temperature tau", lambda q, k, u, t: _logits(q, k, u, t, scale=lambda t: 1.0)),
    Hint("the negatives are each query against the queue (q @ queue.T), not the keys",
         lambda q, k, u, t: _logits(q, k, u, t, negatives_of=lambda q, k: k)),
    Hint("the queue already held this batch's keys: enqueue them after the logits are computed, so that a key is "
         "never a negative of its own query", _enqueued_first),
]


def _split(result, call, n, k):
    if not (isinstance(result.value, (list, tuple)) and len(result.value) == 2):
        raise Failure(f"{call} returned {describe(result.value)}; expected a tuple (logits, labels)")
    logits, labels = result.value
    if n > 1 and type(logits) is torch.Tensor and tuple(logits.shape) == (n, n + k):
        raise Failure(f"the logits of {call} have shape {list(logits.shape)}; expected [{n}, {1 + k}]: each query has "
                      "one positive, its own key (q_i . k_i), then the K negatives of the queue; not q @ k.T")
    return logits, labels


def _check_labels(labels, n, device, call):
    if type(labels) is not torch.Tensor or labels.shape != (n,) or labels.dtype != torch.long:
        raise Failure(f"the labels of {call} are {describe(labels)}; expected int64 (torch.long) [{n}]")
    if labels.device != device:
        raise Failure(f"the labels of {call} are on {labels.device}; expected {device}, the inputs' device "
                      "(torch.zeros(N, dtype=torch.long, device=q.device))")
    if not torch.equal(labels.cpu(), torch.zeros(n, dtype=torch.long)):
        raise Failure(f"the labels of {call} are {labels.tolist()[:8]}...; expected all zeros: the positive is at "
                      "index 0 for every query")


def _check_logits(student, ref, cases):
    for n, k, d, tau, dtype, seed in cases:
        q, key, queue = _logit_case(n, k, d, seed, dtype)
        call = describe_call("moco_logits", [q, key, queue, tau], {})
        result = student.call("moco_logits", q, key, queue, tau, return_args=True)
        logits, labels = _split(result, call, n, k)
        expect_tensor(logits, want(ref.moco_logits, q, key, queue, tau)[0], call=f"the logits of {call}",
                      hints=LOGIT_HINTS, inputs=[q, key, queue, tau], **tol(dtype))
        _check_labels(labels, n, q.device, call)
        for i, name in ((0, "q"), (1, "k"), (2, "queue")):
            if not torch.equal(result.args_after[i], (q, key, queue)[i]):
                raise Failure(f"{call} modified {name} in place" + (
                    ": the queue is written by enqueue, after the logits are computed" if name == "queue" else ""))


@graded(NB, "moco_logits", "values")
def test_moco_logits_values(student, ref):
    _check_logits(student, ref, [(n, k, d, tau, dtype, 40 + i)
                                 for i, (n, k, d, tau) in enumerate(((4, 16, 8, 0.2), (8, 100, 16, 0.07), (3, 7, 5, 1.0)))
                                 for dtype in (torch.float32, torch.float64)])


@graded(NB, "moco_logits", "edge_cases")
def test_moco_logits_edge_cases(student, ref):
    _check_logits(student, ref, [(1, 1, 4, 0.2, torch.float32, 50), (3, 5, 1, 0.5, torch.float32, 51),
                                 (1, 6, 3, 0.1, torch.float64, 52)])


def _expect_constant(result, index, name, call, fix):
    g = result.grads[index]
    if g is not None and g.abs().max() > 0:
        raise Failure(f"a gradient reaches {name} through {call}: {fix}")


def _tangent(grad, q):
    """The part of a gradient w.r.t. the unit rows of ``q`` along the unit sphere: all that reaches the encoder
    through ``q = F.normalize(z)``. Code that normalises q again (F.cosine_similarity) differs only across it."""
    if type(grad) is not torch.Tensor or grad.shape != q.shape:
        return grad  # expect_tensor says what is wrong with it
    return grad - (grad * q).sum(dim=1, keepdim=True) * q


def _check_gradients(student, ref, function, item=None):
    """Gradients of ``function`` (its logits, element ``item``, or the loss) w.r.t. q match the reference's
    (along the unit sphere, where q lives); none reach k or the queue."""
    for dtype in (torch.float32, torch.float64):
        for n, k, d, tau in ((5, 12, 8, 0.2), (16, 40, 4, 0.5)):
            q, key, queue = _logit_case(n, k, d, 70 + n, dtype)
            call = describe_call(function, [q, key, queue, tau], {})
            # the logits' gradient along a random direction: a sum would not see logits in another order
            options = {} if item is None else {"grad_of_item": item, "grad_output": randn((n, 1 + k), 80 + n, dtype)}
            result = student.call(function, q, key, queue, tau, grad_of=[0, 1, 2], **options)
            q64 = q.double().requires_grad_()
            value = getattr(ref, function)(q64, key.double(), queue.double(), tau)
            value = value[item] if item is not None else value
            direction = options["grad_output"].double() if item is not None else torch.ones((), dtype=torch.float64)
            expected = torch.autograd.grad(value, q64, direction)[0].to(dtype)
            if result.grads[0] is None:
                raise Failure(f"no gradient reaches q in {call}: is it computed from a detached copy (.detach(), "
                              ".item(), .numpy(), torch.tensor(...))?")
            expect_tensor(_tangent(result.grads[0], q), _tangent(expected, q), call=f"the gradient w.r.t. q of {call}",
                          **tol(dtype))
            _expect_constant(result, 1, "k", call, "the keys are constants (use k.detach()); only the query encoder "
                                                   "learns by backpropagation")
            _expect_constant(result, 2, "the queue", call, "the queue's keys are constants (use queue.detach())")


@graded(NB, "moco_logits", "gradients")
def test_moco_logits_gradients(student, ref):
    _check_gradients(student, ref, "moco_logits", item=0)


def _logits_loop(q, k, queue, tau):
    """moco_logits with a Python loop over the queries (one matrix-vector product each)."""
    rows = [torch.cat([(q[i] * k[i]).sum().view(1), queue @ q[i]]) / tau for i in range(len(q))]
    return torch.stack(rows), torch.zeros(len(q), dtype=torch.long, device=q.device)


def _logits_queue_loop(q, k, queue, tau):
    """moco_logits with a Python loop over the queue's keys (one matrix-vector product each)."""
    negatives = torch.stack([q @ queue[j] for j in range(len(queue))], dim=1)
    return torch.cat([(q * k).sum(1, keepdim=True), negatives], 1) / tau, \
        torch.zeros(len(q), dtype=torch.long, device=q.device)


def _unit_inputs(args, seed):
    """New unit rows of the shapes of ``args`` (moco_logits' inputs are L2-normalised), the same tau."""
    return [*_logit_case(len(args[0]), len(args[2]), args[0].shape[1], seed), args[3]]


VECTORIZED_ADVICE = ("compute the negatives with one matrix product, q @ queue.T (no Python loop over the queries or "
                     "the queue, and no broadcast q[:, None] * queue[None], which at MoCo's size, N = 256, "
                     "K = 65,536, D = 128, would need an 8 GB intermediate)")


@graded(NB, "moco_logits", "vectorized")
def test_moco_logits_vectorized(student, ref):
    # Two shapes, one per loop to catch (benchmarks/speed_ratios.py). Many queries and a short queue, against a
    # loop over the queries: the fewer keys, the more a loop's per-query cost (~4 us of Python and dispatch) weighs
    # against the matrix product (at K = 512 the fastest loop, the negatives only, one product a query, was only
    # 6x the slowest whole-tensor way; at K = 64 it is 12 to 15x: ~9 ms against 0.6 to 0.7 ms), and a small result
    # keeps the channel's jitter small. D = 64, so that a broadcast q[:, None] * queue[None] ([N, K, D], 64 times
    # the result) shows as slow as it is at MoCo's size (~17 ms, 4x over the limit; the cosine_similarity
    # broadcast 10x). The grader's loop (a dot product, a product and a cat per query) is 4x the fastest loop, so
    # the limit, halfway between the slowest whole-tensor way and the fastest loop (log scale), is at 0.35. Then
    # few queries and a queue of 4,096 keys, against a loop over the queue (the fastest loop ~14 ms, 50x the
    # slowest whole-tensor way; 16 queries keep the logits small, and so the channel's jitter).
    figures = []
    for (n, k, d), loop, closeness in zip(LOGITS_SIZES, (_logits_loop, _logits_queue_loop), LOGITS_CLOSENESS):
        q, key, queue = _logit_case(n, k, d, 90)
        figures.append(expect_vectorized(student, "moco_logits", [q, key, queue, 0.2], reference=ref.moco_logits,
                                         loop=loop, closeness=closeness, fresh=_unit_inputs, advice=VECTORIZED_ADVICE))
    return "; ".join(figures)


LOGITS_SIZES = ((2048, 64, 64), (16, 4096, 16))  # N, K, D: against a loop over the queries, over the queue
LOGITS_CLOSENESS = (0.35, 0.55)


# --------------------------------------------------------------------------- moco_loss

def _loss_of(logits, *, axis=1, reduce=torch.mean):
    return reduce(-torch.log_softmax(logits, dim=axis)[:, 0])


LOSS_HINTS = [
    Hint("take the softmax over each query's 1 + K logits (dim=1), not over the batch (dim=0)",
         lambda q, k, u, t: _loss_of(_logits(q, k, u, t), axis=0)),
    Hint("take the mean over the N queries, not the sum", lambda q, k, u, t: _loss_of(_logits(q, k, u, t), reduce=torch.sum)),
    Hint("the denominator includes the positive: cross-entropy over all 1 + K logits with label 0",
         lambda q, k, u, t: (torch.logsumexp(_logits(q, k, u, t)[:, 1:], 1) - _logits(q, k, u, t)[:, 0]).mean()),
    *[Hint(h.message, lambda q, k, u, t, v=h.variant: _loss_of(v(q, k, u, t))) for h in LOGIT_HINTS],
]


def _check_loss(student, ref, cases):
    for n, k, d, tau, dtype, seed in cases:
        q, key, queue = _logit_case(n, k, d, seed, dtype)
        call = describe_call("moco_loss", [q, key, queue, tau], {})
        result = student.call("moco_loss", q, key, queue, tau)
        if type(result.value) is torch.Tensor and result.value.dim() != 0:
            raise Failure(f"{call} returned shape {list(result.value.shape)}; expected a 0-dim tensor (the mean over "
                          "the queries)")
        expect_tensor(result.value, want(ref.moco_loss, q, key, queue, tau), call=call, hints=LOSS_HINTS,
                      inputs=[q, key, queue, tau], **tol(dtype))


@graded(NB, "moco_loss", "values")
def test_moco_loss_values(student, ref):
    _check_loss(student, ref, [(n, k, d, tau, dtype, 60 + i)
                               for i, (n, k, d, tau) in enumerate(((4, 16, 8, 0.2), (8, 100, 16, 0.07), (6, 30, 4, 1.0)))
                               for dtype in (torch.float32, torch.float64)])


@graded(NB, "moco_loss", "edge_cases")
def test_moco_loss_edge_cases(student, ref):
    _check_loss(student, ref, [(1, 1, 4, 0.2, torch.float32, 65), (3, 5, 1, 0.5, torch.float64, 66)])


@graded(NB, "moco_loss", "gradients")
def test_moco_loss_gradients(student, ref):
    _check_gradients(student, ref, "moco_loss")


# --------------------------------------------------------------------------- batch_shuffle, batch_unshuffle

def _shuffled(student, x, seed):
    """``(shuffled, unshuffle_index)`` of one call with a seeded generator, checked for their form."""
    call = describe_call("batch_shuffle", [x], {"generator": "torch.Generator"})
    result = student.call("batch_shuffle", x, generator_spec(seed), return_args=True)
    if not (isinstance(result.value, (list, tuple)) and len(result.value) == 2):
        raise Failure(f"{call} returned {describe(result.value)}; expected a tuple (shuffled, unshuffle_index)")
    shuffled, index = result.value
    if type(shuffled) is not torch.Tensor or shuffled.shape != x.shape or shuffled.dtype != x.dtype:
        raise Failure(f"the shuffled batch of {call} is {describe(shuffled)}; expected {describe(x)}")
    if type(index) is not torch.Tensor or index.shape != (len(x),) or index.dtype != torch.long:
        raise Failure(f"the unshuffle index of {call} is {describe(index)}; expected int64 (torch.long) [{len(x)}]")
    if not torch.equal(result.args_after[0], x):
        raise Failure(f"{call} modified x in place: return x[perm], a new tensor")
    return shuffled, index, call


@graded(NB, "batch_shuffle", "values")
def test_batch_shuffle_values(student, ref):
    for shape, seed in (((7, 3), 80), ((5, 2, 4, 4), 81), ((1, 3), 82)):
        x = randn(shape, seed)
        shuffled, index, call = _shuffled(student, x, seed)
        rows = lambda t: sorted(tuple(r.flatten().tolist()) for r in t)  # noqa: E731
        if rows(shuffled) != rows(x):
            raise Failure(f"{call} did not return the rows of x in another order (every row exactly once)")
        expect_tensor(shuffled[index], x, call=f"shuffled[unshuffle_index] after {call}", rtol=0, atol=0)


def _permutations(student, n, draws, seed):
    """The permutations batch_shuffle drew on ``arange(n)``, one per call with a generator seeded ``seed + i``."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    return torch.stack([_shuffled(student, x, seed + i)[0][:, 0].long() for i in range(draws)])


@graded(NB, "batch_shuffle", "randomness")
def test_batch_shuffle_randomness(student, ref):
    n, draws = 6, 600
    perms = _permutations(student, n, draws, seed=1000)
    identity = (perms == torch.arange(n)).all(dim=1).float().mean().item()
    in_order = Failure(f"{identity:.0%} of the shuffles left the batch in its order: draw a random permutation "
                       "(torch.randperm(N, generator=generator))")
    if identity > 0.75:  # mostly not shuffled (a random shift or flip, the identity 1/N or 1/2 of the time, is
        raise in_order   # told so by the count of distinct permutations below)
    # where each sample lands: uniform over the n positions. 25 degrees of freedom (mean 25, sd 7): 80 is
    # beyond 7 sd, so a uniform shuffle passes except with a vanishing probability, and a biased one fails.
    counts = torch.stack([(perms == i).sum(dim=0) for i in range(n)]).double()  # [sample, position]
    expected = draws / n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    if chi2 > 80:
        raise Failure(f"the shuffles do not put each sample in every position equally often (chi-square {chi2:.0f} "
                      "for 25 degrees of freedom): draw a uniform permutation with torch.randperm")
    distinct = len({tuple(p.tolist()) for p in perms})
    if distinct < 360:  # 600 uniform draws among 720 permutations: 407 distinct on average, sd 8
        raise Failure(f"only {distinct} distinct permutations in {draws} shuffles of 6 samples; a uniform shuffle "
                      "gives about 407 (a random shift or flip of the batch is not enough): draw each permutation "
                      "with torch.randperm")
    if identity > 0.05:  # a uniform permutation of 6 is the identity with probability 1/720
        raise in_order
    again = _permutations(student, n, 3, seed=1000)
    if not torch.equal(again, perms[:3]):
        raise Failure("batch_shuffle with generators seeded alike gave other permutations: draw with "
                      "torch.randperm(N, generator=generator)")
    # without a generator (as the training step calls it): torch's global generator, new draws every call
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    unseeded = [student.call("batch_shuffle", x, seed=2000 if i == 0 else None).value[0][:, 0].long() for i in range(200)]
    distinct = len({tuple(p.tolist()) for p in unseeded})
    if distinct < 140:  # 200 uniform draws among 720: 175 distinct on average, sd 4
        raise Failure(f"batch_shuffle(x) without a generator gave only {distinct} distinct permutations in 200 calls "
                      "(about 175 expected): with generator=None, draw from torch's global generator "
                      "(torch.randperm(N, generator=None)), not from a fixed seed")


@graded(NB, "batch_unshuffle", "values")
def test_batch_unshuffle_values(student, ref):
    for shape, seed in (((9, 4), 90), ((6, 3, 2, 2), 91), ((1, 5), 92)):
        x = randn(shape, seed, torch.float64 if seed == 91 else torch.float32)
        perm = torch.randperm(shape[0], generator=torch.Generator().manual_seed(seed))
        result = student.call("batch_unshuffle", x[perm], torch.argsort(perm), return_args=True)
        call = f"batch_unshuffle(x[perm], argsort(perm)) with x {describe(x)}"
        expect_tensor(result.value, x, call=call, rtol=0, atol=0,
                      hints=[Hint("index with the unshuffle index (x[unshuffle_index]); scattering with it "
                                  "(out[unshuffle_index] = x) applies the permutation a second time",
                                  lambda s, i: _scatter(s, i))], inputs=[x[perm], torch.argsort(perm)])
        if not torch.equal(result.args_after[0], x[perm]):
            raise Failure(f"{call} modified its input in place: return a new tensor")


def _scatter(shuffled, index):
    out = torch.empty_like(shuffled)
    out[index] = shuffled
    return out

