"""The process-group code on a real 2-process gloo group (CPU): MoCo's shuffling BN and SimCLR's global negatives.

Each test starts two processes (a few seconds: each imports torch) that meet through a file, without network.
"""
import pytest
import torch

from autograder.grading.reference import load_reference
from course_utils import distributed

WORLD = 2


@pytest.fixture(scope="module")
def shuffled():
    return distributed.spawn(distributed.shuffle_bn_demo, WORLD, 8, 0, backend="gloo")


def test_shuffle_then_unshuffle_restores_each_ranks_order(shuffled):
    for rank, out in enumerate(shuffled):
        assert out["ids_after"] == out["ids_before"], rank
        assert out["seen_ids"] != out["ids_before"]  # the BN saw another batch than its own, in another order


def test_each_processs_bn_saw_samples_of_both_processes(shuffled):
    every = sorted(i for out in shuffled for i in out["seen_ids"])
    assert every == sorted(i for out in shuffled for i in out["ids_before"])  # a permutation of the whole batch
    for rank, out in enumerate(shuffled):
        origins = {int(i) // 1000 for i in out["seen_ids"]}
        assert origins == {0, 1}, (rank, out["seen_ids"])


def test_the_gathered_keys_enter_every_ranks_queue_in_the_same_order(shuffled):
    first = shuffled[0]["queue"]
    for out in shuffled[1:]:
        assert torch.equal(out["queue"], first)
    ids = first[:WORLD * 8, 0].tolist()
    assert ids == [i for out in shuffled for i in out["ids_before"]]  # rank 0's keys, then rank 1's


def test_simclr_across_processes_is_the_single_process_loss_on_the_whole_batch():
    g = torch.Generator().manual_seed(0)
    left, right, tau = torch.randn(12, 16, generator=g), torch.randn(12, 16, generator=g), 0.5
    outs = distributed.spawn(distributed.simclr_across_processes_demo, WORLD, left, right, tau, backend="gloo")
    reference = load_reference("03_simclr").simclr_loss_vectorized
    l64, r64 = left.double().requires_grad_(), right.double().requires_grad_()
    whole = reference(l64, r64, tau)
    whole.backward()
    assert sum(o["loss"] for o in outs) / WORLD == pytest.approx(whole.item(), rel=1e-5)
    n = len(left) // WORLD
    for rank, out in enumerate(outs):
        mine = slice(rank * n, (rank + 1) * n)
        # all_gather's backward sums every rank's gradient; DDP then averages over the ranks
        torch.testing.assert_close(out["grad_left"] / WORLD, l64.grad[mine].float(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out["grad_right"] / WORLD, r64.grad[mine].float(), rtol=1e-4, atol=1e-6)


def test_spawn_refuses_an_empty_group():
    with pytest.raises(ValueError, match="world_size"):
        distributed.spawn(distributed.shuffle_bn_demo, 0)


def test_the_cross_process_versions_refuse_one_process():
    """They are the process-group versions of graded functions (03's loss, 04's shuffle), not a way round them."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 8, generator=g)
    with pytest.raises(RuntimeError, match="at least 2 processes.*simclr_loss_vectorized"):
        distributed.simclr_loss_across_processes(z, z, 0.5)
    with pytest.raises(RuntimeError, match="at least 2 processes.*batch_shuffle"):
        distributed.gather_shuffle(z)
