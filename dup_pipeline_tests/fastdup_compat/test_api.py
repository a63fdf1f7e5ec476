import os
import re

import numpy as np
import pandas as pd
import pytest

import dup_pipeline as fastdup
from dup_pipeline.core.errors import ConfigError


@pytest.fixture(scope="module")
def fd(demo_dataset, tmp_path_factory):
    """The README example: create, run with annotations."""
    work = tmp_path_factory.mktemp("fd") / "work"
    fd = fastdup.create(work_dir=str(work), input_dir=str(demo_dataset.images))
    assert fd.run(annotations=str(demo_dataset.labels), range_size=40) == 0
    return fd


def test_documented_sequence_runs_unchanged(demo_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work_dir, images_dir = "fastdup_work_dir/", str(demo_dataset.images)
    fd = fastdup.create(work_dir, images_dir)
    fd.run()
    fd.vis.duplicates_gallery()
    fd.vis.outliers_gallery()
    fd.vis.component_gallery()
    fd.vis.stats_gallery()
    fd.vis.similarity_gallery()
    galleries = tmp_path / "fastdup_work_dir" / "galleries"
    assert {p.name for p in galleries.glob("*.html")} == {
        "duplicates.html", "outliers.html", "components.html", "dark.html", "similarity.html"}


def test_v0_sequence_runs_unchanged(demo_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fastdup.run(input_dir=str(demo_dataset.images), work_dir="out", nearest_neighbors_k=5,
                       turi_param="nnmodel=0,ccthreshold=0.9,run_cc=1,run_pagerank=1,run_degree=1") == 0
    fastdup.create_duplicates_gallery("out/similarity.csv", save_path=".")
    fastdup.create_duplicates_gallery("out/outliers.csv", save_path=".")
    fastdup.create_components_gallery("out", save_path=".")
    fastdup.create_stats_gallery("out/atrain_stats.csv", save_path=".", metric="blur")
    fastdup.create_similarity_gallery("out/similarity.csv", save_path=".")
    assert {"duplicates.html", "outliers.html", "components.html", "blur.html", "similarity.html"} <= set(
        os.listdir(tmp_path))
    copies = demo_dataset.ground_truth()["exact_duplicates"][0]
    assert all(os.path.basename(c) in (tmp_path / "duplicates.html").read_text() for c in copies)


def test_accessors_have_fastdup_columns(fd, demo_dataset):
    sim = fd.similarity()
    assert isinstance(sim, pd.DataFrame)
    assert list(sim.columns[:5]) == ["from", "to", "distance", "filename_from", "filename_to"]
    assert {"label_from", "label_to"} <= set(sim.columns)
    assert list(fd.similarity(data=False).columns) == ["from", "to", "distance"]
    assert list(fd.outliers().columns[:5]) == ["outlier", "nearest", "distance", "filename_outlier",
                                               "filename_nearest"]
    invalid = fd.invalid_instances()
    assert list(invalid.columns[:4]) == ["filename", "index", "error_code", "filesize"]
    assert sorted(invalid["error_code"]) == sorted(demo_dataset.ground_truth()["bad_files"].values())
    stats = fd.img_stats()
    assert list(stats.columns[:12]) == ["index", "img_w", "img_h", "unique", "blur", "mean", "min", "max", "stdv",
                                        "file_size", "contrast", "filename"]
    cc, info = fd.connected_components()
    assert {"index", "component_id", "count", "mean_distance", "min_distance", "max_distance",
            "filename"} <= set(cc.columns)
    assert (cc["count"] >= 2).all() and {"component_id", "count", "mean", "min", "max"} <= set(info.columns)
    annotations = fd.annotations()
    assert {"filename", "index", "error_code", "is_valid", "label", "split"} <= set(annotations.columns)
    assert len(annotations) == len(stats) and fd.num_instances(valid_only=False) == len(stats) + len(invalid)
    files, matrix = fastdup.load_binary(os.path.join(fd.work_dir, "features.dat"))
    assert len(files) == matrix.shape[0] == len(stats) and matrix.shape[1] == 1280 and matrix.dtype == np.float32
    assert isinstance(fastdup.__version__, str) and fastdup.__version__


def test_galleries_and_report(fd, demo_dataset, tmp_path):
    assert fd.vis.stats_gallery(metric="dark", save_path=str(tmp_path)) == 0
    assert fd.vis.stats_gallery(metric="bright", save_path=str(tmp_path)) == 0
    dark, bright = (tmp_path / "dark.html").read_text(), (tmp_path / "bright.html").read_text()
    truth = demo_dataset.ground_truth()
    assert os.path.basename(truth["dark"][0]) in dark and os.path.basename(truth["bright"][0]) in bright
    assert fd.vis.label_gallery(save_path=str(tmp_path)) == 0
    page = (tmp_path / "mislabels.html").read_text()
    assert all(os.path.basename(p) in page for p in truth["wrong_labels"])
    index = fd.vis.report(save_dir=tmp_path / "report", show=False)
    assert index.name == "index.html" and "mislabels.html" in index.read_text()


def test_bad_parameters_raise_and_failures_return_1(demo_dataset, tmp_path, caplog):
    fd = fastdup.create(str(tmp_path / "w"), str(demo_dataset.images))
    cases = {"turi_param entry 'bogus=1' is not supported": {"turi_param": "nnmodel=0,bogus=1"},
             "distance must be one of": {"distance": "hamming"},
             "compute must be 'cpu' or 'gpu'": {"compute": "tpu"},
             "unknown fastdup parameter": {"no_such_parameter": 3},
             "nearest_neighbors_k must be an integer, got 'x'": {"nearest_neighbors_k": "x"},
             "threshold must be a number, got 'high'": {"threshold": "high"}}
    for message, kwargs in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            fd.run(**kwargs)
    with pytest.raises(ConfigError, match="input_dir .* does not exist"):
        fastdup.create(str(tmp_path / "w2"), str(tmp_path / "missing")).run()
    assert not (tmp_path / "w" / "manifest.parquet").exists()  # refused before any work
    (tmp_path / "empty").mkdir()  # a failure during the run: logged, 1
    assert fastdup.create(str(tmp_path / "w3"), str(tmp_path / "empty")).run() == 1
    assert "dup_pipeline run failed" in caplog.text and "no image files" in caplog.text


def test_num_images_and_overwrite(demo_dataset, tmp_path):
    fd = fastdup.create(str(tmp_path / "w"), str(demo_dataset.images))
    assert fd.run(num_images=10, run_stats_only=1) == 0
    assert fd.num_instances(valid_only=False) == 10
    (tmp_path / "w" / "unrelated.txt").write_text("keep me")
    assert fd.run(num_images=12, overwrite=True, run_stats_only=1) == 0
    assert fd.num_instances(valid_only=False) == 12 and (tmp_path / "w" / "unrelated.txt").exists()


def test_overwrite_deletes_stage_states_and_the_clean_list(demo_dataset, tmp_path):
    fd = fastdup.create(str(tmp_path / "w"), str(demo_dataset.images))
    assert fd.run(num_images=10, run_stats_only=1) == 0
    from dup_pipeline.core.clean import write_clean_list
    from dup_pipeline.core.workdir import WorkDir

    write_clean_list(WorkDir(tmp_path / "w"))
    stale = [tmp_path / "w" / "clean_manifest.txt", tmp_path / "w" / "stages" / "clean_manifest.json"]
    (tmp_path / "w" / "stages" / "clean_manifest.json").write_text("{}")
    assert all(p.exists() for p in stale)
    assert fd.run(num_images=12, overwrite=True, run_stats_only=1) == 0
    assert not any(p.exists() for p in stale)
