"""course_utils: augmentations, checks, models, training loop, evaluation, plots."""
import math
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from course_utils import augment, checks, evaluation, models, plots, training  # noqa: E402
from course_utils.data import PairDataset, TensorImageDataset, denormalize, make_loader, to_float  # noqa: E402


def _images(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# --- augment -------------------------------------------------------------------
def test_hsv_round_trip():
    x = torch.rand(8, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(augment.hsv_to_rgb(augment.rgb_to_hsv(x)), x, atol=1e-5)


def test_batch_augment_shapes_and_per_image_draws():
    aug = augment.BatchAugment(size=24, generator=torch.Generator().manual_seed(0))
    x = _images(32)
    v1, v2 = aug(x), aug(x)
    assert v1.shape == (32, 3, 24, 24) and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2)
    raw = denormalize(v1)
    # per-image draws: with p_gray=0.2, some but not all images are gray
    gray = ((raw[:, 0] - raw[:, 1]).abs().amax(dim=(1, 2)) < 1e-5).float().mean()
    assert 0.0 < gray < 0.6


def test_batch_augment_identity_settings_reproduce_the_image():
    aug = augment.BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), p_jitter=0, p_gray=0, p_flip=0)
    x = _images(4)
    assert torch.allclose(aug(x), to_float(x), atol=1e-4)


def test_batch_augment_flip_only_mirrors():
    aug = augment.BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), p_jitter=0, p_gray=0, p_flip=1.0)
    x = _images(4)
    assert torch.allclose(aug(x), to_float(x).flip(-1), atol=1e-4)


def test_batch_augment_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        augment.BatchAugment()(torch.zeros(3, 32, 32))


# --- checks --------------------------------------------------------------------
def test_rel_error():
    assert checks.rel_error(torch.tensor([1.0, 2.0]), [1.0, 2.0]) == 0
    assert math.isclose(checks.rel_error(1.0, 3.0), 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        checks.rel_error(torch.zeros(2), torch.zeros(3))


def test_speedup_orders_a_slow_and_a_fast_function():
    x = torch.randn(64, 64)
    slow = lambda: [x[i] @ x.T for i in range(64)]  # noqa: E731
    fast = lambda: x @ x.T  # noqa: E731
    t_slow, t_fast, ratio = checks.speedup(slow, fast, repeats=3, warmup=1)
    assert t_slow > 0 and t_fast > 0 and ratio == pytest.approx(t_slow / t_fast)


def test_is_implemented_and_fast_mode(monkeypatch):
    def stub():
        raise NotImplementedError

    assert not checks.is_implemented(stub) and checks.is_implemented(lambda: 1)
    with pytest.raises(ZeroDivisionError):
        checks.is_implemented(lambda: 1 / 0)  # real bugs are not hidden
    monkeypatch.setenv("SSL_KIT_FAST", "1")
    assert checks.fast_mode()
    monkeypatch.setenv("SSL_KIT_FAST", "0")
    assert not checks.fast_mode()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert checks.autograding()


# --- models --------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
def test_encoder_and_simclr_model_shapes(stride):
    enc = models.ResNetEncoder(width=8, stem_stride=stride)
    model = models.SimCLRModel(enc, hidden_dim=16, out_dim=12)
    h, z = model(torch.randn(5, 3, 32, 32))
    assert h.shape == (5, 32) and z.shape == (5, 12)
    assert enc.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 32, 8 // stride, 8 // stride)
    assert models.count_parameters(model) > 0


# --- training ------------------------------------------------------------------
def test_train_reduces_a_loss_and_checkpoints_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(4, 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    step = lambda m, b, d: torch.nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    history = training.train(model, loader, step, epochs=5, lr=0.1)
    assert history.steps == 40 and len(history.epoch_means) == 5
    assert history.epoch_means[-1] < 0.5 * history.epoch_means[0]
    assert "train" in capsys.readouterr().out  # the progress bar is on stdout, never stderr
    path = training.save_checkpoint(tmp_path / "ck.pt", model, history, note="hi")
    other = torch.nn.Linear(4, 2)
    h2, extra = training.load_checkpoint(path, other)
    assert torch.equal(other.weight, model.weight) and h2.losses == history.losses and extra == {"note": "hi"}


def test_train_runs_its_steps_passing_over_the_loader_again_and_stops_on_nan():
    model = torch.nn.Linear(2, 1)
    loader = [torch.randn(4, 2)] * 3
    h = training.train(model, loader, lambda m, b, d: m(b).pow(2).mean(), steps=7, progress=False)
    assert h.steps == h.planned == 7 and len(h.epoch_means) == 3 and not h.capped  # passes of 3, 3 and 1 batches
    with pytest.raises(FloatingPointError, match="step 0"):
        training.train(model, loader, lambda m, b, d: m(b).sum() * float("nan"), progress=False)
    with pytest.raises(ValueError, match="not both"):
        training.train(model, loader, lambda m, b, d: m(b).sum(), steps=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="no batch"):
        training.train(model, [], lambda m, b, d: m(b).sum(), steps=2, progress=False)


def _seeded_run(steps):
    torch.manual_seed(0)
    x = torch.randn(96, 4)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    noisy = lambda m, b, d: (m(b[0] + 0.1 * torch.randn_like(b[0])) - b[0][:, :1]).pow(2).mean()  # noqa: E731
    return training.train(model, loader, noisy, steps=steps, lr=0.01, progress=False), model


def test_a_seeded_run_of_fixed_steps_repeats_exactly():
    """Steps, not seconds: the same seed gives the same losses and weights, however fast the machine."""
    (h1, m1), (h2, m2) = _seeded_run(20), _seeded_run(20)
    assert h1.losses == h2.losses and h1.steps == 20
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_the_opt_in_time_cap_and_a_slow_pace_each_say_so_in_one_line(capsys):
    model, loader = torch.nn.Linear(2, 1), [torch.randn(4, 2)] * 3
    h = training.train(model, loader, lambda m, b, d: m(b).pow(2).mean(), steps=50, max_seconds=0.0, desc="demo",
                       progress=False)
    assert h.capped and h.steps == 1 and h.planned == 50
    assert "demo: stopped by its time cap (max_seconds=0) after 1 of 50 steps" in capsys.readouterr().out
    h = training.train(model, loader, lambda m, b, d: m(b).pow(2).mean(), steps=40, expect_seconds=1e-9,
                       desc="demo", progress=False)
    out = capsys.readouterr().out
    assert h.steps == 40 and not h.capped and out.count("demo: at this pace the 40 steps take about") == 1, out


def test_train_supervised_trains_the_encoder_in_place_through_the_augmentation():
    """The probe's upper bound: encoder + linear classifier with labels; the encoder itself is what is kept."""
    class Encoder(torch.nn.Module):
        feature_dim = 8

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8), torch.nn.ReLU())

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    x = torch.randn(256, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    encoder, seen = Encoder(), []
    before = encoder.net[1].weight.detach().clone()
    history = training.train_supervised(encoder, loader, num_classes=2, augment=lambda b: seen.append(b.shape) or b,
                                        epochs=5, lr=0.05, progress=False)
    assert history.steps == 40 and len(seen) == 40
    assert history.epoch_means[-1] < 0.5 * history.epoch_means[0]
    assert not torch.equal(encoder.net[1].weight, before)


def test_load_checkpoint_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.load_checkpoint(tmp_path / "nope.pt", torch.nn.Linear(1, 1))


# --- evaluation ----------------------------------------------------------------
def _blobs(n_per=100, seed=0):
    centers = torch.randn(4, 8, generator=torch.Generator().manual_seed(123)) * 5  # shared by every split
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n_per)
    return centers[labels] + torch.randn(len(labels), 8, generator=g), labels


def test_probe_and_knn_separate_easy_clusters_and_fail_on_noise():
    xtr, ytr = _blobs(seed=0)
    xte, yte = _blobs(seed=1)
    assert evaluation.linear_probe(xtr, ytr, xte, yte, epochs=30) > 0.95
    assert evaluation.knn_accuracy(xtr, ytr, xte, yte, k=10) > 0.95
    noise = torch.randn_like(xtr)
    assert evaluation.linear_probe(noise, ytr, torch.randn_like(xte), yte, epochs=30) < 0.45


def test_extract_features_and_embedding_shapes():
    enc = models.ResNetEncoder(width=4)
    feats = evaluation.extract_features(enc, torch.randn(10, 3, 32, 32), batch_size=3)
    assert feats.shape == (10, 16)
    pts = evaluation.embed_2d(feats)
    assert pts.shape == (10, 2) and torch.allclose(pts.mean(0), torch.zeros(2), atol=1e-4)


# --- data wrappers and plots ---------------------------------------------------
def test_pair_dataset_and_loader_are_seeded():
    base = TensorImageDataset(_images(20), torch.arange(20))
    pairs = PairDataset(base, lambda x: x.float() + torch.rand(1))
    a, b, y = pairs[3]
    assert a.shape == (3, 32, 32) and not torch.equal(a, b) and y == 3
    order = lambda: torch.cat([yb for _, yb in make_loader(base, 5, seed=1, num_workers=0)])  # noqa: E731
    assert torch.equal(order(), order())


def test_tensor_dataset_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2))


def test_plots_draw(tmp_path):
    imgs = _images(6)
    figs = [
        plots.show_images(imgs, nrow=3, titles=list("abcdef")),
        plots.show_pairs(imgs[:3], to_float(imgs[:3]), to_float(imgs[3:])),
        plots.plot_losses({"a": [3, 2, 1, 0.5] * 5}, smooth=3),
        plots.plot_bars({"x": 0.3, "y": 0.7}, chance=0.1),
        plots.plot_embeddings([(torch.randn(20, 2), torch.arange(20) % 2, "t")], ["p", "q"]),
    ]
    for i, fig in enumerate(figs):
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 1000


def test_probe_gain_line_has_the_specs_form_and_adds_up():
    from course_utils.evaluation import probe_gain_line

    assert probe_gain_line("SimCLR", 0.638, 0.382) == "probe gain: SimCLR 63.8% vs random init 38.2% (+25.6 points)"
    # the gain is that of the figures shown, so the line never disagrees with itself by a rounding
    assert probe_gain_line("MoCo", 0.60949, 0.38251) == "probe gain: MoCo 60.9% vs random init 38.3% (+22.6 points)"
    assert probe_gain_line("jigsaw", 0.30, 0.355) == "probe gain: jigsaw 30.0% vs random init 35.5% (-5.5 points)"
    with pytest.raises(ValueError, match="fractions"):
        probe_gain_line("CPC", 63.8, 38.2)


def test_split_batchnorm_makes_the_order_of_the_batch_matter_and_loads_as_batchnorm():
    """MoCo's shuffling BN on one process: with BatchNorm over groups of the batch, a shuffled batch is
    normalised with other statistics; over the whole batch the order changes nothing."""
    torch.manual_seed(0)
    x, perm = torch.randn(16, 3, 32, 32), torch.randperm(16)
    plain = models.ResNetEncoder(width=8, stem_stride=2).train()
    split = models.split_batchnorms(models.ResNetEncoder(width=8, stem_stride=2), 4).train()
    split.load_state_dict(plain.state_dict())  # the same parameters and buffers: a BatchNorm2d's state dict
    assert any(isinstance(m, models.SplitBatchNorm) for m in split.modules())
    unshuffled = lambda net: net(x[perm])[torch.argsort(perm)]  # noqa: E731
    torch.testing.assert_close(unshuffled(plain), plain(x), rtol=1e-4, atol=1e-5)
    assert (unshuffled(split) - split(x)).abs().max() > 1e-2
    split.load_state_dict(plain.state_dict())  # (training moved their running statistics differently)
    plain.eval(), split.eval()
    torch.testing.assert_close(split(x), plain(x))  # eval mode: the running statistics, as BatchNorm2d


# --- the notebook runner ---------------------------------------------------------
@pytest.mark.parametrize("flag, env, fast, said", [
    ([], None, False, "full mode (from no --fast, no SSL_KIT_FAST=1)"),
    (["--fast"], None, True, "fast mode (from --fast)"),
    ([], "1", True, "fast mode (from SSL_KIT_FAST=1)"),
    ([], "0", False, "full mode"),
])
def test_the_runner_takes_fast_mode_from_the_flag_or_the_environment_and_says_which(
        monkeypatch, capsys, tmp_path, flag, env, fast, said):
    from course_utils import notebook_runner
    seen = {}

    def fake_execute(path, *, fast, save_to, timeout):
        seen["fast"] = fast
        return notebook_runner.NotebookRun(Path(path), 0.0)

    monkeypatch.setattr(notebook_runner, "execute", fake_execute)
    if env is None:
        monkeypatch.delenv("SSL_KIT_FAST", raising=False)
    else:
        monkeypatch.setenv("SSL_KIT_FAST", env)
    assert notebook_runner.main([str(tmp_path / "nb.ipynb"), *flag]) == 0
    assert seen["fast"] is fast and said in capsys.readouterr().out
