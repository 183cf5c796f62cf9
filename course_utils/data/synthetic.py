"""SynthObjects-10: the kit's bundled dataset, drawn from a seed in seconds.

32x32 RGB scenes of one object over a structured background: a sky gradient
above a textured ground, a horizon at a random height, a few distractor
blobs, and pixel noise. Ten object classes, five of which only look right
upright (house, tree, mushroom, arrow, car), so that:

- rotation prediction needs the object and the scene (the sky is above);
- colours are class-correlated but not class-determined (each class has a
  preferred hue that its objects take with probability ``hue_bias``), so
  colorization can learn them and a colour histogram alone does not solve
  classification;
- textures (solid, stripes, checks, dots), positions and sizes vary, which
  gives patch location and jigsaw something to reason about.

Everything is vectorised NumPy over the batch; 12,000 images take a few
seconds on a laptop CPU. Shapes are rendered from signed distances in pixel
units, with a one-pixel soft edge for anti-aliasing.
"""
from __future__ import annotations

import numpy as np

CLASSES = (
    "ball", "box", "pyramid", "plus", "ring",
    "house", "tree", "mushroom", "arrow", "car",
)
# Preferred hue of each class, in [0, 1) (0 red, 1/3 green, 2/3 blue).
CLASS_HUES = np.array([0.0, 0.08, 0.15, 0.3, 0.45, 0.55, 0.36, 0.92, 0.7, 0.8])
SIZE = 32


# ----------------------------------------------------------------------------
# signed distances, y pointing up, in pixels; p has shape [..., 2]
def _sd_box(x, y, hw, hh):
    dx, dy = np.abs(x) - hw, np.abs(y) - hh
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _sd_disk(x, y, r):
    return np.hypot(x, y) - r


def _sd_triangle(x, y, hw, h):
    """Isosceles triangle, base centred at y=0 of half-width hw, apex at y=h."""
    # distance to each edge half-plane; max of them is a good-enough SDF here
    base = -y
    slope = np.hypot(h, hw)
    left = (h * (-x - hw) + hw * y) / slope  # wrong-side positive
    right = (h * (x - hw) + hw * y) / slope
    return np.maximum(base, np.maximum(left, right))


def _shape_sdf(cls: int, x, y, r):
    """Signed distance of class ``cls``'s object of radius ``r`` [n,1,1] at grid x, y."""
    if cls == 0:  # ball
        return _sd_disk(x, y, r)
    if cls == 1:  # box
        return _sd_box(x, y, 0.8 * r, 0.8 * r)
    if cls == 2:  # pyramid (triangle, apex up)
        return _sd_triangle(x, y + 0.8 * r, r, 1.7 * r)
    if cls == 3:  # plus
        return np.minimum(_sd_box(x, y, r, 0.3 * r), _sd_box(x, y, 0.3 * r, r))
    if cls == 4:  # ring
        return np.abs(np.hypot(x, y) - 0.75 * r) - 0.28 * r
    if cls == 5:  # house: walls and a roof
        walls = _sd_box(x, y + 0.45 * r, 0.7 * r, 0.5 * r)
        roof = _sd_triangle(x, y - 0.05 * r, 0.95 * r, 0.9 * r)
        return np.minimum(walls, roof)
    if cls == 6:  # tree: canopy on a trunk
        canopy = _sd_triangle(x, y + 0.45 * r, 0.85 * r, 1.5 * r)
        trunk = _sd_box(x, y + 0.75 * r, 0.18 * r, 0.3 * r)
        return np.minimum(canopy, trunk)
    if cls == 7:  # mushroom: half-disk cap on a stem
        cap = np.maximum(_sd_disk(x, y + 0.1 * r, r), -(y + 0.1 * r))
        stem = _sd_box(x, y + 0.55 * r, 0.25 * r, 0.45 * r)
        return np.minimum(cap, stem)
    if cls == 8:  # arrow pointing up
        head = _sd_triangle(x, y - 0.1 * r, 0.8 * r, 0.9 * r)
        shaft = _sd_box(x, y + 0.45 * r, 0.22 * r, 0.55 * r)
        return np.minimum(head, shaft)
    if cls == 9:  # car: body, cabin, two wheels at the bottom
        body = _sd_box(x, y + 0.1 * r, r, 0.3 * r)
        cabin = _sd_box(x + 0.1 * r, y - 0.35 * r, 0.5 * r, 0.25 * r)
        wheels = np.minimum(_sd_disk(x - 0.55 * r, y + 0.5 * r, 0.25 * r),
                            _sd_disk(x + 0.55 * r, y + 0.5 * r, 0.25 * r))
        return np.minimum(np.minimum(body, cabin), wheels)
    raise ValueError(f"unknown class {cls}")


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB; inputs of one shape in [0, 1], output [..., 3]."""
    i = np.floor(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,), dtype=np.float32)
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        out[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return out


def _texture(kind, x, y, freq, phase):
    """0/1 pattern per image: 0 solid, 1 stripes, 2 checks, 3 dots. Shapes [n,H,W]."""
    u, v = x * freq + phase, y * freq + phase
    stripes = (np.floor(u + v) % 2).astype(np.float32)
    checks = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    dots = ((np.hypot((u % 1) - 0.5, (v % 1) - 0.5)) < 0.3).astype(np.float32)
    out = np.zeros_like(stripes)
    for k, pat in ((1, stripes), (2, checks), (3, dots)):
        out = np.where(kind == k, pat, out)
    return out


def render_scenes(labels, rng, *, cx=None, cy=None, radius=None, hue_bias=0.6, background=None):
    """Render one scene per label.

    Args:
        labels: int array ``[n]`` of class indices in ``0..9``.
        rng: ``np.random.Generator`` that every random choice comes from.
        cx, cy, radius: optional float arrays ``[n]`` overriding the object's
            centre (pixels, y down) and size; used by the video generator.
        hue_bias: probability that an object takes its class's hue.
        background: optional float32 ``[n, 32, 32, 3]`` to draw over.

    Returns:
        ``(images, params)``: float32 ``[n, 32, 32, 3]`` in [0, 1], and the
        dict of per-image parameters drawn (so that a video can reuse them).
    """
    labels = np.asarray(labels)
    n = len(labels)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    xx, yy = xx[None], yy[None]  # [1, H, W]
    horizon = rng.uniform(18, 27, size=n).astype(np.float32)
    if radius is None:
        radius = rng.uniform(5.5, 9.0, size=n).astype(np.float32)
    if cx is None:
        cx = rng.uniform(9, SIZE - 9, size=n).astype(np.float32)
    if cy is None:
        # objects stand near the horizon line, as in a photo
        cy = np.clip(horizon - 0.6 * radius + rng.normal(0, 1.5, size=n), 8, SIZE - 7).astype(np.float32)
    params = dict(horizon=horizon)

    if background is None:
        background = _background(n, xx, yy, horizon, rng)

    # object colour: class hue with probability hue_bias, else any hue
    own = rng.random(n) < hue_bias
    hue = np.where(own, CLASS_HUES[labels] + rng.normal(0, 0.03, n), rng.random(n)) % 1.0
    sat = rng.uniform(0.55, 1.0, n)
    val = rng.uniform(0.55, 1.0, n)
    base = _hsv_to_rgb(hue, sat, val)  # [n, 3]
    shade = base * rng.uniform(0.35, 0.65, (n, 1))  # texture's second colour
    kind = rng.integers(0, 4, n)
    freq = rng.uniform(0.18, 0.35, n)
    phase = rng.uniform(0, 1, n)
    tilt = rng.normal(0, 0.12, n)  # radians; small, so "up" stays up
    params.update(hue=hue, sat=sat, val=val, kind=kind, freq=freq, phase=phase, tilt=tilt)

    # local coordinates: centred on the object, y up, tilted a little
    dx, dy = xx - cx[:, None, None], -(yy - cy[:, None, None])
    c, s = np.cos(tilt)[:, None, None], np.sin(tilt)[:, None, None]
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    sdf = np.empty((n, SIZE, SIZE), dtype=np.float32)
    for k in range(len(CLASSES)):
        sel = labels == k
        if sel.any():
            sdf[sel] = _shape_sdf(k, lx[sel], ly[sel], radius[sel][:, None, None])
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)[..., None]  # one-pixel soft edge
    pattern = _texture(kind[:, None, None], lx, ly, freq[:, None, None], phase[:, None, None])[..., None]
    # light from above: the top of the object is a little brighter
    light = 1.0 + 0.15 * np.clip(ly / radius[:, None, None], -1, 1)[..., None]
    obj = (base[:, None, None] * (1 - pattern) + shade[:, None, None] * pattern) * light
    images = background * (1 - alpha) + obj * alpha
    return np.clip(images, 0, 1).astype(np.float32), params


def _background(n, xx, yy, horizon, rng):
    """Sky gradient above a textured ground, plus distractor blobs. [n, H, W, 3]."""
    sky_top = _hsv_to_rgb(rng.uniform(0.52, 0.66, n), rng.uniform(0.3, 0.7, n), rng.uniform(0.7, 1.0, n))
    sky_low = np.clip(sky_top * 0.5 + 0.5, 0, 1)  # paler towards the horizon
    ground = _hsv_to_rgb(rng.uniform(0.05, 0.4, n), rng.uniform(0.2, 0.6, n), rng.uniform(0.25, 0.6, n))
    t = (yy / horizon[:, None, None])[..., None]  # [n, H, W, 1], 0 at top, 1 at horizon
    sky = sky_top[:, None, None] * (1 - t) + sky_low[:, None, None] * t
    # ground: darker further down, with horizontal furrows
    depth = ((yy - horizon[:, None, None]) / 8.0)[..., None]
    furrows = 0.08 * np.sin(yy * rng.uniform(1.0, 2.5, (n, 1, 1)) + rng.uniform(0, 6.3, (n, 1, 1)))[..., None]
    ground_img = ground[:, None, None] * (1 - 0.25 * np.clip(depth, 0, 1)) + furrows
    is_sky = (yy < horizon[:, None, None])[..., None]
    img = np.where(is_sky, sky, ground_img)
    # up to three distractor blobs: small, random colour, anywhere
    for _ in range(3):
        present = (rng.random(n) < 0.5)[:, None, None, None]
        bx, by = rng.uniform(0, SIZE, n), rng.uniform(0, SIZE, n)
        br = rng.uniform(1.0, 2.5, n)
        col = _hsv_to_rgb(rng.random(n), rng.uniform(0.2, 0.9, n), rng.uniform(0.3, 1.0, n))
        d = np.hypot(xx - bx[:, None, None], yy - by[:, None, None]) - br[:, None, None]
        a = np.clip(0.5 - d, 0, 1)[..., None] * present
        img = img * (1 - a) + col[:, None, None] * a
    return img.astype(np.float32)


def _to_uint8(images, rng, noise=0.03):
    noisy = images + rng.normal(0, noise, images.shape).astype(np.float32)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8)


def _plain_background(n, rng):
    """One flat colour per image with pixel noise: nothing tells up from down. [n, H, W, 3]."""
    colour = _hsv_to_rgb(rng.random(n), rng.uniform(0.1, 0.6, n), rng.uniform(0.3, 0.9, n))
    noise = rng.normal(0, 0.06, (n, SIZE, SIZE, 3))
    return np.clip(colour[:, None, None] + noise, 0, 1).astype(np.float32)


def _turned_background(n, rng):
    """The sky and ground turned by a random multiple of 90 degrees per image: the scene no longer says which
    way is up, the object drawn over it still does. [n, H, W, 3]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    scenes = _background(n, xx[None], yy[None], rng.uniform(18, 27, n).astype(np.float32), rng)
    turns = rng.integers(0, 4, n)
    return np.stack([np.rot90(scene, k, axes=(0, 1)) for scene, k in zip(scenes, turns)]).astype(np.float32)


_BACKGROUNDS = {"scene": None, "plain": _plain_background, "turned": _turned_background}


def make_images(num_images: int, seed: int = 0, *, hue_bias: float = 0.6, chunk: int = 2000,
                background: str = "scene"):
    """Draw a class-balanced set of scenes.

    ``background="plain"`` draws the same objects (shapes, colours, textures,
    light from above) over one flat, noisy colour per image instead of the sky
    and ground: images whose orientation and layout only the object tells
    (01_pretext_tasks pre-trains its context-based tasks on them).
    ``background="turned"`` keeps the sky and ground but turns them by a
    random multiple of 90 degrees under the upright object, so that the
    scene's orientation says nothing about the object's (01_pretext_tasks
    pre-trains RotNet and jigsaw on them).

    Returns:
        ``(images, labels)``: uint8 ``[num_images, 32, 32, 3]`` (HWC, as
        CIFAR-10 stores them) and int64 ``[num_images]``; class ``k`` has
        ``num_images // 10`` or one more images, in a shuffled order.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if background not in _BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(_BACKGROUNDS)}, got {background!r}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_images) % len(CLASSES)
    rng.shuffle(labels)
    out = np.empty((num_images, SIZE, SIZE, 3), dtype=np.uint8)
    draw = _BACKGROUNDS[background]
    for start in range(0, num_images, chunk):
        part = labels[start:start + chunk]
        imgs, _ = render_scenes(part, rng, hue_bias=hue_bias, background=draw and draw(len(part), rng))
        out[start:start + chunk] = _to_uint8(imgs, rng)
    return out, labels.astype(np.int64)


def make_videos(num_videos: int, num_frames: int = 8, seed: int = 0, *, num_objects: int = 2, with_masks: bool = False):
    """Short clips of objects gliding over a still background; colours persist.

    Each clip draws its background and ``num_objects`` objects once (class,
    colour, texture, size), then moves each object along a straight line that
    bounces off the frame's edges.

    Returns:
        ``(videos, labels)``: uint8 ``[num_videos, num_frames, 32, 32, 3]``
        and int64 ``[num_videos, num_objects]`` (the class of each object);
        with ``with_masks``, also bool ``[num_videos, num_frames, num_objects, 32, 32]``: the visible pixels
        of each object (where drawing it changed the frame and no later object covers it). The draws do not
        depend on ``with_masks``.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), (num_videos, num_objects))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    background = _background(num_videos, xx[None], yy[None], rng.uniform(18, 27, num_videos).astype(np.float32), rng)
    frames = np.repeat(background[:, None], num_frames, axis=1)  # [V, T, H, W, 3]
    masks = np.zeros((num_videos, num_frames, num_objects, SIZE, SIZE), dtype=bool) if with_masks else None
    for o in range(num_objects):
        radius = rng.uniform(4.5, 7.0, num_videos).astype(np.float32)
        pos = rng.uniform(8, SIZE - 8, (num_videos, 2))
        vel = rng.uniform(-2.0, 2.0, (num_videos, 2))
        appearance_seed = int(rng.integers(2**63))  # one look per object, every frame
        for t in range(num_frames):
            p = pos + vel * t
            lo, span = radius[:, None], SIZE - 2 * radius[:, None]
            q = (p - lo) % (2 * span)
            p = lo + span - np.abs(q - span)  # bounce off the edges
            imgs, _ = render_scenes(labels[:, o], np.random.default_rng(appearance_seed),
                                    cx=p[:, 0].astype(np.float32), cy=p[:, 1].astype(np.float32),
                                    radius=radius, background=frames[:, t])
            if with_masks:
                drawn = np.abs(imgs - frames[:, t]).max(-1) > 0.05  # [V, H, W]
                masks[:, t, :o] &= ~drawn[:, None]
                masks[:, t, o] = drawn
            frames[:, t] = imgs
    noise_rng = np.random.default_rng(rng.integers(2**63))
    videos = _to_uint8(frames, noise_rng)
    return (videos, labels.astype(np.int64), masks) if with_masks else (videos, labels.astype(np.int64))
