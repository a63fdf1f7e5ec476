"""A range's files commit together and are read by identity; deleted files are not re-decoded;
a bounding box outside an image makes it a bad file (issue 11, items 1, 3 and part of 11)."""

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from dup_pipeline.core import range_scan
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline, update_manifest
from dup_pipeline.core.range_scan import read_range_features, scan_range
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import save_image
from dup_pipeline_tests.core.test_features import _mean_color_model

RANGE = OffsetRange(0, 99)


class _Killed(BaseException):
    """Stands for the process dying at an os.replace (nothing after it runs)."""


def _solid(folder, name, shade):
    save_image(folder / name, Image.new("RGB", (40, 30), (shade, 255 - shade, (shade * 7) % 256)))


def _vectors_by_path(work, manifest):
    found = read_range_features(work, RANGE)
    paths = dict(zip(manifest["index"].to_list(), manifest["path"].to_list()))
    return {paths[i]: np.asarray(found.vectors[row]) for row, i in enumerate(found.index["index"].to_list())}


def test_kill_between_the_renames_of_a_range_never_shifts_embeddings(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    _mean_color_model(model)
    images, first = tmp_path / "images", WorkDir(tmp_path / "first")
    for i in range(6):
        _solid(images, f"{i}.png", 40 * i)
    features = ModelConfig(model_path=str(model), normalization="raw").feature_settings()
    scan_range(first.ensure_writable(), update_manifest(first, images), RANGE, features=features)
    (images / "2.png").unlink()  # one image of the range deleted and another added: same row count
    _solid(images, "9.png", 250)
    clean = WorkDir(tmp_path / "clean")
    shutil.copytree(first.root, clean.root)
    manifest = update_manifest(clean, images)
    replaces = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *a: (replaces.append(a), real_replace(*a)))
    scan_range(clean, manifest, RANGE, features=features)
    expected = _vectors_by_path(clean, manifest)
    assert len(expected) == 6 and len(replaces) >= 3

    for kill_at in range(1, len(replaces) + 1):
        work = WorkDir(tmp_path / f"killed{kill_at}")
        shutil.copytree(first.root, work.root)
        update_manifest(work, images)
        count = iter(range(1, 1000))

        def replace_then_die(src, dst, kill_at=kill_at):
            if next(count) == kill_at:
                raise _Killed
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace_then_die)
        with pytest.raises(_Killed):
            scan_range(work, manifest, RANGE, features=features)
        monkeypatch.setattr(os, "replace", real_replace)
        scan_range(work, manifest, RANGE, features=features)
        resumed = _vectors_by_path(work, manifest)
        assert resumed.keys() == expected.keys(), kill_at
        for path, vector in expected.items():
            assert np.array_equal(resumed[path], vector), (kill_at, path)


def _mean_color_config(tmp_path, images, work="work", bounding_box=None, **kwargs):
    model = tmp_path / "m.onnx"
    if not model.exists():
        _mean_color_model(model)
    model_config = ModelConfig(model_path=str(model), normalization="raw", bounding_box=bounding_box)
    return PipelineConfig(images, str(tmp_path / work), report=False, model=model_config, **kwargs)


def test_a_deleted_file_is_recorded_once_and_not_decoded_again(tmp_path):
    images = tmp_path / "images"
    for i in range(5):
        _solid(images, f"{i}.png", 40 * i)
    config = _mean_color_config(tmp_path, images, range_size=4)
    stats_only = replace(config, work_dir=str(tmp_path / "stats_only"))
    run_pipeline(config)
    run_pipeline(stats_only, features=False)
    (images / "1.png").unlink()
    assert run_pipeline(config).bad_reasons == {"missing": 1}
    again = run_pipeline(config)
    assert (again.decoded, again.embedded, again.bad_reasons) == (0, 0, {"missing": 1})
    assert run_pipeline(stats_only, features=False).decoded == 1  # the file is found missing
    assert [run_pipeline(stats_only, features=False).decoded for _ in range(2)] == [0, 0]


def _unit(color: list[int]) -> np.ndarray:
    return np.asarray(color, dtype=np.float32) / np.linalg.norm(color)


def test_bounding_box_outside_an_image_makes_it_a_bad_file(tmp_path):
    images = tmp_path / "images"
    for i in range(3):  # 100x80: the box (rows 50-69, columns 60-89) is inside
        big = Image.new("RGB", (100, 80), (0, 0, 255))
        big.paste((255 - 60 * i, 60 * i, 0), (60, 50, 90, 70))
        save_image(images / f"big{i}.png", big)
    for i in range(2):  # 50x40: the box starts below and right of the image
        save_image(images / f"small{i}.png", Image.new("RGB", (50, 40), (9, 9, 9 + i)))
    save_image(images / "tall.png", Image.new("RGB", (61, 51), (200, 10, 10)))  # partly inside: clipped
    box = "row_y=50,col_x=60,height=20,width=30"
    summary = run_pipeline(_mean_color_config(tmp_path, images, bounding_box=box))
    bad = pl.read_parquet(tmp_path / "work" / "bad_files.parquet")
    assert sorted(Path(f).name for f in bad["filename"]) == ["small0.png", "small1.png"]
    assert set(bad["error_code"]) == {"bounding_box_outside"}
    assert "outside the 50x40 image" in bad["detail"][0]
    assert summary.good == 4 and summary.features.matrix.shape == (4, 3)
    names = [Path(f).name for f in summary.features.index["filename"]]
    vectors = dict(zip(names, np.asarray(summary.features.matrix)))
    for i in range(3):  # only the box is embedded: its colour, not the blue around it
        assert np.allclose(vectors[f"big{i}.png"], _unit([255 - 60 * i, 60 * i, 0]), atol=1e-3)
    assert np.allclose(vectors["tall.png"], _unit([200, 10, 10]), atol=1e-3)


def test_bounding_box_outside_every_image_is_a_config_error(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        _solid(images, f"{i}.png", 40 * i)
    (images / "broken.png").write_bytes(b"not an image")
    config = _mean_color_config(tmp_path, images, bounding_box="row_y=500,col_x=0,height=10,width=10")
    with pytest.raises(ConfigError, match="bounding_box lies outside every one of the 3 decodable images"):
        run_pipeline(config)


def test_a_reader_overtaken_by_a_commit_reads_the_new_generation(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    _mean_color_model(model)
    images, work = tmp_path / "images", WorkDir(tmp_path / "work")
    for i in range(3):
        _solid(images, f"{i}.png", 40 * i)
    features = ModelConfig(model_path=str(model), normalization="raw").feature_settings()
    scan_range(work.ensure_writable(), update_manifest(work, images), RANGE, features=features)
    old_marker = range_scan._marker(work.range_dir(RANGE), "features")
    _solid(images, "3.png", 200)
    manifest = update_manifest(work, images)
    scan_range(work, manifest, RANGE, features=features)  # commits a new generation, deletes the old files
    real_marker, calls = range_scan._marker, []

    def stale_then_real(*args):  # the reader took the marker just before that commit
        calls.append(args)
        return old_marker if len(calls) == 1 else real_marker(*args)

    monkeypatch.setattr(range_scan, "_marker", stale_then_real)
    found = read_range_features(work, RANGE)
    assert found is not None and found.index["index"].to_list() == [0, 1, 2, 3] and len(calls) == 2
