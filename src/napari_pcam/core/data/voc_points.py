"""Clicks of Bearman et al. (ECCV 2016) for a VOC split, and their statistics.

:func:`load_voc_points` gives the point annotations of a :class:`VocDataset`; :func:`click_statistics`
summarises a click JSON for a list of ids, with or without the images at hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from .clicks import (
    ClickMode,
    ClickStats,
    ImageClicks,
    clicks_to_points,
    load_clicks,
    merge_clicks,
    read_click_json,
    select_clicks,
)
from .points import PointAnnotations
from .voc import PACKAGED_SPLITS, list_stems, packaged_split
from .voc_dataset import VocDataset

VOC_MAX_SIDE = 500
"""No PASCAL VOC 2012 image is larger than 500 x 500 px: a click beyond is outside whatever the image."""


def load_voc_points(
    dataset: VocDataset,
    json_path: str | Path,
    mode: ClickMode = "1point",
    *,
    supp_path: str | Path | None = None,
    warn: bool = True,
) -> tuple[PointAnnotations, ClickStats]:
    """Clicks of every image of ``dataset`` (image index = dataset index), checked against its labels.

    Shapes come from the JPEG headers, image-level labels from the dataset's label source, and the known
    VOC ids from ``JPEGImages``. See :func:`clicks_to_points` for the statistics and the warning.
    """
    clicks = load_clicks(json_path, mode, supp_path=supp_path)
    voc_ids = list_stems(dataset.layout.jpeg_dir, ".jpg")
    return clicks_to_points(
        clicks, dataset.ids, dataset.shapes(), labels=dataset.all_labels(), voc_ids=voc_ids, warn=warn
    )


def click_statistics(
    json_path: str | Path,
    ids: Sequence[str],
    shapes: Sequence[tuple[int, int]] | None = None,
    *,
    supp_path: str | Path | None = None,
    voc_ids: Collection[str] | None = None,
) -> dict:
    """Statistics of a click JSON on the images ``ids``, for 1Point and AllPoints (and 3 annotators).

    Args:
        json_path: ``pascal2012_trainval_main.json``.
        ids: Image ids (e.g. the 10,582 of ``train_aug``).
        shapes: (H, W) of every id. Without them the outside count uses the 500 px bound of VOC images
            and is a lower bound (``"outside_is_lower_bound": True``).
        supp_path: ``pascal2012_trainval_supp.json``: adds the ``"3annotators"`` 1Point setting.
        voc_ids: All VOC ids, to count click ids that are not VOC images; defaults to the packaged
            ``train_aug`` + ``val`` lists (the 12,031 images of VOC 2012 train+val with SBD).

    Returns:
        A JSON-ready dict: ``json_ids``, ``json_ids_with_clicks``, ``json_ids_not_in_ids``,
        ``json_ids_not_in_voc``, ``ids``, and per mode (``"1point"``, ``"allpoints"``[, ``"3annotators"``])
        ``images_with_clicks``, ``ids_without_clicks``, ``clicks``, ``clicks_per_image`` (mean / median /
        max over the ids with clicks, plus the mean over all ids), ``outside``, ``outside_is_lower_bound``.
    """
    main = read_click_json(json_path)
    if voc_ids is None:
        voc_ids = {i for name in PACKAGED_SPLITS for i in packaged_split(name)}
    voc_ids, wanted = set(voc_ids), set(ids)
    modes = {"1point": select_clicks(main, "1point"), "allpoints": main}
    raw = [main]
    if supp_path is not None:
        supp = read_click_json(supp_path)
        raw.append(supp)
        modes["3annotators"] = merge_clicks(modes["1point"], select_clicks(supp, "1point"))
    json_keys = set().union(*raw)
    out = {
        "json": str(json_path),
        "supp_json": None if supp_path is None else str(supp_path),
        "json_ids": len(json_keys),
        "json_ids_with_clicks": len({k for source in raw for k, c in source.items() if len(c)}),
        "json_ids_not_in_ids": len(json_keys - wanted),
        "json_ids_not_in_voc": len(json_keys - voc_ids),
        "ids": len(ids),
        "ids_not_in_json": len(wanted - json_keys),
    }
    for mode, clicks in modes.items():
        out[mode] = _mode_statistics(clicks, list(ids), shapes)
    out["outside_rule"] = (
        "outside = x < 0, x >= W, y < 0 or y >= H (in no pixel)"
        if shapes is not None
        else f"image sizes unknown: outside = x or y < 0 or >= {VOC_MAX_SIDE} (VOC images are at most "
        f"{VOC_MAX_SIDE} px a side), a lower bound"
    )
    return out


def _mode_statistics(
    clicks: dict[str, ImageClicks], ids: list[str], shapes: Sequence[tuple[int, int]] | None
) -> dict:
    if shapes is not None and len(shapes) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(shapes)} shapes.")
    counts = np.array([len(clicks.get(i, ())) for i in ids], dtype=np.int64)
    outside = 0
    for k, image_id in enumerate(ids):
        c = clicks.get(image_id)
        if c is None or not len(c):
            continue
        h, w = shapes[k] if shapes is not None else (VOC_MAX_SIDE, VOC_MAX_SIDE)
        y, x = c.yx[:, 0], c.yx[:, 1]
        outside += int(np.sum((y < 0) | (y >= h) | (x < 0) | (x >= w)))
    nonzero = counts[counts > 0]
    return {
        "images_with_clicks": int(len(nonzero)),
        "ids_without_clicks": int(np.sum(counts == 0)),
        "clicks": int(counts.sum()),
        "clicks_per_image": {
            "mean": float(nonzero.mean()) if len(nonzero) else 0.0,
            "median": float(np.median(nonzero)) if len(nonzero) else 0.0,
            "max": int(nonzero.max()) if len(nonzero) else 0,
            "mean_over_all_ids": float(counts.mean()) if len(counts) else 0.0,
        },
        "outside": outside,
        "outside_is_lower_bound": shapes is None,
    }
