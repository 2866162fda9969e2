"""VOC 2012 / SBD readers on a generated VOC tree: layout, splits, labels, masks, lazy dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from napari_pcam.core.data.voc import (
    IGNORE_INDEX,
    VOC_CLASSES,
    VocLayout,
    mask_labels,
    packaged_split,
    read_voc_mask,
    read_xml_labels,
)
from napari_pcam.core.data.voc_dataset import VocDataset, open_voc
from napari_pcam.core.errors import DataError
from voc_fake import make_voc_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_voc_tree(tmp_path_factory.mktemp("voc"), n_per_class=2, n_classes=4, seed=1)


@pytest.fixture(scope="module")
def mat_tree(tmp_path_factory):
    return make_voc_tree(tmp_path_factory.mktemp("voc_mat"), n_per_class=2, n_classes=3, seed=2, sbd_format="mat")


def test_voc_classes_are_alphabetical_with_background_first():
    assert len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background"
    assert list(VOC_CLASSES[1:]) == sorted(VOC_CLASSES[1:])
    assert (VOC_CLASSES[1], VOC_CLASSES[15], VOC_CLASSES[20]) == ("aeroplane", "person", "tvmonitor")


def test_packaged_splits_have_the_standard_sizes():
    train_aug, val = packaged_split("train_aug"), packaged_split("val")
    assert (len(train_aug), len(val)) == (10582, 1449)
    assert not set(train_aug) & set(val)
    with pytest.raises(DataError, match="train_aug, val"):
        packaged_split("test")


@pytest.mark.parametrize("level", ["root", "VOCdevkit", "VOC2012"])
def test_locate_accepts_each_root_level(tree, level):
    root = {"root": tree.root, "VOCdevkit": tree.root / "VOCdevkit", "VOC2012": tree.voc2012}[level]
    layout = VocLayout.locate(root)
    assert layout.voc2012 == tree.voc2012
    assert layout.sbd_cls == tree.root / "benchmark_RELEASE" / "dataset" / "cls"
    assert layout.aug_png == tree.voc2012 / "SegmentationClassAug"


def test_locate_without_voc_names_every_place_looked(tmp_path):
    with pytest.raises(DataError, match="JPEGImages") as info:
        VocLayout.locate(tmp_path)
    assert str(tmp_path / "VOCdevkit" / "VOC2012") in str(info.value)


def test_locate_names_a_missing_sub_folder(tmp_path):
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp_path / "VOC2012" / folder).mkdir(parents=True)
    with pytest.raises(DataError, match="lacks Annotations"):
        VocLayout.locate(tmp_path)


@pytest.mark.parametrize("sub", ["", "benchmark_RELEASE", "benchmark_RELEASE/dataset", "benchmark_RELEASE/dataset/cls"])
def test_locate_sbd_root_variants(mat_tree, sub):
    layout = VocLayout.locate(mat_tree.root, mat_tree.root / sub if sub else mat_tree.root)
    assert layout.sbd_cls == mat_tree.root / "benchmark_RELEASE" / "dataset" / "cls"
    assert layout.aug_png is None


def test_locate_aug_folder_as_sbd_root(tree):
    layout = VocLayout.locate(tree.root, tree.voc2012 / "SegmentationClassAug")
    assert layout.aug_png == tree.voc2012 / "SegmentationClassAug" and layout.sbd_cls is None


def test_locate_missing_sbd_root_names_the_paths(tree, tmp_path):
    with pytest.raises(DataError, match="no SBD masks") as info:
        VocLayout.locate(tree.root, tmp_path)
    assert str(tmp_path / "benchmark_RELEASE" / "dataset" / "cls") in str(info.value)


def test_split_ids_prefer_the_tree_then_the_packaged_lists(tree, tmp_path):
    layout = VocLayout.locate(tree.root)
    assert layout.split_ids("train_aug") == list(tree.train_aug_ids)
    assert layout.split_ids("val") == list(tree.val_ids)
    bare = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (bare / folder).mkdir(parents=True)
    assert len(VocLayout.locate(bare).split_ids("val")) == 1449
    with pytest.raises(DataError, match="trainval"):
        VocLayout.locate(bare).split_ids("trainval")


def test_xml_labels_count_difficult_objects_and_skip_parts(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(
        "<annotation><object><name>person</name><difficult>0</difficult><part><name>head</name></part></object>"
        "<object><name>dog</name><difficult>1</difficult></object>"
        "<object><name>person</name></object></annotation>"
    )
    assert read_xml_labels(path).tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]


def test_xml_with_an_unknown_class_is_an_error(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(DataError, match="unicorn"):
        read_xml_labels(path)


def test_palette_mask_is_read_as_indices_with_ignore_border(tree):
    image_id = tree.train_ids[0]
    png = tree.voc2012 / "SegmentationClass" / f"{image_id}.png"
    with Image.open(png) as im:
        assert im.mode == "P"
    mask = read_voc_mask(png)
    aug = read_voc_mask(tree.voc2012 / "SegmentationClassAug" / f"{image_id}.png")
    assert mask.dtype == np.int64 and (mask == IGNORE_INDEX).any()
    assert IGNORE_INDEX not in aug
    keep = mask != IGNORE_INDEX
    np.testing.assert_array_equal(mask[keep], aug[keep])
    assert mask_labels(mask).tolist() == mask_labels(aug).tolist()


def test_colour_mask_is_rejected(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="RGB"):
        read_voc_mask(path)


def test_sbd_mat_mask_equals_the_aug_png(tree):
    image_id = tree.sbd_ids[0]
    mat = read_voc_mask(tree.root / "benchmark_RELEASE" / "dataset" / "cls" / f"{image_id}.mat")
    png = read_voc_mask(tree.voc2012 / "SegmentationClassAug" / f"{image_id}.png")
    np.testing.assert_array_equal(mat, png)
    assert mask_labels(mat).size > 0


def test_dataset_reads_sbd_only_masks_from_mat(mat_tree):
    ds = open_voc(mat_tree.root, "train_aug", require_masks=True)
    i = ds.ids.index(mat_tree.sbd_ids[0])
    assert ds.layout.mask_path(ds.ids[i]).suffix == ".mat"
    assert ds.mask(i).shape == ds.shape(i)


def test_sbd_masks_missing_names_every_path_and_the_option(tree, tmp_path):
    copy = tmp_path / "VOC2012"
    shutil.copytree(tree.voc2012, copy, ignore=shutil.ignore_patterns("SegmentationClassAug"))
    layout = VocLayout.locate(copy)
    with pytest.raises(DataError, match="--sbd-root") as info:
        layout.mask_path(tree.sbd_ids[0])
    assert str(copy / "SegmentationClass" / f"{tree.sbd_ids[0]}.png") in str(info.value)
    with pytest.raises(DataError, match=f"{len(tree.sbd_ids)} of {len(tree.train_aug_ids)} ids have no mask"):
        VocDataset(layout, tree.train_aug_ids, require_masks=True)


def test_split_ids_without_image_are_counted_and_named(tree):
    layout = VocLayout.locate(tree.root)
    with pytest.raises(DataError, match="2 of 5 ids have no image") as info:
        VocDataset(layout, [*tree.val_ids[:3], "2000_000001", "2000_000002"])
    assert "2000_000001" in str(info.value) and str(layout.jpeg_dir) in str(info.value)


def test_dataset_is_lazy_and_consistent(tree):
    ds = open_voc(tree.root, "val")
    assert len(ds) == len(tree.val_ids) and ds._shapes == {}
    h, w = ds.shape(1)
    image = ds.image(1)
    assert image.shape == (h, w, 3) and image.dtype == np.uint8
    assert ds.mask(1).shape == (h, w) and ds.mask(1).dtype == np.int64
    assert ds.label_matrix().shape == (len(ds), 20)


def test_xml_and_mask_labels_agree_on_the_fake_tree(tree):
    by_xml = open_voc(tree.root, "train_aug", label_source="xml")
    by_mask = open_voc(tree.root, "train_aug", label_source="mask")
    for i in range(len(by_xml)):
        assert by_xml.labels(i).tolist() == by_mask.labels(i).tolist()


def test_open_voc_max_images_and_subset(tree):
    ds = open_voc(tree.root, "train_aug", max_images=3)
    assert ds.ids == tree.train_aug_ids[:3]
    stack = ds.subset([2, 0]).to_image_stack()
    assert stack.names == [tree.train_aug_ids[2], tree.train_aug_ids[0]]


def test_fake_tree_is_seeded(tmp_path):
    a = make_voc_tree(tmp_path / "a", n_per_class=1, n_val_per_class=0, n_classes=2, seed=5)
    b = make_voc_tree(tmp_path / "b", n_per_class=1, n_val_per_class=0, n_classes=2, seed=5)
    c = make_voc_tree(tmp_path / "c", n_per_class=1, n_val_per_class=0, n_classes=2, seed=6)
    name = f"SegmentationClass/{a.train_ids[0]}.png"
    np.testing.assert_array_equal(read_voc_mask(a.voc2012 / name), read_voc_mask(b.voc2012 / name))
    assert (a.root / "clicks_main.json").read_text() == (b.root / "clicks_main.json").read_text()
    assert (a.root / "clicks_main.json").read_text() != (c.root / "clicks_main.json").read_text()


def test_image_stack_is_read_on_access_and_equals_the_eager_one(tree, monkeypatch):
    import pickle

    from napari_pcam.core.run_folder import fingerprint

    ds = open_voc(tree.root, "train_aug", require_masks=True)
    eager, lazy = ds.to_image_stack(lazy=False), ds.to_image_stack()
    assert lazy.lazy and not eager.lazy and lazy.names == eager.names
    assert lazy.shapes == eager.shapes and lazy.channels == 3 and len(lazy) == len(eager)
    reads = []
    original = VocDataset.image
    monkeypatch.setattr(VocDataset, "image", lambda self, i: reads.append(i) or original(self, i))
    key = fingerprint(lazy.images)  # by files, sizes and times: no pixel is decoded
    sub = lazy.subset([3, 1])
    assert reads == [] and sub.lazy and sub.names == [eager.names[3], eager.names[1]]
    np.testing.assert_array_equal(sub.images[0], eager.images[3])
    assert reads == [3]
    for a, b in zip(lazy.images, eager.images):
        np.testing.assert_array_equal(a, b)
    assert fingerprint(ds.to_image_stack().images) == key != fingerprint(sub.images)
    masks = ds.masks()
    assert len(masks) == len(ds) and masks[2].dtype == np.uint8
    np.testing.assert_array_equal(masks[2], ds.mask(2))
    assert pickle.loads(pickle.dumps(lazy.images))[1].shape == eager.images[1].shape  # loader workers


def test_changed_image_file_changes_the_fingerprint_and_a_resized_one_is_caught(tree, tmp_path):
    from napari_pcam.core.run_folder import fingerprint

    root = tmp_path / "copy"
    shutil.copytree(tree.root, root)
    ds = open_voc(root, "val")
    before = fingerprint(ds.to_image_stack().images)
    stack = ds.to_image_stack()
    path = ds.image_path(0)
    h, w = ds.shape(0)
    Image.new("RGB", (w + 3, h)).save(path)
    assert fingerprint(open_voc(root, "val").to_image_stack().images) != before
    with pytest.raises(DataError, match="did the file change"):
        stack.images[0]
