"""Thresholds chosen from the clicks: the clicks are ground truth at points.

The chain has four thresholds that the paper fixes for ImageNet-pretrained PCAMs on VOC (0.3, 0.3, 0.05,
0.3) and that the sample preset had to retune by hand (0.5, 0.5, 0.15, 0.5):

* the CAM background score of the argmax labels (``cam_inference.bg_threshold``),
* IRNet's foreground and background mining thresholds (``affinity.fg_threshold`` / ``bg_threshold``),
* the random walk's background score (``random_walk.bg_threshold``).

What suits one data set does not suit another (the maps of a network trained from scratch are wider than a
pretrained one's; nuclei fill a tenth of an image, land fills most of it), so with calibration on they are
chosen on clicks that no network has seen:

1. :func:`split_clicks` holds a stratified share of each class's clicks out of PCAM training (never an
   image's last click of a class, so the image-level labels do not change).
2. :func:`samples_at` reads the maps (CAMs, then random-walk scores) at the held-out clicks.
3. :func:`choose_background` scans the background score of an argmax over [background; maps] and keeps the
   middle of the plateau of best class-balanced accuracy; :func:`choose_mining` keeps the most permissive
   foreground / background thresholds whose mined labels reach a class-balanced precision at the
   held-out clicks (the confident labels IRNet learns its boundaries from must be right).

A class with too few held-out clicks (e.g. one image with one click per class) cannot calibrate: the split
says why, the pipeline warns and uses the configured thresholds, training on every click.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .click_scores import click_pixels
from .config import CalibrationConfig
from .data.points import PointAnnotations

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
MIN_COVERAGE = 0.1  # mined labels must cover at least this fraction of their kind's held-out clicks


class CalibrationWarning(UserWarning):
    """The clicks cannot calibrate the thresholds; the configured ones are used."""


@dataclass(frozen=True)
class ClickSplit:
    """PCAM's training clicks and the held-out ones.

    Attributes:
        train: The clicks PCAM trains on (all of them when calibration cannot run).
        held: The held-out clicks (none when calibration cannot run).
        reason: Why calibration cannot run (None when it can).
    """

    train: PointAnnotations
    held: PointAnnotations
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None


def split_clicks(points: PointAnnotations, config: CalibrationConfig, seed: int) -> ClickSplit:
    """Hold out ``config.held_out`` of each clicked class's clicks at random: rounded, but at least
    ``config.min_clicks`` as long as that is at most half of the class's clicks.

    An image's only click of a foreground class is never held out, so that PCAM's image-level labels stay
    what the user clicked. When a clicked class ends up with fewer than ``config.min_clicks`` held-out clicks,
    the split is not usable: every click trains and ``reason`` says which class lacks clicks and how many.
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(points), bool)
    short = []
    for c in np.unique(points.cls):
        idx = np.flatnonzero(points.cls == c)
        want = min(max(int(round(config.held_out * len(idx))), config.min_clicks), len(idx) // 2)
        left = {}  # clicks of (image, class) still in training
        for i in idx:
            left[points.image[i]] = left.get(points.image[i], 0) + 1
        taken = 0
        for i in rng.permutation(idx):
            if taken == want:
                break
            if c > 0 and left[points.image[i]] <= 1:
                continue
            held[i] = True
            left[points.image[i]] -= 1
            taken += 1
        if taken < config.min_clicks:
            short.append(f"'{points.class_names[c]}' ({taken} of {len(idx)} clicks)")
    empty = points.subset(np.zeros(len(points), bool))
    if short:
        reason = (f"too few clicks to calibrate the thresholds: {', '.join(short)} can be held out, "
                  f"{config.min_clicks} per class are needed (an image's last click of a class is never held "
                  "out). Click more (e.g. several objects per class over several images) or lower "
                  "calibration.min_clicks; the configured thresholds are used and PCAM trains on every click.")
        return ClickSplit(points, empty, reason)
    return ClickSplit(points.subset(~held), points.subset(held))


def samples_at(maps: Iterable[tuple[np.ndarray, np.ndarray] | None], held: PointAnnotations) -> tuple:
    """The maps at the held-out clicks.

    Args:
        maps: Per image, in the points' image order, ``(keys, scores)`` with int (K,) class ids and float
            (K, H, W) scores in [0, 1] (None for an image without held-out clicks may be given); key 0 is a
            learnt background map.
        held: The held-out clicks.

    Returns:
        ``(scores, cls)``: float32 (P, C + 1), column c the map of class c (column 0 the background map, if
        any; 0 where an image has no map of the class), and int64 (P,) the clicks' classes.
    """
    k = held.num_classes + 1
    rows, classes = [], []
    for i, item in enumerate(maps):
        yx, cls = held.for_image(i)
        if len(cls) == 0 or item is None:
            continue
        keys, scores = item
        px = click_pixels(yx, scores.shape[1:])
        block = np.zeros((len(cls), k), np.float32)
        block[:, np.asarray(keys, np.int64)] = np.asarray(scores)[:, px[:, 0], px[:, 1]].T
        rows.append(block)
        classes.append(cls)
    if not rows:
        return np.zeros((0, k), np.float32), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(classes)


def _weights(cls: np.ndarray) -> np.ndarray:
    """1 / (clicks of the class): every class counts the same."""
    counts = np.bincount(cls)
    return 1.0 / counts[cls]


def balanced_accuracy(pred: np.ndarray, cls: np.ndarray) -> float:
    """Mean over the clicked classes of the percentage of their clicks labelled with them."""
    return float(100.0 * np.mean([np.mean(pred[cls == c] == c) for c in np.unique(cls)]))


def argmax_labels(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Labels (P,) of an argmax over [background plane at ``threshold``; background map; class maps] as
    :func:`~napari_pcam.core.data.cams.cams_to_labels` (ties go to background); ``scores`` as
    :func:`samples_at` gives them (column 0 the background map, zero without one)."""
    bg = np.maximum(np.float32(threshold), scores[:, :1])
    return np.argmax(np.concatenate([bg, scores[:, 1:]], axis=1), axis=1)


@dataclass(frozen=True)
class Choice:
    """A calibrated threshold.

    Attributes:
        name: The config field (``section.field``).
        value: The chosen value.
        configured: The value it replaces (what calibration off would use).
        score: The criterion at the chosen value (percent): click accuracy, or precision for mining.
        configured_score: The same criterion at the configured value.
        coverage: For mining: percentage of the held-out clicks of its kind that the mined labels cover.
        scan: ``{threshold: score}`` over the grid.
    """

    name: str
    value: float
    configured: float
    score: float | None
    configured_score: float | None
    coverage: float | None = None
    scan: dict = field(default_factory=dict)

    def record(self) -> dict:
        """A JSON-friendly summary (for ``run.json`` and ``metrics.json``)."""
        out = {"value": self.value, "configured": self.configured, "score": self.score,
               "configured_score": self.configured_score}
        if self.coverage is not None:
            out["coverage"] = self.coverage
        return out


def choose_background(name: str, scores: np.ndarray, cls: np.ndarray, configured: float, *,
                      tolerance: float) -> Choice:
    """The background score of an argmax labelling that labels the held-out clicks best.

    Every grid value within ``tolerance`` points of the best class-balanced click accuracy is on the plateau;
    the middle of the contiguous run around the best value is chosen, so that one click more or less does not
    move the threshold to an edge.
    """
    scan = {t: balanced_accuracy(argmax_labels(scores, t), cls) for t in GRID}
    values = np.array(list(scan.values()))
    best = int(np.argmax(values))
    good = values >= values[best] - tolerance
    lo, hi = best, best
    while lo > 0 and good[lo - 1]:
        lo -= 1
    while hi < len(GRID) - 1 and good[hi + 1]:
        hi += 1
    value = GRID[(lo + hi) // 2]
    return Choice(name, value, configured, round(scan[value], 2),
                  round(balanced_accuracy(argmax_labels(scores, configured), cls), 2),
                  scan={t: round(v, 2) for t, v in scan.items()})


def _precision(mined: np.ndarray, correct: np.ndarray, w: np.ndarray) -> float | None:
    return float(100.0 * np.sum(w[mined & correct]) / np.sum(w[mined])) if mined.any() else None


def _mined(scores: np.ndarray, cls: np.ndarray, t: float, kind: str) -> tuple[float | None, float]:
    """(class-balanced precision %, coverage %) at the held-out clicks of the labels mined at threshold ``t``
    (as :func:`~napari_pcam.core.stages.affinity.mine_labels` does without the CRF): ``kind`` 'fg' =
    foreground where a class map beats the background at t (that class), 'bg' = background where nothing does.
    Coverage = share of the clicks of that kind that are mined."""
    labels = argmax_labels(scores, t)
    if kind == "fg":
        mined, correct, own = labels > 0, labels == cls, cls > 0
    else:
        mined = labels == 0
        correct, own = cls == 0, cls == 0
    cover = float(100.0 * np.mean(mined[own])) if own.any() else 0.0
    return _precision(mined, correct, _weights(cls)), cover


def _pick(scan: dict, candidates: list[float], precision: float, prefer_low: bool) -> float | None:
    """The most covering threshold whose precision reaches ``precision`` (in %), else the most precise one;
    among thresholds covering at least MIN_COVERAGE of their clicks. None when none does."""
    ok = [t for t in candidates if scan[t][0] is not None and scan[t][1] >= 100 * MIN_COVERAGE]
    if not ok:
        return None
    reach = [t for t in ok if scan[t][0] >= precision]
    if reach:
        return max(reach, key=lambda t: (scan[t][1], -t if prefer_low else t))
    return max(ok, key=lambda t: (scan[t][0], scan[t][1]))


def choose_mining(scores: np.ndarray, cls: np.ndarray, configured: tuple[float, float], *,
                  precision: float) -> tuple[Choice, Choice]:
    """IRNet's foreground and background mining thresholds (``affinity.fg_threshold`` / ``bg_threshold``).

    The foreground threshold is the lowest (most covering) whose mined foreground reaches ``precision``
    (a fraction) at the held-out clicks, class-balanced; the background threshold the highest not above it
    whose mined background does. Where no threshold reaches it, the most precise one is taken; where no
    threshold mines enough clicks, the configured value stays.
    """
    target = 100.0 * precision
    fg_scan = {t: _mined(scores, cls, t, "fg") for t in GRID}
    bg_scan = {t: _mined(scores, cls, t, "bg") for t in GRID}
    fg = _pick(fg_scan, list(GRID), target, prefer_low=True)
    fg = configured[0] if fg is None else fg
    bg = _pick(bg_scan, [t for t in GRID if t <= fg], target, prefer_low=False)
    bg = min(configured[1], fg) if bg is None else bg
    out = []
    for name, value, conf, scan, kind in (("affinity.fg_threshold", fg, configured[0], fg_scan, "fg"),
                                          ("affinity.bg_threshold", bg, configured[1], bg_scan, "bg")):
        prec, cover = _mined(scores, cls, value, kind)
        out.append(Choice(name, value, conf, _round(prec), _round(_mined(scores, cls, conf, kind)[0]),
                          coverage=_round(cover), scan={t: _round(v[0]) for t, v in scan.items()}))
    return out[0], out[1]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
