"""Interrupted runs, stale outputs and odd inputs (found in review; each test failed before its fix)."""

import shutil

import faiss
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import dup_pipeline as fastdup
from dup_pipeline.cli import main
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.graph import outliers
from dup_pipeline.core.inputs import discover_files
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.range_scan import range_files
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image


def _images(folder, n, start=0):
    for i in range(start, start + n):
        save_image(folder / f"img_{i:02d}.png", noise_image(i, (64, 48)))


def test_index_state_written_before_a_kill_is_rebuilt(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images, 5)
    config = PipelineConfig(images, str(work), range_size=4, report=False)
    run_pipeline(config)
    old_state = (work / "faiss.index.json").read_text()
    _images(images, 2, start=5)
    run_pipeline(config)
    (work / "faiss.index.json").write_text(old_state)  # as if killed after saving the index only
    _images(images, 1, start=7)
    summary = run_pipeline(config)
    assert faiss.read_index(str(work / "faiss.index")).ntotal == summary.features.matrix.shape[0] == 8


def test_range_features_out_of_step_are_recomputed(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images, 3)
    config = PipelineConfig(images, str(work), report=False)
    run_pipeline(config)
    named = range_files(WorkDir(work), OffsetRange(0, 9999), "features")["index"]
    pl.read_parquet(named).head(1).write_parquet(named)  # not the rows its commit marker recorded
    summary = run_pipeline(config)
    assert summary.embedded == 3 and summary.features.matrix.shape[0] == 3


def test_outliers_are_a_fraction_of_images_even_with_ties():
    sims = np.array([[1.0, 1.0]] * 8, dtype=np.float32)
    ids = np.array([[i, i ^ 1] for i in range(8)])
    assert outliers(sims, ids, 0.05).height == 1


def test_label_findings_of_an_earlier_run_do_not_linger(demo_dataset, demo_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo_run.work_dir, work)
    config = PipelineConfig(demo_dataset.images, str(work), range_size=40, report=False)
    run_pipeline(PipelineConfig(demo_dataset.images, str(work), range_size=40, report=False,
                                labels=demo_dataset.labels))
    assert (work / "mislabels.csv").exists()
    run_pipeline(config)
    assert not (work / "mislabels.csv").exists() and not (work / "labels.parquet").exists()


def test_bad_settings_fail_before_any_decoding(tmp_path):
    _images(tmp_path / "images", 3)
    with pytest.raises(ValueError, match="faiss_mode 'HNSW32x'"):
        run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "w"), graph=GraphConfig(faiss_mode="HNSW32x")))
    assert not (tmp_path / "w" / "manifest.parquet").exists()
    with pytest.raises(ValueError, match="cannot be trained on 3 vectors"):
        run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "w2"),
                                    graph=GraphConfig(faiss_mode="IVF64,Flat")))


def test_overwrite_with_a_bad_parameter_keeps_the_outputs(tmp_path):
    _images(tmp_path / "images", 3)
    fd = fastdup.create(str(tmp_path / "w"), str(tmp_path / "images"))
    assert fd.run(run_stats_only=1) == 0
    with pytest.raises(ConfigError, match="run_mode"):  # a bad parameter raises before any work
        fd.run(overwrite=True, run_mode=9)
    assert (tmp_path / "w" / "manifest.parquet").exists()


def test_csv_list_with_byte_order_mark_and_path_header(tmp_path):
    _images(tmp_path / "images", 2)
    listing = tmp_path / "list.csv"
    listing.write_text("\ufeffpath,label\nimages/img_00.png,a\nimages/img_01.png,b\n", encoding="utf-8")
    assert discover_files(listing) == [str(tmp_path / "images" / "img_00.png"), str(tmp_path / "images" / "img_01.png")]


def test_min_offset_above_max_offset_is_refused_before_any_work(tmp_path):
    _images(tmp_path / "images", 3)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "images"), str(tmp_path / "w"), "--stats-only",
                                       "--quiet", "--min-offset", "5", "--max-offset", "2"])
    assert result.exit_code == 2, result.output
    assert "max_offset (2) must be greater than min_offset (5)" in result.output
    assert not (tmp_path / "w" / "manifest.parquet").exists()
    with pytest.raises(ConfigError, match="max_offset \\(3\\) must be greater than min_offset \\(3\\)"):
        run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "w"), report=False), min_offset=3,
                     max_offset=3, features=False)
    with pytest.raises(ConfigError, match="min_offset must be an integer >= 0"):
        run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "w"), report=False), min_offset=-1)
    summary = run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "w"), report=False), min_offset=1,
                           max_offset=-1, features=False)
    assert summary.files == 3
