"""`napari-pcam run` on a TIFF stack addressed by an image,z,y,x,class CSV (issue 15)."""

import numpy as np
import tifffile

from napari_pcam.cli import main
from napari_pcam.core.data.synthetic import make_synthetic

TINY = ("[cam]\nbackbone = 'resnet18'\nweights = 'none'\ncrop_size = 64\nbatch_size = 2\nepochs = 1\n"
        "[cam_inference]\nscales = [1.0]\nflip = false\n")


def _stack_folder(root):
    data = make_synthetic(3, 64, seed=5)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    tifffile.imwrite(root / "images" / "cells.tif", np.stack(data.images.images))  # Z x H x W x 3, no axes
    tifffile.imwrite(root / "masks" / "cells.tif", np.stack(data.masks).astype(np.uint8))
    rows = ["image,z,y,x,class"]
    for img, (y, x), c in zip(data.points.image, data.points.yx, data.points.cls):
        rows.append(f"cells.tif,{img},{y:.2f},{x:.2f},{data.points.class_names[c]}")
    (root / "points.csv").write_text("\n".join(rows) + "\n")
    (root / "tiny.toml").write_text(TINY)
    return data


def test_run_on_a_stack_with_a_z_column(tmp_path, capsys):
    data = _stack_folder(tmp_path)
    out = tmp_path / "out"
    code = main(["run", "--images", str(tmp_path / "images"), "--points", str(tmp_path / "points.csv"),
                 "--masks", str(tmp_path / "masks"), "--out", str(out), "--config", str(tmp_path / "tiny.toml"),
                 "--until", "cams", "--quiet"])
    assert code == 0, capsys.readouterr().err
    written = sorted(p.name for p in (out / "pcam_labels").iterdir())
    assert written == ["cells_z000.tif", "cells_z001.tif", "cells_z002.tif"]
    maps = tifffile.imread(out / "pcam" / "cells_z001.tif")
    assert maps.shape == (data.points.num_classes, 64, 64)


def test_a_stack_addressed_without_z_is_a_clear_error(tmp_path, capsys):
    _stack_folder(tmp_path)
    (tmp_path / "bad.csv").write_text("image,y,x,class\ncells.tif,5,5,1\n")
    code = main(["run", "--images", str(tmp_path / "images"), "--points", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "out"), "--config", str(tmp_path / "tiny.toml"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "'cells.tif' is a stack of 3 slices; add a z column" in err
    assert not (tmp_path / "out").exists()
