"""How good are the labels DeepLabv3+ could learn from? Coverage and accuracy, against the true masks, of a run
folder's label sources on the training images: PCAM's mined labels (``mined/``), the clicks' random forest
(``forest/``, written with ``deeplab.agree_with = "forest"``), the refined labels, and the pixels where mined and
forest agree (what DeepLabv3+ learns with ``agree_with = "forest"``). The table behind the README's *Label
sources* (issue 13).

    python scripts/label_sources.py RUN_FOLDER ../shared/data/dsb2018/train/masks
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_pcam.core.data.readers import read_masks
from napari_pcam.core.metrics import IGNORE, confusion_matrix
from napari_pcam.core.pipeline import agreeing, read_tiff


def confusion(masks: list[np.ndarray], labels: list[np.ndarray], k: int) -> tuple[np.ndarray, int]:
    """k x k confusion (rows: truth) over the pixels both label, and the number of pixels with a true label."""
    conf, total = np.zeros((k, k), np.int64), 0
    for mask, lab in zip(masks, labels):
        conf += confusion_matrix(np.where(lab == IGNORE, IGNORE, mask), lab, k)  # unlabelled pixels skipped
        total += int((mask != IGNORE).sum())
    return conf, total


def row(name: str, conf: np.ndarray, total: int) -> str:
    diag = np.diag(conf)
    precision = 100 * diag / np.maximum(conf.sum(0), 1)
    share = 100 * conf.sum(0) / max(conf.sum(), 1)
    cells = " / ".join(f"{p:.1f} ({s:.1f}%)" for p, s in zip(precision, share))
    return (f"| {name} | {100 * conf.sum() / max(total, 1):.1f} | {100 * diag.sum() / max(conf.sum(), 1):.1f} | "
            f"{cells} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder (with mined/ and forest/)")
    p.add_argument("masks", type=Path, help="folder of the training images' true masks (<stem>.<ext>)")
    a = p.parse_args()
    stems = sorted(f.stem for f in (a.run / "mined").glob("*.tif"))
    masks = read_masks(a.masks, stems)
    k = int(max(int(m[m != IGNORE].max()) for m in masks)) + 1
    sources = {s: [read_tiff(a.run / s / f"{t}.tif") for t in stems]
               for s in ("mined", "forest", "refined") if (a.run / s).is_dir()}
    if "mined" in sources and "forest" in sources:
        sources["mined where the forest agrees"] = [agreeing(sources["mined"], sources["forest"], i)
                                                    for i in range(len(stems))]
    print("| labels | coverage % | accuracy % | precision per class (share of the labels) |")
    print("|---|---|---|---|")
    for name, labels in sources.items():
        print(row(name, *confusion(masks, labels, k)))


if __name__ == "__main__":
    main()
