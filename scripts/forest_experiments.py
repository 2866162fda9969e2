"""Could a pixel forest be the chain's final stage? Measures, on a data set with masks and a finished run folder
(``napari-pcam run ... --until irn`` or later, with calibration on), random forests on the random-forest
baseline's features (``baselines.pixel_features``) that use the chain's outputs in three ways:

* trained on the clicks plus ``--per-class`` pixels per class per image drawn from the chain's pseudo labels
  (PCAM's mined confident labels at the calibrated thresholds, or PCAM's dense labels), instead of DeepLabv3+;
* trained on the clicks with the PCAM's CAMs of every class as extra features (stacking; CAMs of all classes
  on every image, as for new images without image-level labels);
* trained on the clicks, their class probabilities random-walked with the run's IRNet (``walk x forest``),
  or refined by the dense CRF (``crf``, no chain output at all).

Writes one JSON object ``{variant: {train: mIoU, val: mIoU, per_class: ...}}``. Experiment code: it reads the
run folder's files directly and calls the pipeline's private mining helper.

    python scripts/forest_experiments.py --data ../shared/data/dsb2018 --run RUN --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_pcam.cli.run import load_run_data
from napari_pcam.core.baselines import IGNORE, forest_probabilities, pixel_features, points_to_sparse_labels
from napari_pcam.core.config import PipelineConfig
from napari_pcam.core.crf import crf_probabilities
from napari_pcam.core.data.cams import CamMaps
from napari_pcam.core.data.images import to_rgb8
from napari_pcam.core.io import atomic_write_text
from napari_pcam.core.metrics import evaluate
from napari_pcam.core.pipeline import _mine_images, read_tiff
from napari_pcam.core.progress import drain
from napari_pcam.core.stages.cam import TrainedCam
from napari_pcam.core.stages.cam_inference import compute_cams
from napari_pcam.core.stages.irn import load_irn
from napari_pcam.core.stages.random_walk import up4, walk_scores

FORESTS = ("clicks", "clicks + mined", "clicks + pcam labels", "clicks, features + cams")
OUTPUTS = {"clicks": ("argmax", "crf", "walk x forest"), "clicks + mined": ("argmax",),
           "clicks + pcam labels": ("argmax",), "clicks, features + cams": ("argmax", "crf")}


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ (see shared/data)")
    p.add_argument("--run", type=Path, required=True, help="run folder of the chain on data/train")
    p.add_argument("--classes", help="comma-separated class names, background first")
    p.add_argument("--per-class", type=int, default=100, help="pseudo-labelled pixels per class per image")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    d = args.data
    data = load_run_data(argparse.Namespace(
        sample=False, images=d / "train/images", points=d / "train/points.csv", classes=args.classes,
        masks=d / "train/masks", val_images=d / "val/images", val_masks=d / "val/masks",
        channel_axis=None, channels=None, frames="error", axes=None))
    names = data.points.class_names
    k = len(names)
    run = args.run
    config = PipelineConfig.load(run / "config.toml")
    cal = json.loads((run / "run.json").read_text())["calibration"]
    affinity = dataclasses.replace(config.affinity, fg_threshold=cal["affinity.fg_threshold"]["value"],
                                   bg_threshold=cal["affinity.bg_threshold"]["value"])
    stems = [Path(n).stem for n in data.images.names]
    cams = [CamMaps.load(run / "cams" / f"{s}.npz") for s in stems]
    start = time.perf_counter()
    pseudo = {"clicks + mined": drain(_mine_images(data.images, cams, affinity, 0, list(range(len(stems))))),
              "clicks + pcam labels": [read_tiff(run / "pcam_labels" / f"{s}.tif") for s in stems]}
    pcam = TrainedCam.load(run / "models" / "pcam.pt", names).model.eval()
    irn = load_irn(run / "models" / "irn.pt").model.eval()

    def cam_features(img):  # every class's CAM: new images have no image-level labels
        return np.moveaxis(compute_cams(pcam, img, config.cam_inference).highres, 0, -1)

    sparse = points_to_sparse_labels(data.points, data.images.shapes)
    rng = np.random.default_rng(0)
    xs = {f: [] for f in FORESTS}
    ys = {f: [] for f in FORESTS}
    for i, img in enumerate(data.images.images):
        img = np.asarray(img)
        hand = pixel_features(img)
        sel = sparse[i] != IGNORE
        for f in FORESTS:
            feats = np.concatenate([hand, cam_features(img)], -1) if f.endswith("cams") else hand
            xs[f].append(feats[sel])
            ys[f].append(sparse[i][sel])
            if f in pseudo:
                lab = np.asarray(pseudo[f][i])
                for c in np.unique(lab):
                    if c == IGNORE:
                        continue
                    yy, xx = np.nonzero(lab == c)
                    take = rng.choice(yy.size, min(args.per_class, yy.size), replace=False)
                    xs[f].append(hand[yy[take], xx[take]])
                    ys[f].append(np.full(take.size, c, np.uint8))
    forests = {}
    result: dict = {"samples": {}}
    for f in FORESTS:
        y = np.concatenate(ys[f])
        forests[f] = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(np.concatenate(xs[f]), y)
        result["samples"][f] = np.bincount(y, minlength=k).tolist()
    del xs, ys
    for split, stack, masks in (("train", data.images, data.masks), ("val", data.val_images, data.val_masks)):
        preds: dict[str, list] = {}
        for img in stack.images:
            img = np.asarray(img)
            hand = pixel_features(img)
            shape = img.shape[:2]
            for f in FORESTS:
                feats = np.concatenate([hand, cam_features(img)], -1) if f.endswith("cams") else hand
                prob = forest_probabilities(forests[f], feats, k)
                for out in OUTPUTS[f]:
                    if out == "argmax":
                        lab = prob.argmax(0)
                    elif out == "crf":
                        lab = crf_probabilities(to_rgb8(img), prob)
                    else:  # the forest's probabilities random-walked with IRNet's affinities, times the forest's
                        low = torch.nn.functional.avg_pool2d(torch.from_numpy(prob)[None], 4, ceil_mode=True)[0]
                        walked = up4(walk_scores(img, CamMaps(np.arange(k), prob, low.numpy()), irn,
                                                 config=config.random_walk), shape).numpy()
                        lab = (walked / np.maximum(walked.sum(0, keepdims=True), 1e-6) * prob).argmax(0)
                    preds.setdefault(f"{f} -> {out}", []).append(lab.astype(np.uint8))
        for name, labels in preds.items():
            scores = evaluate(list(masks), labels, names)
            row = result.setdefault(name, {"per_class": {}})
            row[split] = round(scores["miou"], 1)
            row["per_class"][split] = {c: (None if v is None else round(v, 1)) for c, v in scores["per_class"].items()}
        print(split, {n: result[n][split] for n in preds}, flush=True)
    result["seconds"] = round(time.perf_counter() - start)
    result["run"] = str(run)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
