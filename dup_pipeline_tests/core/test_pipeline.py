import shutil

import polars as pl
import pytest

from dup_pipeline.core.inputs import InputError
from dup_pipeline.core.manifest import exact_duplicate_groups
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.ranges import OffsetRange, offset_ranges, ranges_between
from dup_pipeline.core.workdir import WorkDir, WorkDirError
from dup_pipeline_tests.conftest import noise_image, save_image


def test_offset_range_keys():
    assert [r.key for r in offset_ranges(25, 10)] == ["0-9", "10-19", "20-29"]
    assert OffsetRange.parse("10-19") == OffsetRange(10, 19)
    assert [r.key for r in ranges_between(25, 10, 12, 15)] == ["10-19"]
    with pytest.raises(ValueError, match="range_size"):
        offset_ranges(5, 0)
    with pytest.raises(ValueError, match="0-9999"):
        OffsetRange.parse("abc")


def test_demo_run_finds_planted_bad_files_and_stats(demo_dataset, tmp_path):
    summary = run_pipeline(PipelineConfig(demo_dataset.images, str(tmp_path / "work"), range_size=25))
    truth = demo_dataset.ground_truth()
    bad = pl.read_parquet(tmp_path / "work" / "bad_files.parquet")
    root = str(demo_dataset.images) + "/"
    got = {f.removeprefix(root): r for f, r in zip(bad["filename"], bad["error_code"])}
    assert got == truth["bad_files"]
    assert pl.read_csv(tmp_path / "work" / "features.bad.csv").columns == ["index", "filename", "error_code", "filesize"]
    stats = pl.read_parquet(tmp_path / "work" / "image_stats.parquet")
    assert summary.good == stats.height == summary.files - len(truth["bad_files"])
    by_name = dict(zip([f.removeprefix(root) for f in stats["filename"]], stats.iter_rows(named=True)))
    assert by_name[truth["dark"][0]]["mean"] == stats["mean"].min()
    assert by_name[truth["bright"][0]]["mean"] == stats["mean"].max()
    for original, blurred in truth["blurred"]:
        assert by_name[blurred]["blur"] < by_name[original]["blur"] / 3
    csv_cols = pl.read_csv(tmp_path / "work" / "atrain_stats.csv").columns
    assert csv_cols[:11] == ["index", "width", "height", "unique", "blur", "mean", "min", "max", "stdv",
                             "file_size", "contrast"]
    manifest = pl.read_parquet(tmp_path / "work" / "manifest.parquet")
    groups = exact_duplicate_groups(manifest)
    paths = dict(zip(manifest["index"], manifest["path"]))
    found = sorted(sorted(paths[i].removeprefix(root) for i in g) for g in groups["indexes"])
    assert found == sorted(sorted(pair) for pair in truth["exact_duplicates"])


def test_rerun_skips_unchanged_ranges_and_appends_new_files(tmp_path):
    images = tmp_path / "images"
    for i in range(12):
        save_image(images / f"img_{i:02d}.png", noise_image(i))
    config = PipelineConfig(images, str(tmp_path / "work"), range_size=5)
    first = run_pipeline(config)
    assert [r.key for r in first.ranges] == ["0-4", "5-9", "10-14"] and first.decoded == 12
    again = run_pipeline(config)
    assert again.decoded == 0 and sum(r.reused for r in again.ranges) == 12
    save_image(images / "aaa_new.png", noise_image(100))  # sorts first, but is appended
    save_image(images / "img_03.png", noise_image(300))  # changed content, same index
    third = run_pipeline(config)
    assert {r.key: r.decoded for r in third.ranges} == {"0-4": 1, "5-9": 0, "10-14": 1}
    manifest = pl.read_parquet(tmp_path / "work" / "manifest.parquet")
    assert manifest.filter(pl.col("path").str.ends_with("aaa_new.png"))["index"].item() == 12
    assert manifest.filter(pl.col("path").str.ends_with("img_00.png"))["index"].item() == 0
    (images / "img_07.png").unlink()
    fourth = run_pipeline(config)
    bad = pl.read_parquet(tmp_path / "work" / "bad_files.parquet")
    assert bad.filter(pl.col("index") == 7)["error_code"].item() == "missing"
    assert fourth.files == 13 and fourth.good == 12


def test_no_half_files_are_left(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        save_image(images / f"{i}.png", noise_image(i))
    run_pipeline(PipelineConfig(images, str(tmp_path / "work")))
    assert not [p for p in (tmp_path / "work").rglob("*") if p.name.endswith(".tmp")]


def test_all_bad_folder_finishes_with_a_clear_message(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"")
    (images / "b.png").write_text("nope")
    summary = run_pipeline(PipelineConfig(images, str(tmp_path / "work")))
    assert summary.good == 0 and summary.bad == 2
    assert any("every one of the 2 files is bad" in line for line in summary.lines())


def test_bad_arguments(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        run_pipeline(PipelineConfig(tmp_path / "empty", str(tmp_path / "work")))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkDirError, match="not writable"):
        WorkDir(blocker / "work").ensure_writable()
    with pytest.raises(ValueError, match="num_threads"):
        PipelineConfig(tmp_path, str(tmp_path), num_threads=0)
    shutil.rmtree(tmp_path / "empty")


def test_audit_new_outliers_are_images_that_became_outliers(tmp_path):
    from dup_pipeline.core.atomic import write_parquet
    from dup_pipeline.core.audit import write_audit_summary

    work = WorkDir(tmp_path)

    def outliers(rows: list[tuple[str, float]]) -> None:
        write_parquet(pl.DataFrame({"outlier": list(range(len(rows))), "nearest": [99] * len(rows),
                                    "distance": [d for _, d in rows], "filename_outlier": [f for f, _ in rows],
                                    "filename_nearest": ["z"] * len(rows)}), work.outliers_parquet)

    outliers([("a", 0.2), ("b", 0.3)])
    first = write_audit_summary(work)
    assert first.new["outliers"] == ["a", "b"] and first.totals["wrong_labels"] is None
    # the folder grew: "n" is a new isolated image; "c" (0.4, above the previous cut-off 0.3) is only
    # listed because the outlier fraction of a larger dataset lists more images
    outliers([("n", 0.1), ("a", 0.2), ("b", 0.3), ("c", 0.4)])
    second = write_audit_summary(work)
    assert second.new["outliers"] == ["n"] and second.totals["outliers"] == 4
    assert "| wrong_labels | not measured (no labels) | | |" in second.markdown()
    assert "New images that became outliers:" in second.markdown()
    assert "wrong_labels" not in second.metrics() and second.metrics()["new_outliers"] == 1


@pytest.mark.parametrize("kill_at", ["history", "audit_summary.md", "latest.json"])
def test_an_audit_killed_before_it_commits_reports_the_same_news_when_rerun(tmp_path, monkeypatch, kill_at):
    from dup_pipeline.core import audit
    from dup_pipeline.core.atomic import write_parquet

    work = WorkDir(tmp_path)
    write_parquet(pl.DataFrame({"outlier": [0], "nearest": [9], "distance": [0.2], "filename_outlier": ["a"],
                                "filename_nearest": ["z"]}), work.outliers_parquet)
    audit.write_audit_summary(work)
    write_parquet(pl.DataFrame({"outlier": [0, 1], "nearest": [9, 9], "distance": [0.1, 0.2],
                                "filename_outlier": ["n", "a"], "filename_nearest": ["z", "z"]}), work.outliers_parquet)
    writers = {"write_json": audit.write_json, "write_text": audit.write_text}

    def killing(name):
        def write(obj, path):
            target = "history" if path.parent.name == "audits" and path.name != "latest.json" else path.name
            if target == kill_at:
                raise KeyboardInterrupt("killed")
            writers[name](obj, path)
        return write

    for name in writers:
        monkeypatch.setattr(audit, name, killing(name))
    with pytest.raises(KeyboardInterrupt):
        audit.write_audit_summary(work)
    for name, real in writers.items():
        monkeypatch.setattr(audit, name, real)
    rerun = audit.write_audit_summary(work)
    assert rerun.new["outliers"] == ["n"]
    assert rerun.markdown() == (tmp_path / "audit_summary.md").read_text()


def test_manifest_stage_removes_label_findings_when_labels_are_no_longer_configured(tmp_path):
    from dup_pipeline.core.stages import StageContext, run_stages

    images = tmp_path / "images"
    for i in range(3):
        save_image(images / f"{i}.png", noise_image(i))
    work = WorkDir(tmp_path / "work").ensure_writable()
    work.mislabels_csv.write_text("filename,label\nx,y\n")  # left by an audit that had labels
    results = run_stages(StageContext(PipelineConfig(images, str(work.root))), ["file_manifest"])
    assert results["file_manifest"][0].metrics["files"] == 3
    assert not work.mislabels_csv.exists()


def test_a_moved_work_dir_recomputes_a_stage_whose_file_it_lost(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        save_image(images / f"{i}.png", noise_image(i))
    run_pipeline(PipelineConfig(images, str(tmp_path / "first")), features=False)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "first", moved)
    (moved / "image_issues.parquet").unlink()  # the first work_dir still has its copy
    run_pipeline(PipelineConfig(images, str(moved)), features=False)
    assert (moved / "image_issues.parquet").exists()


def test_clean_list_keeps_the_same_duplicate_whatever_order_the_files_were_found_in(tmp_path):
    from dup_pipeline.core.atomic import write_parquet
    from dup_pipeline.core.clean import clean_list

    def kept(paths: list[str]) -> list[str]:
        work = WorkDir(tmp_path / "-".join(paths))
        work.root.mkdir()
        write_parquet(pl.DataFrame({"index": [0, 1], "path": paths, "missing": [False, False]}), work.manifest)
        write_parquet(pl.DataFrame({"index": [], "error_code": []}, schema={"index": pl.Int64, "error_code": pl.Utf8}),
                      work.bad_files_parquet)
        write_parquet(pl.DataFrame({"index": [0, 1], "width": [64, 64], "height": [48, 48]}), work.image_stats_parquet)
        write_parquet(pl.DataFrame({"__id": [0, 1], "component_id": [0, 0], "count": [2, 2]}),
                      work.components_parquet)
        return clean_list(work).keep["filename"].to_list()

    # same pixels: the first file name wins, not the first index (an incremental run appends new files last)
    assert kept(["b.jpg", "a.jpg"]) == kept(["a.jpg", "b.jpg"]) == ["a.jpg"]


def test_clean_list_keeps_the_far_end_of_a_chain_of_look_alikes(tmp_path):
    import json

    import numpy as np

    from dup_pipeline.core.atomic import write_parquet
    from dup_pipeline.core.clean import clean_list

    work = WorkDir(tmp_path)
    a = np.array([1.0, 0.0, 0.0], np.float32)
    c = np.array([0.0, 1.0, 0.0], np.float32)
    b = (a + c) / np.linalg.norm(a + c)  # cos(a, b) = cos(b, c) = 0.707, cos(a, c) = 0
    vectors = np.stack([a, b, c, a])  # the last: a byte-identical copy of a
    n = len(vectors)
    vectors.tofile(work.features_dat)
    write_parquet(pl.DataFrame({"row": np.arange(n, dtype=np.uint32), "index": np.arange(n)}), work.features_parquet)
    work.features_meta.write_text(json.dumps({"dim": 3, "count": n, "model_id": "m", "ranges": []}))
    paths = ["a.jpg", "b.jpg", "c.jpg", "a_copy.jpg"]
    write_parquet(pl.DataFrame({"index": range(n), "path": paths, "missing": [False] * n}), work.manifest)
    write_parquet(pl.DataFrame({"index": [], "error_code": []}, schema={"index": pl.Int64, "error_code": pl.Utf8}),
                  work.bad_files_parquet)
    write_parquet(pl.DataFrame({"index": range(n), "width": [64, 64, 64, 32], "height": [48] * n}),
                  work.image_stats_parquet)
    write_parquet(pl.DataFrame({"__id": range(n), "component_id": [0] * n, "count": [n] * n}), work.components_parquet)
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "components.json").write_text(
        json.dumps({"settings": {"ccthreshold": 0.7, "distance": "cosine"}}))
    # one component through b; a is the representative (first name of the largest): b is a look-alike of a and
    # dropped, c is not (0 to a) and kept, a's exact copy is dropped
    clean = clean_list(work)
    assert clean.keep["filename"].to_list() == ["a.jpg", "c.jpg"]
    assert dict(clean.dropped.select("filename", "reason").iter_rows()) == {
        "b.jpg": "duplicate: of a.jpg", "a_copy.jpg": "duplicate: of a.jpg"}


def test_the_clean_stage_uses_the_runs_open_feature_matrix(demo_dataset, tmp_path, monkeypatch):
    """A second memory map of features.dat would count its pages twice in the process's RSS (at 100k
    files the run's sampled peak rose by ~400 MiB in the clean stage)."""
    from dup_pipeline.core import clean

    def second_mapping(work):
        raise AssertionError("the clean list opened features.dat again")

    monkeypatch.setattr(clean, "load_features", second_mapping)
    summary = run_pipeline(PipelineConfig(demo_dataset.images, str(tmp_path / "work")))
    dropped = pl.read_parquet(tmp_path / "work" / "clean_dropped.parquet")
    assert summary.graph.similarity.height and dropped["reason"].str.starts_with("duplicate: of ").any()
