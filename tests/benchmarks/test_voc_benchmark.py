"""``napari-pcam benchmark voc`` end to end on a generated VOC-format tree (smoke preset, CPU)."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_pcam.benchmarks.voc import parse_only, plan
from napari_pcam.cli import main
from napari_pcam.core.data.voc import VOC_CLASSES
from napari_pcam.core.errors import DataError
from voc_fake import make_voc_tree


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    # 6 classes: the other 14 VOC classes have no click at all, as on a --max-images subset of real VOC.
    return make_voc_tree(tmp_path_factory.mktemp("voc"), n_per_class=1, n_classes=6, size=(48, 64), seed=1)


def _args(fake, out, *extra):
    return ["benchmark", "voc", "--voc-root", str(fake.voc_root), "--sbd-root", str(fake.sbd_root),
            "--points", str(fake.clicks_json), "--out", str(out), "--preset", "smoke", "--device", "cpu",
            "--quiet", *extra]


@pytest.mark.slow
def test_smoke_run_writes_every_table_and_resumes(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "bench"
    assert main(_args(fake, out)) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {(r["table"], r["row"]): r for r in report["rows"]}
    assert set(rows) == {
        ("table1", "CAM"), ("table1", "PCAM"), ("table1", "PCAM-F"), ("table2", "refined CAM"),
        ("table2", "refined PCAM"), ("table3", "PCAM -> IRNet -> DeepLabv3+ (final)"),
        ("table3", "fully supervised DeepLabv3+"), ("table4", "PCAM -> IRNet -> DeepLabv3+ (final)"),
        ("table4", "fully supervised DeepLabv3+"),
    }
    for r in report["rows"]:  # every measured cell is a percentage; table 1/2 have train and val
        splits = {"train", "val"} if r["table"] in ("table1", "table2") else {"val"}
        assert set(r["ours"]) == splits
        assert all(0.0 <= v <= 100.0 for v in r["ours"].values()), r
    assert rows[("table1", "CAM")]["paper"] == {"train": None, "val": 46.0}
    assert rows[("table1", "PCAM")]["paper"]["val"] == 54.4
    assert rows[("table1", "PCAM-F")]["paper"]["val"] is None
    assert rows[("table2", "refined PCAM")]["paper"]["val"] == 68.5
    assert rows[("table3", "PCAM -> IRNet -> DeepLabv3+ (final)")]["paper"]["val"] == 70.5
    assert rows[("table3", "fully supervised DeepLabv3+")]["paper"]["val"] == 78.9
    per_class = rows[("table4", "fully supervised DeepLabv3+")]["per_class"]
    assert list(per_class["ours"]) == list(VOC_CLASSES) and per_class["ours"]["background"] is not None
    assert per_class["ours"]["tvmonitor"] is None  # class absent from the 6-class tree: no IoU, not 0
    meta = report["metadata"]
    assert meta["images"] == {"train": 6, "val": 6} and meta["seed"] == 0
    assert meta["weights"] == {"cam": "none", "irn": "same", "deeplab": "none"}
    assert meta["clicks"]["1point"]["clicks"] >= 6 and "clipped" in meta["clicks"]["1point"]
    assert "tvmonitor" in meta["classes_without_train_points"]
    assert {"pcam", "cams", "irn", "refined", "deeplab", "val_cams"} <= set(meta["speed"]["pcam"])
    assert meta["speed"]["fully_supervised"]["deeplab"]["images_per_s"] > 0
    md = (out / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4"):
        assert f"## {title}" in md
    cam = rows[("table1", "CAM")]["ours"]
    assert f"| CAM | {cam['train']:.1f} (?) | {cam['val']:.1f} (46.0) |" in md
    # Rerun: every stage comes from the cache and the tables are identical.
    manifest = json.loads((out / "pcam" / "run.json").read_text())
    assert main(_args(fake, out)) == 0
    assert json.loads((out / "report.json").read_text())["rows"] == report["rows"]
    assert json.loads((out / "pcam" / "run.json").read_text())["stages"] == manifest["stages"]


def test_only_table1_runs_only_its_experiments(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "t1"
    assert main(_args(fake, out, "--only", "table1", "--max-images", "3")) == 0
    report = json.loads((out / "report.json").read_text())
    assert {r["table"] for r in report["rows"]} == {"table1"}
    assert report["metadata"]["images"] == {"train": 3, "val": 3}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cam", "pcam", "pcam_f"]
    stages = json.loads((out / "pcam" / "run.json").read_text())["stages"]
    assert "irn" not in stages and "cams" in stages and "val_cams" in stages
    assert "## Table 2" not in (out / "report.md").read_text()


def test_plan_and_only_parsing():
    assert parse_only(None) == {"table1", "table2", "table3"}
    assert parse_only("table4") == {"table3"}
    with pytest.raises(DataError, match="table9"):
        parse_only("table1,table9")
    p = plan({"table2"}, with_supp=False)
    assert p == {"cam": {"until": "refined", "val": ["val_cams", "val_refined"]},
                 "pcam": {"until": "refined", "val": ["val_cams", "val_refined"]}}
    assert plan({"table1", "table3"}, with_supp=True)["pcam"]["until"] == "final"
    assert "pcam_3annotators" in plan({"table1"}, with_supp=True)


def test_missing_folders_and_files_are_named(fake, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(fake.voc_root / "VOCdevkit", broken / "VOCdevkit")
    shutil.rmtree(broken / "VOCdevkit" / "VOC2012" / "Annotations")
    args = _args(fake, tmp_path / "o1")
    args[args.index("--voc-root") + 1] = str(broken)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Annotations" in err and str(broken / "VOCdevkit" / "VOC2012") in err and "Traceback" not in err
    args = _args(fake, tmp_path / "o2")
    args[args.index("--points") + 1] = str(tmp_path / "nope.json")
    assert main(args) == 2
    assert "nope.json" in capsys.readouterr().err
    args = _args(fake, tmp_path / "o3")
    args[args.index("--sbd-root") + 1] = str(tmp_path / "no_sbd")
    assert main(args) == 2
    assert "no_sbd" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_class_validation_is_relaxed_only_for_the_benchmark_points():
    import numpy as np

    from napari_pcam.benchmarks.voc import SubsetPoints
    from napari_pcam.core.data.points import PointAnnotations

    args = (np.array([0]), np.array([[3.0, 4.0]]), np.array([1]), ("background", "cat", "dog"))
    with pytest.raises(DataError, match="'dog'"):  # a user's own data: the default keeps the error
        PointAnnotations(*args).validate([(8, 8)])
    PointAnnotations(*args).validate([(8, 8)], require_all_classes=False)
    SubsetPoints(*args).validate([(8, 8)])
    with pytest.raises(DataError, match="no foreground point"):  # still an error on a VOC subset
        SubsetPoints(np.array([0]), np.array([[3.0, 4.0]]), np.array([0]), args[3]).validate([(8, 8)])


@pytest.mark.slow
def test_torchrun_with_two_processes_gives_the_same_tables(fake, tmp_path):
    """The real torchrun, 2 CPU processes with gloo: same rows and cells as one process, report from rank 0."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(fake, one)) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "napari_pcam", *_args(fake, two)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # only rank 0 prints
    a, b = (json.loads((p / "report.json").read_text()) for p in (one, two))
    assert b["metadata"]["processes"] == 2 and a["metadata"]["processes"] == 1
    assert [(r["table"], r["row"], sorted(r["ours"])) for r in a["rows"]] == \
           [(r["table"], r["row"], sorted(r["ours"])) for r in b["rows"]]
    for ra, rb in zip(a["rows"], b["rows"]):
        for split, v in ra["ours"].items():  # a few optimiser steps from scratch: same ballpark, not equal
            assert 0 <= rb["ours"][split] <= 100 and abs(rb["ours"][split] - v) < 25, (ra, rb)
    for exp in ("pcam", "cam"):  # every per-image result exists once, whichever rank made it
        run = two / exp
        assert len(list((run / "cams").glob("*.npz"))) == 6 and len(list((run / "val_cams").glob("*.npz"))) == 6
        assert not list(run.rglob("*.tmp"))


def test_other_subcommands_refuse_torchrun(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["segment", "--model", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "only 'run' and 'benchmark voc' run under torchrun" in capsys.readouterr().err
