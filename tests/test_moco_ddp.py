"""course_utils.moco_ddp, the GPU setting of 04_moco, on a real 2-process gloo group (CPU) and in one process.

The reference functions (from solutions/self_supervised/04_moco.ipynb) are written to a file, exported from
there with `moco_ddp.export_functions` and loaded back through the
script's ``--functions`` path, then trained for a few steps on a tiny synthetic set: DDP must keep the
query encoders equal, the momentum update the key encoders equal, and the gathered keys the queues equal.
"""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder.grading.reference import reference_source
from course_utils import distributed, moco_ddp

REPO = Path(__file__).resolve().parents[1]
WORLD, PER_RANK, STEPS = 2, 8, 3
CONFIG = moco_ddp.MoCoDDPConfig(dataset="synthetic", max_images=64, arch="small", width=8, out_dim=16,
                                queue_size=64, batch_size=WORLD * PER_RANK, epochs=1, max_steps=STEPS,
                                knn_k=5, device="cpu", log=False)


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    """The reference definitions as a file (export_functions reads sources with inspect, which needs one)."""
    path = tmp_path_factory.mktemp("reference") / "moco_reference.py"
    path.write_text(reference_source("04_moco"))
    return path


def _reference(path):
    spec = importlib.util.spec_from_file_location("moco_reference_for_ddp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_recording_keys(rank, world_size, config, functions_path):
    """What `spawn` runs: `train` with the functions file, and the keys this rank made at each step."""
    keys = []
    out = moco_ddp.train(rank, world_size, config, functions_path,
                         on_step=lambda step, loss, k: keys.append(k.clone()))
    out["keys"] = keys
    return out


def _parameter_names(config):
    encoder = moco_ddp.MoCoV2Encoder(moco_ddp.build_backbone(config), config.out_dim)
    return [name for name, _ in encoder.named_parameters()]


@pytest.fixture(scope="module")
def functions_file(tmp_path_factory, reference_file):
    return moco_ddp.export_functions(vars(_reference(reference_file)), tmp_path_factory.mktemp("moco") / "reference_moco.py")


@pytest.fixture(scope="module")
def run(functions_file):
    config = moco_ddp.MoCoDDPConfig(**{**CONFIG.__dict__, "out": str(functions_file.with_name("ckpt.pt"))})
    return config, distributed.spawn(_train_recording_keys, WORLD, config, str(functions_file), backend="gloo")


def test_the_loss_is_finite_and_the_same_epoch_mean_on_every_rank(run):
    _, outs = run
    for out in outs:
        assert out["steps"] == STEPS and len(out["losses"]) == STEPS
        assert all(math.isfinite(x) for x in out["losses"])
    assert outs[0]["epoch_losses"] == outs[1]["epoch_losses"]  # all-reduced over the ranks
    assert outs[0]["losses"] != outs[1]["losses"]  # each rank its own images


def test_ddp_keeps_the_query_encoders_identical(run):
    config, outs = run
    for name in _parameter_names(config):
        torch.testing.assert_close(outs[0]["query"][name], outs[1]["query"][name], rtol=0, atol=0, msg=name)


def test_the_key_encoders_are_identical_and_trail_the_query_encoder(run):
    config, outs = run
    names = _parameter_names(config)
    for name in names:
        torch.testing.assert_close(outs[0]["key"][name], outs[1]["key"][name], rtol=0, atol=0, msg=name)
    distance = sum(float((outs[0]["key"][n] - outs[0]["query"][n]).abs().sum()) for n in names)
    assert distance > 0


def test_the_queues_are_identical_and_hold_every_ranks_keys_in_rank_order(run):
    config, outs = run
    written = WORLD * PER_RANK * STEPS
    assert torch.equal(outs[0]["queue"], outs[1]["queue"])
    assert outs[0]["ptr"] == outs[1]["ptr"] == written
    queue = outs[0]["queue"]
    for step in range(STEPS):
        for rank, out in enumerate(outs):
            start = step * WORLD * PER_RANK + rank * PER_RANK
            torch.testing.assert_close(queue[start:start + PER_RANK], out["keys"][step], msg=f"step {step} rank {rank}")
    assert not torch.allclose(outs[0]["keys"][0], outs[1]["keys"][0])
    torch.testing.assert_close(queue[written:], moco_ddp.initial_queue(config)[written:])  # the rest untouched


def test_rank_0_monitors_and_saves_the_query_encoder(run):
    config, outs = run
    assert 0.0 <= outs[0]["knn"] <= 1.0 and outs[1]["knn"] is None
    backbone = moco_ddp.load_backbone(config.out)
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(value, outs[0]["query"]["backbone." + name], msg=name)


def test_one_process_uses_the_students_batch_shuffle(functions_file):
    fns = moco_ddp.load_functions(functions_file)
    calls = []
    shuffle = fns.batch_shuffle

    def counted(x, *args, **kwargs):
        calls.append(len(x))
        return shuffle(x, *args, **kwargs)

    fns.batch_shuffle = counted
    out = moco_ddp.train(0, 1, moco_ddp.MoCoDDPConfig(**{**CONFIG.__dict__, "knn": False}), fns)
    assert calls == [WORLD * PER_RANK] * STEPS
    assert out["ptr"] == WORLD * PER_RANK * STEPS and all(math.isfinite(x) for x in out["losses"])


def test_export_functions_round_trips(tmp_path, reference_file):
    ref = _reference(reference_file)
    fns = moco_ddp.load_functions(moco_ddp.export_functions(vars(ref), tmp_path / "mine.py"))
    assert all(callable(getattr(fns, name)) for name in moco_ddp.GRADED)
    g = torch.Generator().manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1) for _ in range(2))
    queue = torch.nn.functional.normalize(torch.randn(10, 4, generator=g), dim=1)
    for a, b in zip(fns.moco_logits(q, k, queue, 0.2), ref.moco_logits(q, k, queue, 0.2)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fns.moco_loss(q, k, queue, 0.2), ref.moco_loss(q, k, queue, 0.2))
    mine, theirs = queue.clone(), queue.clone()
    assert fns.enqueue(mine, 7, k) == ref.enqueue(theirs, 7, k) == 3
    torch.testing.assert_close(mine, theirs)
    shuffled, index = fns.batch_shuffle(q, torch.Generator().manual_seed(1))
    expected, expected_index = ref.batch_shuffle(q, torch.Generator().manual_seed(1))
    torch.testing.assert_close(shuffled, expected)
    torch.testing.assert_close(fns.batch_unshuffle(shuffled, index), ref.batch_unshuffle(expected, expected_index))
    nets = [torch.nn.Linear(3, 2) for _ in range(4)]  # query, key (mine), query, key (reference)
    nets[2].load_state_dict(nets[0].state_dict())
    nets[3].load_state_dict(nets[1].state_dict())
    fns.momentum_update(nets[0], nets[1], 0.9)
    ref.momentum_update(nets[2], nets[3], 0.9)
    torch.testing.assert_close(nets[1].weight, nets[3].weight)


def test_export_functions_names_a_missing_function(tmp_path, reference_file):
    namespace = {name: fn for name, fn in vars(_reference(reference_file)).items() if name != "moco_loss"}
    with pytest.raises(ValueError, match="moco_loss"):
        moco_ddp.export_functions(namespace, tmp_path / "mine.py")


def test_a_functions_file_missing_a_function_is_refused_by_name(tmp_path, functions_file):
    source = functions_file.read_text()
    start = source.index("def enqueue(")
    end = source.index("\ndef ", start + 1)
    bad = tmp_path / "no_enqueue.py"
    bad.write_text(source[:start] + source[end:])
    with pytest.raises(ValueError, match=r"does not define enqueue:"):
        moco_ddp.load_functions(bad)
    done = subprocess.run([sys.executable, "-m", "course_utils.moco_ddp", "--functions", str(bad), "--smoke"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "does not define enqueue" in done.stderr and "Traceback" not in done.stderr


def test_help_exits_0():
    done = subprocess.run([sys.executable, "-m", "course_utils.moco_ddp", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--functions" in done.stdout and "torchrun" in done.stdout
