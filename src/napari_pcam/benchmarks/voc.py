"""Reproducing the paper's tables on PASCAL VOC 2012 (``napari-pcam benchmark voc``).

Experiments, each in its own sub-folder of the output folder and run through :func:`run_pipeline`, so
every one resumes from its cached stages:

* ``cam``: plain CAMs (alpha = 0; the clicked classes are the image-level labels) -> IRNet (Tables 1, 2);
* ``pcam``: PCAM with the 1Point clicks -> IRNet -> DeepLabv3+ (Tables 1, 2, 3, 4);
* ``pcam_f``: PCAM-F, every ground-truth mask pixel as a point (``cam.point_mode = "all"``) (Table 1);
* ``pcam_3annotators``: PCAM with the rank-1 clicks of three annotators (Table 1, with ``--supp-points``);
* ``fully_supervised``: DeepLabv3+ on the true train_aug masks (Tables 3, 4).

Training uses ``train_aug`` and evaluation ``val`` (plus train_aug for the CAM and refined rows). CAMs of
val images are restricted to the classes of their XML annotations, as IRNet does: the pipeline's held-out
stages (``val_cams``, ``val_refined``) with VOC's XML labels as the image-level labels.

Under ``torchrun --nproc_per_node=N`` every rank runs this function: training uses DistributedDataParallel,
the per-image work (CAMs, random walk, prediction, evaluation) is shared out image by image, and rank 0
alone writes the reports (see :mod:`napari_pcam.core.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any, Generator

from ..core import distributed
from ..core.config import PipelineConfig, to_dict
from ..core.data.lazy import LazySequence
from ..core.data.points import PointAnnotations
from ..core.data.voc_dataset import VocDataset, open_voc
from ..core.data.voc_points import load_voc_points
from ..core.device import resolve_device
from ..core.distributed import evaluate
from ..core.errors import DataError
from ..core.io import atomic_write_text
from ..core.pipeline import RunData, predict_all, run_pipeline, run_sharded
from ..core.progress import Progress
from ..core.run_folder import RunFolder, fingerprint, versions
from ..core.stages.segmentation import load_segmenter, save_segmenter, train_deeplab
from .voc_report import TABLES, build_rows, markdown


class SubsetPoints(PointAnnotations):
    """Points on a subset of VOC: a class of the fixed 20 may have no click (e.g. with ``--max-images``)."""

    def validate(self, shapes, names=None, *, require_all_classes: bool = False) -> None:
        super().validate(shapes, names, require_all_classes=require_all_classes)


def parse_only(only: str | None) -> set[str]:
    """``"table1,table3"`` -> ``{"table1", "table3"}``; None = every table."""
    if not only:
        return set(TABLES)
    parts = {p.strip().lower() for p in only.split(",") if p.strip()}
    parts = {"table3" if p == "table4" else p for p in parts}  # table 4 is table 3's per-class view
    bad = sorted(parts - set(TABLES))
    if bad or not parts:
        raise DataError(f"--only {only!r}: unknown part(s) {', '.join(bad) or '(none)'}; choose from "
                        f"{', '.join(TABLES)} (table4 comes with table3).")
    return parts


def plan(only: set[str], with_supp: bool) -> dict[str, dict[str, Any]]:
    """Experiment -> {"until": last pipeline stage, "val": val stages to add} for the requested tables."""
    order = ("cam", "pcam", "pcam_f", "pcam_3annotators", "fully_supervised")
    out: dict[str, dict[str, Any]] = {}

    def need(exp: str, until: str, val: list[str]) -> None:
        e = out.setdefault(exp, {"until": "cams", "val": []})
        if ("cams", "refined", "final").index(until) > ("cams", "refined", "final").index(e["until"]):
            e["until"] = until
        e["val"] += [v for v in val if v not in e["val"]]

    if "table1" in only:
        for exp in ("cam", "pcam", "pcam_f") + (("pcam_3annotators",) if with_supp else ()):
            need(exp, "cams", ["val_cams"])
    if "table2" in only:
        for exp in ("cam", "pcam"):
            need(exp, "refined", ["val_cams", "val_refined"])
    if "table3" in only:
        need("pcam", "final", [])
        out["fully_supervised"] = {"until": "final", "val": []}
    return {k: out[k] for k in order if k in out}


def experiment_config(config: PipelineConfig, exp: str) -> PipelineConfig:
    """The base config changed for one experiment (alpha 0 for CAM, point_mode 'all' for PCAM-F)."""
    if exp == "cam":
        return dataclasses.replace(config, cam=dataclasses.replace(config.cam, alpha=0.0, point_mode="clicks"))
    if exp == "pcam_f":
        return dataclasses.replace(config, cam=dataclasses.replace(config.cam, point_mode="all"))
    return dataclasses.replace(config, cam=dataclasses.replace(config.cam, point_mode="clicks"))


def _load(voc_root, sbd_root, split: str, max_images: int | None):
    """The split's dataset, images and masks; images and masks are read on access, never all at once."""
    ds = open_voc(voc_root, split, sbd_root=sbd_root, label_source="xml", require_masks=True, max_images=max_images)
    return ds, ds.to_image_stack(), ds.masks()


def _points(ds: VocDataset, json_path, mode: str, supp_path=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points, stats = load_voc_points(ds, json_path, mode, supp_path=supp_path)
    for w in caught:  # re-emit once, outside the loader, so the CLI shows them
        warnings.warn(str(w.message), w.category, stacklevel=2)
    return SubsetPoints(points.image, points.yx, points.cls, points.class_names), stats


def _fully_supervised(data: RunData, config: PipelineConfig, out: Path, force: bool):
    """DeepLabv3+ on the true masks; val mIoU and per-class IoU, cached in the folder's manifest."""
    folder = RunFolder(out, force=force)
    if distributed.is_main():
        config.save(folder.path("config.toml"))
    names = data.points.class_names
    key = fingerprint(data.key(), fingerprint(data.masks), to_dict(config.deeplab), config.runtime.seed)
    path = folder.path("models", "deeplab.pt")
    if folder.is_done("deeplab", key) and path.is_file():
        yield Progress("fully_supervised", 1, 1, message="cached")
        seg = None
    else:
        folder.forget("deeplab")
        start = time.perf_counter()
        seg = yield from train_deeplab(data.images, data.masks, len(names), config.deeplab,
                                       device=config.runtime.device, seed=config.runtime.seed,
                                       amp=config.runtime.amp, class_names=names,
                                       num_workers=config.runtime.num_workers)
        if distributed.is_main():
            save_segmenter(seg, path)
        distributed.barrier()  # the model file exists before anyone may load it
        folder.mark_done("deeplab", key, time.perf_counter() - start)
    vkey = fingerprint(key, data.val_images.images)
    if not folder.is_done("val_final", vkey):
        folder.forget("val_final")
        seg = seg or load_segmenter(path, class_names=names, device=config.runtime.device)
        start = time.perf_counter()
        preds = yield from run_sharded(
            lambda idx: predict_all(seg, data.val_images.subset(idx), config, "fully_supervised_val"),
            len(data.val_images))
        scores = evaluate(list(data.val_masks), preds, names)  # sums the ranks' confusion matrices
        folder.mark_done("val_final", vkey, time.perf_counter() - start, miou=scores["miou"],
                         per_class=scores["per_class"])
    info = folder.manifest["stages"]["val_final"]
    per_class = {k: (None if v is None else round(v, 2)) for k, v in info["per_class"].items()}
    return folder, {"miou": {"final": round(info["miou"], 2)}, "per_class": {"final": per_class}}


def _speed(folder: RunFolder, config: PipelineConfig, n_train: int, n_val: int) -> dict[str, dict[str, Any]]:
    """Seconds and images/s of every finished stage (training stages: image-epochs per second)."""
    images = {"pcam": n_train * config.cam.epochs, "cams": n_train, "irn": n_train * config.irn.epochs,
              "refined": n_train, "deeplab": n_train * config.deeplab.epochs, "final": n_train,
              "val_final": n_val, "val_cams": n_val, "val_refined": n_val}
    out = {}
    for stage, s in folder.seconds().items():
        if stage in images:
            out[stage] = {"seconds": s, "images": images[stage],
                          "images_per_s": round(images[stage] / s, 3) if s > 0 else None}
    return out


def benchmark_voc(
    voc_root: str | Path,
    points_json: str | Path,
    out: str | Path,
    config: PipelineConfig,
    *,
    sbd_root: str | Path | None = None,
    supp_json: str | Path | None = None,
    max_images: int | None = None,
    only: str | None = None,
    preset: str = "paper",
    force: bool = False,
) -> Generator[Progress, None, dict[str, Any]]:
    """Run the requested tables' experiments and write ``report.json`` and ``report.md`` into ``out``.

    Returns:
        The report: ``{"rows": [...], "metadata": {...}}`` (see :func:`.voc_report.build_rows`).
    """
    parts = parse_only(only)
    for what, p in (("click JSON (--points)", points_json), ("supplementary click JSON (--supp-points)", supp_json)):
        if p is not None and not Path(p).is_file():
            raise DataError(f"the {what} {str(p)!r} does not exist; fetch pascal2012_trainval_main.json / "
                            "_supp.json (Bearman et al., ECCV 2016) and pass its path.")
    out = Path(out)
    dist = distributed.info()
    yield Progress("voc", 0, 1, message="reading train_aug and val")
    train_ds, train_images, train_masks = _load(voc_root, sbd_root, "train_aug", max_images)
    val_ds, val_images, val_masks = _load(voc_root, sbd_root, "val", max_images)
    points, stats = _points(train_ds, points_json, "1point")
    clicks = {"1point": stats.as_dict(), "allpoints": _points(train_ds, points_json, "allpoints")[1].as_dict()}
    points3 = None
    if supp_json is not None:
        points3, stats3 = _points(train_ds, points_json, "3annotators", supp_path=supp_json)
        clicks["3annotators"] = stats3.as_dict()
    data = RunData(train_images, points, train_masks, val_images, val_masks)
    xml_labels = LazySequence(list(range(len(val_ds))), val_ds.labels)  # read when the val CAMs are computed
    todo = plan(parts, supp_json is not None)
    out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict[str, Any]] = {}
    speed: dict[str, dict[str, Any]] = {}
    meta = {
        "preset": preset, "max_images": max_images, "only": sorted(parts),
        "weights": {"cam": config.cam.weights, "irn": config.irn.weights, "deeplab": config.deeplab.weights},
        "backbones": {"cam": config.cam.backbone, "irn": config.irn.backbone, "deeplab": config.deeplab.backbone},
        "seed": config.runtime.seed, "device": str(resolve_device(config.runtime.device)), "versions": versions(),
        "processes": dist.world_size,
        "images": {"train": len(train_ds), "val": len(val_ds)},
        "splits": {"train": "train_aug", "val": "val"},
        "classes_without_train_points": [n for n, c in list(points.counts().items())[1:] if c == 0],
        "clicks": clicks, "experiments": {k: str(out / k) for k in todo}, "speed": speed,
        "val_cam_labels": "VOC XML annotations (all objects), as IRNet",
        "paper_values": "only the val values CAM 46.0, PCAM 54.4, refined PCAM 68.5, final 70.5 and fully "
                        "supervised 78.9 are known to this tool; all other paper values are null (unknown)",
        "config": to_dict(config),
    }
    report: dict[str, Any] = {"rows": [], "metadata": meta}

    def write() -> None:
        report["rows"] = build_rows(scores, parts, supp_json is not None)
        if not distributed.is_main():
            return
        atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
        atomic_write_text(out / "report.md", markdown(report))

    for exp, job in todo.items():
        cfg = experiment_config(config, exp)
        if exp == "fully_supervised":
            folder, scores[exp] = yield from _fully_supervised(data, cfg, out / exp, force)
        else:
            run_data = data if exp != "pcam_3annotators" else RunData(train_images, points3, train_masks,
                                                                      val_images, val_masks)
            # the val rows of tables 1 and 2: CAMs restricted to VOC's XML labels, as IRNet
            result = yield from run_pipeline(run_data, cfg, out / exp, until=job["until"], force=force,
                                             held_out_rows=bool(job["val"]), held_out_labels=xml_labels)
            m = result.metrics
            scores[exp] = {"miou": {s: v for s, v in m.get("train", {}).items() if s != "final"},
                           "per_class": {}}
            if "final" in m.get("val", {}):
                scores[exp]["miou"]["final"] = m["val"]["final"]
                scores[exp]["per_class"]["final"] = m["per_class"]["val"]["final"]
            for stage in job["val"]:  # val_cams, val_refined: the pipeline's held-out pcam / refined rows
                scores[exp]["miou"][stage] = m["val"][{"val_cams": "pcam", "val_refined": "refined"}[stage]]
            folder = RunFolder(out / exp, force=force)
        speed[exp] = _speed(folder, cfg, len(train_ds), len(val_ds))
        write()
    write()
    yield Progress("voc", 1, 1, message=f"report written to {out / 'report.md'}")
    return report
