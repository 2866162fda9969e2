"""Tables of the VOC benchmark (``napari-pcam benchmark voc``): rows, paper values, Markdown and JSON.

Every cell shows ``ours (paper)``. Paper values are only those we were given for PASCAL VOC 2012 *val*
(CAM 46.0, PCAM 54.4, refined PCAM 68.5, final DeepLabv3+ 70.5, fully supervised DeepLabv3+ 78.9); every
other paper value is unknown to this code and is written as ``null`` in JSON and ``?`` in Markdown, never
guessed.
"""

from __future__ import annotations

from typing import Any

from ..core.data.voc import VOC_CLASSES

TABLES = ("table1", "table2", "table3")
"""Parts that ``--only`` accepts; table 4 (per-class IoU) comes with table 3."""

# (table, row, experiment folder, metric stage per split, paper value per split)
ROWS: tuple[tuple[str, str, str, dict[str, str], dict[str, float | None]], ...] = (
    ("table1", "CAM", "cam", {"train": "pcam", "val": "val_cams"}, {"train": None, "val": 46.0}),
    ("table1", "PCAM", "pcam", {"train": "pcam", "val": "val_cams"}, {"train": None, "val": 54.4}),
    ("table1", "PCAM-F", "pcam_f", {"train": "pcam", "val": "val_cams"}, {"train": None, "val": None}),
    ("table1", "PCAM (3 annotators)", "pcam_3annotators", {"train": "pcam", "val": "val_cams"},
     {"train": None, "val": None}),
    ("table2", "refined CAM", "cam", {"train": "refined", "val": "val_refined"}, {"train": None, "val": None}),
    ("table2", "refined PCAM", "pcam", {"train": "refined", "val": "val_refined"}, {"train": None, "val": 68.5}),
    ("table3", "PCAM -> IRNet -> DeepLabv3+ (final)", "pcam", {"val": "final"}, {"val": 70.5}),
    ("table3", "fully supervised DeepLabv3+", "fully_supervised", {"val": "final"}, {"val": 78.9}),
)

TITLES = {
    "table1": "Table 1: CAM, PCAM and PCAM-F (mIoU %, CAMs thresholded at the background score)",
    "table2": "Table 2: refined by IRNet's random walk (mIoU %)",
    "table3": "Table 3: DeepLabv3+ on PASCAL VOC 2012 val (mIoU %)",
    "table4": "Table 4: per-class IoU on val (%)",
}


def build_rows(scores: dict[str, dict[str, Any]], only: set[str], with_3annotators: bool) -> list[dict[str, Any]]:
    """JSON rows: ``{"table", "row", "experiment", "ours": {split: mIoU}, "paper": {split: value}}``.

    Args:
        scores: ``{experiment: {"miou": {stage: value}, "per_class": {stage: {class: IoU}}}}``.
        only: Tables that were run.
        with_3annotators: Whether the 3-annotator PCAM row was run (``--supp-points``).
    """
    rows = []
    for table, name, exp, stages, paper in ROWS:
        if table not in only or (exp == "pcam_3annotators" and not with_3annotators):
            continue
        got = scores.get(exp, {}).get("miou", {})
        rows.append({"table": table, "row": name, "experiment": exp,
                     "ours": {split: got.get(stage) for split, stage in stages.items()}, "paper": dict(paper)})
        if table == "table3":
            per_class = scores.get(exp, {}).get("per_class", {}).get("final", {})
            rows.append({"table": "table4", "row": name, "experiment": exp,
                         "ours": {"val": got.get("final")}, "paper": {"val": paper["val"]},
                         "per_class": {"ours": {c: per_class.get(c) for c in VOC_CLASSES},
                                       "paper": {c: None for c in VOC_CLASSES}}})
    return rows


def _num(v: float | None, unknown: str) -> str:
    return unknown if v is None else f"{v:.1f}"


def cell(ours: float | None, paper: float | None) -> str:
    """``ours (paper)``; ``-`` for a value we did not measure, ``?`` for a paper value we do not know."""
    return f"{_num(ours, '-')} ({_num(paper, '?')})"


def markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = report["metadata"]
    lines = [
        "# PCAM on PASCAL VOC 2012: ours (paper)",
        "",
        f"- preset: `{meta['preset']}`; weights: {meta['weights']}; seed: {meta['seed']}; device: "
        f"{meta['device']} ({meta['versions'].get('gpu', 'none')})",
        f"- images: {meta['images']['train']} train_aug, {meta['images']['val']} val"
        + (f" (first {meta['max_images']} of each split, `--max-images`)" if meta["max_images"] else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "- each cell: ours (paper); `-` = not measured in this run; `?` = the paper's value is not known to this "
        "tool (only the val values CAM 46.0, PCAM 54.4, refined PCAM 68.5, final 70.5 and fully supervised "
        "78.9 were given to it), so it is left null rather than guessed.",
        "- CAMs are restricted to the image's classes: on train to the clicked classes (the image-level labels "
        "of point supervision), on val to the classes of the VOC XML annotations, as IRNet does.",
    ]
    if meta["preset"] == "smoke":
        lines.append("- **smoke preset**: a few steps of tiny networks from scratch; the numbers check the "
                     "machinery only and say nothing about the method.")
    rows = report["rows"]
    for table in ("table1", "table2", "table3"):
        sel = [r for r in rows if r["table"] == table]
        if not sel:
            continue
        splits = [s for s in ("train", "val") if any(s in r["ours"] for r in sel)]
        lines += ["", f"## {TITLES[table]}", "", "| method | " + " | ".join(splits) + " |",
                  "|---|" + "---|" * len(splits)]
        for r in sel:
            lines.append(f"| {r['row']} | " + " | ".join(
                cell(r["ours"].get(s), r["paper"].get(s)) if s in r["ours"] else "" for s in splits) + " |")
    sel = [r for r in rows if r["table"] == "table4"]
    if sel:
        lines += ["", f"## {TITLES['table4']}", "", "| class | " + " | ".join(r["row"] for r in sel) + " |",
                  "|---|" + "---|" * len(sel)]
        for c in VOC_CLASSES:
            lines.append(f"| {c} | " + " | ".join(
                cell(r["per_class"]["ours"].get(c), r["per_class"]["paper"].get(c)) for r in sel) + " |")
        lines.append("| **mIoU** | " + " | ".join(cell(r["ours"]["val"], r["paper"]["val"]) for r in sel) + " |")
    lines += ["", "## Clicks (Bearman et al., ECCV 2016) on the train images", ""]
    for mode, stats in meta["clicks"].items():
        lines.append(f"- {mode}: {stats['clicks']} clicks on {stats['images_with_clicks']} of {stats['images']} "
                     f"images; {stats['clipped']} outside their image (clipped); "
                     f"{stats['clicked_not_labelled']} clicked (image, class) pairs not in the XML labels; "
                     f"{stats['labelled_not_clicked']} labelled pairs without a click")
    lines += ["", "## Speed (images/s per stage)", "",
              "Training stages count image-epochs (images x nominal epochs) per second; cached stages keep the time "
              "of the run that computed them.", "", "| experiment | stage | seconds | images/s |", "|---|---|---|---|"]
    for exp, stages in meta["speed"].items():
        for stage, s in stages.items():
            ips = "-" if s["images_per_s"] is None else f"{s['images_per_s']:.2f}"
            lines.append(f"| {exp} | {stage} | {s['seconds']:.1f} | {ips} |")
    return "\n".join(lines) + "\n"
