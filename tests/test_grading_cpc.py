"""The local grade command on realistic 05_cpc submissions: the reference scores full marks,
the starter zero, each known-wrong implementation loses exactly the points of its function
(or of the one check its bug shows in), and correct implementations written another way keep
full marks.

Wrong versions of *different* functions share a submission: a bug in cpc_scores or cpc_infonce
must not cost cpc_loss, which calls them (while cpc_loss is graded, they are the reference's).
"""
from graded_cases import graded_fixture, kit_tests, points_of, readers, right_tests

NB = "05_cpc"
FULL, _without, _only = points_of(NB)


# --------------------------------------------------------------------------- wrong versions

WRONG_1 = {  # the scores transposed, the softmax over the contexts, the sum over the K steps
    "cpc_scores": """
def cpc_scores(z, c, W):
    return z @ W @ c.T  # scores[i, j] = z[i]^T W c[j]: the transpose
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    labels = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(scores.T, labels)  # the softmax over the contexts
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError(f"need 0 <= t and t + K < T, got t={t}, K={K}, T={T}")
    return sum(cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k - 1])) for k in range(1, K + 1))  # no mean
""",
}
EXPECTED_1 = {"cpc_scores": 0, "cpc_infonce": 0, "cpc_loss": _only("cpc_loss", "errors")}

WRONG_2 = {  # W applied to the futures, the log of a softmax, the futures from z[:, t]
    "cpc_scores": """
def cpc_scores(z, c, W):
    return c @ W @ z.T  # c[i]^T W z[j]: a shape error unless Dz == Dc
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    probs = torch.softmax(scores, dim=1)
    return -torch.log(torch.diagonal(probs)).mean()  # log(0) = -inf once a positive is far below its row's max
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError("t out of range")
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k])) for k in range(K)]  # k from 0: z[:, t]
    return torch.stack(losses).mean()
""",
}
EXPECTED_2 = {"cpc_scores": 0, "cpc_infonce": _without("cpc_infonce", "stability"),
              "cpc_loss": _only("cpc_loss", "errors")}

WRONG_3 = {  # a detached z, exp / sum(exp), one W for every step
    "cpc_scores": """
def cpc_scores(z, c, W):
    predictions = c @ W.T
    return predictions @ z.detach().T  # no gradient into the encoder's z
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    e = torch.exp(scores)  # overflows to inf for scores over 88 (float32)
    return -torch.log(e.diagonal() / e.sum(dim=1)).mean()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K = W.shape[0]
    if t < 0 or t + K >= z_seq.shape[1]:
        raise ValueError("not enough steps after t")
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[0])) for k in range(1, K + 1)]  # W[0] always
    return torch.stack(losses).mean()
""",
}
EXPECTED_3 = {"cpc_scores": _without("cpc_scores", "gradients"), "cpc_infonce": _without("cpc_infonce", "stability"),
              "cpc_loss": _only("cpc_loss", "errors")}

WRONG_4 = {  # a loop over the pairs, the sum over the rows, W[k] for k = 1..K
    "cpc_scores": """
def cpc_scores(z, c, W):
    B = z.shape[0]
    rows = []
    for i in range(B):
        rows.append(torch.stack([z[j] @ W @ c[i] for j in range(B)]))
    return torch.stack(rows)
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    return -torch.log_softmax(scores, dim=1).diagonal().sum()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if not 0 <= t < T - K:
        raise ValueError("t out of range")
    return torch.stack([cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k])) for k in range(1, K + 1)]).mean()
""",
}
EXPECTED_4 = {"cpc_scores": _without("cpc_scores", "vectorized"), "cpc_infonce": 0,
              "cpc_loss": _only("cpc_loss", "errors")}  # W[K] raises an IndexError on every valid input

WRONG_5 = {  # a loop over the contexts, the context moving with k
    "cpc_scores": """
def cpc_scores(z, c, W):
    return torch.stack([z @ (W @ c[i]) for i in range(c.shape[0])])
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K = W.shape[0]
    if t < 0 or t + K >= z_seq.shape[1]:
        raise ValueError("t out of range")
    return torch.stack([cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t + k], W[k - 1]))
                        for k in range(1, K + 1)]).mean()
""",
}
EXPECTED_5 = {**FULL, "cpc_scores": _without("cpc_scores", "vectorized"), "cpc_loss": _only("cpc_loss", "errors")}

WRONG_6 = {  # the labels of MoCo (the positive at column 0), a detached W
    "cpc_infonce": """
def cpc_infonce(scores):
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError("t out of range")
    W = W.detach()  # the prediction matrices are not trained
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k - 1])) for k in range(1, K + 1)]
    return torch.stack(losses).mean()
""",
}
EXPECTED_6 = {**FULL, "cpc_infonce": 0, "cpc_loss": _without("cpc_loss", "gradients")}

WRONG_7 = {  # a loop over the pairs through .item(), one loss per row, a negative t let through
    "cpc_scores": """
def cpc_scores(z, c, W):
    B = z.shape[0]
    out = [[(z[j] @ W @ c[i]).item() for j in range(B)] for i in range(B)]
    return torch.tensor(out, dtype=z.dtype, device=z.device)  # right values, no graph
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    return -torch.log_softmax(scores, dim=1).diagonal()  # one loss per row, not their mean
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K = W.shape[0]
    if t + K >= z_seq.shape[1]:  # t = -1 indexes from the end of the sequence
        raise ValueError("t + K must be < T")
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k - 1])) for k in range(1, K + 1)]
    return torch.stack(losses).mean()
""",
}
EXPECTED_7 = {"cpc_scores": _without("cpc_scores", "gradients", "vectorized"), "cpc_infonce": 0,
              "cpc_loss": _without("cpc_loss", "errors")}

WRONG_8 = {  # the sign, t + K == T let through (an IndexError)
    "cpc_infonce": """
def cpc_infonce(scores):
    return F.log_softmax(scores, dim=1).diagonal().mean()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K = W.shape[0]
    if t < 0 or t + K > z_seq.shape[1]:  # lets t + K == T through
        raise ValueError("t out of range")
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[k - 1])) for k in range(1, K + 1)]
    return torch.stack(losses).mean()
""",
}
EXPECTED_8 = {**FULL, "cpc_infonce": 0, "cpc_loss": _without("cpc_loss", "errors")}

# --------------------------------------------------------------------------- right versions, written another way

RIGHT_1 = {  # einsum, log_softmax with gather, all the futures at once
    "cpc_scores": """
def cpc_scores(z, c, W):
    return torch.einsum('jd,de,ie->ij', z, W, c)
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    log_p = F.log_softmax(scores, dim=1)
    idx = torch.arange(scores.shape[0], device=scores.device).unsqueeze(1)
    return -log_p.gather(1, idx).mean()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    if t + K >= T:
        raise ValueError(f"t + K = {t + K} must be < T = {T}")
    futures = z_seq[:, t + 1:t + K + 1]  # [B, K, Dz]
    total = 0
    for k in range(K):
        total = total + cpc_infonce(cpc_scores(futures[:, k], c_seq[:, t], W[k]))
    return total / K
""",
}

RIGHT_2 = {  # z @ W @ c.T transposed at the end, logsumexp minus the diagonal, einsum over the K steps
    "cpc_scores": """
def cpc_scores(z, c, W):
    return (z @ W @ c.T).T
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    return (torch.logsumexp(scores, dim=1) - torch.diagonal(scores)).mean()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError("need 0 <= t and t + K < T")
    futures = z_seq[:, t + 1:t + K + 1]                                # [B, K, Dz]
    scores = torch.einsum('jkd,kde,ie->kij', futures, W, c_seq[:, t])  # [K, B, B]
    log_p = torch.log_softmax(scores, dim=2)
    return -torch.diagonal(log_p, dim1=1, dim2=2).mean()
""",
}

RIGHT_3 = {  # the predictions W c_i by matmul, a hand-written stable log-sum-exp, bmm over the K steps
    "cpc_scores": """
def cpc_scores(z, c, W):
    predictions = torch.matmul(W, c.unsqueeze(-1)).squeeze(-1)  # [B, Dz]: W c_i
    return torch.matmul(predictions, z.transpose(0, 1))
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    m = scores.max(dim=1, keepdim=True).values
    lse = m.squeeze(1) + torch.log(torch.exp(scores - m).sum(dim=1))
    return (lse - scores.diag()).mean()
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError("need 0 <= t and t + K < T")
    B = z_seq.shape[0]
    pred = torch.bmm(W, c_seq[:, t].T.unsqueeze(0).expand(K, -1, -1))  # [K, Dz, B]: W_k c_i
    futures = z_seq[:, t + 1:t + K + 1].transpose(0, 1)               # [K, B, Dz]
    scores = torch.bmm(futures, pred).transpose(1, 2)                  # [K, B (contexts), B (futures)]
    labels = torch.arange(B, device=z_seq.device).repeat(K)
    return F.cross_entropy(scores.reshape(K * B, B), labels)
""",
}

RIGHT_4 = {  # torch.mm, nll_loss of log_softmax, a chained comparison for t
    "cpc_scores": """
def cpc_scores(z, c, W):
    return torch.mm(torch.mm(c, W.t()), z.t())
""",
    "cpc_infonce": """
def cpc_infonce(scores):
    return F.nll_loss(F.log_softmax(scores, dim=1), torch.arange(len(scores), device=scores.device))
""",
    "cpc_loss": """
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if not 0 <= t < T - K:
        raise ValueError(f"t = {t} is outside 0 <= t < T - K = {T - K}")
    return torch.mean(torch.stack([cpc_infonce(cpc_scores(z_seq[:, t + k, :], c_seq[:, t, :], W[k - 1]))
                                   for k in range(1, K + 1)]))
""",
}


# --------------------------------------------------------------------------- grading them

WRONG = {"wrong_1": (WRONG_1, EXPECTED_1), "wrong_2": (WRONG_2, EXPECTED_2), "wrong_3": (WRONG_3, EXPECTED_3),
         "wrong_4": (WRONG_4, EXPECTED_4), "wrong_5": (WRONG_5, EXPECTED_5), "wrong_6": (WRONG_6, EXPECTED_6),
         "wrong_7": (WRONG_7, EXPECTED_7), "wrong_8": (WRONG_8, EXPECTED_8)}
RIGHT = {"right_1": RIGHT_1, "right_2": RIGHT_2, "right_3": RIGHT_3, "right_4": RIGHT_4}


_scores, _checks, _feedback = readers(NB)


graded = graded_fixture(NB, WRONG, RIGHT)
(test_reference_scores_full_marks, test_starter_scores_zero_and_says_not_implemented,
 test_wrong_versions_lose_exactly_their_functions_points) = kit_tests(NB, FULL, WRONG)


def test_a_bug_that_shows_in_one_check_costs_only_that_check(graded):
    cost = {(case, function): {c.check for (f, _), c in _checks(graded[case]).items() if f == function and not c.passed}
            for case, function in (("wrong_2", "cpc_infonce"), ("wrong_3", "cpc_scores"), ("wrong_3", "cpc_infonce"),
                                   ("wrong_4", "cpc_scores"), ("wrong_5", "cpc_scores"), ("wrong_6", "cpc_loss"),
                                   ("wrong_7", "cpc_scores"), ("wrong_7", "cpc_loss"), ("wrong_8", "cpc_loss"),
                                   ("wrong_1", "cpc_loss"))}
    assert cost == {
        ("wrong_2", "cpc_infonce"): {"stability"},              # log(softmax): right on ordinary scores
        ("wrong_3", "cpc_scores"): {"gradients"},               # z.detach(): right values
        ("wrong_3", "cpc_infonce"): {"stability"},              # exp / sum(exp)
        ("wrong_4", "cpc_scores"): {"vectorized"},              # a loop over the pairs
        ("wrong_5", "cpc_scores"): {"vectorized"},              # a loop over the contexts
        ("wrong_6", "cpc_loss"): {"gradients"},                 # W.detach(): right values
        ("wrong_7", "cpc_scores"): {"gradients", "vectorized"},  # .item() in a loop over the pairs
        ("wrong_7", "cpc_loss"): {"errors"},                    # a negative t let through
        ("wrong_8", "cpc_loss"): {"errors"},                    # t + K == T let through
        ("wrong_1", "cpc_loss"): {"values", "edge_cases", "gradients"},  # the sum over k; it still raises
    }


def test_feedback_names_the_likely_mistake(graded):
    w1, w2, w3, w4, w5, w6, w7, w8 = (graded[f"wrong_{i}"] for i in range(1, 9))
    assert "you computed the transpose, z[i]^T W c[j]" in _feedback(w1, "cpc_scores")
    assert "not over the contexts (dim=0" in _feedback(w1, "cpc_infonce")
    assert "the mean over the K steps, not the sum" in _feedback(w1, "cpc_loss")

    scores = _feedback(w2, "cpc_scores")
    assert "you computed c[i]^T W z[j] (with Dz == Dc" in scores  # a square W: wrong values
    assert "raised RuntimeError" in scores and "W is [Dz, Dc]: W @ c[i] is the predicted future" in scores  # shapes
    assert "returned inf" in _feedback(w2, "cpc_infonce")
    assert "use torch.log_softmax, torch.logsumexp or F.cross_entropy" in _feedback(w2, "cpc_infonce")
    assert "you started at z[:, t] (k from 0)" in _feedback(w2, "cpc_loss")

    assert "no gradient reaches z in cpc_scores" in _feedback(w3, "cpc_scores")
    assert "returned nan" in _feedback(w3, "cpc_infonce")
    assert "use torch.log_softmax, torch.logsumexp or F.cross_entropy" in _feedback(w3, "cpc_infonce")
    assert "you used W[0] for every step" in _feedback(w3, "cpc_loss")

    assert "too slow" in _feedback(w4, "cpc_scores") and "no Python loop" in _feedback(w4, "cpc_scores")
    assert "the mean over the B rows, not the sum" in _feedback(w4, "cpc_infonce")
    assert "raised IndexError" in _feedback(w4, "cpc_loss")
    assert "step k = 1..K uses W[k - 1]" in _feedback(w4, "cpc_loss")

    assert "too slow" in _feedback(w5, "cpc_scores")
    assert "the same context c[:, t]" in _feedback(w5, "cpc_loss")

    assert "column i (labels torch.arange(B)), not column 0" in _feedback(w6, "cpc_infonce")
    assert "no gradient reaches W in cpc_loss" in _feedback(w6, "cpc_loss")

    assert "not connected to its inputs by autograd" in _feedback(w7, "cpc_scores")
    assert ".item()" in _feedback(w7, "cpc_scores")
    assert "returned shape [4]; expected a 0-dim tensor" in _feedback(w7, "cpc_infonce")
    assert "t=-1) did not raise; expected a ValueError" in _feedback(w7, "cpc_loss")
    assert "count from the end of the sequence" in _feedback(w7, "cpc_loss")

    assert "check the sign" in _feedback(w8, "cpc_infonce")
    assert "t=4) raised IndexError" in _feedback(w8, "cpc_loss")
    assert "expected a ValueError (t + K = 6 >= T = 6" in _feedback(w8, "cpc_loss")


test_correct_versions_written_another_way_keep_full_marks, test_no_feedback_shows_the_grading_machine = \
    right_tests(NB, FULL, RIGHT)


def test_the_speed_check_times_both_loops(graded):
    """The staff's figures of the reference's speed check: both shapes timed, well under their limits."""
    note = _checks(graded["reference"])[("cpc_scores", "vectorized")].staff_note
    assert note.count("limit") == 2, note
