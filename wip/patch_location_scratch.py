"""Scratch: relative patch location (Doersch et al.) on SynthObjects-10; probe the patch encoder on whole images."""
import sys, time, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, '/work/main')
from course_utils.data import load_images, to_float, TensorImageDataset, make_loader
from course_utils.models import ResNetEncoder
from course_utils.evaluation import linear_probe
from course_utils.checks import seed_everything
from course_utils.augment import BatchAugment
secs = float(sys.argv[1]); PRE = sys.argv[2]; P, GAP, JIT = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
GRAY = len(sys.argv) > 6 and sys.argv[6] == 'gray'
tr_x, tr_y = load_images('synthetic', 'train'); te_x, te_y = load_images('synthetic', 'test')
if PRE == 'nohorizon':
    sys.argv = ['x', '0', 'plain', 'no', 'nohorizon']
    import importlib.util
    src = open('wip/rotnet_probe_scratch.py').read()
    ns = {}; exec(src[:src.index("seed_everything(0)")], ns); pre_x = ns['pre_x']
else:
    pre_x = tr_x
def context_pairs(images, P, gap, jitter=0, gen=None):
    N, C, H, W = images.shape
    S = 3 * P + 2 * gap; top, left = (H - S) // 2, (W - S) // 2
    pos = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    def patch(r, c):
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0))
        y = min(max(top + r * (P + gap) + dy, 0), H - P); x = min(max(left + c * (P + gap) + dx, 0), W - P)
        return images[:, :, y:y + P, x:x + P]
    centers = torch.stack([patch(1, 1) for _ in pos], 1).flatten(0, 1)
    neighbors = torch.stack([patch(r, c) for r, c in pos], 1).flatten(0, 1)
    labels = torch.arange(8).repeat(N)
    return centers, neighbors, labels
seed_everything(0)
enc = ResNetEncoder(width=16, stem_stride=1); rand = ResNetEncoder(width=16, stem_stride=1)
head = nn.Sequential(nn.Linear(2 * enc.feature_dim, 128), nn.ReLU(), nn.Linear(128, 8))
opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
loader = make_loader(TensorImageDataset(pre_x, torch.zeros(len(pre_x), dtype=torch.long)), 32, drop_last=True)
aug = BatchAugment(scale=(0.6, 1.0), p_flip=0.0, p_gray=1.0 if GRAY else 0.2)
start = time.time(); step = 0; done = False; accs = []
while not done:
    for xb, _ in loader:
        c, n, y = context_pairs(aug(xb), P, GAP, JIT)
        logits = head(torch.cat([enc(c), enc(n)], 1)); loss = F.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        accs.append((logits.argmax(1) == y).float().mean().item())
        if time.time() - start > secs: done = True; break
print('steps', step, 'pretext acc', sum(accs[-50:]) / 50, flush=True)
@torch.no_grad()
def feats(m, x):
    m.eval(); return torch.cat([m(x[i:i+500]) for i in range(0, len(x), 500)])
xtr, xte = to_float(tr_x), to_float(te_x)
print('random', linear_probe(feats(rand, xtr), tr_y, feats(rand, xte), te_y, epochs=30),
      'patch', linear_probe(feats(enc, xtr), tr_y, feats(enc, xte), te_y, epochs=30), 'total', time.time() - start)
