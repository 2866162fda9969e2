"""The bad-input sweep of issue 15: a new user's mistakes through the CLI.

Every case must end with exit code 2 and one clear ``napari-pcam: error: ...`` line that names the
problem, never a traceback, and must leave the user's files exactly as they were (and create no output
folder that did not exist). Each case builds its bad input from a good folder (3 images, masks, points,
a tiny config) copied into the test's own folder. Read-only cases run as an ordinary user even as root.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pcam.cli import main
from napari_pcam.core.data.points import write_points_csv
from napari_pcam.core.data.synthetic import make_synthetic

TINY = ("[cam]\nbackbone = 'resnet18'\nweights = 'none'\ncrop_size = 64\nbatch_size = 2\nepochs = 1\n"
        "[cam_inference]\nscales = [1.0]\nflip = false\n")
HEADER = "image,y,x,class\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    data = make_synthetic(3, 64, seed=5)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for name, img, mask in zip(data.images.names, data.images.images, data.masks):
        Image.fromarray(img).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)
    write_points_csv(root / "points.csv", data.points, data.images.names)
    (root / "tiny.toml").write_text(TINY)
    return root


class Case:
    """One bad input: ``build(d)`` changes the copied folder ``d`` and returns the extra/replaced arguments."""

    def __init__(self, build, message, *, command="run", as_user=False, argparse_error=False):
        self.build, self.message, self.command = build, message, command
        self.as_user, self.argparse_error = as_user, argparse_error


def _csv(text):
    def build(d):
        (d / "bad.csv").write_text(text)
        return {"--points": d / "bad.csv"}
    return build


def _tif(name, data, **kw):
    def build(d):
        _write_tif(d / "images" / name, data, **kw)
        return {}
    return build


def _write_tif(path, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, data, **kw)


def _stack_only(csv, *options):
    """Images = one 3-slice stack (Z x H x W x 3, no axes metadata); the given points CSV."""
    def build(d):
        imgs = [np.asarray(Image.open(p)) for p in sorted((d / "images").iterdir())]
        shutil.rmtree(d / "images")
        (d / "images").mkdir()
        _write_tif(d / "images" / "cells.tif", np.stack(imgs))
        (d / "bad.csv").write_text(csv)
        return {"--points": d / "bad.csv", "--masks": None, **dict(zip(options[::2], options[1::2]))}
    return build


def _replace_image(name, array):
    def build(d):
        Image.fromarray(array).save(d / "images" / name)
        return {}
    return build


def _mask(name, array):
    def build(d):
        Image.fromarray(array).save(d / "masks" / name)
        return {}
    return build


def _file(relative, content=b"x"):
    def build(d):
        (d / relative).parent.mkdir(parents=True, exist_ok=True)
        (d / relative).write_bytes(content)
        return {}
    return build


def _out(path_of):
    def build(d):
        return {"--out": path_of(d)}
    return build


def _read_only_out(inside):
    def build(d):
        ro = d / "ro"
        ro.mkdir()
        (ro / "keep.txt").write_text("mine") if not inside else None
        ro.chmod(0o555)
        return {"--out": ro / "out" if inside else ro, "--force": True}
    return build


def _args(extra):
    def build(d):
        return dict(extra)
    return build


def _foreign(d):
    (d / "out").mkdir()
    (d / "out" / "notes.txt").write_text("precious")
    return {}


def _val_gray(d):
    (d / "val").mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(d / "val" / "v.png")
    (d / "val_masks").mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(d / "val_masks" / "v.png")
    return {"--val-images": d / "val", "--val-masks": d / "val_masks"}


GOOD_ROW = "sample_000.png,10,10,cell\n"
RGB = np.zeros((64, 64, 3), np.uint8)

CASES = {
    # points CSV
    "points file missing": Case(_args({"--points": "nope.csv"}), "points file 'nope.csv' does not exist"),
    "points file empty": Case(_csv(""), "holds no points"),
    "points header only": Case(_csv(HEADER), "holds no points"),
    "points without class column": Case(_csv("image,y,x\nsample_000.png,1,2\n"), "has no 'class' column"),
    "points without image or axis columns": Case(_csv("y,x,class\n1,2,cell\n"), "needs columns image,y,x,class"),
    "points without y column": Case(_csv("image,x,class\nsample_000.png,2,cell\n"), "line 2: there is no 'y' column"),
    "y not a number": Case(_csv(HEADER + "sample_000.png,up,2,cell\n"), "line 2: y='up' is not a number"),
    "y is nan": Case(_csv(HEADER + "sample_000.png,nan,2,cell\n"), "line 2: y='nan' is not a finite number"),
    "x is inf": Case(_csv(HEADER + "sample_000.png,2,inf,cell\n"), "line 2: x='inf' is not a finite number"),
    "point outside its image": Case(_csv(HEADER + "sample_000.png,100,5,cell\n"), "lies outside image"),
    "image not in the folder": Case(_csv(HEADER + "nope.png,1,5,cell\n"),
                                    "line 2: image 'nope.png' is not in the image folder"),
    "class name not declared": Case(
        lambda d: {**_csv(HEADER + "sample_000.png,1,5,dog\n")(d), "--classes": "background,cell,fiber,crystal"},
        "'dog' are not declared"),
    "class inf (issue 15)": Case(_csv(HEADER + GOOD_ROW + "sample_001.png,1,5,inf\n"),
                                 "line 3: class 'inf' is not a class id"),
    "class 1.5 (issue 15)": Case(_csv(HEADER + "sample_000.png,1,5,1\nsample_001.png,1,5,1.5\nsample_002.png,1,5,2\n"),
                                 "line 3: class '1.5' is not a class id"),
    "class nan": Case(_csv(HEADER + "sample_000.png,1,5,nan\n"), "line 2: class 'nan' is not a class id"),
    "class -1": Case(_csv(HEADER + "sample_000.png,1,5,-1\n"), "line 2: class '-1' is not a class id"),
    "class empty": Case(_csv(HEADER + "sample_000.png,1,5,\n"), "line 2: the class is empty"),
    "short row (issue 15)": Case(_csv(HEADER + GOOD_ROW + "sample_001.png,1,5\n"),
                                 "line 3: 3 fields, but the header has 4"),
    "long row": Case(_csv(HEADER + "sample_000.png,1,5,cell,extra\n"), "line 2: 5 fields, but the header has 4"),
    "only background points": Case(_csv(HEADER + "sample_000.png,1,5,0\n"), "no foreground point"),
    "declared class without points": Case(_args({"--classes": "background,cell,fiber,crystal,virus"}),
                                          "'virus' have no points"),
    "class id beyond the declared classes": Case(
        lambda d: {**_csv(HEADER + "sample_000.png,1,5,7\n")(d), "--classes": "background,cell"},
        "line 2: class '7' is not declared"),
    "points file not UTF-8": Case(
        lambda d: {**_csv("")(d), **_file("bad.csv", b"image,y,x,class\n\xff\xfe,1,2,3\n")(d)},
        "not a readable CSV file"),
    "points file is a folder": Case(lambda d: (d / "pts").mkdir() or {"--points": d / "pts"}, "is a folder, not a CSV"),
    # images
    "images folder missing": Case(_args({"--images": "nope", "--masks": None}), "image folder 'nope' does not exist"),
    "images folder empty": Case(lambda d: (d / "empty").mkdir() or {"--images": d / "empty", "--masks": None},
                                "holds no images"),
    "images folder is a file": Case(lambda d: {"--images": d / "points.csv", "--masks": None},
                                    "is a file, not a folder"),
    "corrupt image": Case(_file("images/sample_000.png", b"not a png"), "cannot read image"),
    "image too small": Case(_replace_image("sample_001.png", np.zeros((8, 8, 3), np.uint8)), "at least 16 x 16"),
    "mixed channel counts": Case(_replace_image("sample_001.png", np.zeros((64, 64), np.uint8)),
                                 "different channel counts"),
    "two images share a stem": Case(_tif("sample_000.tif", RGB), "two images share a file name stem"),
    "5D TIFF": Case(_tif("t.tif", np.zeros((2, 3, 64, 64), np.uint8), metadata={"axes": "TZYX"}),
                    "'t.tif' has axes TZYX (shape (2, 3, 64, 64)): more than one slice axis"),
    "4D TIFF without metadata": Case(_tif("t.tif", np.zeros((5, 6, 64, 64), np.uint8)),
                                     "pass --stack-axis and --channel-axis"),
    "stack addressed without z (issue 15)": Case(_stack_only("image,y,x,class\ncells.tif,5,5,cell\n"),
                                                 "'cells.tif' is a stack of 3 slices; add a z column"),
    "z out of range": Case(_stack_only("image,z,y,x,class\ncells.tif,3,5,5,cell\n"), "line 2: z=3 does not exist"),
    "z not a whole number": Case(_stack_only("image,z,y,x,class\ncells.tif,0.5,5,5,cell\n"),
                                 "line 2: z='0.5' is not a whole number"),
    "point outside a slice": Case(_stack_only("image,z,y,x,class\ncells.tif,1,500,5,cell\n"),
                                  "lies outside image 'cells_z001.tif'"),
    "--channel-axis out of range": Case(_stack_only("image,z,y,x,class\ncells.tif,1,5,5,cell\n", "--channel-axis", "7"),
                                        "--channel-axis 7 does not exist"),
    "--stack-axis = --channel-axis": Case(
        _stack_only("image,z,y,x,class\ncells.tif,1,5,5,cell\n", "--channel-axis", "0", "--stack-axis", "0"),
        "name the same axis"),
    "slice name taken by a file": Case(
        lambda d: {**_stack_only("image,z,y,x,class\ncells.tif,1,5,5,cell\n")(d),
                   **_tif("cells_z001.tif", RGB)(d)}, "image name 'cells_z001.tif' is taken twice"),
    # masks
    "masks folder missing": Case(_args({"--masks": "nope"}), "mask folder 'nope' does not exist"),
    "mask missing for an image": Case(lambda d: (d / "masks" / "sample_001.png").unlink() or {},
                                      "no mask for image 'sample_001.png'"),
    "mask in colour": Case(_mask("sample_001.png", RGB), "has several channels"),
    "mask of another size": Case(_mask("sample_001.png", np.zeros((32, 32), np.uint8)),
                                 "mask of 'sample_001.png' is (32, 32)"),
    "mask values beyond the classes": Case(_mask("sample_001.png", np.full((64, 64), 9, np.uint8)), "holds values [9]"),
    "mask stack with other slice count": Case(
        lambda d: {**_stack_only("image,z,y,x,class\ncells.tif,1,5,5,cell\n")(d), "--masks": _mask_stack(d, 2)},
        "has 2 slices, image 'cells.tif' has 3"),
    # held-out data
    "--val-masks without --val-images": Case(_args({"--val-masks": "masks"}), "--val-masks needs --val-images"),
    "--val-images without --val-masks": Case(lambda d: {"--val-images": d / "images"}, "without masks"),
    "held-out images with other channels": Case(_val_gray, "held-out images have 1 channels"),
    # settings and options
    "config file missing": Case(_args({"--config": "nope.toml"}), "config file 'nope.toml' does not exist"),
    "config not TOML": Case(lambda d: (d / "tiny.toml").write_text("[cam\n") and {}, "is not valid TOML"),
    "config value out of range": Case(lambda d: (d / "tiny.toml").write_text("[cam]\nalpha = -2\n") and {},
                                      "cam.alpha=-2"),
    "config key unknown": Case(lambda d: (d / "tiny.toml").write_text("[cam]\nalpha_typo = 1\n") and {}, "alpha_typo"),
    "--sample-variant without --sample": Case(_args({"--sample-variant": "grayscale"}),
                                              "--sample-variant needs --sample"),
    "no --images": Case(_args({"--images": None, "--masks": None}), "pass --images"),
    "no --points": Case(_args({"--points": None}), "pass --points"),
    "--until not a stage": Case(_args({"--until": "everything"}), "invalid choice: 'everything'", argparse_error=True),
    "--stack-axis not a number": Case(_args({"--stack-axis": "z"}), "invalid int value: 'z'", argparse_error=True),
    # output folder
    "output is a file": Case(lambda d: {"--out": d / "points.csv"}, "is not a folder"),
    "output under a file": Case(_out(lambda d: d / "points.csv" / "out"), "which is a file, not a folder"),
    "output folder not made by napari-pcam": Case(_foreign, "not made by napari-pcam"),
    "output folder read-only (issue 15)": Case(_read_only_out(False), "cannot write into the output folder",
                                               as_user=True),
    "output parent read-only (issue 15)": Case(_read_only_out(True), "is not writable", as_user=True),
    "output in /proc": Case(_out(lambda d: Path("/proc/napari-pcam-out")), "cannot write into the output folder"),
    # the other subcommands
    "segment: model missing": Case(lambda d: {}, "is not a napari-pcam model bundle", command="segment"),
    "segment: output under a file": Case(_out(lambda d: d / "points.csv" / "labels"), "which is a file",
                                         command="segment"),
    "segment: output read-only": Case(_read_only_out(False), "cannot write into the output folder", command="segment",
                                      as_user=True),
    "refine: output under a file": Case(_out(lambda d: d / "points.csv" / "r"), "which is a file", command="refine"),
}


def _mask_stack(d, slices):
    shutil.rmtree(d / "masks")
    (d / "masks").mkdir()
    _write_tif(d / "masks" / "cells.tif", np.zeros((slices, 64, 64), np.uint8))
    return d / "masks"


def _argv(case: Case, d: Path, changes: dict) -> list[str]:
    if case.command == "segment":
        options = {"--model": d / "model", "--images": d / "images", "--out": d / "labels", "--device": "cpu"}
    elif case.command == "refine":
        options = {"--images": d / "images", "--out": d / "out", "--config": d / "tiny.toml"}
    else:
        options = {"--images": d / "images", "--points": d / "points.csv", "--masks": d / "masks",
                   "--out": d / "out", "--config": d / "tiny.toml", "--until": "cams"}
    options.update(changes)
    argv = [case.command]
    for key, value in options.items():
        if value is True:
            argv.append(key)
        elif value is not None:
            argv += [key, str(value)]
    return argv + ["--quiet"]


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (folders as '<dir>')."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, template, tmp_path, capsys, monkeypatch, read_only_folder, unprivileged):
    case = CASES[name]
    d = tmp_path / "work"
    shutil.copytree(template, d)
    d.chmod(0o755)  # reachable by the ordinary user of the read-only cases
    monkeypatch.chdir(d)  # relative paths of the cases ("nope.csv") are the user's
    changes = case.build(d)
    argv = _argv(case, d, changes)
    before = _snapshot(d)
    try:
        with unprivileged() if case.as_user else _nothing():
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own errors
                code = exc.code
    finally:
        for p in d.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert case.message in err, err
    if not case.argparse_error:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("napari-pcam: error: "), err
    assert _snapshot(d) == before, "the user's files (or the output folder) changed"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_sweep_covers_every_case_of_the_issue():
    """inf class, 1.5 class, short row, read-only output and parent, a stack addressed without its slice; the
    stacks that were read as 2D images are tests/core/test_stacks.py and tests/cli/test_stacks.py."""
    named = [n for n in CASES if "issue 15" in n]
    assert len(named) == 6 and len(CASES) >= 53


def test_a_real_console_run_prints_one_line(template, tmp_path):
    """The sweep calls main() in-process; once through the real entry point, in a fresh interpreter."""
    import subprocess
    import sys

    (tmp_path / "bad.csv").write_text(HEADER + "sample_000.png,1,5,inf\n")
    before = _snapshot(template)
    proc = subprocess.run([sys.executable, "-m", "napari_pcam", *_argv(CASES["class inf (issue 15)"], template,
                                                                       {"--points": tmp_path / "bad.csv",
                                                                        "--out": tmp_path / "out"})],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    expected = ("napari-pcam: error: bad.csv, line 2: class 'inf' is not a class id (0 = background, 1, 2, ... whole "
                "numbers) nor a class name.")
    assert proc.stderr.strip().splitlines() == [expected]
    assert _snapshot(template) == before and not (tmp_path / "out").exists()
