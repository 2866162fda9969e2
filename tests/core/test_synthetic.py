"""The built-in sample and its harder variants: same layouts and clicks, only the look of the classes changes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pcam.cli import main
from napari_pcam.core.data.synthetic import SAMPLE_VARIANTS, make_synthetic


def _class_means(data, channel: int = 0) -> dict[int, list[float]]:
    """Per class, the mean colour of every object pixel, image by image."""
    out: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for img, mask in zip(data.images.images, data.masks):
        for c in out:
            if (mask == c).sum() > 50:
                out[c].append(float(img[mask == c].mean(axis=0)[channel]))
    return out


def test_one_colour_and_grayscale_keep_the_layouts_and_clicks():
    base = make_synthetic(6, 64, seed=3)
    for name in ("default", "one-colour", "grayscale"):
        other = make_synthetic(6, 64, seed=3, **SAMPLE_VARIANTS[name])
        assert all(np.array_equal(a, b) for a, b in zip(base.masks, other.masks)), name
        np.testing.assert_array_equal(base.points.yx, other.points.yx)
        np.testing.assert_array_equal(base.points.cls, other.points.cls)
    assert make_synthetic(2, 64, seed=3, grayscale=True).images.channels == 1


def test_one_colour_takes_the_class_colours_away():
    base = make_synthetic(12, 64, seed=3)
    one = make_synthetic(12, 64, seed=3, shared_colour=True)
    # green channel: cells are green in the default sample, fibers red, crystals blue
    spread = {name: np.ptp([np.mean(v) for v in _class_means(d, channel=1).values()]) for name, d in
              (("default", base), ("one-colour", one))}
    assert spread["default"] > 50 and spread["one-colour"] < 15, spread


def test_shapes_only_also_takes_the_textures_away(monkeypatch):
    import napari_pcam.core.data.synthetic as synthetic

    drawn: list[int] = []
    texture = synthetic._texture
    monkeypatch.setattr(synthetic, "_texture", lambda c, *a: (drawn.append(c), texture(c, *a))[1])
    make_synthetic(6, 64, seed=3, shared_colour=True)
    assert set(drawn) == {1, 2, 3}, "one-colour keeps each class's texture"
    drawn.clear()
    make_synthetic(6, 64, seed=3, **SAMPLE_VARIANTS["shapes-only"])
    assert set(drawn) == {1}, "every object gets the cells' speckle"


def test_sample_variant_is_only_for_the_sample(tmp_path, capsys):
    code = main(["run", "--sample-variant", "grayscale", "--images", str(tmp_path), "--points", "p.csv",
                 "--out", str(tmp_path / "o")])
    assert code != 0 and "--sample-variant needs --sample" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown sample variant"):
        from napari_pcam.core.data.synthetic import load_sample

        load_sample("train", "blue")
