"""The chain next to its baselines on the same images and points (issue: sample benchmark).

Rows (each run in a fresh subprocess so that its peak memory is its own):

* ``pcam chain``: PCAM -> IRNet -> DeepLabv3+ (the paper's method);
* ``cam chain``: the same chain from plain CAMs (alpha = 0, no learnt background map);
* ``point-only deeplab``: DeepLabv3+ trained on the clicked pixels alone with a partial cross-entropy
  (Bearman et al., "What's the Point", ECCV 2016, without the objectness prior), plus the chain's CRF loss
  when ``deeplab.crf_loss`` is set (Tang et al.'s regularised loss, ECCV 2018);
* ``random forest``: a pixel classifier on scikit-image's multiscale features trained on the clicks
  (what ilastik / napari-convpaint users do);
* ``random forest crf``: the same forest's class probabilities refined by the dense CRF (needs the ``crf``
  extra), a stronger pixel classifier;
* ``fully supervised deeplab``: DeepLabv3+ on the true masks (upper bound; cross-entropy alone).

mIoU in percent on the training images and on held-out images; wall seconds; peak resident memory of the
subprocess (``ru_maxrss``) in MiB.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any, Callable

from ..core.config import PipelineConfig
from ..core.metrics import evaluate
from ..core.pipeline import RunData, run_pipeline
from ..core.progress import drain

ROWS = ("pcam chain", "cam chain", "point-only deeplab", "random forest", "random forest crf",
        "fully supervised deeplab")
DEFAULT_ROWS = tuple(r for r in ROWS if r != "random forest crf")  # that row needs the crf extra


def _chain(data: RunData, config: PipelineConfig, out: Path, held_out_stages: bool = True) -> dict[str, Any]:
    result = drain(run_pipeline(data, config, out, until="final", force=True, held_out_rows=held_out_stages))
    m = result.metrics
    row = {"train_miou": m["train"]["final"], "val_miou": m.get("val", {}).get("final"),
           "stages": {s: m["train"][s] for s in ("pcam", "refined", "final")},
           "stage_seconds": m.get("seconds", {}),
           "clicks": {s: c["balanced"] for s, c in m.get("clicks", {}).items()}}
    if "forest" in m.get("train", {}):  # deeplab.agree_with = "forest": the other source of DeepLabv3+'s labels
        row["forest_labels"] = m["train"]["forest"]
    if "calibration" in m:  # the thresholds chosen at the held-out clicks
        row["calibration"] = m["calibration"]
    if "val" in m:  # held-out CAMs restricted to each mask's classes, as the paper's val rows
        row["val_stages"] = {s: m["val"].get(s) for s in ("pcam", "refined", "final")}
    return row


def _deeplab_on(labels_fn: Callable[[RunData], list], data: RunData, config: PipelineConfig,
                crf_loss: bool = True) -> dict[str, Any]:
    """DeepLabv3+ with ``config.deeplab`` trained on ``labels_fn(data)`` (the clicks alone, or the true masks),
    without the chain's extra click terms (``click_weight``, ``click_override``: these labels are not pseudo
    labels for the clicks to correct), and without ``crf_loss`` unless ``crf_loss`` (the clicks alone get the
    chain's CRF loss, so that the point-only row measures what PCAM and IRNet add; true masks need none);
    predictions with the configured inference settings (the CRF too)."""
    from ..core.stages.segmentation import train_deeplab

    names = data.points.class_names
    deeplab = dataclasses.replace(config.deeplab, click_weight=0.0, click_override=False,
                                  crf_loss=config.deeplab.crf_loss if crf_loss else 0.0)
    seg = drain(train_deeplab(data.images, labels_fn(data), len(names), deeplab, device=config.runtime.device,
                              seed=config.runtime.seed, amp=config.runtime.amp, class_names=names))
    return _score(data, lambda stack: [seg.predict(img, device=config.runtime.device) for img in stack.images])


def _score(data: RunData, predict: Callable) -> dict[str, Any]:
    names = data.points.class_names
    row = {"train_miou": evaluate(list(data.masks), predict(data.images), names)["miou"], "val_miou": None}
    if data.val_images is not None:
        row["val_miou"] = evaluate(list(data.val_masks), predict(data.val_images), names)["miou"]
    return row


def _sparse(data: RunData) -> list:
    from ..core.baselines import points_to_sparse_labels

    return points_to_sparse_labels(data.points, data.images.shapes)


def _masks(data: RunData) -> list:
    import numpy as np

    return [np.asarray(m, np.uint8) for m in data.masks]


def _random_forest(data: RunData, config: PipelineConfig, crf: bool = False) -> dict[str, Any]:
    from ..core.baselines import random_forest_baseline

    return _score(data, lambda stack: random_forest_baseline(data.images, data.points, stack,
                                                             seed=config.runtime.seed, crf=crf))


def run_row(name: str, data: RunData, config: PipelineConfig, work: Path,
            held_out_stages: bool = True) -> dict[str, Any]:
    """One benchmark row, measured in this process (``held_out_stages``: the chains also score the PCAM and
    refined labels of the held-out images, which costs their CAMs and random walks)."""
    start = time.perf_counter()
    if name == "pcam chain":
        row = _chain(data, config, work / "pcam_chain", held_out_stages)
    elif name == "cam chain":
        cfg = dataclasses.replace(config, cam=dataclasses.replace(config.cam, alpha=0.0, background_map=False))
        row = _chain(data, cfg, work / "cam_chain", held_out_stages)
    elif name == "point-only deeplab":
        row = _deeplab_on(_sparse, data, config)
    elif name == "random forest":
        row = _random_forest(data, config)
    elif name == "random forest crf":
        row = _random_forest(data, config, crf=True)
    elif name == "fully supervised deeplab":
        row = _deeplab_on(_masks, data, config, crf_loss=False)
    else:
        raise ValueError(f"unknown row {name!r}; choose from {', '.join(ROWS)}")
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"name": name, **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}}


def _child(name, data, config, work, held_out_stages, queue) -> None:
    try:
        queue.put(run_row(name, data, config, work, held_out_stages))
    except BaseException as exc:  # report, never hang the parent
        queue.put({"name": name, "error": f"{exc.__class__.__name__}: {exc}"})


def benchmark_chain(data: RunData, config: PipelineConfig, work: str | Path, rows=DEFAULT_ROWS,
                    held_out_stages: bool = True):
    """Yield (row name, index, total) while running, return the list of row dicts (+ a summary)."""
    from ..core.errors import DataError
    from ..core.progress import Progress

    if data.masks is None:
        raise DataError("the chain benchmark needs ground-truth masks of the training images (--masks).")
    work = Path(work)
    ctx = mp.get_context("spawn")
    results = []
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise DataError(f"unknown benchmark row(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ROWS)}.")
    for i, name in enumerate(rows):
        yield Progress("benchmark", i, len(rows), message=name)
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, data, config, work, held_out_stages, queue))
        proc.start()
        row = queue.get()
        proc.join()
        if "error" in row:
            raise RuntimeError(f"benchmark row {name!r} failed: {row['error']}")
        results.append(row)
    yield Progress("benchmark", len(rows), len(rows), message="done")
    return results


def recovered_fraction(rows: list[dict]) -> float | None:
    """final / fully supervised val mIoU (train when no held-out set), the paper reports 0.89."""
    by = {r["name"]: r for r in rows}
    if "pcam chain" not in by or "fully supervised deeplab" not in by:
        return None
    key = "val_miou" if by["pcam chain"].get("val_miou") is not None else "train_miou"
    full = by["fully supervised deeplab"][key]
    return round(by["pcam chain"][key] / full, 3) if full else None


def markdown(rows: list[dict]) -> str:
    """The table as Markdown."""
    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| method | train mIoU | val mIoU | seconds | peak MiB |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {fmt(r['train_miou'])} | {fmt(r['val_miou'])} | {r['seconds']:.0f} | "
                     f"{r['peak_mb']:.0f} |")
    for r in rows:
        if "stages" in r:
            tr, va = r["stages"], r.get("val_stages", {})
            steps = " -> ".join(f"{s} {fmt(tr.get(s))} / {fmt(va.get(s))}" for s in ("pcam", "refined", "final"))
            lines.append(f"\n{r['name']} by stage (train / val): {steps}")
            if r.get("forest_labels") is not None:
                lines.append(f"(DeepLabv3+ learnt its pseudo labels only where the clicks' random forest agrees; the "
                             f"forest's own labels of the training images: {fmt(r['forest_labels'])})")
    frac = recovered_fraction(rows)
    if frac is not None:
        lines.append(f"\nfinal / fully supervised: {frac:.0%} (the paper: 89%)")
    return "\n".join(lines)
