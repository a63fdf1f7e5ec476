import os
import shutil
import socket
import subprocess
import sys

import polars as pl
import pytest

from dup_pipeline.core.inputs import InputError, discover_files
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.report.report import build_report
from dup_pipeline.core.workdir import WorkDir
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
    os.mkfifo(tmp_path / "list.txt")
    with pytest.raises(InputError, match="neither a folder nor a regular file"):
        discover_files(tmp_path / "list.txt")  # never opened: reading a pipe would block


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line in a child process, killed (and the test failed) if it hangs."""
    command = [sys.executable, "-c", "from dup_pipeline.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _bad_reasons(work) -> dict[str, str]:
    bad = pl.read_csv(work / "features.bad.csv")
    return dict(zip(bad["filename"].to_list(), bad["error_code"].to_list()))


def test_fifo_socket_and_devices_are_bad_files_never_read(tmp_path):
    images = tmp_path / "images"
    save_image(images / "a.png", noise_image(1))
    os.mkfifo(images / "x.jpg")  # opening it for reading blocks until a writer comes: forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(images / "sock.png"))
    os.symlink("/dev/zero", images / "zero.jpg")  # reading it never ends
    done = _cli("run", str(images), str(tmp_path / "w"), "--stats-only", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "not_a_regular_file=3" in done.stdout
    assert _bad_reasons(tmp_path / "w") == {str(images / n): "not_a_regular_file" for n in ("sock.png", "x.jpg",
                                                                                             "zero.jpg")}
    listing = tmp_path / "list.txt"
    listing.write_text(f"{images / 'a.png'}\n/dev/zero\n{images / 'x.jpg'}\n")
    done = _cli("run", str(listing), str(tmp_path / "w2"), "--stats-only", "--quiet")
    assert done.returncode == 0, done.stderr
    assert _bad_reasons(tmp_path / "w2") == {"/dev/zero": "not_a_regular_file", str(images / "x.jpg"): "not_a_regular_file"}
    server.close()


def test_dangling_links_and_never_existing_listed_files_have_their_own_reasons(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        save_image(images / f"{i}.png", noise_image(i))
    os.symlink(images / "nowhere.png", images / "dangling.png")
    run_pipeline(PipelineConfig(images, str(tmp_path / "w"), report=False), features=False)
    (images / "1.png").unlink()  # vanished since the first run
    summary = run_pipeline(PipelineConfig(images, str(tmp_path / "w"), report=False), features=False)
    assert _bad_reasons(tmp_path / "w") == {str(images / "dangling.png"): "dangling_symlink",
                                            str(images / "1.png"): "missing"}
    assert summary.bad_reasons == {"dangling_symlink": 1, "missing": 1}
    listing = tmp_path / "list.txt"
    listing.write_text(f"{images / '0.png'}\nnever.png\n")
    run_pipeline(PipelineConfig(listing, str(tmp_path / "w2"), report=False), features=False)
    assert _bad_reasons(tmp_path / "w2") == {str(tmp_path / "never.png"): "not_found"}
    detail = pl.read_parquet(tmp_path / "w" / "bad_files.parquet").filter(pl.col("error_code") == "dangling_symlink")
    assert "nowhere.png" in detail["detail"][0]


def test_work_dir_inside_the_input_is_never_scanned(tmp_path):
    images = tmp_path / "images"
    for i in range(6):
        save_image(images / f"{i}.png", noise_image(i))
    work = images / "work"  # outputs inside the folder being analysed
    config = PipelineConfig(images, str(work), report=False)
    first = run_pipeline(config)
    build_report(WorkDir(work), inline=False)  # gallery thumbnails written as image files in work/report
    assert list((work / "report").rglob("*.jpg"))
    moved = tmp_path / "moved_work"
    shutil.copytree(work, moved)  # a work_dir of another run, recognised by its marker wherever it is
    shutil.move(moved, images / "sub" / "old_work")
    second = run_pipeline(config)
    assert second.files == first.files == 6 and second.bad == 0
    assert second.graph.similarity.select("from", "to").equals(first.graph.similarity.select("from", "to"))
    assert discover_files(images) == [str(images / f"{i}.png") for i in range(6)]
    with pytest.raises(InputError, match="is a dup_pipeline work_dir"):
        discover_files(work)


def test_unreadable_sub_folder_is_a_bad_entry_with_its_reason(tmp_path):
    images = tmp_path / "images"
    save_image(images / "a.png", noise_image(1))
    save_image(images / "locked" / "b.png", noise_image(2))
    os.chmod(images / "locked", 0)
    drop = []
    if os.geteuid() == 0:  # root reads every folder: run the command without its override capabilities
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder unreadable to the run")
        drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    command = [*drop, sys.executable, "-c", "from dup_pipeline.cli import main; main()",
               "run", str(images), str(tmp_path / "w"), "--stats-only", "--quiet"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(images / "locked", 0o755)
    assert done.returncode == 0, done.stderr
    assert "files: 2, good images: 1, bad files: 1" in done.stdout
    assert "bad files by reason: unreadable_folder=1" in done.stdout
    bad = pl.read_parquet(tmp_path / "w" / "bad_files.parquet")
    assert bad["filename"].to_list() == [str(images / "locked")]
    assert bad["error_code"].to_list() == ["unreadable_folder"]
    assert "Permission denied" in bad["detail"][0]


def test_report_thumbnail_of_a_fifo_is_a_placeholder_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")  # e.g. an image replaced by a pipe after the scan
    code = "import sys; from dup_pipeline.core.report.thumbnails import load_thumb; print(load_thumb(sys.argv[1]).jpeg)"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.jpg")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr
