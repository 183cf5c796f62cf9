"""course_utils.pretext, what notebook 01 trains and evaluates with: the plain pre-training scenes, random crops
and jitter, the networks around a shared encoder, the training steps, the probes' features, the pictures."""
import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from course_utils import plots, pretext  # noqa: E402
from course_utils.data import synthetic  # noqa: E402
from course_utils.models import ResNetEncoder  # noqa: E402


def _context_pairs(images, patch_size, gap):
    """The SPEC's context_pairs, written out plainly (the notebook's is the student's)."""
    n, _, h, w = images.shape
    size = 3 * patch_size + 2 * gap
    top, left = (h - size) // 2, (w - size) // 2
    at = lambda r, c: images[:, :, top + r * (patch_size + gap):top + r * (patch_size + gap) + patch_size,  # noqa: E731
                             left + c * (patch_size + gap):left + c * (patch_size + gap) + patch_size]
    positions = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    neighbors = torch.stack([at(r, c) for r, c in positions], 1).flatten(0, 1)
    centers = at(1, 1).repeat_interleave(8, 0)
    return centers, neighbors, torch.arange(8).repeat(n)


def _index_image(n=2, h=32, w=32):
    """Images whose pixel (y, x) holds 1000 * y + x in every channel, plus 100000 * image index."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = (1000 * y + x).double()
    return (base + 100000 * torch.arange(n).view(n, 1, 1, 1)).expand(n, 3, h, w).clone()


def test_plain_scenes_have_no_sky_above_the_ground():
    plain = pretext.pretraining_scenes(300, seed=3).permute(0, 2, 3, 1).numpy().astype(float)
    scenes, _ = synthetic.make_images(300, seed=3)
    blueness = lambda part: (part[..., 2] - part[..., :2].mean(-1)).mean()  # noqa: E731
    top, bottom = plain[:, :4], plain[:, -4:]
    assert abs(blueness(top) - blueness(bottom)) < 3          # the scenes differ by more than 20 (test_synthetic_data)
    assert abs(top.mean() - bottom.mean()) < 5
    # an object on every image: more spread than the background's noise alone (about 0.067 * 255 = 17)
    assert plain.shape == (300, 32, 32, 3) and plain.std(axis=(1, 2)).mean() > 22
    assert not np.array_equal(plain.astype(np.uint8), scenes)


def test_turned_scenes_have_their_sky_on_each_side_a_quarter_of_the_time():
    turned = pretext.pretraining_scenes(400, "turned", seed=4).permute(0, 2, 3, 1).numpy().astype(float)
    blueness = turned[..., 2] - turned[..., :2].mean(-1)                         # [N, 32, 32]
    edges = np.stack([blueness[:, :4].mean((1, 2)), blueness[:, :, -4:].mean((1, 2)),
                      blueness[:, -4:].mean((1, 2)), blueness[:, :, :4].mean((1, 2))], 1)  # top, right, bottom, left
    sides = np.bincount(edges.argmax(1), minlength=4)
    # a quarter each: 100 +- 8.7 (binomial); 60..140 is beyond 4.5 standard deviations
    assert sides.min() >= 60 and sides.max() <= 140, sides
    # and the scenes are the bundled kind of scene: sky above the ground in the upright ones
    scenes = synthetic.make_images(400, seed=4)[0].astype(float)
    assert (scenes[:, :4, :, 2] - scenes[:, :4, :, :2].mean(-1)).mean() > edges[:, 0].mean() + 5


def test_plain_background_leaves_the_bundled_scenes_unchanged():
    # the option must not change what make_images draws by default (the caches of every split rely on it)
    a, la = synthetic.make_images(50, seed=7)
    b, lb = synthetic.make_images(50, seed=7, background="scene")
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    with pytest.raises(ValueError, match="background"):
        synthetic.make_images(5, background="sky")


def test_random_crops_take_each_image_at_its_own_offset():
    x = _index_image(64, 10, 10)
    crops = pretext.random_crops(x, 6, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (64, 3, 6, 6)
    origin = crops[:, 0, 0, 0] - 100000 * torch.arange(64)
    dy, dx = origin // 1000, origin % 1000
    assert dy.min() == 0 and dy.max() == 4 and dx.min() == 0 and dx.max() == 4
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10
    # a crop is contiguous: rows and columns step by one
    assert torch.equal(crops[:, 0] - crops[:, 0, :1, :1], (1000 * torch.arange(6)[:, None] + torch.arange(6)).double().expand(64, 6, 6))
    with pytest.raises(ValueError, match="crop"):
        pretext.random_crops(x, 11)


def test_jitter_moves_every_patch_independently_by_at_most_jitter():
    x = _index_image(200)
    centers, neighbors, labels = pretext.jittered_context_pairs(_context_pairs, x, 8, 2, 1,
                                                                generator=torch.Generator().manual_seed(0))
    plain_c, plain_n, plain_l = _context_pairs(x, 8, 2)
    assert centers.shape == plain_c.shape and torch.equal(labels, plain_l)
    for got, want in ((centers, plain_c), (neighbors, plain_n)):
        shift = got[:, 0, 0, 0] - want[:, 0, 0, 0]
        dy, dx = torch.round(shift / 1000), shift - 1000 * torch.round(shift / 1000)
        assert set(dy.long().tolist()) == {-1, 0, 1} and set(dx.long().tolist()) == {-1, 0, 1}
    # the centre of one image gets a new offset for each of its 8 pairs
    assert len(set(centers[:8, 0, 0, 0].tolist())) > 1
    with pytest.raises(ValueError, match="jitter"):
        pretext.jittered_context_pairs(_context_pairs, x, 8, 2, 2)


def test_crop_tiles_crops_inside_each_cell():
    tiles = _index_image(6, 10, 10).view(2, 3, 3, 10, 10)  # [N=2, T=3, C=3, 10, 10]
    out = pretext.crop_tiles(tiles, 8, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 3, 3, 8, 8)
    for n in range(2):
        for t in range(3):
            assert (out[n, t] - tiles[n, t].view(3, 100)[:, :1, None]).min() >= 0  # inside the tile it came from


def test_pair_classifier_shares_one_encoder():
    enc = ResNetEncoder(width=4, stem_stride=1)
    net = pretext.PairClassifier(enc)
    c, n = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    assert net(c, n).shape == (5, 8)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in enc.parameters()) + \
        sum(p.numel() for p in net.head.parameters())


def test_jigsaw_net_sees_each_tile_alone():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    enc.feature_dim = 5
    net = pretext.JigsawNet(enc, num_tiles=4, num_permutations=7).eval()
    tiles = torch.randn(2, 4, 3, 4, 4)
    assert net(tiles).shape == (2, 7)
    # image 1's logits do not change when image 0's tiles do
    changed = tiles.clone()
    changed[0] = torch.randn(4, 3, 4, 4)
    assert torch.allclose(net(changed)[1], net(tiles)[1])


def test_stage_features_match_the_encoder_and_name_bad_stages():
    enc = ResNetEncoder(width=4, stem_stride=2).eval()
    x = torch.randn(3, 3, 32, 32)
    dims = [pretext.StageFeatures(enc, s)(x).shape[1] for s in range(3)]
    assert dims == [4, 8, 16]
    assert torch.allclose(pretext.StageFeatures(enc, 2)(x), enc(x))
    with pytest.raises(ValueError, match="stage"):
        pretext.StageFeatures(enc, 3)


def _rotate(x):
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)]), torch.arange(4).repeat_interleave(len(x))


def test_steps_train_on_the_students_functions_and_record_accuracy():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    batch = (images, torch.zeros(4, dtype=torch.long))
    calls = []

    def rotate(x):
        calls.append(x.shape)
        return _rotate(x)

    enc = ResNetEncoder(width=4, stem_stride=2)
    steps = pretext.rotnet_step(rotate, lambda x: x.float() / 255)
    loss = steps.step(nn.Sequential(enc, nn.Linear(enc.feature_dim, 4)), batch, torch.device("cpu"))
    assert loss.dim() == 0 and loss.requires_grad and calls == [(4, 3, 32, 32)] and len(steps.accuracy) == 1

    steps = pretext.patch_location_step(_context_pairs, lambda x: x.float() / 255, 8, 2, 1)
    loss = steps.step(pretext.PairClassifier(ResNetEncoder(width=4, stem_stride=1)), batch, torch.device("cpu"))
    assert loss.dim() == 0 and 0 <= steps.accuracy[0] <= 1

    def tile(x, grid=3):
        n, c, h, w = x.shape
        return x.reshape(n, c, grid, h // grid, grid, w // grid).permute(0, 2, 4, 1, 3, 5).reshape(n, 9, c, h // 3, w // 3)

    def shuffle(tiles, permutations, index):
        return tiles[torch.arange(len(tiles))[:, None], permutations[index]]

    perms = torch.stack([torch.randperm(9) for _ in range(5)])
    steps = pretext.jigsaw_step(tile, shuffle, perms, lambda x: x[:, :, :30, :30].float() / 255, 8)
    loss = steps.step(pretext.JigsawNet(ResNetEncoder(width=4, stem_stride=1), 9, 5), batch, torch.device("cpu"))
    assert loss.dim() == 0 and loss.requires_grad


def test_patch_grid_and_tile_mosaic_pictures():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    fig = plots.show_patch_grid(images, 8, 2, title="grid")
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 9 and len(fig.axes[0].texts) == 9
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == sorted(["C"] + [str(j) for j in range(8)])
    tiles = torch.arange(2 * 9 * 4.0).view(2, 9, 1, 2, 2)
    mosaic = plots.tile_mosaic(tiles)
    assert mosaic.shape == (2, 1, 10, 10)
    assert torch.equal(mosaic[0, 0, 1:3, 4:6], tiles[0, 1, 0])           # tile 1: top row, middle
    assert torch.equal(mosaic[1, 0, 4:6, 1:3], tiles[1, 3, 0])           # tile 3: middle row, left
    with pytest.raises(ValueError, match="square"):
        plots.tile_mosaic(torch.zeros(1, 8, 1, 2, 2))
