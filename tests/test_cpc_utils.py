"""course_utils.cpc, what notebook 05 trains and evaluates with: strips, their augmentation, the CPC
module, the training step, the evaluation of the predictions, the probe's features, the sequence plot."""
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")

from course_utils import cpc, plots  # noqa: E402
from course_utils.data import denormalize, to_float  # noqa: E402


def _images(n=8, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _scores(z, c, W):
    return (c @ W.T) @ z.T


def _infonce(scores):
    return F.cross_entropy(scores, torch.arange(len(scores)))


def _loss(z, c, W, t):
    return torch.stack([_infonce(_scores(z[:, t + k], c[:, t], W[k - 1])) for k in range(1, W.shape[0] + 1)]).mean()


FNS = cpc.CPCFunctions(_scores, _infonce, _loss)


class _Encoder(nn.Module):
    def __init__(self, z_dim=6):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 32, z_dim))

    def forward(self, x):
        return self.net(x)


class _Context(nn.Module):
    def __init__(self, z_dim=6, c_dim=5):
        super().__init__()
        self.gru = nn.GRU(z_dim, c_dim, batch_first=True)

    def forward(self, z):
        return self.gru(z)[0]


def _model(steps=2):
    torch.manual_seed(0)
    return cpc.CPC(_Encoder(), _Context(), z_dim=6, c_dim=5, steps=steps)


def test_strips_are_the_overlapping_rows_top_to_bottom():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    strips = cpc.to_strips(x)
    assert strips.shape == (2, 7, 3, 8, 32)
    for t in range(7):
        assert torch.equal(strips[:, t], x[:, :, 4 * t:4 * t + 8, :]), t
    assert cpc.to_strips(x, height=16, stride=16).shape == (2, 2, 3, 16, 32)


@pytest.mark.parametrize("bad, kwargs", [((3, 32, 32), {}), ((1, 3, 32, 32), {"height": 40}),
                                         ((1, 3, 32, 32), {"stride": 0})])
def test_strips_refuse_what_does_not_fit_and_say_why(bad, kwargs):
    with pytest.raises(ValueError, match="strips|images"):
        cpc.to_strips(torch.zeros(bad), **kwargs)


def test_strip_augment_draws_colours_per_strip_and_one_crop_per_image():
    flat = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)  # one colour: only the colour step changes it
    flat[:, 0] = 200
    per_strip = denormalize(cpc.StripAugment(generator=torch.Generator().manual_seed(0))(flat).flatten(0, 1))
    assert per_strip.shape == (64 * 7, 3, 8, 32)
    colours = per_strip.mean(dim=(2, 3)).view(64, 7, 3)
    assert (colours.std(dim=1).amax(dim=1) > 0.02).float().mean() > 0.9  # strips of one image differ in colour
    per_image = denormalize(cpc.StripAugment(per_strip=False, generator=torch.Generator().manual_seed(0))(flat)
                            .flatten(0, 1)).mean(dim=(2, 3)).view(64, 7, 3)
    assert per_image.std(dim=1).amax() < 1e-4  # the same colours for every strip of an image
    assert per_image.std(dim=0).amax() > 0.02  # but not for every image
    # one crop per image: on a real image, neighbouring augmented strips still overlap by four rows
    x = cpc.StripAugment(generator=torch.Generator().manual_seed(1))
    x.augment.p_jitter = x.augment.p_gray = 0.0
    strips = x(_images(4))
    assert torch.allclose(strips[:, 1:, :, :4], strips[:, :-1, :, 4:], atol=1e-5)


def test_cpc_forward_shapes_and_its_prediction_matrices():
    model = _model(steps=3)
    z, c = model(cpc.to_strips(to_float(_images(4))))
    assert z.shape == (4, 7, 6) and c.shape == (4, 7, 5)
    assert model.W.shape == (3, 6, 5) and model.steps == 3 and model.W.requires_grad
    features = cpc.ContextFeatures(model)
    assert features.feature_dim == 5
    out = features(to_float(_images(4)))
    assert out.shape == (4, 5) and torch.allclose(out, model(cpc.to_strips(to_float(_images(4))))[1][:, -1])


def test_cpc_step_is_the_mean_of_the_students_loss_over_every_valid_start():
    model, images = _model(steps=2), _images(6)
    calls = []

    def loss(z, c, W, t):
        calls.append(t)
        return _loss(z, c, W, t)

    fns = cpc.CPCFunctions(_scores, _infonce, loss)
    augment = lambda x: cpc.to_strips(to_float(x))  # noqa: E731 (deterministic, to compare)
    value = cpc.cpc_step(fns, augment=augment)(model, (images, None), "cpu")
    assert calls == [0, 1, 2, 3, 4]  # T = 7, K = 2: t + 2 < 7
    z, c = model(augment(images))
    assert torch.allclose(value, torch.stack([_loss(z, c, model.W, t) for t in range(5)]).mean())
    value.backward()
    assert model.W.grad is not None and model.W.grad.abs().sum() > 0


def test_evaluate_predictions_counts_the_contexts_that_pick_their_own_future():
    model, images = _model(steps=2), to_float(_images(12))

    def oracle(z, c, W):  # the true future always scores highest
        return torch.eye(len(z)) * 10

    def anti(z, c, W):  # never
        return -torch.eye(len(z)) * 10

    accuracy, infonce = cpc.evaluate_predictions(model, images, cpc.CPCFunctions(oracle, _infonce, None), batch_size=4)
    assert torch.equal(accuracy, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(infonce, torch.full((2,), _infonce(torch.eye(4) * 10).item(), dtype=torch.float64))
    accuracy, infonce = cpc.evaluate_predictions(model, images, cpc.CPCFunctions(anti, _infonce, None), batch_size=4)
    assert torch.equal(accuracy, torch.zeros(2, dtype=torch.float64)) and (infonce > math.log(4)).all()
    accuracy, _ = cpc.evaluate_predictions(model, images, FNS, batch_size=4)
    assert accuracy.shape == (2,) and ((0 <= accuracy) & (accuracy <= 1)).all()
    with pytest.raises(ValueError, match="at least batch_size = 256"):
        cpc.evaluate_predictions(model, images, FNS)


def test_show_sequences_draws_each_image_and_its_elements():
    images = _images(3)
    fig = plots.show_sequences(images, cpc.to_strips(to_float(images)), title="strips")
    assert len(fig.axes) == 3 * 8
    assert fig.axes[1].get_title() == "t = 0" and fig.axes[0].get_title() == "image"


def test_cpc_step_says_when_the_sequences_are_too_short_for_k_steps_ahead():
    model = _model(steps=7)  # T = 7 strips: no t with t + 7 < 7
    with pytest.raises(ValueError, match="no start t with t \\+ K < T"):
        cpc.cpc_step(FNS, augment=lambda x: cpc.to_strips(to_float(x)))(model, (_images(2), None), "cpu")
