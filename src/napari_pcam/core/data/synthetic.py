"""Seeded synthetic images with ground-truth masks and clicks: the built-in sample and test data.

Three textured object classes on a cluttered, noisy background; each image holds a random subset of
the classes, objects may touch or overlap (the later one occludes). Each class has a typical colour with
per-object jitter, and small smooth background "debris" blobs borrow the class colours, so colour alone
does not give the class: shape and texture do.

Classes: 0 background, 1 ``cell`` (round, fine speckle), 2 ``fiber`` (elongated, striped along its axis),
3 ``crystal`` (polygon, coarse checker grain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse, polygon

from .images import ImageStack
from .points import PointAnnotations

CLASS_NAMES = ("background", "cell", "fiber", "crystal")
CLASS_COLOURS = {1: (0.35, 0.75, 0.35), 2: (0.8, 0.35, 0.3), 3: (0.35, 0.45, 0.85)}
SHARED_COLOUR = (0.8, 0.45, 0.6)  # every class's colour with ``shared_colour``

# Harder variants of the built-in sample (``load_sample(variant=...)``, ``--sample-variant``), for
# measuring what the chain and its baselines learn from besides colour: keyword arguments of make_synthetic.
SAMPLE_VARIANTS = {
    "default": {},
    "one-colour": {"shared_colour": True},  # classes differ in texture and shape only
    "shapes-only": {"shared_colour": True, "shared_texture": True},  # in shape only
    "grayscale": {"grayscale": True},  # one channel: texture, shape and brightness
}


@dataclass(frozen=True)
class SyntheticData:
    """Images, ground-truth masks (uint8 H x W, values = class ids) and one click per object."""

    images: ImageStack
    masks: list[np.ndarray]
    points: PointAnnotations

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.points.class_names


def make_synthetic(
    n_images: int = 8,
    size: int | tuple[int, int] = 96,
    *,
    seed: int = 0,
    objects: tuple[int, int] = (2, 4),
    bg_points: int = 5,
    noise: float = 0.06,
    grayscale: bool = False,
    shared_colour: bool = False,
    shared_texture: bool = False,
) -> SyntheticData:
    """Generate a seeded data set.

    Args:
        n_images: Number of images.
        size: Image side, or (H, W).
        seed: Seed; equal seeds give identical data.
        objects: Range (inclusive) of objects per image.
        bg_points: Background clicks per image.
        noise: Standard deviation of the additive Gaussian noise (images in [0, 1] before uint8).
        grayscale: Single-channel images (texture and shape only) instead of RGB.
        shared_colour: Every class (and the debris) in one colour, :data:`SHARED_COLOUR`, instead of its own.
        shared_texture: Every class with the cells' speckle texture instead of its own.
    """
    rng = np.random.default_rng(seed)
    h, w = (size, size) if isinstance(size, int) else size
    colours = {c: SHARED_COLOUR for c in CLASS_COLOURS} if shared_colour else CLASS_COLOURS
    images, masks, pts_img, pts_yx, pts_cls = [], [], [], [], []
    for i in range(n_images):
        present = [c for c in (1, 2, 3) if rng.random() < 0.65] or [int(rng.integers(1, 4))]
        img, mask, clicks = _make_image(rng, h, w, present, objects, noise, colours, shared_texture)
        clicks += _background_clicks(rng, mask, bg_points)
        for (y, x), c in clicks:
            pts_img.append(i)
            pts_yx.append((y, x))
            pts_cls.append(c)
        if grayscale:
            img = img.mean(axis=2, keepdims=True)
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
        masks.append(mask)
    points = PointAnnotations(np.array(pts_img), np.array(pts_yx, float).reshape(-1, 2), np.array(pts_cls), CLASS_NAMES)
    return SyntheticData(ImageStack(images, [f"sample_{i:03d}.png" for i in range(n_images)]), masks, points)


def _make_image(rng, h, w, present, objects, noise, colours, shared_texture):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.35, 0.55, size=3)
    clutter = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma=6)
    clutter = clutter / (np.abs(clutter).max() + 1e-6)
    img = base[None, None, :] + 0.12 * clutter[..., None] * rng.uniform(0.5, 1.0, 3)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(0, 3))):  # debris: background that looks like an object's colour
        rr, cc = ellipse(rng.uniform(0, h), rng.uniform(0, w), *(rng.uniform(0.03, 0.06, 2) * min(h, w)), shape=(h, w))
        img[rr, cc] = np.clip(np.array(colours[int(rng.integers(1, 4))]) + rng.normal(0, 0.08, 3), 0, 1)
    n_obj = int(rng.integers(objects[0], objects[1] + 1))
    classes = [present[k % len(present)] for k in range(n_obj)]
    rng.shuffle(classes)
    shapes = []
    for c in classes:
        rr, cc, angle = _shape(rng, c, h, w, shapes)
        if len(rr) < 12:
            continue
        colour = np.clip(np.array(colours[c]) + rng.normal(0, 0.08, 3), 0.05, 0.95)
        tex = _texture(1 if shared_texture else c, yy[rr, cc], xx[rr, cc], angle, rng)
        img[rr, cc] = colour[None, :] * (0.75 + 0.25 * tex[:, None])
        mask[rr, cc] = c
        shapes.append((rr, cc, c))
    clicks = []
    for rr, cc, c in shapes:  # click the visible part of each object, away from its border
        obj = np.zeros((h, w), bool)
        obj[rr, cc] = True
        obj &= mask == c
        inner = ndimage.binary_erosion(obj, iterations=2)
        ys, xs = np.nonzero(inner if inner.any() else obj)
        if len(ys):
            k = int(rng.integers(len(ys)))
            clicks.append(((float(ys[k]), float(xs[k])), c))
    img = img + rng.normal(0, noise, img.shape)
    return img, mask, clicks


def _shape(rng, c, h, w, shapes):
    s = min(h, w)
    if shapes and rng.random() < 0.4:  # place next to an earlier object so that they touch
        rr0, cc0, _ = shapes[int(rng.integers(len(shapes)))]
        k = int(rng.integers(len(rr0)))
        cy, cx = rr0[k] + rng.normal(0, s * 0.04), cc0[k] + rng.normal(0, s * 0.04)
    else:
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    angle = rng.uniform(0, np.pi)
    if c == 1:
        r = rng.uniform(0.12, 0.18) * s
        rr, cc = ellipse(cy, cx, r, r * rng.uniform(0.85, 1.15), shape=(h, w))
    elif c == 2:
        rr, cc = ellipse(cy, cx, rng.uniform(0.22, 0.32) * s, rng.uniform(0.06, 0.09) * s, shape=(h, w), rotation=angle)
    else:
        k = int(rng.integers(4, 7))
        r = rng.uniform(0.13, 0.2) * s
        t = angle + np.arange(k) * 2 * np.pi / k
        rr, cc = polygon(cy + r * np.sin(t), cx + r * np.cos(t), shape=(h, w))
    return rr, cc, angle


def _texture(c, y, x, angle, rng):
    phase = rng.uniform(0, 2 * np.pi)
    if c == 1:
        return rng.uniform(0.6, 1.0, len(y))
    if c == 2:
        along = -np.sin(angle) * y + np.cos(angle) * x
        across = np.cos(angle) * y + np.sin(angle) * x
        return 0.5 + 0.5 * np.sin(across * 1.6 + phase) * (0.8 + 0.2 * np.sin(along * 0.2))
    return ((np.floor(y / 4 + phase) + np.floor(x / 4)) % 2).astype(np.float32)


def _background_clicks(rng, mask, n):
    bg = ndimage.binary_erosion(mask == 0, iterations=3)
    ys, xs = np.nonzero(bg if bg.any() else mask == 0)
    if not len(ys):
        return []
    idx = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    return [((float(ys[k]), float(xs[k])), 0) for k in idx]


SAMPLE_TRAIN_SEED = 0
SAMPLE_VAL_SEED = 1


def load_sample(split: str = "train", variant: str = "default") -> SyntheticData:
    """The built-in sample: 24 training or 8 held-out images of 128 x 128 px (RGB).

    Args:
        split: 'train' or 'val'.
        variant: A key of :data:`SAMPLE_VARIANTS`: the class colours (and textures) made equal, or gray.
            'one-colour' and 'grayscale' keep the default's layouts and clicks; 'shapes-only' draws its own.
    """
    if variant not in SAMPLE_VARIANTS:
        raise ValueError(f"unknown sample variant {variant!r}; choose from {', '.join(SAMPLE_VARIANTS)}")
    if split == "train":
        return make_synthetic(24, 128, seed=SAMPLE_TRAIN_SEED, **SAMPLE_VARIANTS[variant])
    if split == "val":
        return make_synthetic(8, 128, seed=SAMPLE_VAL_SEED, **SAMPLE_VARIANTS[variant])
    raise ValueError(f"split must be 'train' or 'val', not {split!r}")
