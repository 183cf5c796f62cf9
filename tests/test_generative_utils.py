"""course_utils.generative, what notebook 02 trains and evaluates with: Lab colour through kornia, the in-gamut
ab bins and their histogram, k-means colours, random-region masks, the networks, the training steps, colour
propagation over whole clips, mask IoU; and the masks of the synthetic clips."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import generative as G
from course_utils.data import synthetic


# The SPEC's functions, written out plainly (the notebook's are the student's).
def _encode_ab(ab, centers):
    return ((ab.permute(0, 2, 3, 1)[..., None, :] - centers) ** 2).sum(-1).argmin(-1)


def _masked_mse(pred, target, mask):
    return (mask * (pred - target) ** 2).sum() / (pred.shape[1] * mask.sum())


def _colorization_loss(logits, targets, weights):
    return (weights[targets] * F.cross_entropy(logits, targets, reduction="none")).mean()


def _propagate(ref, tgt, colors, temperature=1.0):
    n, _, h, w = tgt.shape
    a = torch.softmax(torch.einsum("ndi,ndj->nij", tgt.flatten(2), ref.flatten(2)) / temperature, dim=-1)
    return torch.einsum("nij,ncj->nci", a, colors.flatten(2)).reshape(n, -1, h, w)


def test_lab_round_trip_and_ranges():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    lab = G.rgb_to_lab(images)
    assert lab.shape == (4, 3, 8, 8) and lab.dtype == torch.float32
    assert 0 <= lab[:, 0].min() and lab[:, 0].max() <= 100 and lab[:, 1:].abs().max() < G.AB_LIMIT
    assert (G.lab_to_rgb(lab) - images.float() / 255).abs().max() < 1e-4
    white, black = G.rgb_to_lab(torch.ones(1, 3, 1, 1)), G.rgb_to_lab(torch.zeros(1, 3, 1, 1))
    assert white[0, 0].item() == pytest.approx(100, abs=0.1) and black[0, 0].item() == pytest.approx(0, abs=0.1)
    assert white[0, 1:].abs().max() < 0.1          # white and black have no colour
    gray = G.lightness(images)
    assert gray.shape == (4, 1, 8, 8) and -1 <= gray.min() and gray.max() <= 1


def test_ab_bins_are_the_in_gamut_cells_of_the_grid():
    bins = G.ab_bins()
    assert bins.shape == (257, 2)
    assert ((bins % 10) == 0).all() and bins.abs().max() <= G.AB_LIMIT
    assert (bins == torch.tensor([0.0, 0.0])).all(1).any()                          # gray is a colour
    assert not (bins == torch.tensor([-110.0, -110.0])).all(1).any()                # no sRGB colour is there
    # every colour of real images falls within 5 * sqrt(2) of a kept centre (its bin is kept)
    ab = G.rgb_to_lab(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))[:, 1:]
    nearest = (ab.permute(0, 2, 3, 1)[..., None, :] - bins).norm(dim=-1).min(-1).values
    assert nearest.max() <= 5 * 2 ** 0.5 + 1e-4


def test_ab_counts_is_a_histogram_of_the_nearest_bins():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    bins = G.ab_bins()
    counts = G.ab_counts(_encode_ab, images, bins, batch_size=4)
    assert counts.shape == (257,) and counts.sum() == 6 * 64
    expected = torch.bincount(_encode_ab(G.rgb_to_lab(images)[:, 1:], bins).flatten(), minlength=257).float()
    assert torch.equal(counts, expected)
    assert G.ab_counts(_encode_ab, images, bins, size=4).sum() == 6 * 16


def test_ab_clusters_are_seeded_and_fit_two_colours():
    red, blue = torch.tensor([200, 30, 30], dtype=torch.uint8), torch.tensor([30, 30, 200], dtype=torch.uint8)
    images = torch.stack([red] * 5 + [blue] * 5).view(10, 3, 1, 1).expand(10, 3, 4, 4).contiguous()
    centers = G.ab_clusters(images, 2, size=4, samples=100)
    assert centers.shape == (2, 2) and torch.equal(centers, G.ab_clusters(images, 2, size=4, samples=100))
    expected = torch.cat([G.rgb_to_lab(images[:1])[0, 1:, 0, 0], G.rgb_to_lab(images[-1:])[0, 1:, 0, 0]]).view(2, 2)
    got = centers[centers[:, 1].argsort(descending=True)]                    # red has the larger b
    assert torch.allclose(got, expected, atol=1e-3)


def test_random_block_masks_cover_the_fraction_and_are_seeded():
    masks = G.random_block_masks(50, 32, block=8, fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (50, 1, 32, 32) and masks.dtype == torch.bool
    assert (masks.flatten(1).sum(1) == 4 * 64).all()                       # 4 of the 16 cells of 8x8
    cells = masks[:, 0, ::8, ::8]
    assert torch.equal(masks[:, 0], cells.repeat_interleave(8, 1).repeat_interleave(8, 2))   # whole cells
    assert cells.float().mean(0).min() > 0.05                              # every cell gets chosen sometimes
    again = G.random_block_masks(50, 32, block=8, fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_networks_shapes():
    assert G.EncoderDecoder(3, 3, 32)(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    net = G.EncoderDecoder(1, 257, 16)
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 257, 16, 16) and net.encoder(torch.randn(2, 1, 32, 32)).shape == (2, 64)
    for size in (16, 8):
        assert G.DenseEmbedding(dim=24, size=size)(torch.randn(2, 1, 32, 32)).shape == (2, 24, size, size)
    with pytest.raises(ValueError, match="size must be 16 or 8"):
        G.DenseEmbedding(size=4)


def test_training_steps_give_finite_losses_that_backpropagate():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    bins = G.ab_bins()
    weights = torch.rand(len(bins)) + 0.5
    cases = [
        (G.EncoderDecoder(3, 3), G.inpainting_step(lambda x: G.random_block_masks(len(x)), _masked_mse), (images,)),
        (G.EncoderDecoder(1, len(bins), 16), G.colorization_step(_encode_ab, _colorization_loss, bins, weights), (images,)),
        (G.EncoderDecoder(1, 2, 16), G.regression_step(), (images,)),
        (G.DenseEmbedding(), G.video_colorization_step(_propagate, _encode_ab, bins[:16]),
         (torch.randint(0, 256, (3, 4, 3, 32, 32), dtype=torch.uint8),)),
    ]
    for model, step, batch in cases:
        loss = step(model, batch, "cpu")
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_inpainting_step_scores_only_the_masked_pixels():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    seen = {}

    def loss(pred, target, mask):
        seen.update(inputs=pred, target=target, mask=mask)
        return _masked_mse(pred, target, mask)

    mask = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    mask[:, :, :8] = True
    G.inpainting_step(lambda x: mask, loss, fill=0.0)(lambda x: x, (images,), "cpu")   # the identity "network"
    assert (seen["inputs"][:, :, :8] == 0).all()                                    # masked pixels filled
    assert torch.equal(seen["inputs"][:, :, 8:], seen["target"][:, :, 8:])           # the rest given


def test_propagate_from_first_copies_frame_zero_along_matching_features():
    class Shift(torch.nn.Module):             # features that identify positions: a one-hot per pixel, scaled
        def forward(self, x):
            n = x.shape[0]
            return 50 * torch.eye(4).view(1, 4, 2, 2).expand(n, 4, 2, 2)

    clips = torch.zeros(2, 3, 3, 32, 32, dtype=torch.uint8)
    colors = torch.randn(2, 3, 5, 2, 2)
    out = G.propagate_from_first(_propagate, Shift(), clips, colors, temperature=1.0)
    assert out.shape == (2, 3, 5, 2, 2)
    assert torch.allclose(out, colors[:, :1].expand_as(out), atol=1e-4)     # every frame gets frame 0's colours


def test_mask_iou():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, 1:3] = True, True             # 4 pixels shared of 12
    assert torch.allclose(G.mask_iou(a, b), torch.tensor([4 / 12, 1.0]))


def test_video_masks_do_not_change_the_draws_and_mark_each_object():
    videos, labels = synthetic.make_videos(6, 4, seed=3)
    again, labels2, masks = synthetic.make_videos(6, 4, seed=3, with_masks=True)
    assert np.array_equal(videos, again) and np.array_equal(labels, labels2)
    assert masks.shape == (6, 4, 2, 32, 32) and masks.dtype == bool
    assert not (masks[:, :, 0] & masks[:, :, 1]).any()                    # a pixel shows one object at most
    assert masks.sum(axis=(3, 4)).min() > 0                               # each object is visible in every frame
    # the objects move: their masks differ between the first and the last frame
    assert (masks[:, 0] != masks[:, -1]).any(axis=(1, 2, 3)).all()
