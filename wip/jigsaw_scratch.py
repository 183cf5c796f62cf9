"""Scratch: jigsaw (Noroozi & Favaro) on SynthObjects-10; probe the tile tower on whole images."""
import sys, time, itertools, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, '/work/main')
from course_utils.data import load_images, to_float, TensorImageDataset, make_loader
from course_utils.models import ResNetEncoder
from course_utils.evaluation import linear_probe
from course_utils.checks import seed_everything
from course_utils.augment import BatchAugment
secs = float(sys.argv[1]); NP = int(sys.argv[2])
tr_x, tr_y = load_images('synthetic', 'train'); te_x, te_y = load_images('synthetic', 'test')
pre_x = tr_x
if len(sys.argv) > 3 and sys.argv[3] == 'nohorizon':
    sys.argv = ['x', '0', 'plain', 'no', 'nohorizon']
    src = open('wip/rotnet_probe_scratch.py').read()
    ns = {}; exec(src[:src.index("seed_everything(0)")], ns); pre_x = ns['pre_x']
def hamming_permutations(n, T=9, gen=None):
    allp = torch.tensor(list(itertools.permutations(range(T))), dtype=torch.int8)
    chosen = [int(torch.randint(len(allp), (1,), generator=gen))]
    mind = (allp != allp[chosen[0]]).sum(1)
    for _ in range(n - 1):
        j = int(mind.argmax()); chosen.append(j); mind = torch.minimum(mind, (allp != allp[j]).sum(1))
    return allp[chosen].long()
t0 = time.time(); perms = hamming_permutations(NP, gen=torch.Generator().manual_seed(0))
d = (perms[:, None] != perms[None]).sum(-1) + 99 * torch.eye(NP, dtype=torch.long)
print('perms', NP, 'min distance', int(d.min()), 'in', round(time.time() - t0, 1), 's', flush=True)
def tiles_of(x):  # [N,3,30,30] -> [N,9,3,8,8], a random 8x8 crop in each 10x10 cell
    N = len(x); out = []
    for r in range(3):
        for c in range(3):
            dy, dx = torch.randint(0, 3, (2,)).tolist()
            out.append(x[:, :, 10 * r + dy:10 * r + dy + 8, 10 * c + dx:10 * c + dx + 8])
    return torch.stack(out, 1)
seed_everything(0)
enc = ResNetEncoder(width=16, stem_stride=1); rand = ResNetEncoder(width=16, stem_stride=1)
head = nn.Sequential(nn.Linear(9 * enc.feature_dim, 256), nn.ReLU(), nn.Linear(256, NP))
opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
loader = make_loader(TensorImageDataset(pre_x, torch.zeros(len(pre_x), dtype=torch.long)), 32, drop_last=True)
aug = BatchAugment(size=30, scale=(0.6, 1.0), p_flip=0.0)
start = time.time(); step = 0; done = False; accs = []
while not done:
    for xb, _ in loader:
        t = tiles_of(aug(xb)); N = len(t)
        idx = torch.randint(NP, (N,)); t = t[torch.arange(N)[:, None], perms[idx]]
        logits = head(enc(t.flatten(0, 1)).view(N, -1)); loss = F.cross_entropy(logits, idx)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        accs.append((logits.argmax(1) == idx).float().mean().item())
        if time.time() - start > secs: done = True; break
print('steps', step, 'pretext acc', sum(accs[-50:]) / 50, flush=True)
@torch.no_grad()
def feats(m, x):
    m.eval(); return torch.cat([m(x[i:i+500]) for i in range(0, len(x), 500)])
xtr, xte = to_float(tr_x), to_float(te_x)
print('random', linear_probe(feats(rand, xtr), tr_y, feats(rand, xte), te_y, epochs=30),
      'jigsaw', linear_probe(feats(enc, xtr), tr_y, feats(enc, xte), te_y, epochs=30), 'total', time.time() - start)
