import numpy as np
import pytest

from napari_pcam.core.data.points import PointAnnotations, read_points_csv, write_points_csv
from napari_pcam.core.errors import DataError

NAMES = ("background", "cell", "fiber")


def pts(image, yx, cls):
    return PointAnnotations(np.array(image), np.array(yx, float), np.array(cls), NAMES)


def test_image_labels_come_from_clicked_foreground_classes():
    p = pts([0, 0, 1, 1], [(1, 1), (2, 2), (3, 3), (4, 4)], [1, 0, 2, 0])
    np.testing.assert_array_equal(p.image_labels(3), [[1, 0], [0, 1], [0, 0]])


def test_point_outside_image_is_named():
    p = pts([0, 0], [(5, 5), (40, 3)], [1, 2])
    with pytest.raises(DataError, match=r"point 1 at \(y=40.0, x=3.0\) lies outside image 'a.png' of size 32 x 32"):
        p.validate([(32, 32)], ["a.png"])


def test_class_without_points_is_named():
    p = pts([0], [(5, 5)], [1])
    with pytest.raises(DataError, match="'fiber' have no points"):
        p.validate([(32, 32)])


def test_no_foreground_at_all():
    p = pts([0], [(5, 5)], [0])
    with pytest.raises(DataError, match="no foreground point"):
        p.validate([(32, 32)])


def test_undeclared_class_id():
    with pytest.raises(DataError, match="class 7"):
        pts([0], [(1, 1)], [7])


def test_csv_round_trip(tmp_path):
    p = pts([0, 1, 1], [(1.5, 2.0), (3.0, 4.25), (5, 6)], [1, 2, 0])
    path = tmp_path / "p.csv"
    write_points_csv(path, p, ["a.png", "b.tif"])
    q = read_points_csv(path, ["a.png", "b.tif"], NAMES)
    np.testing.assert_array_equal(q.image, p.image)
    np.testing.assert_allclose(q.yx, p.yx)
    np.testing.assert_array_equal(q.cls, p.cls)


def test_csv_integer_classes_and_stems(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("image,y,x,class\na,1,2,1\nb.tif,3,4,2\n")
    q = read_points_csv(path, ["a.png", "b.tif"])
    assert q.class_names == ("background", "class_1", "class_2")
    np.testing.assert_array_equal(q.image, [0, 1])


def test_napari_points_csv_3d(tmp_path):
    path = tmp_path / "napari.csv"
    path.write_text("index,axis-0,axis-1,axis-2,class\n0,1.0,10.5,11.0,cell\n1,0.0,3.0,4.0,background\n")
    q = read_points_csv(path, ["slice_0000", "slice_0001"], NAMES)
    np.testing.assert_array_equal(q.image, [1, 0])
    np.testing.assert_allclose(q.yx, [(10.5, 11.0), (3.0, 4.0)])
    np.testing.assert_array_equal(q.cls, [1, 0])


def test_csv_names_an_image_not_in_the_folder(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("image,y,x,class\nmissing.png,1,2,1\n")
    with pytest.raises(DataError, match="line 2: image 'missing.png' is not in the image folder"):
        read_points_csv(path, ["a.png"])


def test_csv_unknown_class_name(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("image,y,x,class\na.png,1,2,dog\n")
    with pytest.raises(DataError, match="'dog' are not declared"):
        read_points_csv(path, ["a.png"], NAMES)
