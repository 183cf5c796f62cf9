"""The 03_simclr reference solutions (from the source notebook) against independent float64 math."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from autograder.grading.reference import load_reference

ref = load_reference("03_simclr")


def _np(t):
    return t.detach().double().numpy()


def _cos_np(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def nt_xent_algorithm1(z, tau):
    """Algorithm 1 of Chen et al. 2020 in NumPy float64: rows (2k, 2k+1) are pairs (0-based)."""
    z = np.asarray(z, dtype=np.float64)
    n2 = len(z)
    s = np.array([[_cos_np(z[i], z[j]) for j in range(n2)] for i in range(n2)])

    def l(i, j):
        denom = sum(math.exp(s[i, k] / tau) for k in range(n2) if k != i)
        return -math.log(math.exp(s[i, j] / tau) / denom)

    return sum(l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k) for k in range(n2 // 2)) / n2


def _pairs(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype) * 2, torch.randn(n, d, generator=g, dtype=dtype) + 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 3, 50])
def test_sim(dtype, d):
    a, b = _pairs(1, d, d, dtype)
    got = ref.sim(a[0], b[0])
    assert got.dim() == 0 and got.dtype == dtype
    assert got.item() == pytest.approx(_cos_np(_np(a[0]), _np(b[0])), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,d", [(1, 4), (7, 3), (33, 16)])
def test_compute_sim_matrix(dtype, m, d):
    x, _ = _pairs(m, d, m, dtype)
    want = np.array([[_cos_np(p, q) for q in _np(x)] for p in _np(x)])
    got = ref.compute_sim_matrix(x)
    assert got.shape == (m, m) and got.dtype == dtype
    np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,d", [(1, 2), (10, 5)])
def test_sim_positive_pairs(n, d):
    a, b = _pairs(n, d, 3)
    got = ref.sim_positive_pairs(a, b)
    assert got.shape == (n, 1)
    np.testing.assert_allclose(_np(got)[:, 0], [_cos_np(p, q) for p, q in zip(_np(a), _np(b))], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,d,tau", [(1, 3, 0.5), (2, 4, 0.1), (5, 8, 1.0), (12, 6, 0.3)])
@pytest.mark.parametrize("loss_name", ["simclr_loss_naive", "simclr_loss_vectorized"])
def test_losses_equal_algorithm1_on_interleaved_rows(loss_name, n, d, tau):
    """Our (k, k+N) pairing gives Algorithm 1's value for the (2k-1, 2k) ordering of the same rows."""
    left, right = _pairs(n, d, n * 100 + d)
    interleaved = torch.stack([left, right], dim=1).reshape(2 * n, d)  # rows l0, r0, l1, r1, ...
    got = getattr(ref, loss_name)(left, right, tau)
    assert got.dim() == 0
    assert got.item() == pytest.approx(nt_xent_algorithm1(_np(interleaved), tau), rel=1e-5)


def test_loss_is_invariant_to_reordering_the_pairs():
    left, right = _pairs(6, 4, 9)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    a = ref.simclr_loss_vectorized(left, right, 0.5)
    b = ref.simclr_loss_vectorized(left[perm], right[perm], 0.5)
    c = ref.simclr_loss_vectorized(right, left, 0.5)  # swapping the views changes nothing either
    assert a.item() == pytest.approx(b.item(), rel=1e-6) and a.item() == pytest.approx(c.item(), rel=1e-6)


def test_closed_forms():
    n, tau = 5, 0.2
    same = torch.ones(n, 3)
    assert ref.simclr_loss_vectorized(same, same, tau).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)
    axes = torch.eye(n, 8)
    want = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert ref.simclr_loss_naive(axes, axes, tau).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectorized_gradients_match_float64_autograd(dtype):
    left, right = _pairs(6, 5, 11, dtype)
    left.requires_grad_()
    right.requires_grad_()
    got = ref.simclr_loss_vectorized(left, right, 0.4)
    gl, gr = torch.autograd.grad(got, (left, right))
    l64, r64 = left.detach().double().requires_grad_(), right.detach().double().requires_grad_()
    z = torch.nn.functional.normalize(torch.cat([l64, r64]), dim=1)
    logits = (z @ z.T / 0.4).masked_fill(torch.eye(12, dtype=torch.bool), float("-inf"))
    want = torch.nn.functional.cross_entropy(logits, (torch.arange(12) + 6) % 12)
    wl, wr = torch.autograd.grad(want, (l64, r64))
    assert gl.dtype == dtype
    np.testing.assert_allclose(_np(gl), _np(wl), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(_np(gr), _np(wr), rtol=1e-4, atol=1e-7)


def test_inputs_not_modified():
    left, right = _pairs(4, 3, 2)
    l0, r0 = left.clone(), right.clone()
    ref.simclr_loss_vectorized(left, right, 0.5)
    ref.simclr_loss_naive(left, right, 0.5)
    ref.compute_sim_matrix(left)
    assert torch.equal(left, l0) and torch.equal(right, r0)


def test_train_transform_on_tensor_and_pil():
    img = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tf = ref.compute_train_transform(size=24)
    torch.manual_seed(0)
    views = torch.stack([tf(img) for _ in range(200)])
    assert views.shape == (200, 3, 24, 24) and views.dtype == torch.float32
    pil_view = tf(Image.fromarray(img.permute(1, 2, 0).numpy()))
    assert pil_view.shape == (3, 24, 24) and pil_view.dtype == torch.float32
    raw = views * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    gray = ((raw[:, 0] - raw[:, 1]).abs().amax(dim=(1, 2)) < 1e-6).float().mean().item()
    assert 0.1 < gray < 0.3  # p = 0.2
    assert len({v.sum().item() for v in views}) == 200  # every view is its own draw


def test_train_transform_custom_normalisation():
    img = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    tf = ref.compute_train_transform(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    v = tf(img)
    assert 0 <= v.min() and v.max() <= 1  # plain [0, 1] values when mean 0, std 1
