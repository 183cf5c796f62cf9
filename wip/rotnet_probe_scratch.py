"""Scratch: RotNet on SynthObjects-10, probe of each block vs random init."""
import sys, time, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, '/work/main')
from course_utils.data import load_images, to_float, TensorImageDataset, make_loader
from course_utils.models import ResNetEncoder
from course_utils.evaluation import linear_probe
from course_utils.checks import seed_everything
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 60
MODE = sys.argv[2] if len(sys.argv) > 2 else 'plain'
from course_utils.augment import BatchAugment
aug = BatchAugment(scale=(0.2, 0.6), p_flip=0.0)
tr_x, tr_y = load_images('synthetic', 'train'); te_x, te_y = load_images('synthetic', 'test')
import numpy as np
from course_utils.data import synthetic
def no_horizon(n, seed=5):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10; rng.shuffle(labels)
    col = synthetic._hsv_to_rgb(rng.random(n), rng.uniform(0.1, 0.6, n), rng.uniform(0.3, 0.9, n))
    bg = np.clip(col[:, None, None] + rng.normal(0, 0.06, (n, 32, 32, 3)), 0, 1).astype(np.float32)  # no up or down
    out = []
    for i in range(0, n, 2000):
        imgs, _ = synthetic.render_scenes(labels[i:i+2000], rng, background=bg[i:i+2000])
        out.append(synthetic._to_uint8(imgs, rng))
    return torch.from_numpy(np.concatenate(out)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
PRE = sys.argv[4] if len(sys.argv) > 4 else 'scenes'
pre_x, pre_y = no_horizon(10000) if PRE == 'nohorizon' else (tr_x, tr_y)
def rotate_batch(x):
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)]), torch.arange(4).repeat_interleave(len(x))
seed_everything(0)
enc = ResNetEncoder(width=16, stem_stride=2); head = nn.Linear(enc.feature_dim, 4)
rand = ResNetEncoder(width=16, stem_stride=2)
opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
loader = make_loader(TensorImageDataset(pre_x, pre_y), 64, drop_last=True)
start = time.time(); step = 0; done = False; accs = []
while not done:
    for xb, _ in loader:
        x, y = rotate_batch(aug(xb) if MODE == 'aug' else to_float(xb))
        flip = torch.rand(len(x)) < 0.5  # horizontal flips keep rotation labels meaningful
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        logits = head(enc(x)); loss = F.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        accs.append((logits.argmax(1) == y).float().mean().item())
        if time.time() - start > secs: done = True; break
print('steps', step, 'pretext acc (last 50)', sum(accs[-50:]) / 50, flush=True)
@torch.no_grad()
def blocks(m, x):
    m.eval(); outs = {}
    for i in range(0, len(x), 500):
        h = m.stem(x[i:i+500]); feats = []
        for j, stage in enumerate(m.stages):
            h = stage(h); feats.append(h.mean((2, 3)))
        for j, f in enumerate(feats): outs.setdefault(j, []).append(f)
    return {j: torch.cat(v) for j, v in outs.items()}
xtr, xte = to_float(tr_x), to_float(te_x)
if len(sys.argv) > 3 and sys.argv[3] == 'recal':  # BatchNorm statistics of upright, unaugmented images
    for mod in enc.modules():
        if isinstance(mod, nn.BatchNorm2d): mod.reset_running_stats(); mod.momentum = None
    enc.train()
    with torch.no_grad():
        for i in range(0, 5000, 500): enc(xtr[i:i+500])
fr, fm, gr, gm = blocks(rand, xtr), blocks(enc, xtr), blocks(rand, xte), blocks(enc, xte)
for j in fr:
    print('block', j, 'random', linear_probe(fr[j], tr_y, gr[j], te_y, epochs=30), 'rotnet', linear_probe(fm[j], tr_y, gm[j], te_y, epochs=30), flush=True)
print('total', time.time() - start)
