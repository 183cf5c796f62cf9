"""Example submissions made from the release notebooks, as a student would fill them in.

`make_submission` copies the released notebook and fills each solution cell
with the reference solution (from solutions/) or with code given for that
function, so that demos and tests grade realistic notebooks. The bundled
examples (`EXAMPLES`) are what ``make demo`` grades::

    python -m autograder demo DIR                    # writes DIR/<example>/<notebook>.ipynb and grades each
    python -m autograder.frontends.examples DIR     # only writes them
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Mapping

import nbformat

from ..grading.reference import REPO

_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")

# Two classic mistakes of the pretext tasks: rotations clockwise (torch.rot90 with dims swapped) and the tiles
# shuffled by the inverse permutation (tile j sent to position p[j] instead of position j showing tile p[j]).
BUGGY_PRETEXT = {
    "rotate_batch": '''
def rotate_batch(images):
    N, C, H, W = images.shape
    if H != W:
        raise ValueError(f"images must be square, got {H}x{W}")
    rotated = torch.cat([torch.rot90(images, k, dims=(3, 2)) for k in range(4)])
    return rotated, torch.arange(4).repeat_interleave(N)
''',
    "shuffle_tiles": '''
def shuffle_tiles(tiles, permutations, perm_index):
    out = torch.empty_like(tiles)
    rows = torch.arange(tiles.shape[0])[:, None]
    out[rows, permutations[perm_index]] = tiles
    return out
''',
}

# Two classic mistakes: the loss averaged over N anchors instead of 2N, and
# raw dot products instead of cosine similarities.
BUGGY_SIMCLR = {
    "simclr_loss_vectorized": '''
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    exponential = torch.exp(compute_sim_matrix(out) / tau)
    not_self = ~torch.eye(2 * N, dtype=torch.bool)
    denom = (exponential * not_self).sum(dim=1, keepdim=True)
    pos = sim_positive_pairs(out_left, out_right)
    numerator = torch.exp(torch.cat([pos, pos], dim=0) / tau)
    return -torch.log(numerator / denom).sum() / N
''',
    "compute_sim_matrix": '''
def compute_sim_matrix(out):
    return out @ out.T
''',
}

# Two classic mistakes of colorization and video colorization: the rebalanced loss through F.cross_entropy's
# weight= (its mean divides by the sum of the targets' weights, not by the number of pixels), and the attention's
# softmax over the target positions instead of the reference positions.
BUGGY_GENERATIVE = {
    "colorization_loss": '''
def colorization_loss(logits, targets, weights):
    return F.cross_entropy(logits, targets, weight=weights)
''',
    "propagate_colors": '''
def propagate_colors(ref_feats, tgt_feats, ref_colors, temperature=1.0):
    N, D, H, W = tgt_feats.shape
    scores = tgt_feats.flatten(2).transpose(1, 2) @ ref_feats.flatten(2) / temperature   # [N, HW_tgt, HW_ref]
    attention = torch.softmax(scores, dim=1)
    out = attention @ ref_colors.flatten(2).transpose(1, 2)
    return out.transpose(1, 2).reshape(N, -1, H, W)
''',
}

# Two classic mistakes of MoCo: the momentum update reversed (the key encoder follows the query encoder
# almost at once), and the positive logit put after the negatives instead of at index 0.
BUGGY_MOCO = {
    "momentum_update": '''
def momentum_update(query_encoder, key_encoder, m):
    with torch.no_grad():
        for p_q, p_k in zip(query_encoder.parameters(), key_encoder.parameters()):
            p_k.copy_((1 - m) * p_k + m * p_q)
''',
    "moco_logits": '''
def moco_logits(q, k, queue, tau):
    negatives = q @ queue.detach().T
    positive = (q * k.detach()).sum(dim=1, keepdim=True)
    logits = torch.cat([negatives, positive], dim=1) / tau
    return logits, torch.zeros(q.shape[0], dtype=torch.long)
''',
}

# Two classic mistakes of CPC: InfoNCE normalised over the contexts (a column's softmax) instead of the
# candidates, and one prediction matrix W[0] for every step ahead.
BUGGY_CPC = {
    "cpc_infonce": '''
def cpc_infonce(scores):
    labels = torch.arange(scores.shape[0])
    return F.cross_entropy(scores.T, labels)
''',
    "cpc_loss": '''
def cpc_loss(z_seq, c_seq, W, t):
    K, T = W.shape[0], z_seq.shape[1]
    if t < 0 or t + K >= T:
        raise ValueError(f"t = {t} leaves no room for {K} steps ahead in {T}")
    losses = [cpc_infonce(cpc_scores(z_seq[:, t + k], c_seq[:, t], W[0])) for k in range(1, K + 1)]
    return sum(losses) / K
''',
}

# One more classic mistake per notebook: the labels in the wrong order (position-major instead of image-major),
# the mean over every pixel instead of the masked ones, the loss divided by N instead of 2N, the momentum
# formula reversed, and the scores transposed (rows the candidates, not the contexts).
TYPICAL = {
    "01_pretext_tasks": {"context_pairs": '''
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError(f"the grid spans {S} pixels, more than {H}x{W}")
    top, left = (H - S) // 2, (W - S) // 2
    patches = torch.stack([images[:, :, top + r * (P + gap):top + r * (P + gap) + P,
                                  left + c * (P + gap):left + c * (P + gap) + P]
                           for r in range(3) for c in range(3)], dim=1)
    neighbors = patches[:, [0, 1, 2, 3, 5, 6, 7, 8]].flatten(0, 1)
    centers = patches[:, 4:5].expand(-1, 8, -1, -1, -1).flatten(0, 1)
    return centers, neighbors, torch.arange(8).repeat_interleave(N)
'''},
    "02_generative_pretext": {"masked_mse": '''
def masked_mse(pred, target, mask):
    if mask.sum() == 0:
        raise ValueError("the mask is empty")
    return (mask * (pred - target) ** 2).mean()
'''},
    "03_simclr": {"simclr_loss_naive": '''
def simclr_loss_naive(out_left, out_right, tau):
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    total_loss = 0
    for k in range(N):
        for i, j in ((k, k + N), (k + N, k)):
            denom = sum(torch.exp(sim(out[i], out[m]) / tau) for m in range(2 * N) if m != i)
            total_loss = total_loss - torch.log(torch.exp(sim(out[i], out[j]) / tau) / denom)
    return total_loss / N
'''},
    "04_moco": {"momentum_update": BUGGY_MOCO["momentum_update"]},
    "05_cpc": {"cpc_scores": '''
def cpc_scores(z, c, W):
    return z @ W @ c.T
'''},
}

# Right values, Python loops: each loses only its vectorized points.
LOOPS = {
    "01_pretext_tasks": {},
    "02_generative_pretext": {"encode_ab": '''
def encode_ab(ab, centers):
    N, _, H, W = ab.shape
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    out = torch.stack([((centers - p) ** 2).sum(dim=1).argmin() for p in pixels])
    return out.reshape(N, H, W)
'''},
    "03_simclr": {"compute_sim_matrix": '''
def compute_sim_matrix(out):
    rows = [torch.stack([sim(a, b) for b in out]) for a in out]
    return torch.stack(rows)
'''},
    "04_moco": {"moco_logits": '''
def moco_logits(q, k, queue, tau):
    rows = []
    for i in range(q.shape[0]):
        rows.append(torch.cat([(q[i] * k[i].detach()).sum().reshape(1), queue.detach() @ q[i]]) / tau)
    return torch.stack(rows), torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
'''},
    "05_cpc": {"cpc_scores": '''
def cpc_scores(z, c, W):
    B = z.shape[0]
    return torch.stack([torch.stack([z[j] @ W @ c[i] for j in range(B)]) for i in range(B)])
'''},
}

# A hostile student: code that exits, crashes the process, exhausts memory, patches torch in its own process
# and prints a fake score, or returns a tensor whose == always says True. Each costs only its own function's
# points (no more: the other functions are the reference's). Nothing here harms the machine it runs on, so that
# the demo may grade it even where no sandbox works.
HOSTILE = {
    "01_pretext_tasks": {"rotate_batch": '''
def rotate_batch(images):
    import os
    os._exit(0)
'''},
    "02_generative_pretext": {"center_mask": '''
def center_mask(images, mask_size, fill=0.0):
    hog = torch.empty(2 ** 42, dtype=torch.uint8)  # 4 TB: the memory limit stops it
    return hog, hog
'''},
    "03_simclr": {
        "sim": '''
def sim(z_i, z_j):
    import sys
    sys.exit("graded: 100/100")
''',
        "sim_positive_pairs": '''
def sim_positive_pairs(out_left, out_right):
    torch.allclose = lambda *args, **kwargs: True  # only in the student's own process
    print('{"score": 100, "tests": []}')
    return torch.zeros(out_left.shape[0], 1)
''',
        "simclr_loss_vectorized": '''
class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True

def simclr_loss_vectorized(out_left, out_right, tau):
    return torch.tensor(0.0).as_subclass(AlwaysEqual)
'''},
    "04_moco": {"moco_loss": '''
def moco_loss(q, k, queue, tau):
    raise SystemExit(0)
'''},
    "05_cpc": {"cpc_infonce": '''
def cpc_infonce(scores):
    import os, signal
    os.kill(os.getpid(), signal.SIGSEGV)
'''},
}

EXAMPLES: dict[str, dict[str, Mapping[str, str | None] | None]] = {
    "reference": {"01_pretext_tasks": {}, "02_generative_pretext": {}, "03_simclr": {}, "04_moco": {}, "05_cpc": {}},
    "starter": {"01_pretext_tasks": None, "02_generative_pretext": None, "03_simclr": None, "04_moco": None,
                "05_cpc": None},
    "two_bugs": {"01_pretext_tasks": BUGGY_PRETEXT, "02_generative_pretext": BUGGY_GENERATIVE, "03_simclr": BUGGY_SIMCLR,
                 "04_moco": BUGGY_MOCO, "05_cpc": BUGGY_CPC},
    "typical": TYPICAL,
    "loops": LOOPS,
    "hostile": HOSTILE,
}


def reference_solutions(notebook: str) -> dict[str, str]:
    """``{grade_id: solution cell source without the markers}`` of a source notebook."""
    nb = nbformat.read(REPO / "solutions" / "self_supervised" / f"{notebook}.ipynb", as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            out[meta["grade_id"]] = "\n".join(l for l in cell.source.splitlines() if not _MARKER.match(l))
    return out


def make_submission(out_dir: Path, notebook: str, code: Mapping[str, str | None] | None) -> Path:
    """Write ``out_dir/<notebook>.ipynb``: the release with solution cells filled in.

    ``code`` maps a function to its cell's new source (``None`` keeps the
    starter stub); functions not in it get the reference solution. ``code``
    itself ``None`` leaves the whole notebook as released.
    """
    nb = nbformat.read(REPO / "assignments" / "self_supervised" / f"{notebook}.ipynb", as_version=4)
    if code is not None:
        solutions = reference_solutions(notebook)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.metadata.get("nbgrader", {}).get("solution") and gid in solutions:
                new = code.get(gid, solutions[gid])
                if new is not None:
                    cell.source = new.strip("\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook}.ipynb"
    nbformat.write(nb, path)
    return path


def write_examples(root: Path) -> list[Path]:
    """Write every bundled example submission under ``root``; returns their folders."""
    folders = []
    for name, notebooks in EXAMPLES.items():
        for notebook, code in notebooks.items():
            make_submission(root / name, notebook, code)
        folders.append(root / name)
    return folders


if __name__ == "__main__":
    for folder in write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "build/examples")):
        print(folder)
