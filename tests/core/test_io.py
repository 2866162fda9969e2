"""Output folders are checked by really trying to write there; nothing is created by the check."""

import os

import pytest

from napari_pcam.core.errors import OutputError
from napari_pcam.core.io import check_writable_folder, make_folder
from napari_pcam.core.run_folder import RunFolder


def test_a_writable_folder_and_a_missing_one_pass_and_nothing_is_left(tmp_path):
    check_writable_folder(tmp_path)
    check_writable_folder(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []


def test_an_output_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match=r"lies under '.*notes.txt', which is a file"):
        check_writable_folder(tmp_path / "notes.txt" / "out")
    with pytest.raises(OutputError, match="is not a folder"):
        check_writable_folder(tmp_path / "notes.txt")


def test_a_read_only_folder(read_only_folder, unprivileged):
    with unprivileged():
        with pytest.raises(OutputError, match=r"cannot write into the output folder '.*ro': Permission denied"):
            check_writable_folder(read_only_folder)
        with pytest.raises(OutputError, match=r"its parent '.*ro' is not writable"):
            check_writable_folder(read_only_folder / "out")
        with pytest.raises(OutputError, match="Permission denied"):
            RunFolder(read_only_folder / "out")
    assert list(read_only_folder.iterdir()) == []


def test_proc_refuses_even_root_though_os_access_says_yes():
    """os.access alone is not enough: /proc reports writable to root, yet nothing can be created there."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    with pytest.raises(OutputError, match="/proc"):
        check_writable_folder("/proc")


def test_make_folder_removes_what_it_made_when_a_deeper_folder_fails(tmp_path):
    with pytest.raises(OutputError, match="cannot"):
        make_folder(tmp_path / "a" / ("x" * 300))  # a name too long for the file system
    assert list(tmp_path.iterdir()) == []


def test_run_folder_under_a_file_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="which is a file"):
        RunFolder(tmp_path / "f" / "run")
    assert (tmp_path / "f").read_text() == "x"


def test_atomic_writes_into_a_read_only_folder_are_one_clear_error(read_only_folder, unprivileged):
    from napari_pcam.core.io import atomic_write_text

    with unprivileged(), pytest.raises(OutputError, match=r"cannot write '.*ro/points.csv': Permission denied"):
        atomic_write_text(read_only_folder / "points.csv", "x")
    assert list(read_only_folder.iterdir()) == []
