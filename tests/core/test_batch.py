"""Many images -> label TIFFs: planned and checked first, written atomically, bad files skipped and listed."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pcam.core.batch import BatchReport, check_targets, label_path, segment_folder
from napari_pcam.core.errors import DataError
from napari_pcam.core.progress import drain
from progress_records import records_and_result


def _threshold(image: np.ndarray) -> np.ndarray:
    """A stand-in model: 3-channel images only, labels 1 where the red channel is bright."""
    if image.shape[2] != 3:
        raise DataError(f"the model expects 3-channel images, this one has {image.shape[2]}.")
    return (image[..., 0] > 127).astype(np.uint8)


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.tif"):
        img = rng.integers(0, 255, (20, 24, 3), np.uint8)
        Image.fromarray(img).save(folder / name) if name.endswith(".png") else tifffile.imwrite(folder / name, img)
    (folder / "broken.png").write_bytes(b"not a png")
    tifffile.imwrite(folder / "gray.tif", rng.integers(0, 255, (20, 24), np.uint8))
    return folder


def test_every_readable_image_gets_a_label_file_and_bad_ones_are_listed(tmp_path):
    folder = _folder(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    records, report = records_and_result(segment_folder(folder, _threshold))
    out = folder / "pcam_labels"
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    expected = _threshold(np.asarray(Image.open(folder / "a.png")))
    np.testing.assert_array_equal(tifffile.imread(out / "a_labels.tif"), expected)
    assert [name for name, _ in report.skipped] == ["broken.png", "gray.tif"]
    assert "cannot read image" in dict(report.skipped)["broken.png"]
    assert "3-channel" in dict(report.skipped)["gray.tif"]
    assert "broken.png" in report.summary() and "2 label file(s) written" in report.summary()
    assert [(r.step, r.total) for r in records] == [(i, 4) for i in range(1, 5)]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before, "inputs untouched"


def test_existing_results_are_refused_before_any_work_unless_overwrite(tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_labels.tif").write_bytes(b"earlier result")
    calls = []
    with pytest.raises(DataError, match="already exist.*tick 'overwrite'"):
        drain(segment_folder(folder, lambda img: calls.append(1) or _threshold(img), out))
    assert calls == [] and (out / "b_labels.tif").read_bytes() == b"earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["b_labels.tif"]
    report = drain(segment_folder(folder, _threshold, out, overwrite=True))
    assert isinstance(report, BatchReport) and len(report.written) == 2
    assert tifffile.imread(out / "b_labels.tif").shape == (20, 24)


def test_an_output_that_would_replace_an_input_is_refused_even_with_overwrite(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    tifffile.imwrite(folder / "x_labels.tif", np.zeros((8, 8, 3), np.uint8))
    tifffile.imwrite(folder / "x.tif", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="would replace an input image"):
        drain(segment_folder(folder, _threshold, folder, overwrite=True))
    assert tifffile.imread(folder / "x_labels.tif").shape == (8, 8, 3)


def test_label_paths_of_layer_names_are_safe_and_distinct_names_are_checked(tmp_path):
    assert label_path(tmp_path, "cells 1/2").name == "cells_1_2_labels.tif"
    assert label_path(tmp_path, "scan.tiff").name == "scan_labels.tif"
    with pytest.raises(DataError, match="same label file"):
        check_targets([label_path(tmp_path, "a b"), label_path(tmp_path, "a_b")])
