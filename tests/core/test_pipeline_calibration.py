"""The chain with thresholds chosen at held-out clicks (calibration.enabled), and its fallback."""

import dataclasses
import json

import numpy as np
import pytest
import tifffile
import torch

from napari_pcam.core.calibration import GRID, CalibrationWarning
from napari_pcam.core.config import CalibrationConfig
from napari_pcam.core.data.points import PointAnnotations
from napari_pcam.core.errors import ConfigError
from napari_pcam.core.pipeline import RunData, run_pipeline
from napari_pcam.core.progress import drain
from napari_pcam.core.stages.random_walk import scores_to_labels
from progress_records import records_and_result

CHOSEN = ("cam_inference.bg_threshold", "affinity.fg_threshold", "affinity.bg_threshold", "random_walk.bg_threshold")


def _dense_clicks(data: RunData, per_class: int = 3, masks=None, names=None) -> PointAnnotations:
    """``per_class`` clicks of every class present in each training mask (so that some can be held out)."""
    rng = np.random.default_rng(0)
    img, yx, cls = [], [], []
    for i, mask in enumerate(data.masks if masks is None else masks):
        for c in np.unique(mask):
            if c == 255:
                continue
            ys, xs = np.nonzero(mask == c)
            for j in rng.choice(len(ys), min(per_class, len(ys)), replace=False):
                img.append(i), yx.append((ys[j], xs[j])), cls.append(c)
    return PointAnnotations(np.array(img), np.array(yx, float), np.array(cls),
                            data.points.class_names if names is None else names)


@pytest.fixture(scope="module")
def calibrated(run_data, tiny_pipeline, tmp_path_factory):
    data = RunData(run_data.images, _dense_clicks(run_data), run_data.masks, run_data.val_images, run_data.val_masks)
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True, min_clicks=1))
    out = tmp_path_factory.mktemp("calibrated")
    result = drain(run_pipeline(data, config, out, until="refined"))
    return data, config, out, result


def test_the_chosen_thresholds_and_their_click_scores_are_recorded(calibrated):
    data, config, out, result = calibrated
    record = json.loads((out / "run.json").read_text())["calibration"]
    assert record == json.loads((out / "metrics.json").read_text())["calibration"] == result.metrics["calibration"]
    assert record["held_out_clicks"] + record["training_clicks"] == len(data.points)
    assert record["held_out_clicks"] > 0 and "fallback" not in record
    for name in CHOSEN:
        entry = record[name]
        assert entry["value"] in GRID
        assert entry["configured"] == pytest.approx(dict(
            zip(CHOSEN, (0.3, 0.3, 0.05, 0.3)))[name])  # the tiny config keeps the paper's thresholds
        assert entry["score"] is None or 0 <= entry["score"] <= 100
    assert record["affinity.bg_threshold"]["value"] <= record["affinity.fg_threshold"]["value"]
    assert "walk" in result.metrics["seconds"]


def test_labels_use_the_chosen_thresholds(calibrated):
    data, config, out, result = calibrated
    record = result.metrics["calibration"]
    for i, name in enumerate(data.images.names):
        stem = name.rsplit(".", 1)[0]
        pcam = tifffile.imread(out / "pcam_labels" / f"{stem}.tif")
        assert np.array_equal(pcam, result.cams[i].labels(record["cam_inference.bg_threshold"]["value"]))
        walk = np.load(out / "walk" / f"{stem}.npy")
        expected = scores_to_labels(torch.from_numpy(walk), result.cams[i].keys, data.images.shapes[i][:2],
                                    record["random_walk.bg_threshold"]["value"])
        assert np.array_equal(result.refined[i], expected)


def test_pcam_never_trains_on_the_held_out_clicks(run_data, tiny_pipeline, tmp_path, monkeypatch):
    from napari_pcam.core import pipeline

    data = RunData(run_data.images, _dense_clicks(run_data), run_data.masks)
    seen = {}
    real = pipeline.train_cam

    def spy(images, points, *a, **k):
        seen["points"] = points
        return (yield from real(images, points, *a, **k))

    monkeypatch.setattr(pipeline, "train_cam", spy)
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True, min_clicks=1))
    result = drain(run_pipeline(data, config, tmp_path / "run", until="cams"))
    trained = seen["points"]
    assert len(trained) == result.metrics["calibration"]["training_clicks"] < len(data.points)
    np.testing.assert_array_equal(trained.image_labels(len(data.images)), data.points.image_labels(len(data.images)))


def test_too_few_clicks_warn_and_keep_the_configured_thresholds(run_data, tiny_pipeline, tmp_path):
    # the fixture's clicks: one click of one class in the whole set, which cannot be held out
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True))
    gen = run_pipeline(run_data, config, tmp_path / "run", until="cams")
    with pytest.warns(CalibrationWarning, match="too few clicks to calibrate"):
        records, result = records_and_result(gen)
    assert any(r.stage == "check" and "too few clicks" in r.message for r in records)  # the widget shows it
    record = json.loads((tmp_path / "run" / "run.json").read_text())["calibration"]
    assert "fallback" in record and record["held_out_clicks"] == 0
    assert record["training_clicks"] == len(run_data.points)
    name = run_data.images.names[0].rsplit(".", 1)[0]
    pcam = tifffile.imread(tmp_path / "run" / "pcam_labels" / f"{name}.tif")
    assert np.array_equal(pcam, result.cams[0].labels(tiny_pipeline.cam_inference.bg_threshold))


def test_turning_calibration_on_retrains_pcam(run_data, tiny_pipeline, tmp_path):
    from napari_pcam.core.run_folder import StaleStageError

    data = RunData(run_data.images, _dense_clicks(run_data), run_data.masks)
    drain(run_pipeline(data, tiny_pipeline, tmp_path / "run", until="pcam"))
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True, min_clicks=1))
    with pytest.raises(StaleStageError):  # other training clicks: not the cached PCAM
        drain(run_pipeline(data, config, tmp_path / "run", until="pcam"))


def test_the_chain_runs_with_a_learnt_background_map(run_data, tiny_pipeline, tmp_path):
    data = RunData(run_data.images, _dense_clicks(run_data), run_data.masks, run_data.val_images, run_data.val_masks)
    config = dataclasses.replace(tiny_pipeline, cam=dataclasses.replace(tiny_pipeline.cam, background_map=True),
                                 calibration=CalibrationConfig(enabled=True, min_clicks=1))
    result = drain(run_pipeline(data, config, tmp_path / "run", until="refined"))
    assert all(c.keys[0] == 0 for c in result.cams)  # class 0: the background map
    assert all(c.keys[0] == 0 for c in result.val_cams)
    record = result.metrics["calibration"]
    for i, name in enumerate(data.images.names):  # labels at the chosen threshold, the background map in the argmax
        stem = name.rsplit(".", 1)[0]
        assert np.array_equal(tifffile.imread(tmp_path / "run" / "pcam_labels" / f"{stem}.tif"),
                              result.cams[i].labels(record["cam_inference.bg_threshold"]["value"]))
    assert set(result.metrics["train"]) == {"pcam", "refined"}


def test_images_of_very_different_sizes_calibrate_together(tiny_pipeline, tmp_path):
    from napari_pcam.core.data.images import ImageStack
    from napari_pcam.core.data.synthetic import make_synthetic

    small, large = make_synthetic(2, 48, seed=1), make_synthetic(2, 160, seed=2)
    images = ImageStack(small.images.images + large.images.images, ["s0.png", "s1.png", "l0.png", "l1.png"])
    masks = list(small.masks) + list(large.masks)
    data = RunData(images, _dense_clicks(None, per_class=4, masks=masks, names=small.class_names), masks)
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True, min_clicks=2))
    result = drain(run_pipeline(data, config, tmp_path / "run", until="refined"))
    assert "fallback" not in result.metrics["calibration"]
    assert [lab.shape for lab in result.refined] == [m.shape for m in masks]


def _spy_deeplab(monkeypatch) -> dict:
    from napari_pcam.core import pipeline

    seen, real = {}, pipeline.train_deeplab

    def spy(images, labels, *a, **k):
        seen["labels"] = [np.asarray(labels[i]) for i in range(len(labels))]
        return (yield from real(images, labels, *a, **k))

    monkeypatch.setattr(pipeline, "train_deeplab", spy)
    return seen


def test_best_trains_deeplab_on_the_stage_that_labels_the_held_out_clicks_better(run_data, tiny_pipeline, tmp_path,
                                                                                  monkeypatch):
    seen = _spy_deeplab(monkeypatch)
    data = RunData(run_data.images, _dense_clicks(run_data), run_data.masks)
    config = dataclasses.replace(tiny_pipeline, calibration=CalibrationConfig(enabled=True, min_clicks=1),
                                 deeplab=dataclasses.replace(tiny_pipeline.deeplab, train_on="best"))
    result = drain(run_pipeline(data, config, tmp_path / "run", until="deeplab"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())["calibration"]
    entry = record["deeplab.train_on"]
    assert entry["pcam_score"] == record["cam_inference.bg_threshold"]["score"]
    assert entry["refined_score"] == record["random_walk.bg_threshold"]["score"]
    better = "pcam" if entry["pcam_score"] > entry["refined_score"] + config.calibration.tolerance else "refined"
    assert entry["value"] == better and entry["configured"] == "best"
    threshold = record["cam_inference.bg_threshold"]["value"]
    expected = [c.labels(threshold) for c in result.cams] if better == "pcam" else result.refined
    assert all(np.array_equal(a, b) for a, b in zip(seen["labels"], expected))


def test_deeplab_can_learn_from_the_pcam_labels_and_best_without_held_out_clicks_warns(run_data, tiny_pipeline,
                                                                                      tmp_path, monkeypatch):
    seen = _spy_deeplab(monkeypatch)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, train_on="pcam"))
    result = drain(run_pipeline(run_data, config, tmp_path / "pcam", until="deeplab"))
    thr = tiny_pipeline.cam_inference.bg_threshold
    assert all(np.array_equal(a, c.labels(thr)) for a, c in zip(seen["labels"], result.cams))
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, train_on="best"))
    with pytest.warns(CalibrationWarning, match="learns from the refined labels"):
        result = drain(run_pipeline(run_data, config, tmp_path / "best", until="deeplab"))
    assert all(np.array_equal(a, b) for a, b in zip(seen["labels"], result.refined))
    with pytest.raises(ConfigError, match="deeplab.train_on='walk' is not valid"):
        dataclasses.replace(tiny_pipeline.deeplab, train_on="walk")


def test_deeplab_can_learn_from_the_mined_confident_labels(run_data, tiny_pipeline, tmp_path, monkeypatch):
    from napari_pcam.core.stages.affinity import mine_labels

    seen = _spy_deeplab(monkeypatch)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, train_on="mined"))
    result = drain(run_pipeline(run_data, config, tmp_path / "run", until="deeplab"))
    for lab, cams in zip(seen["labels"], result.cams):
        assert np.array_equal(lab, mine_labels(cams, tiny_pipeline.affinity))
    assert any((lab == 255).any() for lab in seen["labels"])  # what is not confident is ignored
    stem = run_data.images.names[0].rsplit(".", 1)[0]  # written once, read per crop
    assert np.array_equal(tifffile.imread(tmp_path / "run" / "mined" / f"{stem}.tif"), seen["labels"][0])


def test_deeplab_can_learn_only_where_the_clicks_forest_agrees(run_data, tiny_pipeline, tmp_path, monkeypatch):
    from napari_pcam.core.baselines import random_forest_baseline
    from napari_pcam.core.stages.affinity import mine_labels

    seen = _spy_deeplab(monkeypatch)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(
        tiny_pipeline.deeplab, train_on="mined", agree_with="forest"))
    records, result = records_and_result(run_pipeline(run_data, config, tmp_path / "run", until="deeplab"))
    forest = random_forest_baseline(run_data.images, run_data.points, run_data.images, seed=config.runtime.seed)
    stems = [n.rsplit(".", 1)[0] for n in run_data.images.names]
    kept = 0
    for lab, cams, trees, stem in zip(seen["labels"], result.cams, forest, stems):
        mined = mine_labels(cams, tiny_pipeline.affinity)
        assert np.array_equal(tifffile.imread(tmp_path / "run" / "forest" / f"{stem}.tif"), trees)
        assert np.array_equal(lab, np.where(mined == trees, mined, 255))  # a disagreement is ignored
        kept += int((lab != 255).sum())
    assert 0 < kept < sum(lab.size for lab in seen["labels"])
    assert any(r.stage == "forest" for r in records)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["train"]["forest"] <= 100 and "forest" in metrics["clicks"]
    assert {"mined", "forest"} <= set(metrics["seconds"])
    # the forest is cached with the labels: a rerun with another click weight retrains DeepLabv3+ only
    again = dataclasses.replace(config, deeplab=dataclasses.replace(config.deeplab, click_weight=2.0))
    records, _ = records_and_result(run_pipeline(run_data, again, tmp_path / "run", until="deeplab", force=True))
    assert [r.message for r in records if r.stage == "forest"] == ["cached"]
    with pytest.raises(ConfigError, match="deeplab.agree_with='crf' is not valid"):
        dataclasses.replace(tiny_pipeline.deeplab, agree_with="crf")


def test_agreeing_labels_refuse_images_of_different_shapes():
    from napari_pcam.core.errors import DataError
    from napari_pcam.core.pipeline import agreeing

    a, b = np.array([[1, 2], [0, 1]], np.uint8), np.array([[1, 0], [0, 2]], np.uint8)
    assert np.array_equal(agreeing([a], [b], 0), [[1, 255], [0, 255]])
    with pytest.raises(DataError, match=r"shape \(2, 2\).*shape \(3, 2\).*--force"):
        agreeing([a], [np.zeros((3, 2), np.uint8)], 0)
