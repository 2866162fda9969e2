"""Apply widget: load a model file, apply it to another image layer, save it again."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pcam.core.config import CamConfig
from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.stages.cam import TrainedCam
from napari_pcam.gui.apply import ApplyWidget


@pytest.mark.gui
def test_load_apply_save(tiny_layers, tmp_path, wait_idle):
    viewer, image, points = tiny_layers
    names = tuple(points.metadata["class_names"])
    model = CamNet(backbone="resnet18", weights="none", in_channels=3, num_classes=len(names) - 1)
    TrainedCam(model, CamConfig(backbone="resnet18", weights="none"), names).save(tmp_path / "m.pt")
    other = viewer.add_image(np.random.default_rng(0).integers(0, 255, (48, 40, 3), np.uint8), rgb=True,
                             name="new", translate=(5, 7))
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.classes_from.value = points
    widget.load(tmp_path / "m.pt")
    assert "pcam" in widget.model_label.text()
    widget.image.value = other
    widget.apply()
    wait_idle(widget, timeout=60_000)
    labels = viewer.layers["new pcam labels"]
    assert labels.data.shape == (48, 40) and labels.data.dtype == np.uint8
    np.testing.assert_allclose(labels.translate, (5, 7))
    assert set(np.unique(labels.data)) <= set(range(len(names)))
    for name in names[1:]:
        assert viewer.layers[f"new pcam {name}"].data.shape == (48, 40)
    colour = points.metadata["class_colors"][1]
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0][:3],
                               np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255, atol=1e-3)
    widget.save(tmp_path / "copy.pt")
    assert TrainedCam.load(tmp_path / "copy.pt").class_names == names


@pytest.mark.gui
@pytest.mark.parametrize("crf", [False, True])
def test_bundle_gives_final_labels_and_heatmaps(tiny_layers, tmp_path, make_bundle, wait_idle, crf):
    from napari_pcam.core.bundle import load_bundle
    from napari_pcam.core.crf import crf_available

    if crf and not crf_available():
        pytest.skip("pydensecrf2 is not installed")
    viewer, image, points = tiny_layers
    make_bundle(tmp_path / "model", crf=crf)
    other = viewer.add_image(np.random.default_rng(1).integers(0, 255, (40, 48, 3), np.uint8), rgb=True, name="new")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.classes_from.value = points
    widget.load(tmp_path / "model")
    assert "bundle" in widget.model_label.text()
    widget.image.value = other
    widget.apply()
    wait_idle(widget, timeout=60_000)
    final = viewer.layers["new final"]
    assert final.data.shape == (40, 48) and final.data.dtype == np.uint8
    assert set(np.unique(final.data)) <= set(range(len(points.metadata["class_names"])))
    # with deeplab.crf the viewer runs the CRF in a worker process: the labels are this process's
    np.testing.assert_array_equal(final.data, load_bundle(tmp_path / "model").predict(other.data))
    for name in points.metadata["class_names"][1:]:
        assert viewer.layers[f"new pcam {name}"].data.shape == (40, 48)
    widget.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "bundle.json").is_file() and (tmp_path / "copy" / "deeplab.pt").is_file()


@pytest.mark.gui
def test_apply_shows_progress_in_the_widget_and_the_activity_dock(tiny_layers, tmp_path, make_bundle, wait_idle,
                                                                    qtbot):
    viewer, image, points = tiny_layers
    make_bundle(tmp_path / "model")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.load(tmp_path / "model")
    widget.image.value = image
    seen = []
    widget.apply()
    activity = widget.activity
    widget.worker.yielded.connect(lambda p: seen.append((activity.bar.desc, activity.bar.n, activity.bar.total)))
    assert widget.cancel_button.isEnabled() and not widget.apply_button.isEnabled()
    wait_idle(widget, timeout=60_000)
    assert widget.status.text() == "done" and widget.progress.value() == 1000
    # the dock's bar counts the images of each stage (tqdm puts ": " after a description)
    assert seen and all(desc.startswith("apply to tiny: ") and total == 2 and 0 <= n <= 2 for desc, n, total in seen)
    assert activity.closed and widget.activity is None and not widget.cancel_button.isEnabled()


@pytest.mark.gui
def test_cancelling_apply_from_the_activity_dock_stops_after_the_current_image(tiny_layers, tmp_path, make_bundle,
                                                                               wait_idle):
    viewer, image, points = tiny_layers
    make_bundle(tmp_path / "model")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.load(tmp_path / "model")
    widget.image.value = image
    widget.apply()
    steps = []
    widget.worker.yielded.connect(lambda p: steps.append(p.step))
    widget.activity.bar.cancel()  # what the dock's Cancel button calls
    wait_idle(widget, timeout=60_000)
    assert widget.status.text().startswith("cancelled"), widget.status.text()
    assert len(steps) < 4, "a bundle yields 'cams' and 'final' per image: 2 images would be 4 records"
    assert widget.apply_button.isEnabled()


@pytest.mark.gui
def test_a_large_image_gets_labels_only(tiny_layers, tmp_path, make_bundle, wait_idle, notes, monkeypatch):
    from napari_pcam.core.bundle import load_bundle
    from napari_pcam.gui import apply as apply_module

    monkeypatch.setattr(apply_module, "LARGE_PIXELS", 30 * 30)  # 'large' = over 900 pixels in this test
    viewer, image, points = tiny_layers
    big = viewer.add_image(np.random.default_rng(4).integers(0, 255, (40, 48, 3), np.uint8), rgb=True, name="big")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.load(make_bundle(tmp_path / "model"))
    widget.image.value = big
    widget.apply()
    wait_idle(widget, timeout=60_000)
    assert any("'big' is large" in n for n in notes), notes
    assert [lay.name for lay in viewer.layers if "pcam_result" in lay.metadata] == ["big final"]
    np.testing.assert_array_equal(viewer.layers["big final"].data, load_bundle(tmp_path / "model").predict(big.data))


@pytest.mark.gui
@pytest.mark.parametrize("kind", ["dask", "zarr-like"])
def test_a_large_dask_or_zarr_layer_reaches_the_tiles_unconverted(tiny_layers, tmp_path, make_bundle, wait_idle,
                                                                   monkeypatch, kind):
    import dask.array as da

    from napari_pcam.core.bundle import load_bundle
    from napari_pcam.core.stages import segmentation_inference
    from napari_pcam.gui import apply as apply_module

    monkeypatch.setattr(apply_module, "LARGE_PIXELS", 30 * 30)
    seen = []
    original = segmentation_inference.predict_labels

    def recording(model, image, **kwargs):
        seen.append(type(image).__module__.split(".")[0])
        return original(model, image, **kwargs)

    monkeypatch.setattr(segmentation_inference, "predict_labels", recording)
    pixels = np.random.default_rng(5).integers(0, 255, (40, 48, 3), np.uint8)

    class ZarrLike:  # slices like a zarr array; no transpose, no __array__
        shape, dtype, ndim, chunks = pixels.shape, pixels.dtype, 3, (16, 16, 3)

        def __getitem__(self, key):
            return pixels[key]

    data = da.from_array(pixels, chunks=(16, 16, 3)) if kind == "dask" else ZarrLike()
    viewer, image, points = tiny_layers
    big = viewer.add_image(data, rgb=True, name="lazy")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.load(make_bundle(tmp_path / "model"))
    widget.image.value = big
    widget.apply()
    wait_idle(widget, timeout=60_000)
    assert seen == ["dask"], "the layer's data reached the tiled prediction as a dask array, not as numpy"
    np.testing.assert_array_equal(viewer.layers["lazy final"].data, load_bundle(tmp_path / "model").predict(pixels))
