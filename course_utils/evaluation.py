"""How good are learned features? Linear probe, kNN monitor, 2-D embedding.

All three work on frozen features: call `extract_features` once, then probe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module, images: torch.Tensor, *, batch_size: int = 512, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Run a frozen encoder over preprocessed images.

    Shape: ``images [N, C, H, W]`` (already normalised) -> features ``[N, D]`` on the CPU.
    """
    was_training = encoder.training
    encoder.eval().to(device)
    feats = [encoder(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    encoder.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0)


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
    seed: int = 0,
) -> float:
    """Accuracy (0..1) on the test set of a logistic-regression classifier
    trained on frozen features.

    Features are standardised with the training set's mean and std, then a
    single linear layer is trained with Adam and cross-entropy.

    Shape: ``*_feats [N, D]``, ``*_labels [N]`` long.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(f"features must be [N, D], got {tuple(train_feats.shape)} and {tuple(test_feats.shape)}")
    if len(train_feats) != len(train_labels) or len(test_feats) != len(test_labels):
        raise ValueError("features and labels differ in length")
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    clf = nn.Linear(xtr.shape[1], num_classes)
    with torch.no_grad():  # seeded init, independent of the global RNG
        clf.weight.normal_(0, 0.01, generator=gen)
        clf.bias.zero_()
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (clf(xte).argmax(1) == test_labels).float().mean().item()


@torch.no_grad()
def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Weighted kNN accuracy (0..1) with cosine similarity, the usual SSL monitor.

    Each test point votes with its ``k`` most similar training points, each
    weighted by ``exp(similarity / temperature)``.

    Shape: ``*_feats [N, D]``, ``*_labels [N]`` long.
    """
    if k < 1 or k > len(train_feats):
        raise ValueError(f"k must be in 1..{len(train_feats)}, got {k}")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train_n = F.normalize(train_feats.float(), dim=1)
    correct = 0
    for i in range(0, len(test_feats), chunk):
        q = F.normalize(test_feats[i:i + chunk].float(), dim=1)
        sims, idx = (q @ train_n.T).topk(k, dim=1)  # [b, N] -> [b, k]
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
        correct += (votes.argmax(1) == test_labels[i:i + chunk]).sum().item()
    return correct / max(len(test_feats), 1)


def embed_2d(feats: torch.Tensor) -> torch.Tensor:
    """Project features to 2-D with PCA (centred, top two components). ``[N, D] -> [N, 2]``."""
    x = feats.float() - feats.float().mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:2].T


def probe_gain_line(method: str, accuracy: float, baseline: float) -> str:
    """The line every notebook prints after its probe table (SPEC: "What every notebook reports").

    ``accuracy`` and ``baseline`` (the random-init encoder's) are fractions in
    [0, 1]; both are shown as percentages with one decimal, and the gain is
    the difference of the shown figures, so that the line adds up::

        probe gain: SimCLR 63.8% vs random init 38.2% (+25.6 points)
    """
    if not (0.0 <= accuracy <= 1.0 and 0.0 <= baseline <= 1.0):
        raise ValueError(f"accuracies are fractions in [0, 1], got {accuracy!r} and {baseline!r}")
    shown, base = round(100 * accuracy, 1), round(100 * baseline, 1)
    return f"probe gain: {method} {shown:.1f}% vs random init {base:.1f}% ({shown - base:+.1f} points)"
