import os

import pytest

from dup_pipeline.core.inputs import InputError, discover_files
from dup_pipeline_tests.conftest import noise_image, save_image


def test_folder_scan_is_recursive_sorted_and_filters_extensions(tmp_path):
    save_image(tmp_path / "b" / "deep" / "x.png", noise_image(1))
    save_image(tmp_path / "a.JPG", noise_image(2), "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    found = discover_files(tmp_path)
    assert found == sorted([str(tmp_path / "a.JPG"), str(tmp_path / "b" / "deep" / "x.png")])


def test_symlink_loop_does_not_hang(tmp_path):
    save_image(tmp_path / "sub" / "x.png", noise_image(1))
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = discover_files(tmp_path)
    assert str(tmp_path / "sub" / "x.png") in found
    assert len(found) <= 2


def test_list_file_relative_and_absolute(tmp_path):
    a = save_image(tmp_path / "imgs" / "a.png", noise_image(1))
    b = save_image(tmp_path / "imgs" / "b.png", noise_image(2))
    listing = tmp_path / "list.txt"
    listing.write_text(f"imgs/a.png\n\n# comment\n{b}\nimgs/missing.png\n")
    assert discover_files(listing) == sorted([str(a), str(b), str(tmp_path / "imgs" / "missing.png")])


def test_csv_list_file_uses_filename_column(tmp_path):
    a = save_image(tmp_path / "a.png", noise_image(1))
    listing = tmp_path / "files.csv"
    listing.write_text("label,filename\ncat,a.png\n")
    assert discover_files(listing) == [str(a)]


def test_python_list_is_deduplicated_and_sorted(tmp_path):
    assert discover_files([str(tmp_path / "b.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == [
        str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_missing_input_and_non_list_file_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_files(tmp_path / "nope")
    img = save_image(tmp_path / "a.png", noise_image(1))
    with pytest.raises(InputError, match="not a list file"):
        discover_files(img)
