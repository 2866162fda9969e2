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


def _read(tmp_path, text, names=("a.png", "b.tif"), classes=None, **kw):
    path = tmp_path / "p.csv"
    path.write_text(text)
    return read_points_csv(path, list(names), classes, **kw)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1.5", "-1", "1e400"])
def test_a_class_that_is_not_a_whole_number_names_its_line(tmp_path, value):
    """Issue 15: 'inf' gave a traceback, '1.5' was read as another class."""
    with pytest.raises(DataError, match=rf"p.csv, line 3: class '{value}' is not a class id"):
        _read(tmp_path, f"image,y,x,class\na.png,1,2,1\nb.tif,3,4,{value}\n")


def test_a_short_row_names_its_line(tmp_path):
    """Issue 15: a row with fewer fields than the header gave a traceback."""
    with pytest.raises(DataError, match=r"p.csv, line 3: 3 fields, but the header has 4 \(missing: class\)"):
        _read(tmp_path, "image,y,x,class\na.png,1,2,1\nb.tif,3,4\n")


def test_a_long_row_names_its_line_and_trailing_commas_are_fine(tmp_path):
    with pytest.raises(DataError, match="line 2: 5 fields, but the header has 4"):
        _read(tmp_path, "image,y,x,class\na.png,1,2,1,7\n")
    assert len(_read(tmp_path, "image,y,x,class\na.png,1,2,1,\n")) == 1


def test_line_numbers_count_blank_lines(tmp_path):
    with pytest.raises(DataError, match="line 5: y='up' is not a number"):
        _read(tmp_path, "image,y,x,class\na.png,1,2,1\n\n\nb.tif,up,4,1\n")


@pytest.mark.parametrize("cell, message", [("inf", "y='inf' is not a finite number"), ("", "y='' is not a number")])
def test_coordinates_must_be_finite_numbers(tmp_path, cell, message):
    with pytest.raises(DataError, match=f"line 2: {message}"):
        _read(tmp_path, f"image,y,x,class\na.png,{cell},2,1\n")


def test_empty_class_and_undeclared_id_name_their_line(tmp_path):
    with pytest.raises(DataError, match="line 2: the class is empty"):
        _read(tmp_path, "image,y,x,class\na.png,1,2,\n")
    with pytest.raises(DataError, match=r"line 3: class '5' is not declared \(classes 0..2"):
        _read(tmp_path, "image,y,x,class\na.png,1,2,1\na.png,1,2,5\n", classes=NAMES)


def test_numbers_never_become_class_names(tmp_path):
    q = _read(tmp_path, "image,y,x,class\na.png,1,2,cell\nb.tif,3,4,0\na.png,5,6,fiber\n")
    assert q.class_names == ("background", "cell", "fiber") and list(q.cls) == [1, 0, 2]


STACK = (["c_z000.tif", "c_z001.tif", "c_z002.tif", "d.png"],
         [("c.tif", 0), ("c.tif", 1), ("c.tif", 2), ("d.png", None)])


def test_z_column_addresses_slices_of_a_stack(tmp_path):
    names, sources = STACK
    q = _read(tmp_path, "image,z,y,x,class\nc.tif,2,1,2,1\nc,0,3,4,0\nc_z001.tif,,5,6,1\nd.png,0,7,8,1\nd.png,,7,8,1\n",
              names, sources=sources)
    np.testing.assert_array_equal(q.image, [2, 0, 1, 3, 3])


@pytest.mark.parametrize("csv, message", [
    ("image,y,x,class\nc.tif,1,2,1\n", r"line 2: 'c.tif' is a stack of 3 slices; add a z column"),
    ("image,z,y,x,class\nc.tif,3,1,2,1\n", r"line 2: z=3 does not exist in 'c.tif' \(slices 0..2\)"),
    ("image,z,y,x,class\nc.tif,1.5,1,2,1\n", r"line 2: z='1.5' is not a whole number"),
    ("image,z,y,x,class\nd.png,1,1,2,1\n", r"line 2: image 'd.png' is a single 2D image, but z=1"),
])
def test_bad_slice_addresses_name_their_line(tmp_path, csv, message):
    names, sources = STACK
    with pytest.raises(DataError, match=message):
        _read(tmp_path, csv, names, sources=sources)
