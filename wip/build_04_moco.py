"""Build the DRAFT solutions/self_supervised/04_moco.ipynb from the cells below (branch wip/04-moco).

    python wip/build_04_moco.py && python -m course_utils.notebook_runner solutions/self_supervised/04_moco.ipynb --fast

TODO before main: the hidden-test cells' points must equal POINTS; moco_logits vectorized timing and its
gradient check; the GPU setting section measured or marked unmeasured; the m comparison picture's second run;
release; README/SPEC; the kit's tests for 04 (wrong and right versions, three front ends).
"""
import json
from pathlib import Path

REF = (Path(__file__).with_name("04_moco_reference.py")).read_text()


def _function(name):
    """The reference source of one function (from def to the next blank-line-separated def)."""
    start = REF.index(f"def {name}(")
    end = REF.find("\n\n\ndef ", start)
    return REF[start:end if end > 0 else None].rstrip()


def solution(name):
    """The reference function with its body between nbgrader's solution markers (signature and docstring kept)."""
    lines = _function(name).splitlines()
    head = 2 if len(lines) > 1 and lines[1].strip().startswith('"""') else 1
    return "\n".join(lines[:head] + ["    ### BEGIN SOLUTION"] + lines[head:] + ["    ### END SOLUTION"])


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text, **nbgrader):
    meta = {"nbgrader": {"schema_version": 3, "task": False, **nbgrader}} if nbgrader else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": text.strip("\n")}


def graded_cell(name):
    return code(solution(name), grade=False, grade_id=name, locked=False, solution=True)


def hidden(name, points):
    return code(f'# Graded by the hidden tests (run by the autograder).\n### BEGIN HIDDEN TESTS\n'
                f'from autograder.frontends.nbgrader_hook import check\ncheck("{name}", globals())\n'
                f'### END HIDDEN TESTS', grade=True, grade_id=f"test_{name}", locked=True, points=points, solution=False)


RESULTS = r"""
## 6. Results

Measured with the reference solutions in full mode on a 2-core CPU, on the bundled SynthObjects-10 (10 classes, chance 10%). MoCo v2 ran its 30 epochs (1,170 steps of 256 images) in 109 s, inside its 180 s budget; SimCLR, in notebook 03, ran the same 30 epochs with the same encoder, batch and augmentation in 134 s (both of its views backpropagate; MoCo's key view is encoded without a graph). The whole notebook took 3.0 minutes.

| encoder | linear probe |
|---|---|
| random init | 38.2% |
| MoCo, query encoder | **60.0%** |
| MoCo, key encoder | 59.9% |
| SimCLR (notebook 03) | 63.8% |
| supervised upper bound (same encoder, labels, 60 s) | 96.1% |

which the notebook reports as `probe gain: MoCo 60.0% vs random init 38.2% (+21.8 points)`. Fast mode (`SSL_KIT_FAST=1`: 166 steps in 20 s) gave 51.7% against 37.9% (+13.8 points), and 70.0% for the supervised encoder after 8 s; 42 s in all.

**What the pictures show.**
- *Distance.* With m = 0.99 the key encoder trails the query encoder by up to 7.6% of its norm early on, while the learning rate is high, and catches up as the cosine schedule slows the query encoder down. With m = 0.999 it trails more than twice as far (up to 18%) and for most of the run: its keys come from an older encoder, consistent with each other but stale, which on a run this short costs accuracy (the table in section 1).
- *Queue age.* Sixteen batches of 256 fill the 4,096 slots: the slots just written are 1 step old and the slot at the pointer, the next to be overwritten, is the oldest (16 steps). That is the FIFO ring buffer your `enqueue` keeps.
- *Cosines.* In the first steps the positive and the hardest negative rise together (a random encoder maps every image alike); then the encoder learns to tell images apart, and the positive settles near 0.6 while the hardest of 4,096 negatives sits near 0.9: among 4,096 keys of 10 classes there is always a very similar image, often of the same class, which MoCo cannot know is not a true negative. For the same reason the loss is no progress bar: it went from 6.2 to 6.5, because the dictionary gets harder as the random initial keys are replaced by real ones and as the encoder improves.

**MoCo or SimCLR?** Here MoCo ends 3.8 points below SimCLR. MoCo's strength is a dictionary much larger than the batch at the cost of one batch; it matters when the batch must be small (large images, one GPU). With batches of 256, SimCLR already has 510 negatives per anchor, all from the current encoder.
"""

GPU = r"""
## 7. The GPU setting (optional)

Your six functions can train MoCo v2 at full size, CIFAR-10 with a ResNet-18 on 1 to 8 GPUs: `course_utils.moco_ddp` runs them under `torchrun` with DistributedDataParallel, shuffles the keys' batch across GPUs (`gather_shuffle`), and writes the keys of every GPU, in rank order, into every queue with your `enqueue`. Export your functions, download CIFAR-10 once, and launch (`--nproc_per_node` = your number of GPUs; on one GPU `python -m course_utils.moco_ddp ...` works too; `--smoke` checks your file in seconds on a CPU):

```
from course_utils.moco_ddp import export_functions; export_functions(globals(), "my_moco.py")
!python -m course_utils.data download cifar10
!torchrun --nproc_per_node=4 -m course_utils.moco_ddp --functions my_moco.py --dataset cifar10 --epochs 200 --out moco_r18.pt
```

| dataset | encoder | K | m | τ | batch | lr | epochs |
|---|---|---|---|---|---|---|---|
| CIFAR-10 (50,000 images) | ResNet-18, 3×3 stride-1 stem, no max-pool; MLP head 512-512-128 | 4096 | 0.99 | 0.1 | 512 in all, split over the GPUs; BatchNorm over groups of 64 | SGD 0.06 × batch/512, momentum 0.9, weight decay 5e-4, cosine | 200 |

**What to expect.** These are the settings of MoCo's official CIFAR-10 demo (which uses a linear head instead of MoCo v2's MLP): it reports a kNN accuracy of 82.6% after 200 epochs, 86.3% after 400 and 88.7% after 800, and 90.7% for a linear probe of its 800-epoch model trained with a symmetric loss (kNN 89.7%); other published ResNet-18 reproductions are in the same range, roughly 80–90% kNN or linear accuracy after 200–800 epochs. **Not measured by this kit: no GPU was available when it was written.** The script prints its own kNN accuracy on the test set at the end; `load_backbone("moco_r18.pt")` returns the encoder for your linear probe.

**How long.** A rough estimate from the compute, not a measurement: a MoCo step costs about 4/3 of a supervised ResNet-18 step, so 200 epochs take on the order of one to two hours on one A100-class GPU, several times longer on a Colab T4, and nearly N times less on N GPUs.
"""

CELLS = [
    md(r"""
# 04 · MoCo: momentum contrast

SimCLR compares each image with the other images *of the same batch*. Its negatives are as many as the batch is large, which is why SimCLR wants batches of thousands. **MoCo** (He et al., 2020, *Momentum Contrast for Unsupervised Visual Representation Learning*) reads contrastive learning as a **dictionary look-up**: an encoded query $q$ should match its own key $k^+$ among many keys $\{k_0, k_1, \dots\}$. A good dictionary is

- **large**, so that the look-up is hard and the features must be discriminative, and
- **consistent**: all its keys come from (nearly) the same encoder, so that comparing $q$ with them is fair.

MoCo gets both with two ideas you will implement: a **queue** of keys from past batches (thousands of negatives at the cost of one batch), and a **momentum encoder** for the keys that changes slowly, so that old and new keys in the queue stay comparable.

1. the momentum update of the key encoder,
2. the queue as a ring buffer,
3. the logits and the InfoNCE loss with the positive at index 0,
4. shuffling BN, and what it looks like across two processes,
5. then train MoCo v2 on the CPU and, in section 6, compare it with a random encoder, with SimCLR and with a supervised upper bound;
7. optionally, train it on CIFAR-10 on GPUs with your functions.

**How this notebook is graded.** As in 03: each function is in a `YOUR CODE HERE` cell, followed by a public check and a hidden test cell. The training cells are not graded.
"""),
    code(r"""
%matplotlib inline
import math
import os

import torch
import torch.nn.functional as F

from course_utils.checks import autograding, choose_device, fast_mode, is_implemented, rel_error, seed_everything, speedup
from course_utils.data import class_names, load_images

FAST = fast_mode()
DATASET = os.environ.get("SSL_KIT_DATASET", "synthetic")
device = choose_device()
seed_everything(0)
print(f"device: {device}, dataset: {DATASET}, fast mode: {FAST}")
""", grade=False, grade_id="setup", locked=True, solution=False),
    code(r"""
train_images, train_labels = load_images(DATASET, "train")
test_images, test_labels = load_images(DATASET, "test")
CLASS_NAMES = class_names(DATASET)
print("train:", tuple(train_images.shape), "test:", tuple(test_images.shape))
"""),
    md(r"""
## 1. The momentum encoder

The keys are encoded by a **key encoder** $f_k$ that is not trained by backpropagation. After each step of the query encoder $f_q$ its parameters follow

$$\theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q ,$$

an exponential moving average of the query encoder. Why not just use $f_q$ for the keys ($m = 0$)? Then the keys in the queue come from many different encoders (one per past step), the dictionary is inconsistent, and MoCo does not train: in the paper's ablation (ResNet-50, ImageNet, 200 epochs) $m = 0$ failed, $m = 0.9$ reached 55.2%, $m = 0.99$ 57.8% and $m = 0.999$ 59.0%. Over our short CPU runs a faster key encoder does better; measured with the settings of section 5 on the bundled data, each row a run of its own (linear probe of the query encoder):

| m | steps | probe | random init |
|---|---|---|---|
| 0 | 221 (20 s) | 42.6% | 38.2% |
| 0.99 | 221 (20 s) | 52.4% | 38.2% |
| 0.99 | 1,170 (109 s) | 60.0% | 38.2% |
| 0.999 | 1,170 (102 s) | 57.3% | 38.2% |

With $m = 0.999$ the key encoder averages the last ~1,000 steps of the query encoder, most of our whole run; the paper trains for 250,000 steps.

Implement `momentum_update`: in place, for every pair of parameters (in `parameters()` order), no autograd graph (use `torch.no_grad()`), buffers (BatchNorm's running statistics) untouched, the query encoder unchanged.
"""),
    graded_cell("momentum_update"),
    code(r"""
# Public check
seed_everything(0)
q_net, k_net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
before = k_net.weight.detach().clone()
momentum_update(q_net, k_net, 0.9)
assert torch.allclose(k_net.weight, 0.9 * before + 0.1 * q_net.weight), "theta_k <- m theta_k + (1 - m) theta_q"
assert k_net.weight.grad_fn is None, "no autograd graph: wrap the update in torch.no_grad()"
print("momentum_update: looks right")
"""),
    hidden("momentum_update", 2),
    md(r"""
## 2. The queue: a ring buffer of keys

The dictionary is a queue of the last $K$ keys, much larger than a batch ($K = 65{,}536$ in the paper, 4,096 here). Each step **enqueues** the batch's keys and drops the oldest ones: a fixed array `queue [K, D]` with a pointer `ptr` to the oldest slot, written in place, wrapping around at the end.

Order matters: the keys of this batch are enqueued **after** the logits are computed, so that a key is never a negative of its own query.

Implement `enqueue(queue, ptr, keys)`: write `keys[i]` (detached) to row `(ptr + i) % K`, return the new pointer `(ptr + N) % K`, and raise `ValueError` if `N > K`.
"""),
    graded_cell("enqueue"),
    code(r"""
# Public check
queue = torch.zeros(5, 2)
ptr = enqueue(queue, 3, torch.ones(3, 2))
assert ptr == 1 and queue[:, 0].tolist() == [1, 0, 0, 1, 1], "wrap around the end of the queue"
print("enqueue: looks right")
"""),
    hidden("enqueue", 2),
    md(r"""
## 3. Logits and the InfoNCE loss

For a batch of queries `q [N, D]`, their keys `k [N, D]` and the queue `[K, D]` (all L2-normalised), each query has one positive (its own key) and $K$ negatives (the queue). MoCo puts the positive **at index 0**:

$$\text{logits}_i = \big[\,q_i \cdot k_i,\; q_i \cdot \text{queue}_0,\; \dots,\; q_i \cdot \text{queue}_{K-1}\,\big] / \tau ,$$

and the loss is cross-entropy with label 0 for every query: InfoNCE. The keys and the queue are constants (no gradient flows into them); the temperature $\tau$ (0.2 in MoCo v2) sharpens the softmax.

Implement `moco_logits` (vectorized: one matrix product for the negatives) and `moco_loss`.
"""),
    graded_cell("moco_logits"),
    code(r"""
# Public check
seed_everything(0)
q, k, queue = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(10, 8), dim=1)
logits, labels = moco_logits(q, k, queue, 0.2)
assert logits.shape == (4, 11) and labels.tolist() == [0, 0, 0, 0]
assert torch.allclose(logits[:, 0], (q * k).sum(1) / 0.2), "the positive q_i . k_i / tau goes first"
print("moco_logits: looks right")
"""),
    hidden("moco_logits", 2.5),
    graded_cell("moco_loss"),
    code(r"""
# Public check
loss = moco_loss(q, k, queue, 0.2)
assert loss.dim() == 0 and torch.isclose(loss, F.cross_entropy(logits, labels))
print("moco_loss: looks right")
"""),
    hidden("moco_loss", 1.5),
    md(r"""
## 4. Shuffling BN

The encoders use BatchNorm, whose statistics are computed over the batch. If the queries and their keys are normalised with statistics of the *same* samples, the network can cheat: the batch statistics leak which key belongs to which query, and the loss falls without learning good features. MoCo **shuffles** the keys' batch before the key encoder and unshuffles the keys after, so that a query and its key are normalised with different statistics (across GPUs: each GPU encodes a different subset). SyncBN, which shares statistics across GPUs, would not help: it brings back the same statistics for everyone.

Implement `batch_shuffle(x, generator=None) -> (x[perm], unshuffle_index)` for a random permutation and `batch_unshuffle(x, unshuffle_index)` that undoes it.
"""),
    graded_cell("batch_shuffle"),
    graded_cell("batch_unshuffle"),
    code(r"""
# Public check
x = torch.arange(10.0).view(10, 1)
shuffled, index = batch_shuffle(x, generator=torch.Generator().manual_seed(0))
assert not torch.equal(shuffled, x) and torch.equal(batch_unshuffle(shuffled, index), x)
print("batch_shuffle, batch_unshuffle: look right")
"""),
    hidden("batch_shuffle", 1.5),
    hidden("batch_unshuffle", 0.5),
    md(r"""
### Across two processes

On several GPUs MoCo shuffles across processes: every process sends its keys' images to all others (`all_gather`), rank 0 draws one permutation of the whole batch and broadcasts it, each process encodes its slice of the shuffled batch (so its BatchNorm sees samples of every process), and the index that undoes the permutation brings each key back to its query. `course_utils.distributed` does it with `torch.distributed`; the cell below runs it in two processes on your CPU (a `gloo` process group) and shows which samples each process's BatchNorm saw (samples are numbered 1000 × rank + i).
"""),
    code(r"""
from course_utils.distributed import shuffle_bn_demo, spawn

if autograding():
    print("Autograding: the two-process demo is skipped.")
else:
    for rank, out in enumerate(spawn(shuffle_bn_demo, 2)):
        print(f"process {rank}: its samples {[int(i) for i in out['ids_before']]}")
        print(f"           its BatchNorm saw {[int(i) for i in out['seen_ids']]}")
        print(f"           after unshuffling {[int(i) for i in out['ids_after']]}")
"""),
    md(r"""
## 5. Training MoCo v2

MoCo v2 (Chen et al., 2020) added SimCLR's lessons to MoCo: an MLP projection head, SimCLR's stronger augmentation (crops, flips, colour jitter and grayscale; blur too on ImageNet, left out here on 32×32 images as in notebook 03) and a cosine learning-rate schedule. We train it on the same data, with the same encoder, batch size and augmentation as SimCLR in notebook 03, with your functions doing the work (`course_utils.moco` keeps the two encoders and the queue, and records what the pictures below show).

MoCo v3 (Chen, Xie and He, 2021) later dropped the queue: with batches of 4,096 the other keys of the batch are negatives enough. It uses a symmetric loss (each view is a query once and a key once), adds a prediction head on the query side, and trains Vision Transformers, which needed a frozen random patch projection to be stable. The momentum encoder stayed.

We also follow, without training it, a second key encoder with $m = 0.999$ along the same run: it is updated with your `momentum_update` from the same query encoder but encodes nothing, so the first picture shows how far each $m$ lets the key encoder trail.
"""),
    code(r"""
from course_utils.augment import BatchAugment
from course_utils.data import TensorImageDataset, make_loader
from course_utils.moco import MoCo, MoCoFunctions, MoCoTrace, moco_step
from course_utils.models import ResNetEncoder
from course_utils.training import train

CONFIG = dict(width=16, stem_stride=2, batch_size=256, queue_size=4096, m=0.99, tau=0.2, lr=1e-3, epochs=30,
              max_seconds=20 if FAST else 180, supervised_seconds=8 if FAST else 60)


def make_encoder():
    return ResNetEncoder(width=CONFIG["width"], stem_stride=CONFIG["stem_stride"])


FUNCTIONS = MoCoFunctions(momentum_update, enqueue, moco_logits, moco_loss, batch_shuffle, batch_unshuffle)
READY = is_implemented(moco_loss, F.normalize(torch.randn(2, 4), dim=1), F.normalize(torch.randn(2, 4), dim=1),
                       F.normalize(torch.randn(8, 4), dim=1), 0.2)
history = None
if autograding():
    print("Autograding: pre-training skipped.")
elif not READY:
    print("Training needs your functions above: implement them, then run this cell again.")
else:
    seed_everything(0)
    model = MoCo(make_encoder(), queue_size=CONFIG["queue_size"], shadow_m=(0.999,))
    trace = MoCoTrace()
    loader = make_loader(TensorImageDataset(train_images, train_labels), CONFIG["batch_size"], drop_last=True)
    step = moco_step(FUNCTIONS, m=CONFIG["m"], tau=CONFIG["tau"], augment=BatchAugment(), trace=trace)
    history = train(model, loader, step, epochs=CONFIG["epochs"], lr=CONFIG["lr"], max_seconds=CONFIG["max_seconds"],
                    device=device, desc="MoCo")
    print(f"{history.steps} steps in {history.seconds:.0f} s; loss {history.losses[0]:.3f} -> {history.losses[-1]:.3f}")
"""),
    code(r"""
import matplotlib.pyplot as plt

if history is not None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for key_m, distance in trace.distance.items():
        axes[0].plot(trace.steps, distance, label=f"m = {key_m}" + (" (trained with)" if key_m == CONFIG["m"] else ""))
    axes[0].set(title="key encoder's distance from the query encoder", xlabel="step",
                ylabel="||theta_k - theta_q|| / ||theta_q||"); axes[0].legend()
    age = model.queue_age()
    axes[1].plot(age.numpy(), ".", markersize=2)
    axes[1].set(title="age of each queue slot at the end", xlabel="slot", ylabel="steps since written")
    axes[2].plot(trace.steps, trace.positive, label="positive q.k")
    axes[2].plot(trace.steps, trace.hardest_negative, label="hardest negative (max q.queue)")
    axes[2].set(title="cosines over training", xlabel="step"); axes[2].legend()
    plt.tight_layout(); plt.show()
"""),
    code(r"""
from course_utils.data import to_float
from course_utils.evaluation import extract_features, linear_probe, probe_gain_line
from course_utils.plots import plot_bars
from course_utils.training import train_supervised

SIMCLR_MEASURED = {"SimCLR (notebook 03, measured)": 0.638}  # full mode, same data, encoder and budget
results = {}
if history is not None:
    seed_everything(0)
    supervised = make_encoder()
    train_supervised(supervised, loader, num_classes=len(CLASS_NAMES), augment=BatchAugment(), epochs=CONFIG["epochs"],
                     lr=CONFIG["lr"], max_seconds=CONFIG["supervised_seconds"], device=device, progress=False)
    x_train, x_test = to_float(train_images), to_float(test_images)
    seed_everything(0)
    for name, net in {"random init": make_encoder(), "MoCo (query encoder)": model.query.encoder,
                      "MoCo (key encoder)": model.key.encoder, "supervised": supervised}.items():
        results[name] = linear_probe(extract_features(net, x_train, device=device), train_labels,
                                     extract_features(net, x_test, device=device), test_labels,
                                     epochs=20 if FAST else 60)
    table = {**results, **SIMCLR_MEASURED}
    for name, acc in table.items():
        print(f"{name:<32} {100 * acc:5.1f}%")
    print(probe_gain_line("MoCo", results["MoCo (query encoder)"], results["random init"]))
    plot_bars(table, title="Linear probe on the test set", chance=1 / len(CLASS_NAMES))
"""),
    md(RESULTS),
    md(GPU),
]


def build(path: Path) -> None:
    nb = {"cells": CELLS, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                       "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i:03d}"
        cell["source"] = cell["source"].splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    build(Path(__file__).resolve().parents[1] / "solutions" / "self_supervised" / "04_moco.ipynb")
