"""Bearman et al. click JSON: parsing (on a 30-image slice of the real file), modes, clipping, mismatches."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_pcam.core.data.clicks import clicks_to_points, clip_clicks, load_clicks, read_click_json
from napari_pcam.core.data.voc import VOC_CLASSES, packaged_split
from napari_pcam.core.data.voc_dataset import open_voc
from napari_pcam.core.data.voc_points import click_statistics, load_voc_points
from napari_pcam.core.errors import DataError
from voc_fake import make_voc_tree

SLICE = Path(__file__).parents[1] / "data" / "voc_clicks_slice.json"
# Facts of the slice (30 ids copied verbatim from pascal2012_trainval_main.json):
# 23 train_aug ids, 5 val ids, 2 ids in neither list; one train_aug id with an empty click list;
# 44 rank-1 clicks, 87 clicks in all; 1 rank-1 and 5 of all clicks lie beyond 500 px.
OUTSIDE_ID = "2011_001220"  # cls 11 clicked at x = 412 (rank 1), 704 and 731 (ranks 2, 3); cls 15 at x = 259


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_voc_tree(tmp_path_factory.mktemp("voc"), n_per_class=2, n_classes=3, seed=4)


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_slice_parses_with_every_click():
    clicks = read_click_json(SLICE)
    raw = json.loads(SLICE.read_text())
    assert len(clicks) == 30
    assert sum(len(c) for c in clicks.values()) == 87
    first = raw[OUTSIDE_ID][0]
    c = clicks[OUTSIDE_ID]
    assert c.yx[0].tolist() == [first["y"], first["x"]]
    assert c.cls.dtype == np.int64 and c.cls[0] == first["cls"] and c.rank[0] == first["rank"]


def test_1point_keeps_rank_1_and_allpoints_keeps_all():
    one, every = load_clicks(SLICE, "1point"), load_clicks(SLICE, "allpoints")
    assert sum(len(c) for c in one.values()) == 44
    assert sum(len(c) for c in every.values()) == 87
    assert all((c.rank == 1).all() for c in one.values())
    assert one[OUTSIDE_ID].cls.tolist() == [11, 15]


def test_3annotators_adds_rank_1_clicks_of_the_supp_file(tmp_path):
    supp = {OUTSIDE_ID: [{"x": 1.0, "y": 2.0, "cls": 11, "rank": 1}, {"x": 3.0, "y": 4.0, "cls": 11, "rank": 2}],
            "2099_000001": [{"x": 5.0, "y": 6.0, "cls": 3, "rank": 1}]}  # fmt: skip
    merged = load_clicks(SLICE, "3annotators", supp_path=_write(tmp_path / "supp.json", supp))
    assert sum(len(c) for c in merged.values()) == 44 + 2
    assert merged[OUTSIDE_ID].cls.tolist() == [11, 15, 11]
    assert "2099_000001" in merged


@pytest.mark.parametrize("mode, supp", [("3annotators", None), ("1point", SLICE), ("2points", None)])
def test_mode_and_supp_file_must_agree(mode, supp):
    with pytest.raises(DataError, match="mode"):
        load_clicks(SLICE, mode, supp_path=supp)


@pytest.mark.parametrize(
    "click, match",
    [({"x": 1, "y": 2, "cls": 21, "rank": 1}, "invalid"), ({"x": 1, "y": 2, "cls": 3, "rank": 0}, "invalid"),
     ({"x": 1, "cls": 3, "rank": 1}, "needs numeric"), ({"x": "a", "y": 2, "cls": 3, "rank": 1}, "needs numeric")],
)  # fmt: skip
def test_bad_clicks_name_the_image(tmp_path, click, match):
    path = _write(tmp_path / "c.json", {"2008_000001": [click]})
    with pytest.raises(DataError, match=match) as info:
        read_click_json(path)
    assert "2008_000001" in str(info.value)


def test_missing_or_broken_click_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_click_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_click_json(tmp_path / "bad.json")


def test_clip_clicks_counts_only_clicks_in_no_pixel():
    yx = np.array([[5.0, 9.6], [5.0, 10.0], [-0.2, 3.0], [3.0, 3.0]])
    clipped, outside = clip_clicks(yx, (8, 10))
    assert outside == 2  # x = 10.0 and y = -0.2; x = 9.6 lies in the last column
    np.testing.assert_allclose(clipped, [[5.0, 9.0], [5.0, 9.0], [0.0, 3.0], [3.0, 3.0]])


def test_points_are_yx_indexed_by_position_and_clipping_warns():
    clicks = load_clicks(SLICE, "allpoints")
    ids = [OUTSIDE_ID, "2008_000000"]  # the second has no clicks
    with pytest.warns(UserWarning, match="2 of 4 clicks lay outside their image and were clipped"):
        points, stats = clicks_to_points(clicks, ids, [(375, 500), (300, 300)])
    assert (stats.clipped, stats.images_with_clicks, stats.clicks) == (2, 1, 4)
    assert stats.json_ids_not_requested == 29
    assert points.class_names == VOC_CLASSES and (points.image == 0).all()
    np.testing.assert_allclose(points.yx[0], clicks[OUTSIDE_ID].yx[0])
    assert points.yx[:, 1].max() == 499


def test_mismatches_are_counted_per_kind():
    clicks = load_clicks(SLICE, "1point")
    labels = [np.array([11, 12])]  # cls 15 clicked but not labelled, cls 12 labelled but not clicked
    with pytest.warns(UserWarning, match="1 \\(image, class\\) pairs are clicked but not in the labels"):
        points, stats = clicks_to_points(clicks, [OUTSIDE_ID], [(500, 500)], labels=labels)
    assert (stats.clicked_not_labelled, stats.labelled_not_clicked) == (1, 1)
    assert stats.examples == (f"{OUTSIDE_ID}: clicked person not labelled, labelled dog not clicked",)
    assert len(points) == 2  # the unlabelled class's click is kept


def test_json_ids_not_in_voc_are_counted():
    clicks = load_clicks(SLICE, "1point")
    voc = set(packaged_split("train_aug")) | set(packaged_split("val"))
    ids = [i for i in clicks if i in voc]
    with pytest.warns(UserWarning, match="2 click ids are not VOC images"):
        _, stats = clicks_to_points(clicks, ids, [(500, 500)] * len(ids), voc_ids=voc)
    assert stats.json_ids_not_in_voc == 2 and stats.json_ids_not_requested == 2


def test_click_statistics_on_the_slice_without_shapes_is_a_lower_bound():
    ids = [i for i in read_click_json(SLICE) if i in set(packaged_split("train_aug"))]
    stats = click_statistics(SLICE, ids)
    counts = (stats["ids"], stats["json_ids"], stats["json_ids_not_in_ids"], stats["json_ids_not_in_voc"])
    assert counts == (23, 30, 7, 2)
    one, every = stats["1point"], stats["allpoints"]
    assert one["ids_without_clicks"] == 1 and one["images_with_clicks"] == 22
    assert one["clicks"] < every["clicks"] and every["clicks_per_image"]["max"] >= one["clicks_per_image"]["max"]
    assert (one["outside"], every["outside"]) == (1, 5)
    assert one["outside_is_lower_bound"] and "lower bound" in stats["outside_rule"]
    assert "3annotators" not in stats


def test_click_statistics_with_shapes_is_exact():
    stats = click_statistics(SLICE, [OUTSIDE_ID], [(375, 420)])
    assert stats["allpoints"]["outside"] == 2 and stats["1point"]["outside"] == 0
    assert not stats["allpoints"]["outside_is_lower_bound"]
    assert stats["allpoints"]["clicks_per_image"] == {"mean": 4.0, "median": 4.0, "max": 4, "mean_over_all_ids": 4.0}


def test_fake_tree_clicks_load_cleanly(tree):
    ds = open_voc(tree.root, "train_aug")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        points, stats = load_voc_points(ds, tree.clicks_json, "allpoints")
    assert stats.images_with_clicks == len(ds) and stats.clipped == 0
    assert (stats.clicked_not_labelled, stats.labelled_not_clicked, stats.json_ids_not_in_voc) == (0, 0, 0)
    shapes = np.array(ds.shapes())[points.image]
    assert ((points.yx >= 0) & (points.yx <= shapes - 1)).all()
    i = int(points.image[0])
    y, x = np.round(points.yx[0]).astype(int)
    assert ds.mask(i)[y, x] == points.cls[0]  # fake clicks lie inside their object


def test_fake_tree_three_annotators_have_more_clicks(tree):
    ds = open_voc(tree.root, "val")
    one, _ = load_voc_points(ds, tree.clicks_json, "1point")
    three, stats = load_voc_points(ds, tree.clicks_json, "3annotators", supp_path=tree.supp_json)
    assert len(three) == 3 * len(one) and stats.labelled_not_clicked == 0
