"""`napari-pcam segment` with a trained bundle, and the chain / throughput benchmarks on tiny run_data."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pcam.benchmarks.chain import DEFAULT_ROWS, ROWS, benchmark_chain, markdown, run_row
from napari_pcam.cli import main
from napari_pcam.core.bundle import load_bundle
from napari_pcam.core.pipeline import RunData, run_pipeline
from napari_pcam.core.progress import drain


@pytest.fixture(scope="module")
def bundle_dir(run_data, tmp_path_factory, tiny_pipeline):
    out = tmp_path_factory.mktemp("run")
    drain(run_pipeline(run_data, tiny_pipeline, out, until="final"))
    return out / "model"


def _write(folder, images, gray=False):
    folder.mkdir()
    for name, img in zip(images.names, images.images):
        Image.fromarray(img.mean(2).astype(np.uint8) if gray else img).save(folder / name)


def test_segment_writes_the_bundles_predictions(bundle_dir, run_data, tmp_path):
    _write(tmp_path / "new", run_data.val_images)
    assert main(["segment", "--model", str(bundle_dir), "--images", str(tmp_path / "new"),
                 "--out", str(tmp_path / "labels"), "--device", "cpu", "--quiet"]) == 0
    bundle = load_bundle(bundle_dir)
    for name, img in zip(run_data.val_images.names, run_data.val_images.images):
        written = tifffile.imread(tmp_path / "labels" / name.replace(".png", ".tif"))
        np.testing.assert_array_equal(written, bundle.predict(img))


def test_segment_writes_a_stack_back_as_a_stack(bundle_dir, run_data, tmp_path):
    """Issue 15: one label TIFF per input file; a stack's labels are a Z x H x W stack named like it."""
    (tmp_path / "new").mkdir()
    slices = np.stack(run_data.val_images.images)  # Z x H x W x 3
    tifffile.imwrite(tmp_path / "new" / "stack.tif", slices, metadata={"axes": "ZYXS"})
    assert main(["segment", "--model", str(bundle_dir), "--images", str(tmp_path / "new"),
                 "--out", str(tmp_path / "labels"), "--device", "cpu", "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "labels").iterdir()] == ["stack.tif"]
    with tifffile.TiffFile(tmp_path / "labels" / "stack.tif") as tif:
        written, axes = tif.asarray(), tif.series[0].axes
    bundle = load_bundle(bundle_dir)
    assert axes == "ZYX" and written.shape == (len(slices), 64, 64)
    for z, img in enumerate(slices):
        np.testing.assert_array_equal(written[z], bundle.predict(img))


def test_segment_refuses_other_channel_count_and_overwrites(bundle_dir, run_data, tmp_path, capsys):
    _write(tmp_path / "gray", run_data.val_images, gray=True)
    args = ["segment", "--model", str(bundle_dir), "--images", str(tmp_path / "gray"), "--out", str(tmp_path / "o"),
            "--quiet"]
    assert main(args) == 2 and "expects 3-channel images" in capsys.readouterr().err
    _write(tmp_path / "rgb", run_data.val_images)
    args[4] = str(tmp_path / "rgb")
    assert main(args) == 0
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_segment_with_a_foreign_folder_as_model(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    args = ["segment", "--model", str(tmp_path), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "not a napari-pcam model bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_chain_benchmark_rows(run_data, tmp_path, tiny_pipeline):
    rows = drain(benchmark_chain(run_data, tiny_pipeline, tmp_path))
    assert [r["name"] for r in rows] == list(DEFAULT_ROWS)
    for r in rows:
        assert 0 <= r["train_miou"] <= 100 and 0 <= r["val_miou"] <= 100
        assert r["seconds"] > 0 and r["peak_mb"] > 50
    chain = rows[0]
    assert set(chain["stages"]) == set(chain["val_stages"]) == {"pcam", "refined", "final"}
    assert chain["val_stages"]["final"] == chain["val_miou"]
    table = markdown(rows)
    assert "| random forest |" in table and "final / fully supervised" in table
    assert "pcam chain by stage (train / val): pcam " in table
    assert "forest_labels" not in chain and "random forest agrees" not in table  # agree_with is off here


def test_the_chain_table_names_the_forests_labels_when_deeplab_learnt_where_it_agrees():
    row = {"name": "pcam chain", "train_miou": 82.9, "val_miou": 84.7, "seconds": 1603.0, "peak_mb": 2311.0,
           "stages": {"pcam": 39.72, "refined": 30.96, "final": 82.9}, "forest_labels": 79.28,
           "val_stages": {"pcam": 40.62, "refined": 31.11, "final": 84.7}}
    table = markdown([row])
    assert "pcam chain by stage (train / val): pcam 39.7 / 40.6 -> refined 31.0 / 31.1 -> final 82.9 / 84.7" in table
    assert "the forest's own labels of the training images: 79.3)" in table


def test_the_random_forest_crf_row_scores_the_forest_through_the_dense_crf(run_data, tmp_path, tiny_pipeline):
    pytest.importorskip("pydensecrf.densecrf")
    assert "random forest crf" in ROWS and "random forest crf" not in DEFAULT_ROWS  # asked for by --rows
    row = run_row("random forest crf", run_data, tiny_pipeline, tmp_path)
    assert row["name"] == "random forest crf" and 0 <= row["train_miou"] <= 100 and 0 <= row["val_miou"] <= 100


@pytest.mark.parametrize("name", ["fully supervised deeplab", "point-only deeplab"])
def test_the_deeplab_baselines_run_with_the_chains_click_terms_configured(run_data, tmp_path, tiny_pipeline, name):
    import dataclasses

    # the cpu preset's click_weight / click_override are the chain's: its baselines train on their own labels
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(
        tiny_pipeline.deeplab, click_weight=100.0, click_norm="labels", click_override=True))
    row = run_row(name, run_data, config, tmp_path)
    assert "error" not in row, row.get("error")
    assert row["name"] == name and 0 <= row["train_miou"] <= 100 and 0 <= row["val_miou"] <= 100


def test_chain_benchmark_needs_masks(run_data, tmp_path, tiny_pipeline):
    from napari_pcam.core.errors import DataError

    with pytest.raises(DataError, match="needs ground-truth masks"):
        drain(benchmark_chain(RunData(run_data.images, run_data.points), tiny_pipeline, tmp_path))


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_lite0"])
def test_throughput_benchmark_cli(tmp_path, capsys, encoder):
    assert main(["benchmark", "throughput", "--backbones", encoder, "--size", "64", "--batch", "2",
                 "--steps", "1", "--json", str(tmp_path / "t.json")]) == 0
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0]["backbone"] == encoder and rows[0]["pcam_images_per_s"] > 0 and rows[0]["overhead_ratio"] > 0
    assert f"| {encoder} |" in capsys.readouterr().out


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_lite0"])
def test_bare_throughput_model_is_the_library_s_own_at_stride_16(encoder):
    import torch

    from napari_pcam.benchmarks.throughput import bare_model
    from napari_pcam.core.models.encoders import Encoder

    bare = bare_model(encoder)
    assert not any(isinstance(m, Encoder) for m in bare.modules())
    assert bare(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    ours = sum(p.numel() for p in Encoder(name=encoder, weights="none").parameters())
    assert ours <= sum(p.numel() for p in bare.parameters()) <= ours * 1.01 + 4096


@pytest.mark.parametrize("name, crf_loss", [("point-only deeplab", 0.5), ("fully supervised deeplab", 0.0)])
def test_the_crf_loss_reaches_the_point_only_row_and_not_the_fully_supervised_one(run_data, tmp_path, tiny_pipeline,
                                                                                   monkeypatch, name, crf_loss):
    import dataclasses

    import napari_pcam.core.stages.segmentation as segmentation

    seen = []

    def record(images, labels, num_classes, config, **kwargs):
        seen.append(config)
        raise RuntimeError("recorded")

    monkeypatch.setattr(segmentation, "train_deeplab", record)
    config = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, crf_loss=0.5))
    with pytest.raises(RuntimeError, match="recorded"):
        run_row(name, run_data, config, tmp_path)
    assert seen[0].crf_loss == crf_loss and seen[0].click_weight == 0.0
