"""The ``refine`` and ``benchmark random-walk`` subcommands on tiny inputs (parsers built locally)."""

import argparse
import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from napari_pcam.cli.benchmark_random_walk import add_benchmark_parser
from napari_pcam.cli.refine import add_parser
from napari_pcam.core.data.cams import CamMaps
from napari_pcam.core.data.synthetic import make_synthetic
from napari_pcam.core.errors import MissingStageError


def parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    bench = sub.add_parser("benchmark").add_subparsers(dest="which")
    add_benchmark_parser(bench)
    return parser.parse_args(argv)


@pytest.fixture
def folder(tmp_path):
    data = make_synthetic(2, 64, seed=7)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, img, mask in zip(data.images.names, data.images.images, data.masks):
        Image.fromarray(img).save(tmp_path / "images" / name)
        Image.fromarray(mask).save(tmp_path / "masks" / name)
    (tmp_path / "tiny.toml").write_text(
        "[irn]\nbackbone = 'resnet18'\nweights = 'none'\nradius = 5\ncrop_size = 48\nbatch_size = 2\nepochs = 1\n"
        "displacement = false\n[random_walk]\nexp_times = 3\n"
    )
    return tmp_path, data


def test_refine_without_cams_names_the_step_to_run(folder):
    root, _ = folder
    args = parse(["refine", "--images", str(root / "images"), "--out", str(root / "out")])
    with pytest.raises(MissingStageError, match="napari-pcam run .* --until cams"):
        args.func(args)


def test_refine_writes_labels_checkpoint_and_metrics(folder):
    root, data = folder
    for name, mask in zip(data.images.names, data.masks):
        keys = np.unique(mask[mask > 0]).astype(np.int64)
        high = np.stack([ndimage.gaussian_filter((mask == k).astype(np.float32), 2) for k in keys])
        high /= high.max(axis=(1, 2), keepdims=True)
        CamMaps(keys, high, high[:, ::4, ::4].copy()).save(root / "out" / "cams" / f"{name.rsplit('.', 1)[0]}.npz")
    args = parse(["refine", "--images", str(root / "images"), "--masks", str(root / "masks"), "--out",
                  str(root / "out"), "--config", str(root / "tiny.toml"), "--irn-steps", "2", "--quiet"])
    assert args.func(args) == 0
    labels = tifffile.imread(root / "out" / "refined" / data.images.names[0].replace(".png", ".tif"))
    assert labels.shape == (64, 64) and labels.dtype == np.uint8
    assert (root / "out" / "models" / "irn.pt").is_file()
    metrics = json.loads((root / "out" / "refine_metrics.json").read_text())
    assert np.isfinite(metrics["pcam"]["miou"]) and np.isfinite(metrics["refined"]["miou"])


@pytest.mark.slow  # two fresh Python processes that import torch
def test_benchmark_random_walk_json(tmp_path):
    out = tmp_path / "bench.json"
    args = parse(["benchmark", "random-walk", "--height", "6", "--width", "7", "--classes", "3", "--json", str(out)])
    assert args.func(args) == 0
    result = json.loads(out.read_text())
    assert {"speedup", "max_abs_diff", "peak_mb_ours", "peak_mb_dense"} <= set(result)
    assert result["max_abs_diff"] < 1e-4 and result["same_labels"]
