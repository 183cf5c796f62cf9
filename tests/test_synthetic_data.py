"""The bundled dataset: deterministic, balanced, cached, and built as data/README.md says."""
import numpy as np
import pytest
import torch

from course_utils.data import bundled, synthetic


def test_same_seed_same_images_other_seed_other_images():
    x1, y1 = synthetic.make_images(200, seed=7)
    x2, y2 = synthetic.make_images(200, seed=7)
    x3, _ = synthetic.make_images(200, seed=8)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("n", [10, 205, 1000])
def test_classes_balanced_to_within_one(n):
    _, y = synthetic.make_images(n, seed=0)
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_images_are_uint8_hwc_and_use_the_range():
    x, y = synthetic.make_images(100, seed=1)
    assert x.shape == (100, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert x.min() < 30 and x.max() > 225  # not washed out


def test_sky_is_above_the_ground():
    # Rotation prediction relies on it: the top rows are bluer than the bottom rows.
    x, _ = synthetic.make_images(300, seed=2)
    top, bottom = x[:, :4].astype(float), x[:, -4:].astype(float)
    blueness = lambda part: (part[..., 2] - part[..., :2].mean(-1)).mean()  # noqa: E731
    assert blueness(top) > blueness(bottom) + 20


def test_classes_have_their_preferred_hue_more_often_than_chance():
    labels = np.repeat(np.arange(10), 40)
    rng = np.random.default_rng(0)
    _, params = synthetic.render_scenes(labels, rng)
    dist = np.abs(((params["hue"] - synthetic.CLASS_HUES[labels]) + 0.5) % 1.0 - 0.5)
    near = (dist < 0.1).mean()
    assert 0.5 < near < 0.85  # hue_bias=0.6 plus the 20% chance that a random hue lands near


def test_load_synthetic_caches_and_reloads_identically(tmp_path):
    x1, y1 = bundled.load_synthetic("test", root=tmp_path)
    cached = list((tmp_path / "cache").glob("synth-objects-*test*.npz"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp*"))
    x2, y2 = bundled.load_synthetic("test", root=tmp_path)
    assert x1.shape == (2000, 3, 32, 32) and x1.dtype == torch.uint8 and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.bincount(y1).tolist() == [200] * 10


def test_train_and_test_splits_differ():
    xtr, _ = bundled.load_synthetic("train", num_images=50)
    xte, _ = bundled.load_synthetic("test", num_images=50)
    assert not torch.equal(xtr, xte)


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="split must be one of"):
        bundled.load_synthetic("validation")


def test_videos_move_and_keep_their_colours():
    v, labels = synthetic.make_videos(16, num_frames=8, seed=3)
    assert v.shape == (16, 8, 32, 32, 3) and v.dtype == np.uint8 and labels.shape == (16, 2)
    frames = v.astype(float)
    # something moves between frames ...
    assert np.abs(frames[:, 1:] - frames[:, :-1]).mean() > 1.0
    # ... but the palette of each clip persists: colour histograms of first and last frame agree
    def hist(img):
        q = (img // 64).astype(int)
        return np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / (32 * 32)
    same = np.mean([np.abs(hist(v[i, 0]) - hist(v[i, -1])).sum() for i in range(16)])
    other = np.mean([np.abs(hist(v[i, 0]) - hist(v[(i + 1) % 16, -1])).sum() for i in range(16)])
    assert same < 0.5 * other


def test_video_frames_needs_two():
    with pytest.raises(ValueError, match="num_frames"):
        synthetic.make_videos(2, num_frames=1)
