"""Baselines that use the same clicks as the PCAM chain, for the benchmark.

- A random-forest pixel classifier on multiscale filter features (Gaussian-smoothed intensity, gradient
  magnitude, Hessian eigenvalues: scikit-image's ``multiscale_basic_features``) trained on the clicked
  pixels, which is what ilastik and napari-convpaint users do today. With ``crf`` its class probabilities
  are refined by the dense CRF of :mod:`.crf` (DeepLab v1/v2's post-processing), a stronger pixel classifier
  to compare the chain with.
- Point-only DeepLabv3+ (Chen et al., ECCV 2018): a partial cross-entropy over the clicked pixels only, the
  point-supervision baseline of Bearman et al., "What's the Point: Semantic Segmentation with Point
  Supervision", ECCV 2016 (without its objectness prior). :func:`points_to_sparse_labels` makes the label
  maps; :func:`~napari_pcam.core.stages.segmentation.train_deeplab` trains on them unchanged.
- Fully supervised DeepLabv3+ on the true masks (the upper bound) is ``train_deeplab`` on the masks.
"""

from __future__ import annotations

from typing import Generator, Sequence

import numpy as np
from skimage.feature import multiscale_basic_features

from .click_scores import paint_clicks
from .data.images import ImageStack, normalise_image, to_rgb8
from .data.points import PointAnnotations
from .errors import DataError
from .progress import Progress, drain

IGNORE = 255


def points_to_sparse_labels(
    points: PointAnnotations, shapes: Sequence[tuple[int, int]], *, radius: int = 0
) -> list[np.ndarray]:
    """Label maps that are 255 (ignore) everywhere except at the clicks.

    Args:
        points: Clicks (class 0 = background).
        shapes: (H, W) of every image, in stack order.
        radius: Also label the pixels within this distance of a click (0 = the clicked pixel only).
            Where discs of different classes overlap, the later point wins.

    Returns:
        uint8 H x W per image: the click's class at labelled pixels, 255 elsewhere.
    """
    return paint_clicks([np.full(shape, IGNORE, np.uint8) for shape in shapes], points, radius=radius)


def pixel_features(image: np.ndarray, *, sigma_max: float = 16.0) -> np.ndarray:
    """float32 H x W x F multiscale features of one ``H x W x C`` image (sigmas 1..``sigma_max``)."""
    img = normalise_image(np.asarray(image))
    feats = multiscale_basic_features(
        img, intensity=True, edges=True, texture=True, sigma_min=1.0, sigma_max=sigma_max, channel_axis=-1
    )
    return feats.astype(np.float32)


def forest_probabilities(forest, feats: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 ``num_classes`` x H x W class probabilities of a fitted forest on ``H x W x F`` features; classes
    the forest never saw (no clicks) are 0."""
    shape = feats.shape[:2]
    probs = np.zeros((num_classes, *shape), np.float32)
    probs[forest.classes_] = forest.predict_proba(feats.reshape(-1, feats.shape[-1])).T.reshape(-1, *shape)
    return probs


def random_forest_baseline(
    train_images: ImageStack,
    points: PointAnnotations,
    predict_images: ImageStack,
    *,
    seed: int = 0,
    radius: int = 0,
    n_estimators: int = 100,
    crf: bool = False,
) -> list[np.ndarray]:
    """Train a random forest on the clicked pixels' features and label every pixel of ``predict_images``.

    Args:
        train_images: Images the points belong to.
        points: Clicks; every class that should be predicted needs at least one.
        predict_images: Images to label (may be the training images).
        seed: Seed of the forest.
        radius: Also use pixels within this distance of each click as training samples.
        n_estimators: Trees in the forest.
        crf: Label each image by a dense CRF over the forest's class probabilities (needs ``pydensecrf2``,
            the ``crf`` extra) instead of their argmax.

    Returns:
        uint8 H x W label map per image of ``predict_images`` (class ids as in ``points``).

    Raises:
        DataError: no point at all, or different channel counts between the two stacks.
        ConfigError: ``crf`` without ``pydensecrf2`` installed.
    """
    return drain(random_forest_steps(train_images, points, predict_images, seed=seed, radius=radius,
                                      n_estimators=n_estimators, crf=crf))


def random_forest_steps(
    train_images: ImageStack,
    points: PointAnnotations,
    predict_images: ImageStack,
    *,
    seed: int = 0,
    radius: int = 0,
    n_estimators: int = 100,
    crf: bool = False,
) -> Generator[Progress, None, list[np.ndarray]]:
    """:func:`random_forest_baseline` as a generator yielding one :class:`Progress` per image."""
    from sklearn.ensemble import RandomForestClassifier

    from .crf import crf_probabilities, require_crf

    if crf:
        require_crf("crf")
    if len(points) == 0:
        raise DataError("the random-forest baseline needs at least one clicked point.")
    if train_images.channels != predict_images.channels:
        raise DataError(
            f"training images have {train_images.channels} channel(s), images to label {predict_images.channels}."
        )
    sparse = points_to_sparse_labels(points, train_images.shapes, radius=radius)
    xs, ys = [], []
    total = len(train_images) + len(predict_images)
    for i, (img, lab) in enumerate(zip(train_images.images, sparse), start=1):
        sel = lab != IGNORE
        if sel.any():
            xs.append(pixel_features(img)[sel])
            ys.append(lab[sel])
        yield Progress("random_forest", i, total, message="features of " + train_images.names[i - 1])
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    num_classes = int(forest.classes_.max()) + 1
    preds = []
    for j, img in enumerate(predict_images.images, start=1):
        feats = pixel_features(img)
        if crf:
            probs = forest_probabilities(forest, feats, num_classes)
            preds.append(crf_probabilities(to_rgb8(np.asarray(img)), probs, "crf"))
        else:
            preds.append(forest.predict(feats.reshape(-1, feats.shape[-1])).reshape(img.shape[:2]).astype(np.uint8))
        yield Progress("random_forest", len(train_images) + j, total, message=predict_images.names[j - 1])
    return preds

