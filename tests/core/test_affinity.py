"""Mining confident labels from CAMs for IRNet."""

import subprocess
import sys

import numpy as np
import pytest

from napari_pcam.core.config import AffinityConfig
from napari_pcam.core.data.cams import CamMaps
from napari_pcam.core.errors import ConfigError, DataError
from napari_pcam.core.stages.affinity import crf_available, mine_all, mine_labels


def _cams(maps, keys):
    maps = np.asarray(maps, np.float32)
    h, w = maps.shape[1:]
    low = np.zeros((len(keys), (h + 3) // 4, (w + 3) // 4), np.float32)
    return CamMaps(np.asarray(keys, np.int64), maps, low)


def test_thresholds():
    maps = np.zeros((2, 1, 5), np.float32)
    maps[0, 0] = [0.9, 0.2, 0.01, 0.0, 0.04]
    maps[1, 0] = [0.5, 0.6, 0.02, 0.06, 0.0]
    labels = mine_labels(_cams(maps, [2, 3]), AffinityConfig(fg_threshold=0.3, bg_threshold=0.05))
    assert labels.tolist() == [[2, 3, 0, 255, 0]]


def test_no_classes_is_all_background():
    labels = mine_labels(_cams(np.zeros((0, 4, 4)), []), AffinityConfig())
    assert labels.shape == (4, 4) and labels.max() == 0


def test_nan_cams_rejected():
    maps = np.full((1, 4, 4), np.nan, np.float32)
    with pytest.raises(DataError, match="NaN"):
        mine_labels(_cams(maps, [1]), AffinityConfig())


def test_crf_needs_image():
    with pytest.raises(DataError, match="image"):
        mine_labels(_cams(np.zeros((1, 8, 8)), [1]), AffinityConfig(crf=True))


def test_crf_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match="pip install pydensecrf2"):
        mine_labels(_cams(np.zeros((1, 8, 8)), [1]), AffinityConfig(crf=True), image)


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")
def test_crf_follows_the_image_edges():
    image = np.zeros((24, 24), np.uint16)
    image[:, 12:] = 1000  # a bright right half (a 16-bit grayscale image)
    maps = np.zeros((1, 24, 24), np.float32)
    maps[0, :, 10:] = 0.9  # the CAM spills two columns over the edge
    plain = mine_labels(_cams(maps, [1]), AffinityConfig())
    refined = mine_labels(_cams(maps, [1]), AffinityConfig(crf=True), image)
    assert set(np.unique(refined)) <= {0, 1, 255}
    assert (plain[:, 10:12] == 1).all()
    assert (refined[:, 10:12] != 1).mean() > 0.5  # the CRF moves the spill back to the edge
    assert (refined[:, 14:] == 1).all()


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")
def test_mine_all_in_worker_processes_gives_the_same_labels():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(3):
        image = (rng.random((20, 28, 3)) * 255).astype(np.uint8)
        items.append((_cams(rng.random((2, 20, 28)), [1, 3]), image))
    config = AffinityConfig(fg_threshold=0.5, bg_threshold=0.2, crf=True)
    here = [mine_labels(cam, config, img) for cam, img in items]
    there = list(mine_all(iter(items), config, workers=2))
    assert len(there) == 3
    for a, b in zip(here, there):
        np.testing.assert_array_equal(a, b)
    assert set(np.unique(np.concatenate([h.ravel() for h in here]))) == {0, 1, 3, 255}


def test_mine_all_checks_every_image_before_the_workers_see_it():
    items = [(_cams(np.zeros((1, 8, 8)), [1]), None)]
    with pytest.raises(DataError, match="needs the image"):
        list(mine_all(items, AffinityConfig(crf=True), workers=1))


def test_crf_module_does_not_import_torch():
    """The CRF worker processes import only numpy and pydensecrf, so they start fast."""
    code = "import sys, napari_pcam.core.crf, napari_pcam.core.processes; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")
def test_a_dead_crf_worker_is_a_clear_error(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from napari_pcam.core import crf
    from napari_pcam.core.errors import PcamError

    def broken(fn, jobs, workers):
        next(iter(jobs))
        raise BrokenProcessPool("a child process terminated abruptly")
        yield

    monkeypatch.setattr(crf, "process_map", broken)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(PcamError, match="crf_workers to 0"):
        list(mine_all([(_cams(np.zeros((1, 8, 8)), [1]), image)], AffinityConfig(crf=True), workers=1))
