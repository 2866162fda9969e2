"""The clicks as ground truth at points: score each stage's labels there, and guard against collapse.

Every click is a certain label of one pixel, so every stage's label maps (PCAM labels, refined pseudo labels,
final predictions) can be scored at the clicks without any mask. The score is the class-balanced accuracy
at the clicks (the mean over clicked classes of the fraction of that class's clicks labelled with it), so a
stage that labels everything background does not score well on a set with many background clicks.

The clicks the networks were trained on score the networks optimistically; the scores are for comparing
stages of one run and for spotting a collapse, not for reporting quality.

A stage's labels are *degenerate* when one class covers every labelled pixel of every image, when a class
that has clicks appears in no image or at almost none of its clicks, or when their click score falls far
below the previous stage's.
:func:`stage_warnings` names each case with the numbers; the pipeline shows them in the CLI and the viewer and
keeps the previous stage's labels on disk.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .data.points import PointAnnotations

IGNORE = 255
DROP = 0.15  # a click score this far (absolute) under the previous stage's is a collapse
LOST = 10.0  # a class labelled at fewer than this percentage of its clicks is almost lost


def click_pixels(yx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Clicks (float y, x) as pixel indices, rounded and clipped into an H x W image: int64 (P, 2)."""
    h, w = shape[:2]
    return np.clip(np.rint(np.asarray(yx, np.float64)).astype(np.int64).reshape(-1, 2), 0, [h - 1, w - 1])


def clicked_labels(labels: np.ndarray, yx: np.ndarray) -> np.ndarray:
    """The labels at the clicks: int64 (P,)."""
    centres = click_pixels(yx, labels.shape)
    return labels[centres[:, 0], centres[:, 1]].astype(np.int64)


def click_scores(labels: Iterable[np.ndarray], points: PointAnnotations) -> dict:
    """Class-balanced accuracy of label maps at the clicks.

    Args:
        labels: uint8 H x W per image, in the points' image order.
        points: The clicks (class 0 = background).

    Returns:
        ``{"balanced": percent or None, "per_class": {name: percent or None}, "clicks": n,
        "present": {name: images where the class appears}}``.
    """
    k = len(points.class_names)
    hits = np.zeros(k, np.int64)
    total = np.zeros(k, np.int64)
    present = np.zeros(k, np.int64)
    for i, lab in enumerate(labels):
        present[np.unique(lab[lab != IGNORE]).astype(np.int64)] += 1
        yx, cls = points.for_image(i)
        if len(cls) == 0:
            continue
        got = clicked_labels(lab, yx)
        np.add.at(total, cls, 1)
        np.add.at(hits, cls, got == cls)
    per = {name: (round(float(100.0 * hits[c] / total[c]), 2) if total[c] else None)
           for c, name in enumerate(points.class_names)}
    scored = [v for v in per.values() if v is not None]
    return {
        "balanced": round(float(np.mean(scored)), 2) if scored else None,
        "per_class": per,
        "clicks": int(total.sum()),
        "present": {name: int(present[c]) for c, name in enumerate(points.class_names)},
    }


def _degenerate(scores: dict) -> tuple[list[str], list[str], dict[str, float]]:
    """(classes shown in some image, clicked classes shown in none, the others at under ``LOST`` % of
    their clicks: name -> percent) of :func:`click_scores`."""
    shown = [n for n, k in scores["present"].items() if k > 0]
    lost = [n for n, v in scores["per_class"].items() if v is not None and scores["present"][n] == 0]
    faint = {n: v for n, v in scores["per_class"].items() if v is not None and n not in lost and v < LOST}
    return shown, lost, faint


def stage_warnings(stage: str, scores: dict, previous: tuple[str, dict] | None = None) -> list[str]:
    """Messages for a degenerate stage (empty when it looks sound).

    Args:
        stage: Name of the stage whose labels were scored.
        scores: Its :func:`click_scores`.
        previous: (name, scores) of the stage it was made from, if any.
    """
    out = []
    shown, lost, faint = _degenerate(scores)
    if len(shown) == 1:
        out.append(f"{stage}: every image is labelled {shown[0]!r} only.")
    if lost:
        out.append(f"{stage}: class(es) {', '.join(map(repr, lost))} have clicks but appear in no image.")
    if faint:
        out.append(f"{stage}: class(es) {', '.join(f'{n!r} ({v:.1f}% of its clicks)' for n, v in faint.items())} "
                   "are almost lost.")
    fall = None if previous is None else _fall(stage, scores, previous)
    return out + ([fall] if fall else [])


def _fall(stage: str, scores: dict, previous: tuple[str, dict]) -> str | None:
    """The message for a click score more than ``DROP`` under the previous stage's (None when it is not)."""
    before, now = previous[1]["balanced"], scores["balanced"]
    if before is None or now is None or now >= before - 100 * DROP:
        return None
    return f"{stage}: click accuracy {now:.1f}% is far below {previous[0]}'s {before:.1f}%."


def paint_clicks(labels: Sequence[np.ndarray], points: PointAnnotations, *, radius: int = 0) -> list[np.ndarray]:
    """:func:`paint_image_clicks` of every image (``labels`` in the points' image order)."""
    return [paint_image_clicks(lab, *points.for_image(i), radius=radius) for i, lab in enumerate(labels)]


def paint_image_clicks(labels: np.ndarray, yx: np.ndarray, cls: np.ndarray, *, radius: int = 0) -> np.ndarray:
    """Pseudo labels with every click's disc set to the click's class (a label that contradicts a click is
    wrong by definition). Returns a new uint8 array; ``labels`` is not changed.

    Args:
        labels: uint8 H x W pseudo labels.
        yx: float (P, 2) clicks of this image; cls: int (P,) their classes.
        radius: Also set the pixels within this distance of a click (0 = the clicked pixel only). Where discs
            of different classes overlap, the later click wins.
    """
    if radius < 0:
        raise ValueError(f"radius={radius} must be >= 0.")
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = dy**2 + dx**2 <= radius**2
    lab = np.array(labels, dtype=np.uint8, copy=True)
    h, w = lab.shape
    for (y, x), c in zip(click_pixels(yx, lab.shape), cls):
        py, px = y + dy[disc], x + dx[disc]
        keep = (py >= 0) & (py < h) & (px >= 0) & (px < w)
        lab[py[keep], px[keep]] = c
    return lab


def click_map(shapes: Sequence[tuple[int, int]], points: PointAnnotations, radius: int, i: int) -> np.ndarray:
    """Image ``i``'s clicks alone: uint8 H x W, 255 away from the click discs (picklable through
    functools.partial, for lazy sequences read in data-loader workers)."""
    return paint_image_clicks(np.full(tuple(shapes[i]), IGNORE, np.uint8), *points.for_image(i), radius=radius)


def painted(labels: Sequence[np.ndarray], points: PointAnnotations, radius: int, i: int) -> np.ndarray:
    """Image ``i``'s labels with its clicks painted in (picklable through functools.partial, for lazy
    sequences read in data-loader workers)."""
    return paint_image_clicks(labels[i], *points.for_image(i), radius=radius)


def choose_crf(plain: dict, crf: dict) -> dict:
    """Whether the dense CRF's final labels are kept (``deeplab.crf_check``): unless they are degenerate by
    :func:`stage_warnings`' measures where the network's own labels are not (a clicked class lost or almost
    lost, one class everywhere, a click score more than ``DROP`` under the network's own).

    The network learnt these clicks, so its own labels are favoured there and a CRF that improves the
    labels between the clicks still tends to lose a point or two at them; only a collapse is a reliable
    sign that the CRF does harm.

    Args:
        plain: :func:`click_scores` of the training images' labels without the CRF.
        crf: Those of the same images' labels with it.

    Returns:
        The calibration record ``{"value": use the CRF, "configured": True, "crf_score", "plain_score",
        "problems": the warnings that turned it off}``.
    """
    previous = ("DeepLabv3+", plain)
    (shown, lost, faint), (now_shown, now_lost, now_faint) = _degenerate(plain), _degenerate(crf)
    # collapses the network's own labels share do not count against the CRF
    worse = (len(now_shown) == 1 and len(shown) != 1) or set(now_lost) - set(lost) or (
        set(now_faint) - set(faint) - set(lost))
    if worse:
        problems = stage_warnings("deeplab.crf", crf, previous)
    else:
        fall = _fall("deeplab.crf", crf, previous)
        problems = [fall] if fall else []
    return {"value": not problems, "configured": True, "crf_score": crf["balanced"],
            "plain_score": plain["balanced"], "problems": problems}
