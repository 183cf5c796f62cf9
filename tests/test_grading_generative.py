"""The local grade command on realistic 02_generative_pretext submissions: the reference scores full
marks, the starter zero, each known-wrong implementation loses exactly the points of its function
(or of the one check its bug shows in), and correct implementations written another way keep
full marks.

No graded function of this notebook calls another, so wrong versions of different functions share a
submission freely.
"""
from graded_cases import graded_fixture, kit_tests, points_of, readers, right_tests

NB = "02_generative_pretext"
FULL, _without, _only = points_of(NB)


# --------------------------------------------------------------------------- wrong versions

WRONG_1 = {  # the square rounded up, the mean over the whole image, ties to the last centre, no rescale,
    # F.cross_entropy's weight=, the softmax over the width, the softmax over the target positions
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size + 1) // 2, (W - mask_size + 1) // 2  # rounded up
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:top + mask_size, left:left + mask_size] = True
    return images.masked_fill(mask, fill), mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    if mask.sum() == 0:
        raise ValueError("empty mask")
    return ((pred - target) ** 2 * mask).mean()  # over every pixel of the image
""",
    "encode_ab": """
def encode_ab(ab, centers):
    x = ab.permute(0, 2, 3, 1)
    best = torch.full(x.shape[:-1], float("inf"), dtype=ab.dtype, device=ab.device)
    codes = torch.zeros(x.shape[:-1], dtype=torch.long, device=ab.device)
    for q in range(centers.shape[0]):  # one centre at a time
        d = ((x - centers[q]) ** 2).sum(-1)
        closer = d <= best  # <=: a tie moves to the later centre
        best = torch.where(closer, d, best)
        codes[closer] = q
    return codes
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    return 1.0 / ((1 - lam) * p + lam / counts.numel())  # not rescaled
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    return F.cross_entropy(logits, targets, weight=weights)
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    probs = torch.softmax(logits / temperature, dim=-1)  # the last dim: the width, not the bins
    return torch.einsum("nqhw,qc->nchw", probs, centers)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    scores = tgt_feats.flatten(2).transpose(1, 2) @ ref_feats.flatten(2) / temperature
    A = torch.softmax(scores, dim=1)  # over the target positions
    return (A @ ref_colors.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(N, -1, H, W)
""",
}
EXPECTED_1 = {**{f: 0 for f in FULL}, "masked_mse": _only("masked_mse", "errors")}

WRONG_2 = {  # channel 0 only, C left out of the count, L1 distances, the mean of the weights 1, no weights,
    # the logits multiplied by T, the scores multiplied by T
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    m = mask_size
    top, left = (H - m) // 2, (W - m) // 2
    masked = images.clone()
    masked[:, 0, top:top + m, left:left + m] = fill  # only the first channel
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:top + m, left:left + m] = True
    return masked, mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    if not mask.any():
        raise ValueError("the mask is empty")
    return ((pred - target) ** 2 * mask).sum() / mask.sum()  # the masked pixels, not the masked values
""",
    "encode_ab": """
def encode_ab(ab, centers):
    d = (ab.permute(0, 2, 3, 1).unsqueeze(-2) - centers).abs().sum(-1)  # L1
    return d.argmin(-1)
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(counts))
    return w / w.mean()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    return F.cross_entropy(logits, targets)
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    probs = F.softmax(logits * temperature, dim=1)
    return (probs.permute(0, 2, 3, 1) @ centers).permute(0, 3, 1, 2)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    A = torch.softmax(torch.einsum('ndi,ndj->nij', tgt_feats.flatten(2), ref_feats.flatten(2)) * temperature, -1)
    return torch.einsum('nij,ncj->nci', A, ref_colors.flatten(2)).reshape(N, -1, H, W)
""",
}
EXPECTED_2 = {**{f: 0 for f in FULL}, "masked_mse": _only("masked_mse", "errors")}

WRONG_3 = {  # right values: a slice that is empty for a whole-image mask, nan for an empty mask, Python loops,
    # unseen bins weighted 0, a loss cut off from autograd, exp overflowing at a small temperature
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    bottom, right = H - top - mask_size, W - left - mask_size
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:-bottom, left:-right] = True  # -0 is 0: empty when the square is the whole image
    return images.masked_fill(mask, fill), mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    m = mask.bool().expand_as(pred)
    return F.mse_loss(pred[m], target[m])  # an empty mask: nan
""",
    "encode_ab": """
def encode_ab(ab, centers):
    codes = []
    for image in ab:  # one image at a time
        pixels = image.permute(1, 2, 0).reshape(-1, 1, 2)
        codes.append(((pixels - centers) ** 2).sum(-1).argmin(-1).view(ab.shape[2], ab.shape[3]))
    return torch.stack(codes)
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    w = 1.0 / ((1 - lam) * p + lam / counts.numel())
    w = torch.where(counts > 0, w, torch.zeros_like(w))  # bins never seen get no weight
    return w / (p * w).sum()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    nll = F.cross_entropy(logits, targets, reduction="none")
    total = (weights[targets] * nll).sum().item()
    return torch.tensor(total / targets.numel(), dtype=logits.dtype, device=logits.device)
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    e = torch.exp(logits / temperature)  # inf once logits / T pass ~88 (float32)
    probs = e / e.sum(dim=1, keepdim=True)
    return torch.einsum("nqhw,qc->nchw", probs, centers)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    tgt, ref, colors = tgt_feats.flatten(2), ref_feats.flatten(2), ref_colors.flatten(2)
    out = torch.zeros(N, colors.shape[1], H * W, dtype=colors.dtype, device=colors.device)
    for i in range(H * W):  # one target position at a time
        a = torch.softmax(torch.einsum('nd,ndj->nj', tgt[:, :, i], ref) / temperature, dim=-1)
        out[:, :, i] = torch.einsum('nj,ncj->nc', a, colors)
    return out.view(N, -1, H, W)
""",
}
EXPECTED_3 = {f: _without(f, check) for f, check in (
    ("center_mask", "edge_cases"), ("masked_mse", "errors"), ("encode_ab", "vectorized"),
    ("rebalance_weights", "edge_cases"), ("colorization_loss", "gradients"), ("annealed_mean", "edge_cases"),
    ("propagate_colors", "vectorized"))}

WRONG_4 = {  # a float mask, a detached loss, a reshape instead of a permute, lam the other way round, the
    # weight of the predicted bin, the mode, the frames' features exchanged
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    mask = torch.zeros(N, 1, H, W, dtype=images.dtype, device=images.device)  # 0/1 floats
    mask[:, :, top:top + mask_size, left:left + mask_size] = 1
    return images * (1 - mask) + fill * mask, mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    n = mask.sum().item()
    if n == 0:
        raise ValueError("nothing is masked")
    loss = (mask * (pred - target) ** 2).sum().item() / (pred.shape[1] * n)
    return torch.tensor(loss, dtype=pred.dtype, device=pred.device)
""",
    "encode_ab": """
def encode_ab(ab, centers):
    N, _, H, W = ab.shape
    pixels = ab.reshape(N, H, W, 1, 2)  # a reshape, not a permute
    return ((pixels - centers) ** 2).sum(-1).argmin(-1)
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    Q = counts.numel()
    p = counts / counts.sum()
    w = 1.0 / (lam * p + (1 - lam) / Q)
    return w / (p * w).sum()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    nll = F.cross_entropy(logits, targets, reduction="none")
    return (weights[logits.argmax(dim=1)] * nll).mean()
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    return centers[logits.argmax(dim=1)].permute(0, 3, 1, 2)  # the mode
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    scores = ref_feats.flatten(2).transpose(1, 2) @ tgt_feats.flatten(2) / temperature
    A = scores.softmax(dim=-1)
    return (A @ ref_colors.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(N, -1, H, W)
""",
}
EXPECTED_4 = {**{f: 0 for f in FULL}, "masked_mse": _without("masked_mse", "gradients")}

WRONG_5 = {  # the input filled in place, the visible pixels, a loop over the pixels, weights summing to 1, the
    # sum over the pixels, no temperature, a loop over the images
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:top + mask_size, left:left + mask_size] = True
    images[:, :, top:top + mask_size, left:left + mask_size] = fill  # the caller's images
    return images, mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    if mask.sum() == 0:
        raise ValueError("empty mask")
    visible = ~mask.bool()
    return ((pred - target) ** 2 * visible).sum() / (pred.shape[1] * visible.sum())
""",
    "encode_ab": """
def encode_ab(ab, centers):
    N, _, H, W = ab.shape
    codes = torch.zeros(N, H, W, dtype=torch.long, device=ab.device)
    for i in range(H):
        for j in range(W):
            codes[:, i, j] = ((ab[:, :, i, j][:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    return codes
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(counts))
    return w / w.sum()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    return (weights[targets] * F.cross_entropy(logits, targets, reduction="none")).sum()
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    return torch.einsum("nqhw,qc->nchw", logits.softmax(dim=1), centers)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    outs = []
    for n in range(ref_feats.shape[0]):  # one image at a time
        D, H, W = ref_feats.shape[1:]
        A = torch.softmax(tgt_feats[n].reshape(D, -1).T @ ref_feats[n].reshape(D, -1) / temperature, dim=1)
        outs.append((ref_colors[n].reshape(ref_colors.shape[1], -1) @ A.T).reshape(-1, H, W))
    return torch.stack(outs)
""",
}
EXPECTED_5 = {**{f: 0 for f in FULL}, "masked_mse": _only("masked_mse", "errors"),
              "encode_ab": _without("encode_ab", "vectorized"), "propagate_colors": _without("propagate_colors",
                                                                                           "vectorized")}

WRONG_6 = {  # fill ignored, a [1] loss, float indices, unnormalised counts, the bins' dim taken last, the
    # result [N, H, W, 2], a reshape where a transpose was due
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:top + mask_size, left:left + mask_size] = True
    return images * ~mask, mask  # zeros, whatever fill is
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    if mask.sum() == 0:
        raise ValueError("empty mask")
    return ((mask * (pred - target) ** 2).sum() / (pred.shape[1] * mask.sum())).view(1)
""",
    "encode_ab": """
def encode_ab(ab, centers):
    d = ((ab.permute(0, 2, 3, 1).unsqueeze(-2) - centers) ** 2).sum(-1)
    return d.argmin(-1).float()
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    w = 1.0 / ((1 - lam) * counts + lam / len(counts))  # the counts, not p
    p = counts / counts.sum()
    return w / (p * w).sum()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    log_p = torch.log_softmax(logits, dim=-1)
    nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    return (weights[targets] * nll).mean()
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("nqhw,qc->nhwc", probs, centers)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    C = ref_colors.shape[1]
    A = torch.softmax(tgt_feats.flatten(2).transpose(1, 2) @ ref_feats.flatten(2) / temperature, dim=-1)
    return (A @ ref_colors.flatten(2).transpose(1, 2)).reshape(N, C, H, W)  # no transpose back
""",
}
EXPECTED_6 = {**{f: 0 for f in FULL}, "masked_mse": _without("masked_mse", "values")}

WRONG_7 = {  # rows and columns swapped; squeeze() that takes the one position away
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (W - mask_size) // 2, (H - mask_size) // 2  # swapped
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[..., top:top + mask_size, left:left + mask_size] = True
    return torch.where(mask, torch.full_like(images, fill), images), mask
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    scores = torch.bmm(tgt_feats.view(N, D, -1).transpose(1, 2), ref_feats.view(N, D, -1)).squeeze()
    A = F.softmax(scores / temperature, dim=-1)
    return torch.matmul(A, ref_colors.view(N, ref_colors.shape[1], -1).transpose(1, 2)).transpose(1, 2).reshape(
        N, -1, H, W)
""",
}
EXPECTED_7 = {**FULL, "center_mask": 0, "propagate_colors": _without("propagate_colors", "edge_cases")}

WRONG_8 = {  # the argmax, the square from the corner, the rescale with the counts, a loss over the batch only
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    masked = images.clone()
    masked[:, :, :mask_size, :mask_size] = fill  # the top-left corner
    mask = torch.zeros_like(images[:, :1], dtype=torch.bool)
    mask[:, :, :mask_size, :mask_size] = True
    return masked, mask
""",
    "encode_ab": """
def encode_ab(ab, centers):
    d = torch.cdist(ab.permute(0, 2, 3, 1).flatten(1, 2), centers.expand(ab.shape[0], -1, -1))
    return d.argmax(-1).view(ab.shape[0], ab.shape[2], ab.shape[3])  # the farthest
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(counts))
    return w / (counts * w).sum()
""",
}
EXPECTED_8 = {**FULL, "center_mask": 0, "encode_ab": 0, "rebalance_weights": 0}


# --------------------------------------------------------------------------- right versions, written another way

RIGHT_1 = {  # torch.where, boolean indexing, torch.cdist, a formula without the division by Q, logsumexp and
    # gather, F.softmax and a matrix product, einsum
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    rows = torch.arange(H, device=images.device)[:, None]
    cols = torch.arange(W, device=images.device)[None, :]
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    square = (rows >= top) & (rows < top + mask_size) & (cols >= left) & (cols < left + mask_size)
    mask = square.expand(N, 1, H, W).clone()
    return torch.where(mask, torch.full_like(images, fill), images), mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    m = mask.bool().expand_as(pred)
    if not m.any():
        raise ValueError("masked_mse: the mask selects no pixel")
    return F.mse_loss(pred[m], target[m])
""",
    "encode_ab": """
def encode_ab(ab, centers):
    N, _, H, W = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(N, H * W, 2)
    d = torch.cdist(pixels, centers.unsqueeze(0).expand(N, -1, -1))
    return d.argmin(dim=-1).view(N, H, W)
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    Q = counts.shape[0]
    p = counts / counts.sum()
    w = Q / ((1 - lam) * Q * p + lam)
    return w / torch.dot(p, w)
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    return (nll * weights[targets]).sum() / targets.numel()
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    probs = F.softmax(logits / temperature, dim=1)
    return (probs.permute(0, 2, 3, 1) @ centers).permute(0, 3, 1, 2)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, _, H, W = tgt_feats.shape
    scores = torch.einsum('ndi,ndj->nij', tgt_feats.flatten(2), ref_feats.flatten(2)) / temperature
    return torch.einsum('nij,ncj->nci', scores.softmax(-1), ref_colors.flatten(2)).reshape(N, -1, H, W)
""",
}

RIGHT_2 = {  # clone and slice, a float mask, |x|^2 - 2 x.c + |c|^2, lerp, nll_loss, tensordot, bmm
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    y, x = (H - mask_size) // 2, (W - mask_size) // 2
    masked = images.clone()
    masked[:, :, y:y + mask_size, x:x + mask_size] = fill
    mask = torch.zeros_like(images[:, :1], dtype=torch.bool)
    mask[:, :, y:y + mask_size, x:x + mask_size] = True
    return masked, mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    m = mask.to(pred.dtype).expand_as(pred)
    n = m.sum()
    if n == 0:
        raise ValueError("empty mask: no pixel to average over")
    return (m * (pred - target).pow(2)).sum() / n
""",
    "encode_ab": """
def encode_ab(ab, centers):
    x = ab.permute(0, 2, 3, 1)                                    # [N, H, W, 2]
    d = (x * x).sum(-1, keepdim=True) - 2 * x @ centers.T + (centers * centers).sum(-1)
    return torch.min(d, dim=-1).indices
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    p = counts / counts.sum()
    mixed = torch.lerp(p, torch.full_like(p, 1.0 / p.numel()), lam)  # (1 - lam) p + lam / Q
    w = mixed.reciprocal()
    return w / (p * w).sum()
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    nll = F.nll_loss(F.log_softmax(logits, dim=1), targets, reduction="none")
    return torch.mean(nll * weights[targets])
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.tensordot(probs, centers, dims=([1], [0])).permute(0, 3, 1, 2)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = ref_feats.shape
    C = ref_colors.shape[1]
    q = tgt_feats.reshape(N, D, H * W).permute(0, 2, 1)
    k = ref_feats.reshape(N, D, H * W)
    attn = F.softmax(torch.bmm(q, k) / temperature, dim=2)
    v = ref_colors.reshape(N, C, H * W).permute(0, 2, 1)
    return torch.bmm(attn, v).permute(0, 2, 1).reshape(N, C, H, W)
""",
}

RIGHT_3 = {  # arithmetic with the mask, a channel mean first, a norm, float64 inside, one-hot targets, a stable
    # softmax by hand, a softmax over the keys with scaled dot-product attention
    "center_mask": """
def center_mask(images, mask_size, fill=0.0):
    N, C, H, W = images.shape
    top, left = (H - mask_size) // 2, (W - mask_size) // 2
    mask = torch.zeros(N, 1, H, W, dtype=torch.bool, device=images.device)
    mask[:, :, top:top + mask_size, left:left + mask_size] = True
    return images * ~mask + fill * mask, mask
""",
    "masked_mse": """
def masked_mse(pred, target, mask):
    if mask.sum() == 0:
        raise ValueError(f"the mask of shape {tuple(mask.shape)} is empty")
    per_pixel = ((pred - target) ** 2).mean(dim=1, keepdim=True)   # the mean over the channels
    return (per_pixel * mask).sum() / mask.sum()
""",
    "encode_ab": """
def encode_ab(ab, centers):
    diff = ab.permute(0, 2, 3, 1).unsqueeze(-2) - centers              # [N, H, W, Q, 2]
    return diff.norm(dim=-1).argmin(dim=-1)
""",
    "rebalance_weights": """
def rebalance_weights(counts, lam=0.5):
    c = counts.double()
    p = c / c.sum()
    w = 1 / ((1 - lam) * p + lam / len(c))
    return (w / (p * w).sum()).to(counts.dtype)
""",
    "colorization_loss": """
def colorization_loss(logits, targets, weights):
    one_hot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    nll = -(one_hot * F.log_softmax(logits, dim=1)).sum(dim=1)
    return (weights[targets] * nll).mean()
""",
    "annealed_mean": """
def annealed_mean(logits, centers, temperature=0.38):
    z = logits / temperature
    e = torch.exp(z - z.amax(dim=1, keepdim=True))
    probs = e / e.sum(dim=1, keepdim=True)
    return (probs.unsqueeze(2) * centers.view(1, -1, 2, 1, 1)).sum(dim=1)
""",
    "propagate_colors": """
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    q = tgt_feats.flatten(2).transpose(1, 2)
    k = ref_feats.flatten(2).transpose(1, 2)
    v = ref_colors.flatten(2).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / temperature)
    return out.transpose(1, 2).reshape(N, -1, H, W)
""",
}


# --------------------------------------------------------------------------- grading them

WRONG = {"wrong_1": (WRONG_1, EXPECTED_1), "wrong_2": (WRONG_2, EXPECTED_2), "wrong_3": (WRONG_3, EXPECTED_3),
         "wrong_4": (WRONG_4, EXPECTED_4), "wrong_5": (WRONG_5, EXPECTED_5), "wrong_6": (WRONG_6, EXPECTED_6),
         "wrong_7": (WRONG_7, EXPECTED_7), "wrong_8": (WRONG_8, EXPECTED_8)}
RIGHT = {"right_1": RIGHT_1, "right_2": RIGHT_2, "right_3": RIGHT_3}


_scores, _checks, _feedback = readers(NB)


graded = graded_fixture(NB, WRONG, RIGHT)
(test_reference_scores_full_marks, test_starter_scores_zero_and_says_not_implemented,
 test_wrong_versions_lose_exactly_their_functions_points) = kit_tests(NB, FULL, WRONG)


def test_a_bug_that_shows_in_one_check_costs_only_that_check(graded):
    cost = {(case, function): {c.check for (f, _), c in _checks(graded[case]).items() if f == function and not c.passed}
            for case, function in (("wrong_1", "masked_mse"), ("wrong_3", "center_mask"), ("wrong_3", "masked_mse"),
                                   ("wrong_3", "encode_ab"), ("wrong_3", "rebalance_weights"),
                                   ("wrong_3", "colorization_loss"), ("wrong_3", "annealed_mean"),
                                   ("wrong_3", "propagate_colors"), ("wrong_4", "masked_mse"),
                                   ("wrong_5", "encode_ab"), ("wrong_5", "propagate_colors"),
                                   ("wrong_6", "masked_mse"), ("wrong_7", "propagate_colors"))}
    assert cost == {
        ("wrong_1", "masked_mse"): {"values", "gradients"},     # the mean over the whole image (empty: raises)
        ("wrong_3", "center_mask"): {"edge_cases"},             # the whole image: an empty slice
        ("wrong_3", "masked_mse"): {"errors"},                  # nan for an empty mask
        ("wrong_3", "encode_ab"): {"vectorized"},               # a loop over the images
        ("wrong_3", "rebalance_weights"): {"edge_cases"},       # unseen bins weighted 0
        ("wrong_3", "colorization_loss"): {"gradients"},        # through .item()
        ("wrong_3", "annealed_mean"): {"edge_cases"},           # exp overflows at T = 1e-3
        ("wrong_3", "propagate_colors"): {"vectorized"},        # a loop over the target positions
        ("wrong_4", "masked_mse"): {"gradients"},               # through .item()
        ("wrong_5", "encode_ab"): {"vectorized"},               # a loop over the pixels
        ("wrong_5", "propagate_colors"): {"vectorized"},        # a loop over the images
        ("wrong_6", "masked_mse"): {"values"},                  # shape [1]
        ("wrong_7", "propagate_colors"): {"edge_cases"},        # squeeze() at H = W = 1
    }


def test_feedback_names_the_likely_mistake(graded):
    w1, w2, w3, w4, w5, w6, w7, w8 = (graded[f"wrong_{i}"] for i in range(1, 9))
    assert "you rounded up, (H - m + 1) // 2" in _feedback(w1, "center_mask")
    assert "divides by every value of the image" in _feedback(w1, "masked_mse")
    encode = _feedback(w1, "encode_ab")
    assert "a tie, which goes to the lowest index" in encode and "you returned the last" in encode
    assert "so that sum(p * w) == 1" in _feedback(w1, "rebalance_weights")
    assert "weight=weights) divides the weighted sum by the sum of the targets' weights" in \
        _feedback(w1, "colorization_loss")
    assert "you took it over the last dim (the width)" in _feedback(w1, "annealed_mean")
    assert "you took it over the target positions" in _feedback(w1, "propagate_colors")

    assert "you filled channel 0 only" in _feedback(w2, "center_mask")
    assert "mask.sum() counts the masked pixels, and each has C channels" in _feedback(w2, "masked_mse")
    assert "not the sum of absolute differences (L1)" in _feedback(w2, "encode_ab")
    assert "not the plain mean of the Q weights" in _feedback(w2, "rebalance_weights")
    assert "you left the weights out" in _feedback(w2, "colorization_loss")
    assert "you multiplied" in _feedback(w2, "annealed_mean") and "you multiplied" in _feedback(w2, "propagate_colors")

    assert "the mask of center_mask(float64 [2, 3, 5, 5], 5, fill=0.5) is wrong" in _feedback(w3, "center_mask")
    assert "with an empty mask did not raise; expected a ValueError" in _feedback(w3, "masked_mse")
    for function in ("encode_ab", "propagate_colors"):
        assert "too slow" in _feedback(w3, function) and "no Python loop over the images or" in \
            _feedback(w3, function)
    assert "you set it to 0" in _feedback(w3, "rebalance_weights")
    assert "not connected to its inputs by autograd" in _feedback(w3, "colorization_loss")
    assert "temperature=0.001) is wrong: it contains" in _feedback(w3, "annealed_mean")

    assert "has dtype torch.float32; expected torch.bool" in _feedback(w4, "center_mask")
    assert "not connected to its inputs by autograd" in _feedback(w4, "masked_mse")
    assert "a reshape or view to [N, H, W, 2] mixes the a and b values" in _feedback(w4, "encode_ab")
    assert "you mixed them the other way round" in _feedback(w4, "rebalance_weights")
    assert "not of the bin the logits predict" in _feedback(w4, "colorization_loss")
    assert "not the centre of the most likely bin" in _feedback(w4, "annealed_mean")
    assert "you exchanged ref_feats and tgt_feats" in _feedback(w4, "propagate_colors")

    assert "you filled images itself (in place)" in _feedback(w5, "center_mask")
    assert "not on the visible ones" in _feedback(w5, "masked_mse")
    assert "too slow" in _feedback(w5, "encode_ab") and "too slow" in _feedback(w5, "propagate_colors")
    assert "not so that the weights sum to 1" in _feedback(w5, "rebalance_weights")
    assert "not the sum" in _feedback(w5, "colorization_loss")
    assert "you left the temperature out" in _feedback(w5, "annealed_mean")

    assert "not always to 0" in _feedback(w6, "center_mask")
    assert "returned shape [1]; expected a 0-dim tensor" in _feedback(w6, "masked_mse")
    assert "expected torch.int64 (torch.long): bin indices" in _feedback(w6, "encode_ab")
    assert "not the raw counts" in _feedback(w6, "rebalance_weights")
    assert "the bins are dim 1 of logits" in _feedback(w6, "colorization_loss")
    assert "the result is [N, 2, H, W], a and b in dim 1" in _feedback(w6, "annealed_mean")
    assert "transpose it to [N, C, HW] before reshaping" in _feedback(w6, "propagate_colors")

    assert "you swapped them" in _feedback(w7, "center_mask")
    assert "you started it at (0, 0)" in _feedback(w8, "center_mask")
    assert "not the argmax" in _feedback(w8, "encode_ab")
    assert "not the counts" in _feedback(w8, "rebalance_weights")


test_correct_versions_written_another_way_keep_full_marks, test_no_feedback_shows_the_grading_machine = \
    right_tests(NB, FULL, RIGHT)


def test_the_speed_checks_report_their_figures(graded):
    """The staff's figures of the reference's speed checks, each under its limit."""
    checks = _checks(graded["reference"])
    for function in ("encode_ab", "propagate_colors"):
        assert checks[(function, "vectorized")].staff_note.count("limit") == 2, checks[(function, "vectorized")]
