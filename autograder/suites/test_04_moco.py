"""Hidden suite of 04_moco (DRAFT on branch wip/04-moco: the notebook does not exist yet).

TODO before it lands: move the helpers shared with test_03_simclr (_randn, _tol, _want, _call_name) into
one module; hints; the vectorized timing of moco_logits; POINTS in grading/points.py; the notebook.
"""
from __future__ import annotations

import torch

from autograder.grading.checks import Failure, describe_call, expect_tensor, graded
from autograder.isolation.specs import generator_spec, mlp_spec
from autograder.isolation.student_process import StudentError

NB = "04_moco"


def _randn(shape, seed, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


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
    return state


def _momentum_case(student, sizes, m, batchnorm, seed):
    q_state, k_state = _state(sizes, seed, batchnorm), _state(sizes, seed + 100, batchnorm)
    query = mlp_spec(sizes, q_state, batchnorm=batchnorm)
    key = mlp_spec(sizes, k_state, batchnorm=batchnorm)
    call = f"momentum_update(query_encoder, key_encoder, m={m}) on an MLP {sizes}" + (" with BatchNorm" if batchnorm else "")
    result = student.call("momentum_update", query, key, m, return_args=True)
    if result.value is not None:
        raise Failure(f"{call} returned {type(result.value).__name__}; it should update key_encoder in place and "
                      "return None")
    q_after, k_after = result.args_after[0], result.args_after[1]
    for name, value in q_state.items():
        if not torch.equal(q_after[name], value):
            raise Failure(f"{call} changed the query encoder's {name}: only the key encoder is updated")
    for name, value in k_state.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            if not torch.equal(k_after[name], value):
                raise Failure(f"{call} changed the key encoder's buffer {name}: the momentum update is for the "
                              "parameters only (parameters(), not state_dict())")
            continue
        want = m * value.double() + (1 - m) * q_state[name].double()
        got = k_after[name]
        reversed_ = (1 - m) * value.double() + m * q_state[name].double()
        if not torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6):
            if torch.allclose(got.double(), reversed_, rtol=1e-5, atol=1e-6):
                raise Failure(f"{call}: the key encoder's {name} is wrong\nHint: the formula is reversed: "
                              "theta_k <- m * theta_k + (1 - m) * theta_q keeps most of the key encoder")
            expect_tensor(got, want.to(got.dtype), call=f"{call}: the key encoder's {name}", rtol=1e-5, atol=1e-6)


@graded(NB, "momentum_update", "values")
def test_momentum_update_values(student, ref):
    for i, (sizes, m, bn) in enumerate((([3, 5, 2], 0.9, False), ([4, 8, 3], 0.999, True), ([2, 6, 6, 1], 0.5, True))):
        _momentum_case(student, sizes, m, bn, seed=10 + i)


@graded(NB, "momentum_update", "edge_cases")
def test_momentum_update_edge_cases(student, ref):
    for i, m in enumerate((0.0, 1.0)):  # m = 0 copies the query encoder, m = 1 freezes the key encoder
        _momentum_case(student, [3, 4, 2], m, True, seed=30 + i)


def _enqueue_case(student, size, dim, ptr, n, seed):
    queue = _randn((size, dim), seed)
    keys = _randn((n, dim), seed + 1)
    call = describe_call("enqueue", [queue, ptr, keys], {})
    result = student.call("enqueue", queue, ptr, keys, return_args=True)
    want_queue = queue.clone()
    rows = [(ptr + i) % size for i in range(n)]
    want_queue[rows] = keys
    if type(result.value) is not int or result.value != (ptr + n) % size:
        raise Failure(f"{call} returned {result.value!r}; expected the next pointer {(ptr + n) % size} "
                      "((ptr + N) % K, as an int)")
    expect_tensor(result.args_after[0], want_queue, call=f"the queue after {call}", rtol=0, atol=0)


@graded(NB, "enqueue", "values")
def test_enqueue_values(student, ref):
    _enqueue_case(student, 10, 4, 0, 3, 1)
    _enqueue_case(student, 10, 4, 8, 5, 2)   # wraps around
    _enqueue_case(student, 16, 3, 15, 1, 3)


@graded(NB, "enqueue", "edge_cases")
def test_enqueue_edge_cases(student, ref):
    _enqueue_case(student, 6, 2, 4, 6, 4)    # N == K: every row, starting at ptr


@graded(NB, "enqueue", "errors")
def test_enqueue_errors(student, ref):
    queue, keys = _randn((4, 2), 5), _randn((5, 2), 6)
    try:
        student.call("enqueue", queue, 0, keys)
    except StudentError as e:
        if e.exc_type == "ValueError":
            return
        raise Failure(f"enqueue with 5 keys for a queue of 4 raised {e.message}; expected a ValueError") from None
    raise Failure("enqueue with 5 keys for a queue of 4 did not raise; expected a ValueError (N > K)")


def _logit_case(n, k, d, seed, dtype=torch.float32):
    return _unit(_randn((n, d), seed, dtype)), _unit(_randn((n, d), seed + 1, dtype)), _unit(_randn((k, d), seed + 2, dtype))


@graded(NB, "moco_logits", "values")
def test_moco_logits_values(student, ref):
    for i, (n, k, d, tau) in enumerate(((4, 16, 8, 0.2), (8, 100, 16, 0.07), (3, 7, 5, 1.0))):
        for dtype in (torch.float32, torch.float64):
            q, key, queue = _logit_case(n, k, d, 40 + i, dtype)
            call = describe_call("moco_logits", [q, key, queue, tau], {})
            result = student.call("moco_logits", q, key, queue, tau)
            if not (isinstance(result.value, (list, tuple)) and len(result.value) == 2):
                raise Failure(f"{call} returned {type(result.value).__name__}; expected (logits, labels)")
            logits, labels = result.value
            want_logits, want_labels = ref.moco_logits(q, key, queue, tau)
            expect_tensor(logits, want_logits, call=f"the logits of {call}",
                          rtol=1e-4 if dtype == torch.float32 else 1e-7, atol=1e-5 if dtype == torch.float32 else 1e-9)
            expect_tensor(labels, want_labels, call=f"the labels of {call}", rtol=0, atol=0)


# TODO moco_logits "gradients": no gradient into k or the queue. The child's grad_of needs a tensor result
# and moco_logits returns a tuple: add a grad_of option that picks the tuple's element (0: the logits).


@graded(NB, "moco_loss", "values")
def test_moco_loss_values(student, ref):
    for i, (n, k, d, tau) in enumerate(((4, 16, 8, 0.2), (8, 100, 16, 0.07))):
        for dtype in (torch.float32, torch.float64):
            q, key, queue = _logit_case(n, k, d, 60 + i, dtype)
            result = student.call("moco_loss", q, key, queue, tau)
            expect_tensor(result.value, ref.moco_loss(q, key, queue, tau), call=describe_call("moco_loss", [q, key, queue, tau], {}),
                          rtol=1e-4 if dtype == torch.float32 else 1e-7, atol=1e-5 if dtype == torch.float32 else 1e-9)


@graded(NB, "moco_loss", "gradients")
def test_moco_loss_gradients(student, ref):
    q, key, queue = _logit_case(6, 20, 8, 70, torch.float64)
    call = describe_call("moco_loss", [q, key, queue, 0.2], {})
    result = student.call("moco_loss", q, key, queue, 0.2, grad_of=[0, 1, 2])
    q64 = q.clone().requires_grad_()
    want = torch.autograd.grad(ref.moco_loss(q64, key, queue, 0.2), q64)[0]
    if result.grads[0] is None:
        raise Failure(f"no gradient reaches q in {call}: is the loss computed from a detached copy?")
    expect_tensor(result.grads[0], want, call=f"the gradient w.r.t. q of {call}", rtol=1e-6, atol=1e-9)
    for index, name in ((1, "k"), (2, "queue")):
        g = result.grads[index]
        if g is not None and g.abs().max() > 0:
            raise Failure(f"a gradient reaches {name} in {call}: the keys and the queue are constants "
                          "(k.detach(), queue.detach()); only the query encoder learns by backpropagation")


def _permutations(student, n, draws, seed):
    """The permutations batch_shuffle drew on ``arange(n)``, one per call (each call seeded anew)."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    perms = []
    for i in range(draws):
        result = student.call("batch_shuffle", x, generator_spec(seed + i))
        shuffled, unshuffle = result.value
        perms.append(shuffled[:, 0].long())
    return torch.stack(perms)


@graded(NB, "batch_shuffle", "values")
def test_batch_shuffle_values(student, ref):
    x = _randn((7, 3), 80)
    call = describe_call("batch_shuffle", [x], {})
    result = student.call("batch_shuffle", x, generator_spec(1))
    if not (isinstance(result.value, (list, tuple)) and len(result.value) == 2):
        raise Failure(f"{call} returned {type(result.value).__name__}; expected (shuffled, unshuffle_index)")
    shuffled, unshuffle = result.value
    rows = sorted(tuple(r.tolist()) for r in shuffled)
    if rows != sorted(tuple(r.tolist()) for r in x):
        raise Failure(f"{call} did not return the rows of x in another order")
    expect_tensor(shuffled[unshuffle], x, call=f"shuffled[unshuffle_index] after {call}", rtol=0, atol=0)


@graded(NB, "batch_shuffle", "randomness")
def test_batch_shuffle_randomness(student, ref):
    n, draws = 6, 600
    perms = _permutations(student, n, draws, seed=1000)
    identity = (perms == torch.arange(n)).all(dim=1).float().mean().item()
    if identity > 0.05:
        raise Failure(f"{identity:.0%} of the shuffles left the batch in its order: draw a random permutation")
    # where each sample lands: uniform over the n positions (a chi-square bound far in the tail)
    counts = torch.stack([(perms == i).sum(dim=0) for i in range(n)]).double()  # [sample, position]
    expected = draws / n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    if chi2 > 80:  # 25 degrees of freedom: mean 25, sd about 7; 80 is beyond 7 sd
        raise Failure(f"the shuffles do not put each sample in every position equally often (chi-square {chi2:.0f} "
                      "for 25 degrees of freedom): use torch.randperm")
    again = _permutations(student, n, 3, seed=1000)
    if not torch.equal(again, perms[:3]):
        raise Failure("batch_shuffle with the same generator gave other permutations: draw with generator=generator")


@graded(NB, "batch_unshuffle", "values")
def test_batch_unshuffle_values(student, ref):
    x = _randn((9, 4), 90)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    result = student.call("batch_unshuffle", x[perm], torch.argsort(perm))
    expect_tensor(result.value, x, call="batch_unshuffle(x[perm], argsort(perm))", rtol=0, atol=0)
