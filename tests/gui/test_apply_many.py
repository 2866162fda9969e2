"""Apply to many images: every image layer, or a folder of files, into label TIFFs; bad input refused early."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pcam.gui.apply import MODES, ApplyWidget


def _widget(viewer, model_path):
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.load(model_path)
    return widget


def _results(viewer):
    return sorted(layer.name for layer in viewer.layers if "pcam_result" in layer.metadata)


@pytest.mark.gui
def test_every_image_layer_gets_labels_and_a_label_file_and_results_are_not_overwritten(
        tiny_layers, tmp_path, make_bundle, wait_idle, notes):
    from napari_pcam.core.bundle import load_bundle

    viewer, image, points = tiny_layers
    rng = np.random.default_rng(2)
    viewer.add_image(rng.integers(0, 255, (40, 48, 3), np.uint8), rgb=True, name="b")
    viewer.add_image(rng.integers(0, 255, (36, 30, 3), np.uint8), rgb=True, name="c")
    widget = _widget(viewer, make_bundle(tmp_path / "model"))
    widget.mode.value = MODES[1]
    widget.apply()
    assert widget.worker is None and "choose a label folder" in notes[-1], "files or layers: one must be chosen"
    widget.out.value = tmp_path / "labels"
    widget.add_layers.value = True
    widget.apply()
    wait_idle(widget, timeout=90_000)
    assert widget.status.text().startswith("done"), widget.status.text()
    assert _results(viewer) == ["b final", "c final", "tiny final"], "labels only: no heatmaps for many layers"
    bundle = load_bundle(tmp_path / "model")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels" / "b_labels.tif"),
                                  bundle.predict(viewer.layers["b"].data))
    np.testing.assert_array_equal(viewer.layers["c final"].data, bundle.predict(viewer.layers["c"].data))
    assert tifffile.imread(tmp_path / "labels" / "tiny_labels.tif").shape == (2, 64, 64)  # a stack: Z x H x W
    before = (tmp_path / "labels" / "b_labels.tif").read_bytes()
    (tmp_path / "labels" / "b_labels.tif").write_bytes(b"edited by hand")
    widget.apply()
    assert widget.worker is None and "already exist" in notes[-1] and "overwrite" in notes[-1]
    assert (tmp_path / "labels" / "b_labels.tif").read_bytes() == b"edited by hand"
    widget.overwrite.value = True
    widget.apply()
    wait_idle(widget, timeout=90_000)
    assert (tmp_path / "labels" / "b_labels.tif").read_bytes() == before
    assert _results(viewer) == ["b final", "c final", "tiny final"], "a second run updates the same layers"


@pytest.mark.gui
def test_an_image_layer_of_another_channel_count_is_named_and_nothing_runs(tiny_layers, tmp_path, make_bundle,
                                                                           notes):
    viewer, image, points = tiny_layers
    viewer.add_image(np.zeros((32, 32), np.uint8), name="gray")
    widget = _widget(viewer, make_bundle(tmp_path / "model"))
    widget.mode.value = MODES[1]
    widget.apply()
    assert widget.worker is None
    assert "'gray'" in notes[-1] and "3-channel" in notes[-1] and "1 channel" in notes[-1], notes[-1]
    assert _results(viewer) == []


@pytest.mark.gui
def test_a_folder_of_files_is_segmented_and_unreadable_files_are_skipped_and_listed(
        make_napari_viewer, tmp_path, make_bundle, wait_idle, notes):
    from napari_pcam.core.bundle import load_bundle

    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 44, 3), np.uint8)).save(folder / "a.png")
    tifffile.imwrite(folder / "b.tif", rng.integers(0, 255, (36, 40, 3), np.uint8))
    (folder / "broken.tif").write_bytes(b"II*\x00 truncated")
    inputs = {p.name: p.read_bytes() for p in folder.iterdir()}
    viewer = make_napari_viewer()
    widget = _widget(viewer, make_bundle(tmp_path / "model"))
    widget.mode.value = MODES[2]
    widget.folder.value = folder
    widget.apply()
    wait_idle(widget, timeout=90_000)
    out = folder / "pcam_labels"
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "b_labels.tif"),
                                  load_bundle(tmp_path / "model").predict(tifffile.imread(folder / "b.tif")))
    assert "2 label file(s) written; 1 skipped: broken.tif" in widget.status.text(), widget.status.text()
    assert any("skipped 1 file(s): broken.tif" in n for n in notes), notes
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == inputs, "inputs untouched"
    widget.apply()  # the results are there now: refused before any work
    assert widget.worker is None and "already exist" in notes[-1]


@pytest.mark.gui
def test_by_default_every_image_layer_gives_label_files_only(tiny_layers, tmp_path, make_bundle, wait_idle):
    viewer, image, points = tiny_layers
    viewer.add_image(np.zeros((30, 34, 3), np.uint8), rgb=True, name="b")
    widget = _widget(viewer, make_bundle(tmp_path / "model"))
    widget.mode.value = MODES[1]
    widget.out.value = tmp_path / "labels"
    widget.apply()
    wait_idle(widget, timeout=90_000)
    assert widget.status.text() == "done; 2 label file(s) written", widget.status.text()
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["b_labels.tif", "tiny_labels.tif"]
    assert _results(viewer) == [], "no layers: napari's cost per new layer grows with the layers"
