"""Scratch: the notebook's three pretext tasks with its settings, one variant per run (figures for its tables).

python wip/pretext_runs.py METHOD SECONDS PRETRAIN [key=value ...]
METHOD rotnet|patch|jigsaw; PRETRAIN plain|turned|scenes; keys: gap, jitter, patch, perms, select (maxmin|random|average), gray.
"""
import itertools, math, sys, time
import torch
from torch import nn
sys.path.insert(0, '/work/main')
from course_utils.augment import BatchAugment
from course_utils.checks import seed_everything
from course_utils.data import TensorImageDataset, load_images, make_loader, to_float
from course_utils.evaluation import extract_features, linear_probe
from course_utils.models import ResNetEncoder
from course_utils.pretext import (JigsawNet, PairClassifier, StageFeatures, TileFeatures, jigsaw_step, patch_location_step,
                                  pretraining_scenes, rotnet_step)
from course_utils.training import train
exec(open('/tmp/p01/01_reference.py').read())
method, secs, pre = sys.argv[1], float(sys.argv[2]), sys.argv[3]
opt = dict(a.split('=') for a in sys.argv[4:])
tr_x, tr_y = load_images('synthetic', 'train'); te_x, te_y = load_images('synthetic', 'test')
pre_x = tr_x if pre == 'scenes' else pretraining_scenes(10000, pre)
loader = make_loader(TensorImageDataset(pre_x, torch.zeros(len(pre_x), dtype=torch.long)), int(opt.get('batch', 64 if method == 'rotnet' else 32)), drop_last=True)
seed_everything(int(opt.get('seed', 0)))
gray = float(opt.get('gray', 0.2))
if method == 'rotnet':
    enc = ResNetEncoder(int(opt.get('width', 16)), stem_stride=2); model = nn.Sequential(enc, nn.Linear(enc.feature_dim, 4))
    steps = rotnet_step(rotate_batch, BatchAugment(scale=(float(opt.get('smin', 0.2)), float(opt.get('smax', 0.6)))))
elif method == 'patch':
    enc = ResNetEncoder(16, stem_stride=1); model = PairClassifier(enc)
    steps = patch_location_step(context_pairs, BatchAugment(scale=(0.6, 1.0), p_flip=0.0, p_gray=gray),
                                int(opt.get('patch', 8)), int(opt.get('gap', 2)), int(opt.get('jitter', 1)))
else:
    n = int(opt.get('perms', 30)); sel = opt.get('select', 'maxmin')
    if sel == 'maxmin':
        perms = hamming_permutations(n, generator=torch.Generator().manual_seed(0))
    else:
        allp = torch.tensor(list(itertools.permutations(range(9))), dtype=torch.int8)
        perms = allp[torch.randperm(len(allp), generator=torch.Generator().manual_seed(0))[:n]].long()
    d = (perms[:, None] != perms[None]).sum(-1) + 99 * torch.eye(n, dtype=torch.long)
    print('permutations', n, sel, 'min distance', int(d.min()), flush=True)
    enc = ResNetEncoder(16, stem_stride=1); model = JigsawNet(enc, 9, n)
    steps = jigsaw_step(tile_images, shuffle_tiles, perms, BatchAugment(size=30, scale=(0.6, 1.0), p_flip=0.0), 8)
h = train(model, loader, steps.step, epochs=int(opt.get('epochs', {'rotnet': 12, 'patch': 6, 'jigsaw': 10}[method])),
          lr=float(opt.get('lr', 1e-3)),
          max_seconds=secs, progress=False)
acc = sum(steps.accuracy[-50:]) / len(steps.accuracy[-50:])
print(method, pre, opt, f'steps {h.steps} in {h.seconds:.0f} s, pretext accuracy (last 50) {100*acc:.1f}%', flush=True)
seed_everything(int(opt.get('seed', 0)))
rand = ResNetEncoder(int(opt.get('width', 16)), stem_stride=2 if method == 'rotnet' else 1)
xtr, xte = to_float(tr_x), to_float(te_x)
nets = ([(f'stage{s}', StageFeatures(rand, s), StageFeatures(enc, s)) for s in range(3)] if method == 'rotnet'
        else [('whole', rand, enc), ('tiles', TileFeatures(rand), TileFeatures(enc))])
for name, r, m in nets:
    a = linear_probe(extract_features(r, xtr), tr_y, extract_features(r, xte), te_y, epochs=60)
    b = linear_probe(extract_features(m, xtr), tr_y, extract_features(m, xte), te_y, epochs=60)
    print(f'{name} random {100*a:.1f} {method} {100*b:.1f} gain {100*(b-a):+.1f}', flush=True)
