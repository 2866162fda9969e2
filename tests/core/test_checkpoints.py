import pytest
import torch

from napari_pcam.core.checkpoints import load_checkpoint, save_checkpoint
from napari_pcam.core.config import CamConfig
from napari_pcam.core.errors import CheckpointError
from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.stages.cam import TrainedCam

NAMES = ("background", "a", "b")


@pytest.fixture
def trained():
    torch.manual_seed(0)
    cfg = CamConfig(backbone="resnet18", weights="none")
    return TrainedCam(CamNet(backbone="resnet18", weights="none", num_classes=2).eval(), cfg, NAMES)


def test_round_trip_gives_identical_outputs(tmp_path, trained):
    trained.save(tmp_path / "m.pt")
    loaded = TrainedCam.load(tmp_path / "m.pt", NAMES)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(trained.model.cams(x), loaded.model.eval().cams(x))
    assert loaded.config == trained.config and loaded.class_names == NAMES


def test_checkpoint_is_plain_data(tmp_path, trained):
    trained.save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert data["format_version"] == 1 and data["kind"] == "pcam" and data["config"]["backbone"] == "resnet18"


def test_other_classes_are_rejected(tmp_path, trained):
    trained.save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="trained for classes"):
        TrainedCam.load(tmp_path / "m.pt", ("background", "x", "y"))


def test_other_format_version_is_rejected(tmp_path):
    save_checkpoint(tmp_path / "m.pt", kind="pcam", config={}, class_names=NAMES, in_channels=3, state_dict={})
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "m.pt", kind="pcam")


def test_wrong_kind_is_rejected(tmp_path):
    save_checkpoint(tmp_path / "m.pt", kind="irn", config={}, class_names=NAMES, in_channels=3, state_dict={})
    with pytest.raises(CheckpointError, match="holds a 'irn' model"):
        load_checkpoint(tmp_path / "m.pt", kind="pcam")


def test_corrupt_file_is_rejected(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "m.pt", kind="pcam")


def test_write_is_atomic(tmp_path, trained, monkeypatch):
    path = tmp_path / "m.pt"
    trained.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        trained.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_place_file_links_or_copies_atomically(tmp_path, monkeypatch):
    import os

    from napari_pcam.core.io import atomic_write_text, place_file

    source = tmp_path / "a.pt"
    source.write_text("one")
    assert place_file(source, tmp_path / "b.pt") is True
    assert (tmp_path / "b.pt").samefile(source)
    atomic_write_text(source, "two")  # replacing one name leaves the other with the old contents
    assert (tmp_path / "b.pt").read_text() == "one"

    def no_links(*_):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_links)
    assert place_file(source, tmp_path / "b.pt") is False
    assert (tmp_path / "b.pt").read_text() == "two" and not (tmp_path / "b.pt").samefile(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"], "no temporary file left"
