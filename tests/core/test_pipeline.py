"""The whole chain on tiny synthetic run_data: outputs, resume after an interruption, bundle round trip."""

import json

import numpy as np
import pytest

from napari_pcam.core.bundle import load_bundle
from napari_pcam.core.errors import CheckpointError, DataError
from napari_pcam.core.pipeline import RunData, run_pipeline
from napari_pcam.core.progress import drain
from progress_records import records_and_result


@pytest.fixture(scope="module")
def finished(run_data, tmp_path_factory, tiny_pipeline):
    out = tmp_path_factory.mktemp("run")
    records, result = records_and_result(run_pipeline(run_data, tiny_pipeline, out, until="final"))
    return out, result, [r.stage for r in records]


def test_every_stage_runs_and_writes_its_files(finished):
    out, result, stages = finished
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s][:11] == [
        "pcam", "cams", "check", "val_cams", "irn", "irn_displacement", "refined", "check", "val_refined",
        "deeplab", "final"]
    for sub in ("pcam", "pcam_labels", "refined", "final", "val_refined", "val_final"):
        assert len(list((out / sub).glob("*.tif"))) == (2 if sub.startswith("val_") else 3), sub
    assert len(list((out / "val_cams").glob("*.npz"))) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["train"]) == {"pcam", "refined", "final"}
    assert set(metrics["val"]) == {"pcam", "refined", "final"}, "held-out rows of every stage, as the paper's"
    assert set(metrics["clicks"]) == {"pcam", "refined", "final"}
    assert all(0 <= c["balanced"] <= 100 for c in metrics["clicks"].values())
    assert all(0 <= v <= 100 for v in [*metrics["train"].values(), *metrics["val"].values()])
    assert {"pcam", "cams", "val_cams", "irn", "refined", "val_refined", "deeplab", "final"} <= set(metrics["seconds"])
    assert result.final[0].shape == (64, 64) and result.final[0].dtype == np.uint8
    # results are read from the folder on access, never all held in memory (VOC's would not fit)
    from napari_pcam.core.data.lazy import LazySequence

    assert all(isinstance(x, LazySequence) for x in (result.cams, result.refined, result.final, result.val_final))
    assert len(result.cams) == 3 and result.cams[2].shape == (64, 64)


def test_held_out_cams_are_restricted_to_the_classes_of_their_masks(finished, run_data):
    from napari_pcam.core.pipeline import val_keys

    _, result, _ = finished
    for cams, mask, keys in zip(result.val_cams, run_data.val_masks, val_keys(run_data.val_masks)):
        present = sorted(set(np.unique(mask).tolist()) - {0, 255})
        assert list(cams.keys) == present == list(keys)


def test_held_out_cams_follow_given_image_labels_instead_of_the_masks(run_data, tmp_path, tiny_pipeline):
    n = len(run_data.val_images)
    given = [np.arange(1, run_data.points.num_classes + 1)] * n  # e.g. VOC's XML labels, here every class
    from napari_pcam.core.pipeline import val_keys

    assert any(len(k) < run_data.points.num_classes for k in val_keys(run_data.val_masks)), "masks differ"
    result = drain(run_pipeline(run_data, tiny_pipeline, tmp_path, until="cams", held_out_labels=given))
    assert [list(c.keys) for c in result.val_cams] == [list(k) for k in given]
    assert "pcam" in result.metrics["val"]


def test_images_with_no_clicked_or_present_class_get_background_cams(run_data, tmp_path, tiny_pipeline):
    # plain CAMs (no learnt background map): a training image clicked only as background and a held-out mask
    # with no foreground class have no map to compute; dubai's val tile of bare land crashed this (#13)
    from napari_pcam.core.data.points import PointAnnotations

    p = run_data.points
    keep = (p.image != 0) | (p.cls == 0)
    assert np.any(p.cls[p.image == 0] > 0) and np.any(keep & (p.image == 0)), "image 0 has both kinds"
    points = PointAnnotations(p.image[keep], p.yx[keep], p.cls[keep], p.class_names)
    val_masks = [np.zeros_like(run_data.val_masks[0]), *run_data.val_masks[1:]]
    data = RunData(run_data.images, points, run_data.masks, run_data.val_images, val_masks)
    assert not tiny_pipeline.cam.background_map
    result = drain(run_pipeline(data, tiny_pipeline, tmp_path, until="refined"))
    for cams in (result.cams[0], result.val_cams[0]):
        assert list(cams.keys) == [] and cams.highres.shape == (0, 64, 64) and cams.lowres.shape == (0, 16, 16)
        assert not cams.labels(0.3).any()
    assert len(result.cams[1].keys) > 0
    assert not result.refined[0].any() and not result.val_refined[0].any()
    assert np.isfinite(result.metrics["val"]["refined"])


def test_bundle_round_trip_gives_identical_predictions(finished, run_data):
    out, result, _ = finished
    bundle = load_bundle(out / "model", class_names=run_data.points.class_names)
    for img, expected in zip(run_data.val_images.images, result.val_final):
        np.testing.assert_array_equal(bundle.predict(img), expected)


def test_the_bundle_shares_the_run_s_network_files(finished):
    out, _, _ = finished
    for name in ("pcam.pt", "irn.pt", "deeplab.pt"):
        assert (out / "model" / name).samefile(out / "models" / name), f"{name}: one file, hard-linked"


def test_bundle_rejects_other_channel_count_and_classes(finished, run_data):
    out, _, _ = finished
    bundle = load_bundle(out / "model")
    with pytest.raises(DataError, match="expects 3-channel images"):
        bundle.predict(np.zeros((64, 64), np.uint8))
    with pytest.raises(CheckpointError, match="segments classes"):
        load_bundle(out / "model", class_names=("background", "x"))


def test_bundle_from_another_version_is_rejected(finished, tmp_path):
    out, _, _ = finished
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(out / "model", copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["format_version"] = 0
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 0"):
        load_bundle(copy)


def test_interrupted_run_resumes_without_recomputing(run_data, tmp_path, tiny_pipeline):
    gen = run_pipeline(run_data, tiny_pipeline, tmp_path, until="refined")
    for p in gen:
        if p.stage == "irn":  # interrupt while IRNet trains: PCAM and CAMs are finished
            gen.close()
            break
    pcam = tmp_path / "models" / "pcam.pt"
    stamp = pcam.stat().st_mtime_ns
    assert not (tmp_path / "models" / "irn.pt").exists()
    stages = []
    gen = run_pipeline(run_data, tiny_pipeline, tmp_path, until="refined")
    while True:
        try:
            p = next(gen)
            stages.append((p.stage, p.message))
        except StopIteration:
            break
    assert ("pcam", "cached") in stages and ("cams", "cached") in stages
    assert pcam.stat().st_mtime_ns == stamp and (tmp_path / "models" / "irn.pt").is_file()


def test_held_out_masks_with_undeclared_values(run_data):
    bad = [m.copy() for m in run_data.val_masks]
    bad[0][0, 0] = 9
    with pytest.raises(DataError, match="values \\[9\\] that are not declared classes"):
        RunData(run_data.images, run_data.points, run_data.masks, run_data.val_images, bad)


def test_held_out_images_without_masks(run_data):
    with pytest.raises(DataError, match="without masks"):
        RunData(run_data.images, run_data.points, run_data.masks, run_data.val_images, None)


@pytest.mark.parametrize("setting", ["test_flip", "crf"])
def test_changed_inference_settings_rerun_predictions_not_training(run_data, tmp_path, tiny_pipeline, setting):
    import dataclasses

    from napari_pcam.core.crf import crf_available

    if setting == "crf" and not crf_available():
        pytest.skip("pydensecrf2 is not installed")
    drain(run_pipeline(run_data, tiny_pipeline, tmp_path, until="final"))
    model = tmp_path / "models" / "deeplab.pt"
    stamp = model.stat().st_mtime_ns
    tta = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, **{setting: True}))
    messages = {}
    records, result = records_and_result(run_pipeline(run_data, tta, tmp_path, until="final", force=True))
    for p in records:
        messages.setdefault(p.stage, set()).add(p.message)
    assert messages["deeplab"] == {"cached"} and model.stat().st_mtime_ns == stamp
    assert "cached" not in messages["final"], f"the final labels are predicted again, with {setting}"
    assert getattr(result.segmenter.config, setting)
    assert getattr(load_bundle(result.bundle_path).segmenter.config, setting)
    # the bundle's network now differs from models/deeplab.pt in this setting: its own file, not a link
    assert not (result.bundle_path / "deeplab.pt").samefile(model) and model.stat().st_mtime_ns == stamp
    assert (result.bundle_path / "pcam.pt").samefile(tmp_path / "models" / "pcam.pt")


def test_the_chain_runs_with_a_timm_encoder(run_data, tmp_path, tiny_pipeline):
    """EfficientNet-Lite0 (stride-2 first stage, TF padding) through every stage, bundle included."""
    from napari_pcam.core.choices import apply_choices

    config = apply_choices(tiny_pipeline, encoder="efficientnet_lite0")
    result = drain(run_pipeline(run_data, config, tmp_path / "run", until="final"))
    assert result.final[0].shape == (64, 64)
    assert result.irn.model.backbone.name == "efficientnet_lite0"
    bundle = load_bundle(tmp_path / "run" / "model")
    assert np.array_equal(bundle.segmenter.predict(run_data.images.images[0]), result.final[0])


def test_clicks_override_the_pseudo_labels_deeplab_trains_on(run_data, tmp_path, tiny_pipeline, monkeypatch):
    import dataclasses

    from napari_pcam.core import pipeline
    from napari_pcam.core.click_scores import clicked_labels

    seen = {}
    real = pipeline.train_deeplab

    def spy(images, labels, *a, **k):
        seen["labels"] = [labels[i] for i in range(len(labels))]
        return (yield from real(images, labels, *a, **k))

    monkeypatch.setattr(pipeline, "train_deeplab", spy)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, click_override=True,
                                                                            click_radius=0))
    result = drain(run_pipeline(run_data, config, tmp_path / "run", until="deeplab"))
    for i, lab in enumerate(seen["labels"]):
        yx, cls = run_data.points.for_image(i)
        assert np.array_equal(clicked_labels(lab, yx), cls)
        changed = lab != result.refined[i]
        assert changed.sum() <= len(cls)


def test_click_weight_hands_deeplab_the_click_maps_of_every_image(run_data, tmp_path, tiny_pipeline, monkeypatch):
    import dataclasses

    from napari_pcam.core import pipeline
    from napari_pcam.core.click_scores import clicked_labels

    seen = {}
    real = pipeline.train_deeplab

    def spy(images, labels, *a, clicks=None, **k):
        seen["clicks"] = [clicks[i] for i in range(len(clicks))]
        return (yield from real(images, labels, *a, clicks=clicks, **k))

    monkeypatch.setattr(pipeline, "train_deeplab", spy)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, click_weight=1.0,
                                                                            click_radius=0))
    drain(run_pipeline(run_data, config, tmp_path / "run", until="deeplab"))
    assert len(seen["clicks"]) == len(run_data.images)
    for i, clicks in enumerate(seen["clicks"]):
        yx, cls = run_data.points.for_image(i)
        assert np.array_equal(clicked_labels(clicks, yx), cls)
        assert (clicks != 255).sum() <= len(cls)  # nothing but the clicked pixels


def _run(run_data, config, out, **kwargs):
    messages: dict[str, set] = {}
    records, result = records_and_result(run_pipeline(run_data, config, out, until="final", **kwargs))
    for p in records:
        messages.setdefault(p.stage, set()).add(p.message)
    return result, messages


def _crf_check(config):
    """``config`` with the CRF decided by the clicks, and a DeepLabv3+ that learns them (so that its own labels
    score above chance there)."""
    import dataclasses

    return dataclasses.replace(config, deeplab=dataclasses.replace(
        config.deeplab, crf=True, crf_check=True, steps=60, click_weight=4.0))


def _labels(folder, stage, names):
    from napari_pcam.core.pipeline import read_tiff

    return [read_tiff(folder / stage / f"{n.rsplit('.', 1)[0]}.tif") for n in names]


@pytest.mark.parametrize("crf_breaks_clicks", [False, True])
def test_the_clicks_decide_whether_the_final_labels_go_through_the_crf(run_data, tmp_path, tiny_pipeline,
                                                                       monkeypatch, crf_breaks_clicks):
    from napari_pcam.core.click_scores import click_scores
    from napari_pcam.core.crf import crf_available
    from napari_pcam.core.stages import segmentation_inference
    from napari_pcam.core.stages.segmentation_inference import predict_probabilities

    if not crf_available():
        pytest.skip("pydensecrf2 is not installed")
    if crf_breaks_clicks:  # a CRF that relabels every pixel gets every click wrong
        monkeypatch.setattr(segmentation_inference, "crf_probabilities", lambda rgb, probs, setting="": (
            (probs.argmax(0) + 1) % probs.shape[0]).astype(np.uint8))
    config = _crf_check(tiny_pipeline)
    result, messages = _run(run_data, config, tmp_path)
    decision = result.metrics["calibration"]["deeplab.crf"]
    names = run_data.images.names
    final = _labels(tmp_path, "final", names)
    images = run_data.images.images
    probs = [predict_probabilities(result.segmenter.model, img).numpy() for img in images]
    plain = [p.argmax(0) for p in probs]
    crf = [segmentation_inference.crf_probabilities(segmentation_inference.to_rgb8(img), p)
           for img, p in zip(images, probs)]
    assert decision["plain_score"] == click_scores(plain, run_data.points)["balanced"]
    assert decision["crf_score"] == click_scores(crf, run_data.points)["balanced"]
    assert decision["value"] == (not crf_breaks_clicks), decision
    assert all(np.array_equal(a, b) for a, b in zip(final, crf if decision["value"] else plain))
    assert result.segmenter.config.crf == decision["value"]  # the held-out images and the saved model follow it
    assert load_bundle(result.bundle_path).segmenter.config.crf == decision["value"]
    assert json.loads((tmp_path / "run.json").read_text())["calibration"]["deeplab.crf"] == decision
    off = {m for m in messages.get("check", set()) if m.startswith("deeplab.crf: off")}
    assert bool(off) == crf_breaks_clicks
    if crf_breaks_clicks:
        assert f"{decision['crf_score']:.1f}%" in off.pop()
    # a rerun keeps the labels and the decision without predicting again
    again, messages = _run(run_data, config, tmp_path)
    assert messages["final"] == {"cached"}
    assert again.metrics["calibration"]["deeplab.crf"] == decision and again.segmenter.config.crf == decision["value"]


def test_crf_check_without_the_crf_predicts_as_before(finished, run_data, tmp_path, tiny_pipeline):
    import dataclasses

    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, crf_check=True))
    result, _ = _run(run_data, config, tmp_path)
    assert "deeplab.crf" not in result.metrics.get("calibration", {})
    out, _, _ = finished
    names = run_data.images.names
    assert all(np.array_equal(a, b) for a, b in zip(_labels(tmp_path, "final", names), _labels(out, "final", names)))
