"""The local grade command on realistic 04_moco submissions: the reference scores full marks,
the starter zero, each known-wrong implementation loses exactly the points of its function
(or of the one check its bug shows in), and correct implementations written another way keep
full marks.

Wrong versions of *different* functions share a submission: a bug in moco_logits must not cost
moco_loss, which calls it (while moco_loss is graded, moco_logits is the reference's).
"""
import pytest
from graded_cases import graded_fixture, kit_tests, points_of, readers, right_tests

from autograder.grading.points import POINTS

NB = "04_moco"
FULL, _without, _ = points_of(NB)


# --------------------------------------------------------------------------- wrong versions

WRONG_1 = {  # a formula the wrong way round, one per function
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    with torch.no_grad():
        for p_q, p_k in zip(query_encoder.parameters(), key_encoder.parameters()):
            p_k.copy_((1 - m) * p_k + m * p_q)  # m on the wrong side
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    n, K = keys.shape[0], queue.shape[0]
    if n > K:
        raise ValueError("too many keys for the queue")
    end = min(ptr + n, K)
    queue[ptr:end] = keys[:end - ptr].detach()  # the keys past the end are dropped, not wrapped to the start
    return (ptr + n) % K
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    pos = torch.sum(q * k.detach(), dim=1, keepdim=True)
    neg = q @ queue.detach().T
    logits = torch.cat([neg, pos], dim=1) / tau  # the positive last
    return logits, torch.zeros(q.shape[0], dtype=torch.long)
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    logits, labels = moco_logits(q, k, queue, tau)
    return -torch.log(F.softmax(logits, dim=0)[:, 0]).mean()  # softmax over the batch
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    idx = torch.arange(x.shape[0])  # 'shuffled'
    return x[idx], idx
""",
    "batch_unshuffle": """
def batch_unshuffle(x, unshuffle_index):
    out = torch.empty_like(x)
    out[unshuffle_index] = x  # scatters: applies the permutation a second time
    return out
""",
}
EXPECTED_1 = {"momentum_update": _without("momentum_update", "values", "edge_cases"), "enqueue": _without("enqueue", "values", "edge_cases"), "moco_logits": 0,
              "moco_loss": 0, "batch_shuffle": _without("batch_shuffle", "randomness"), "batch_unshuffle": 0}

WRONG_2 = {  # detaching, copying and raising mistakes
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    q_state = query_encoder.state_dict()
    for name, p_k in key_encoder.state_dict().items():  # buffers too: BatchNorm's running statistics move
        if p_k.dtype.is_floating_point:  # num_batches_tracked is an integer
            p_k.mul_(m).add_(q_state[name], alpha=1 - m)
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    K = queue.shape[0]
    idx = (ptr + torch.arange(keys.shape[0])) % K  # N > K is not checked: keys overwrite each other
    queue[idx] = keys.detach()
    return (ptr + keys.shape[0]) % K
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    l_pos = torch.einsum('nc,nc->n', q, k).unsqueeze(-1)  # no k.detach(), no queue.detach()
    l_neg = torch.einsum('nc,kc->nk', q, queue)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    return logits, torch.zeros(logits.shape[0], dtype=torch.long)
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    logits, labels = moco_logits(q, k, queue, tau)
    return F.cross_entropy(logits, labels, reduction='sum')  # the sum over the queries
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    shift = int(torch.randint(0, x.shape[0], (1,), generator=generator))
    perm = torch.roll(torch.arange(x.shape[0]), shift)  # each sample lands anywhere, but only N orders
    return x[perm], torch.argsort(perm)
""",
}
EXPECTED_2 = {**FULL, "momentum_update": _without("momentum_update", "values", "edge_cases"), "enqueue": _without("enqueue", "errors"),
              "moco_logits": _without("moco_logits", "gradients"), "moco_loss": 0,
              "batch_shuffle": _without("batch_shuffle", "randomness")}

WRONG_3 = {  # the graph, the pointer and the generator
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    for p_q, p_k in zip(query_encoder.parameters(), key_encoder.parameters()):  # no torch.no_grad()
        p_k.mul_(m).add_((1 - m) * p_q)
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    if len(keys) > len(queue):
        raise ValueError("more keys than queue slots")
    idx = (ptr + torch.arange(len(keys))) % len(queue)
    queue[idx] = keys  # stored with their graph
    return (ptr + len(keys)) % len(queue)
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    logits = torch.cat([(q * k.detach()).sum(1, keepdim=True), q @ queue.detach().T], dim=1) * tau  # multiplied
    return logits, torch.zeros(len(q), dtype=torch.long)
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    perm = torch.randperm(x.shape[0])  # the generator is not used: the global RNG
    return x[perm], torch.argsort(perm)
""",
}
EXPECTED_3 = {**FULL, "momentum_update": _without("momentum_update", "gradients"),  # right values, a graph
              "enqueue": _without("enqueue", "gradients"),  # right values, the keys' graph kept
              "moco_logits": 0, "batch_shuffle": _without("batch_shuffle", "randomness")}

WRONG_4 = {  # the labels, and a pointer as a tensor
    "enqueue": """
def enqueue(queue, ptr, keys):
    N, K = keys.shape[0], queue.shape[0]
    if N > K:
        raise ValueError(f"{N} keys > queue size {K}")
    idx = (ptr + torch.arange(N)) % K
    queue[idx] = keys.detach()
    return (idx[-1] + 1) % K  # a 0-dim tensor, not an int
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    logits = torch.cat([(q * k.detach()).sum(1, keepdim=True), q @ queue.detach().T], dim=1) / tau
    return logits, torch.arange(q.shape[0])  # one class per query, as in SimCLR
""",
}
# the labels are not part of the logits' gradient: that check keeps its points
EXPECTED_4 = {**FULL, "enqueue": _without("enqueue", "values", "edge_cases"),
              "moco_logits": POINTS[NB]["moco_logits"]["gradients"]}

WRONG_5 = {  # float labels, and a pointer past the end
    "enqueue": """
def enqueue(queue, ptr, keys):
    N, K = keys.shape[0], queue.shape[0]
    if N > K:
        raise ValueError("keys do not fit")
    for i in range(N):
        queue[(ptr + i) % K] = keys[i].detach()
    return ptr + N  # not wrapped
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    logits = torch.cat([(q * k.detach()).sum(1, keepdim=True), q @ queue.detach().T], dim=1) / tau
    return logits, torch.zeros(q.shape[0])  # float32 zeros
""",
}
EXPECTED_5 = {**FULL, "enqueue": _without("enqueue", "values", "edge_cases"),
              "moco_logits": POINTS[NB]["moco_logits"]["gradients"]}

WRONG_LOOP = {  # right values but a Python loop over the queries (only the speed check fails), and errors raised
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    rows = []
    for i in range(q.shape[0]):
        pos = torch.dot(q[i], k[i].detach()).view(1)
        neg = queue.detach() @ q[i]
        rows.append(torch.cat([pos, neg]) / tau)
    return torch.stack(rows), torch.zeros(q.shape[0], dtype=torch.long)
""",
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    q_state = query_encoder.state_dict()
    for name, p_k in key_encoder.state_dict().items():  # fails on BatchNorm's integer num_batches_tracked
        p_k.copy_(m * p_k + (1 - m) * q_state[name])
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    if keys.shape[0] > queue.shape[0]:
        raise ValueError("too many keys")
    queue[ptr:ptr + keys.shape[0]] = keys.detach()  # raises once the slice runs past the end
    return (ptr + keys.shape[0]) % queue.shape[0]
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    perm = torch.randperm(x.shape[0], generator=generator)
    return x[perm], perm  # the permutation itself, not its inverse
""",
}
EXPECTED_LOOP = {**FULL, "moco_logits": _without("moco_logits", "vectorized"),
                 "momentum_update": _without("momentum_update", "values", "edge_cases"),
                 "enqueue": _without("enqueue", "values", "edge_cases"),
                 "batch_shuffle": _without("batch_shuffle", "values")}  # the shuffles themselves are random

# --------------------------------------------------------------------------- right versions, written another way

RIGHT_1 = {  # .data, einsum, F.cross_entropy, randperm and argsort
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    for p_q, p_k in zip(query_encoder.parameters(), key_encoder.parameters()):
        p_k.data = m * p_k.data + (1 - m) * p_q.data
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    N, K = keys.shape[0], queue.shape[0]
    if N > K:
        raise ValueError(f"cannot enqueue {N} keys into a queue of size {K}")
    for i in range(N):  # a loop is fine here: enqueue is not timed
        queue[(ptr + i) % K] = keys[i].detach()
    return (ptr + N) % K
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    k, queue = k.detach(), queue.detach()
    l_pos = torch.einsum('nc,nc->n', q, k).unsqueeze(-1)
    l_neg = torch.einsum('nc,kc->nk', q, queue)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    labels = torch.zeros_like(logits[:, 0]).long()
    return logits, labels
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    return F.cross_entropy(*moco_logits(q, k, queue, tau))
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    perm = torch.randperm(x.shape[0], generator=generator)
    return x[perm], torch.argsort(perm)
""",
    "batch_unshuffle": """
def batch_unshuffle(x, unshuffle_index):
    return torch.index_select(x, 0, unshuffle_index)
""",
}

RIGHT_2 = {  # foreach ops, index_copy_, torch.mm, -log_softmax by hand, an inverse by scatter
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    with torch.no_grad():
        k_params, q_params = list(key_encoder.parameters()), list(query_encoder.parameters())
        torch._foreach_mul_(k_params, m)
        torch._foreach_add_(k_params, q_params, alpha=1 - m)
""",
    "enqueue": """
def enqueue(queue, ptr, keys):
    n, size = keys.shape[0], queue.shape[0]
    if n > size:
        raise ValueError("enqueue: more keys than the queue holds")
    rows = torch.arange(ptr, ptr + n) % size
    queue.index_copy_(0, rows, keys.detach())
    return (ptr + n) % size
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    positive = torch.bmm(q.unsqueeze(1), k.detach().unsqueeze(2)).view(-1, 1)
    negatives = torch.mm(q, queue.detach().t())
    return torch.cat((positive, negatives), dim=1) / tau, torch.zeros(q.size(0), dtype=torch.int64)
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    logits, labels = moco_logits(q, k, queue, tau)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()
""",
    "batch_shuffle": """
def batch_shuffle(x, generator=None):
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    return x[perm], inverse
""",
}

RIGHT_3 = {  # named_parameters, F.cosine_similarity for the positive, logsumexp
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    q_params = dict(query_encoder.named_parameters())
    with torch.no_grad():
        for name, p_k in key_encoder.named_parameters():
            p_k.copy_(m * p_k + (1 - m) * q_params[name])
""",
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    pos = F.cosine_similarity(q, k.detach(), dim=1).unsqueeze(1)  # unit vectors: the dot product
    neg = F.normalize(q, dim=1) @ F.normalize(queue.detach(), dim=1).T
    logits = torch.cat([pos, neg], dim=1) / tau
    return logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    logits, _ = moco_logits(q, k, queue, tau)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()
""",
}

COSINE_BROADCAST = {  # the negatives by a broadcast [N, 1, D] against [1, K, D]: right values, a wasteful intermediate
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    pos = F.cosine_similarity(q, k.detach(), dim=1).unsqueeze(1)
    neg = F.cosine_similarity(q.unsqueeze(1), queue.detach().unsqueeze(0), dim=2)
    logits = torch.cat([pos, neg], dim=1) / tau
    return logits, torch.zeros(q.shape[0], dtype=torch.long)
""",
}

WRONG_BROADCAST = {  # the negatives by a broadcast product, [N, 1, D] * [1, K, D]: right values, too slow (intended)
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    k, queue = k.detach(), queue.detach()
    pos = (q * k).sum(dim=-1, keepdim=True)
    neg = (q[:, None, :] * queue[None, :, :]).sum(dim=-1)
    return torch.cat([pos, neg], dim=-1) / tau, torch.zeros(q.shape[0], dtype=torch.long)
""",
    # and right versions of two others: a detached alias updated in place; nll_loss of log_softmax
    "momentum_update": """
def momentum_update(query_encoder, key_encoder, m):
    for p_q, p_k in zip(query_encoder.parameters(), key_encoder.parameters()):
        p_k.detach().mul_(m).add_(p_q.detach() * (1 - m))
""",
    "moco_loss": """
def moco_loss(q, k, queue, tau):
    logits, labels = moco_logits(q, k, queue, tau)
    return F.nll_loss(F.log_softmax(logits, dim=1), labels)
""",
}
EXPECTED_BROADCAST = {**FULL, "moco_logits": _without("moco_logits", "vectorized")}


# --------------------------------------------------------------------------- grading them

WRONG_QUEUE_LOOP = {  # right values, but a Python loop over the queue's keys (K iterations: 65,536 in MoCo)
    "moco_logits": """
def moco_logits(q, k, queue, tau):
    negatives = torch.stack([q @ queue[j].detach() for j in range(queue.shape[0])], dim=1)
    positive = (q * k.detach()).sum(dim=1, keepdim=True)
    return torch.cat([positive, negatives], dim=1) / tau, torch.zeros(q.shape[0], dtype=torch.long)
""",
}
EXPECTED_QUEUE_LOOP = {**FULL, "moco_logits": _without("moco_logits", "vectorized")}

WRONG = {"wrong_queue_loop": (WRONG_QUEUE_LOOP, EXPECTED_QUEUE_LOOP), "wrong_1": (WRONG_1, EXPECTED_1), "wrong_2": (WRONG_2, EXPECTED_2), "wrong_3": (WRONG_3, EXPECTED_3),
         "wrong_4": (WRONG_4, EXPECTED_4), "wrong_5": (WRONG_5, EXPECTED_5), "wrong_loop": (WRONG_LOOP, EXPECTED_LOOP),
         "wrong_broadcast": (WRONG_BROADCAST, EXPECTED_BROADCAST)}
RIGHT = {"right_1": RIGHT_1, "right_2": RIGHT_2, "right_3": RIGHT_3}
TIMED_ONLY_ON_THE_CPU = {"wrong_broadcast"}  # a broadcast is slow on the CPU, not on a GPU


_scores, _checks, _feedback = readers(NB)


graded = graded_fixture(NB, WRONG, RIGHT, cosine_broadcast=COSINE_BROADCAST)
test_reference_scores_full_marks, test_starter_scores_zero_and_says_not_implemented, _ = kit_tests(NB, FULL, WRONG)


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_versions_lose_exactly_their_functions_points(graded, case):
    result, expected = graded[case], WRONG[case][1]
    if case in TIMED_ONLY_ON_THE_CPU and result.device != "cpu":
        expected = {**expected, "moco_logits": FULL["moco_logits"]}
        checks = _checks(result)
        assert all(c.passed for (f, name), c in checks.items() if f == "moco_logits" and name != "vectorized")
        scores = {**_scores(result), "moco_logits": FULL["moco_logits"]}  # its speed on a GPU: not asserted
    else:
        scores = _scores(result)
    assert scores == expected, {f.function: f.feedback for f in result.functions()
                                if f.notebook == NB and f.score != expected[f.function]}


def test_a_bug_that_shows_in_one_check_costs_only_that_check(graded):
    cost = {(case, function): {c.check for (f, _), c in _checks(graded[case]).items() if f == function and not c.passed}
            for case, function in (("wrong_1", "enqueue"), ("wrong_1", "batch_shuffle"), ("wrong_2", "enqueue"),
                                   ("wrong_2", "moco_logits"), ("wrong_2", "batch_shuffle"),
                                   ("wrong_3", "batch_shuffle"), ("wrong_3", "momentum_update"), ("wrong_3", "enqueue"),
                                   ("wrong_4", "moco_logits"),
                                   ("wrong_loop", "moco_logits"), ("wrong_loop", "batch_shuffle"))}
    assert cost == {
        ("wrong_1", "enqueue"): {"values", "edge_cases"},        # it still raises for N > K
        ("wrong_1", "batch_shuffle"): {"randomness"},            # the identity is a permutation
        ("wrong_2", "enqueue"): {"errors"},
        ("wrong_2", "moco_logits"): {"gradients"},               # undetached: the values are right
        ("wrong_2", "batch_shuffle"): {"randomness"},
        ("wrong_3", "batch_shuffle"): {"randomness"},
        ("wrong_3", "momentum_update"): {"gradients"},           # right values, but a graph in the key encoder
        ("wrong_3", "enqueue"): {"gradients"},                   # right rows, but the keys' graph kept
        ("wrong_4", "moco_logits"): {"values", "edge_cases", "vectorized"},  # the labels are not in the gradient
        ("wrong_loop", "moco_logits"): {"vectorized"},
        ("wrong_loop", "batch_shuffle"): {"values"},             # its shuffles are random; its inverse is wrong
    }


def test_feedback_names_the_likely_mistake(graded):
    w1, w2, w3, w4, w5, loop = (graded[c] for c in ("wrong_1", "wrong_2", "wrong_3", "wrong_4", "wrong_5", "wrong_loop"))
    assert "Hint: the formula is reversed" in _feedback(w1, "momentum_update")
    assert "Hint: each key goes to row (ptr + i) % K: wrap around" in _feedback(w1, "enqueue")
    assert "Hint: the positive q_i . k_i goes at index 0" in _feedback(w1, "moco_logits")
    assert "not over the batch (dim=0)" in _feedback(w1, "moco_loss")
    assert "100% of the shuffles left the batch in its order" in _feedback(w1, "batch_shuffle")
    assert "scattering with it" in _feedback(w1, "batch_unshuffle")

    assert "changed the key encoder's buffer" in _feedback(w2, "momentum_update")
    assert "parameters(), not state_dict()" in _feedback(w2, "momentum_update")
    assert "did not raise" in _feedback(w2, "enqueue") and "expected a ValueError" in _feedback(w2, "enqueue")
    assert "a gradient reaches k" in _feedback(w2, "moco_logits") and "k.detach()" in _feedback(w2, "moco_logits")
    assert "the mean over the N queries, not the sum" in _feedback(w2, "moco_loss")
    assert "only 6 distinct permutations" in _feedback(w2, "batch_shuffle")  # a roll: N orders in all
    assert "a random shift or flip of the batch is not enough" in _feedback(w2, "batch_shuffle")

    assert "built an autograd graph" in _feedback(w3, "momentum_update")
    assert "torch.no_grad()" in _feedback(w3, "momentum_update")
    assert "the queue requires grad: store keys.detach()" in _feedback(w3, "enqueue")
    assert "(you multiplied)" in _feedback(w3, "moco_logits")
    assert "generators seeded alike gave other permutations" in _feedback(w3, "batch_shuffle")

    assert "returned tensor(3)" in _feedback(w4, "enqueue") and "as an int" in _feedback(w4, "enqueue")
    assert "expected all zeros" in _feedback(w4, "moco_logits")
    assert "returned 13; expected the next pointer 3" in _feedback(w5, "enqueue")
    assert "expected int64 (torch.long)" in _feedback(w5, "moco_logits")

    assert "too slow" in _feedback(loop, "moco_logits") and "no Python loop" in _feedback(loop, "moco_logits")
    assert "not state_dict()" in _feedback(loop, "momentum_update")
    assert "raised RuntimeError" in _feedback(loop, "enqueue")  # the slice past the end
    assert "Hint: each key goes to row (ptr + i) % K" in _feedback(loop, "enqueue")
    assert "shuffled[unshuffle_index]" in _feedback(loop, "batch_shuffle")
    if graded["wrong_broadcast"].device == "cpu":
        assert "too slow" in _feedback(graded["wrong_broadcast"], "moco_logits")
        assert "no broadcast" in _feedback(graded["wrong_broadcast"], "moco_logits")


test_correct_versions_written_another_way_keep_full_marks, test_no_feedback_shows_the_grading_machine = \
    right_tests(NB, FULL, RIGHT)


def test_normalising_again_inside_moco_logits_keeps_the_values_and_gradient_points(graded):
    """F.cosine_similarity / F.normalize on the (unit) inputs: the same values; its gradient w.r.t. q differs
    from the dot product's only across the unit sphere, which never reaches the encoder."""
    for case in ("right_3", "cosine_broadcast"):
        checks = _checks(graded[case])
        assert all(c.passed for (f, check), c in checks.items() if (f, check) != ("moco_logits", "vectorized")), \
            {k: c.feedback for k, c in checks.items() if not c.passed}
    if graded["cosine_broadcast"].device == "cpu":  # a broadcast [N, K, D]: too slow on the CPU, as the advice says
        assert not _checks(graded["cosine_broadcast"])[("moco_logits", "vectorized")].passed
