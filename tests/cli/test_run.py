"""End-to-end CLI runs on tiny synthetic data (small backbone, few steps)."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pcam.cli import main
from napari_pcam.core.data.points import write_points_csv
from napari_pcam.core.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data = make_synthetic(3, 64, seed=5)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for name, img, mask in zip(data.images.names, data.images.images, data.masks):
        Image.fromarray(img).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)
    write_points_csv(root / "points.csv", data.points, data.images.names)
    cfg = root / "tiny.toml"
    cfg.write_text(
        "[cam]\nbackbone = 'resnet18'\nweights = 'none'\ncrop_size = 64\nbatch_size = 2\nepochs = 1\n"
        "[cam_inference]\nscales = [1.0, 0.5]\n"
    )
    return root


def run(folder, out, *extra):
    return main(["run", "--images", str(folder / "images"), "--points", str(folder / "points.csv"),
                 "--masks", str(folder / "masks"), "--out", str(out), "--config", str(folder / "tiny.toml"),
                 "--until", "cams", "--quiet", *extra])


def test_run_writes_maps_labels_checkpoint_and_metrics(folder, tmp_path):
    out = tmp_path / "out"
    assert run(folder, out) == 0
    maps = tifffile.imread(out / "pcam" / "sample_000.tif")
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32 and maps.max() <= 1.0
    labels = tifffile.imread(out / "pcam_labels" / "sample_000.tif")
    assert labels.shape == (64, 64) and labels.max() <= 3
    assert (out / "models" / "pcam.pt").is_file() and (out / "config.toml").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["train"]["pcam"] <= 100
    assert set(metrics["per_class"]["train"]["pcam"]) == {"background", "cell", "fiber", "crystal"}
    manifest = json.loads((out / "run.json").read_text())
    assert {"pcam", "cams"} <= set(manifest["stages"]) and "torch" in manifest["versions"]


def test_rerun_resumes_and_changed_config_needs_force(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(folder, out) == 0
    stamp = (out / "models" / "pcam.pt").stat().st_mtime_ns
    assert run(folder, out) == 0
    assert (out / "models" / "pcam.pt").stat().st_mtime_ns == stamp  # cached, not retrained
    assert run(folder, out, "--alpha", "0") == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "models" / "pcam.pt").stat().st_mtime_ns == stamp
    assert run(folder, out, "--alpha", "0", "--force") == 0
    assert (out / "models" / "pcam.pt").stat().st_mtime_ns != stamp


def test_foreign_output_folder_is_not_touched(folder, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert run(folder, out) == 2
    assert "not made by napari-pcam" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "csv, message",
    [
        ("image,y,x,class\nsample_000.png,100,5,1\n", "lies outside image"),
        ("image,y,x,class\nnope.png,1,5,1\n", "not in the image folder"),
        ("image,y,x,class\nsample_000.png,1,5,0\n", "no foreground point"),
    ],
)
def test_bad_points_give_one_clear_line(folder, tmp_path, capsys, csv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(csv)
    code = main(["run", "--images", str(folder / "images"), "--points", str(bad), "--out", str(tmp_path / "o"),
                 "--config", str(folder / "tiny.toml"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_declared_class_without_points(folder, tmp_path, capsys):
    code = main(["run", "--images", str(folder / "images"), "--points", str(folder / "points.csv"),
                 "--classes", "background,cell,fiber,crystal,virus", "--out", str(tmp_path / "o"),
                 "--config", str(folder / "tiny.toml"), "--quiet"])
    assert code == 2 and "'virus' have no points" in capsys.readouterr().err


def test_config_out_of_range(folder, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cam]\nalpha = -2\n")
    code = main(["run", "--sample", "--out", str(tmp_path / "o"), "--config", str(bad)])
    assert code == 2 and "cam.alpha=-2" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    for cmd in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(cmd)
        assert exc.value.code == 0
    assert "--until" in capsys.readouterr().out


def test_too_few_clicks_to_calibrate_are_reported_in_the_table(folder, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="too few clicks to calibrate"):
        assert run(folder, out, "--calibrate") == 0
    text = capsys.readouterr().out
    assert "calibration: too few clicks to calibrate" in text
    assert json.loads((out / "run.json").read_text())["calibration"]["held_out_clicks"] == 0


def test_the_table_lists_each_chosen_threshold_with_its_click_scores():
    from napari_pcam.cli.run import calibration_lines

    record = {"held_out_clicks": 40, "training_clicks": 160,
              "cam_inference.bg_threshold": {"value": 0.45, "configured": 0.3, "score": 81.25,
                                             "configured_score": 70.0},
              "affinity.bg_threshold": {"value": 0.1, "configured": 0.05, "score": 95.0, "configured_score": None,
                                        "coverage": 30.0}}
    lines = calibration_lines(record)
    assert "40 held-out clicks" in lines[0]
    assert "cam_inference.bg_threshold" in lines[1] and "0.45 (0.30)" in lines[1] and "81.2 (70.0)" in lines[1]
    assert "95.0 (-)" in lines[2] and "covers 30% of its clicks" in lines[2]
    record["deeplab.train_on"] = {"value": "pcam", "configured": "best", "pcam_score": 84.16, "refined_score": 65.0}
    assert "pcam (best)   pcam 84.2, refined 65.0" in calibration_lines(record)[3]
    assert calibration_lines(None) == []


def test_the_table_gives_the_final_crf_decision_with_its_click_scores():
    from napari_pcam.cli.run import calibration_lines

    crf = {"value": False, "configured": True, "crf_score": 32.24, "plain_score": 96.53,
           "problems": ["deeplab.crf: click accuracy 32.2% is far below DeepLabv3+'s 96.5%."]}
    want = ["final dense CRF (deeplab.crf_check): off; training click score 32.2 with it, 96.5 without",
            "  deeplab.crf: click accuracy 32.2% is far below DeepLabv3+'s 96.5%."]
    assert calibration_lines({"deeplab.crf": crf}) == want  # calibration off: the decision alone
    fallback = calibration_lines({"held_out_clicks": 0, "fallback": "too few clicks", "deeplab.crf": crf})
    assert fallback == ["calibration: too few clicks", *want]
    record = {"held_out_clicks": 40, "training_clicks": 160, "deeplab.crf": dict(crf, value=True, problems=[]),
              "cam_inference.bg_threshold": {"value": 0.45, "configured": 0.3, "score": 81.25,
                                             "configured_score": 70.0}}
    lines = calibration_lines(record)
    assert len(lines) == 3 and "0.45 (0.30)" in lines[1] and lines[2].startswith(
        "final dense CRF (deeplab.crf_check): on;")
